"""The original's custom echo ("Delay"), per view (spec §5.2).

  echo(x) = sum_{i=0}^{R-1} a^i shift(x, i d)     (the i = 0 term is x itself)
  y       = (x + v echo(x)) / 2                   (halved even for R = 1; y = x / 2 for R = 0)
with d ~ U{min_samples..max_samples}, and v, R, a each one of two values. Echoes past the
view's end are dropped. Implemented as at most max(R) rolled copies of the view, the wrapped
part masked to zero (no padded copy of the view is materialised).
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp


@dataclasses.dataclass(frozen=True)
class DelaySettings:
  """Delay parameters (s = severity / 2).

  Attributes:
    p: per-view probability (min(0.6, 0.6 s)).
    min_samples, max_samples: inclusive delay range (100 / s ms to 500 ms).
    volumes: the two values of v (0.5 s -+ 0.2).
    repeats: the two values of R (int(2 s) -+ 1).
    attenuations: the two values of a (min(1, 0.5 s) -+ 0.2).
  """
  p: float
  min_samples: int
  max_samples: int
  volumes: tuple[float, float]
  repeats: tuple[int, int]
  attenuations: tuple[float, float]


class DelayParams(NamedTuple):
  """Drawn per view."""
  delay: jax.Array  # [] int32 samples between echoes.
  volume: jax.Array  # [] float32 v.
  repeats: jax.Array  # [] int32 R.
  attenuation: jax.Array  # [] float32 a.


def sample(key: jax.Array, settings: DelaySettings) -> DelayParams:
  """Draws d, v, R and a for one view."""
  k_d, k_v, k_r, k_a = jax.random.split(key, 4)
  pick = lambda k, values, dtype: jnp.asarray(values, dtype)[jax.random.randint(k, (), 0, 2)]
  return DelayParams(
      jax.random.randint(k_d, (), settings.min_samples, settings.max_samples + 1),
      pick(k_v, settings.volumes, jnp.float32),
      pick(k_r, settings.repeats, jnp.int32),
      pick(k_a, settings.attenuations, jnp.float32))


def delay(x: jax.Array, params: DelayParams, max_repeats: int) -> jax.Array:
  """Applies the echo to one view.

  Args:
    x: [T] float32.
    params: drawn delay, volume, repeats and attenuation.
    max_repeats: static upper bound of R.

  Returns:
    [T] float32.
  """
  length = x.shape[-1]
  t = jnp.arange(length)
  echo = jnp.zeros_like(x)
  for i in range(max_repeats):
    weight = jnp.where(i < params.repeats, params.attenuation ** i, 0.0)
    if i == 0:
      shifted = x
    else:
      shift = jnp.minimum(i * params.delay, length)
      shifted = jnp.where(t >= shift, jnp.roll(x, shift), 0.0)  # Beyond the view: zeros.
    echo = echo + weight * shifted
  return 0.5 * (x + params.volume * echo)
