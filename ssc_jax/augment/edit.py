"""Time edits: splice-out and reverse (spec §5.3 `splice`, `reverse`).

Splice-out removes `num_intervals` random stretches of up to `max_width_s` each (widths
U{0..int(max_width_s sr) - 1}, starts uniform), joins what is left and zero-pads the end.
Each cut edge gets a `fade_s` raised-cosine fade-out / fade-in so the joins do not click
(torch-audiomentations' SpliceOut also smooths its joins with a Hann window; ours is a
fade on either side of the join rather than a crossfade). Overlapping intervals merge.
Static shapes: a keep-mask, its cumulative sum as destination index, one scatter-add.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np


@dataclasses.dataclass(frozen=True)
class SpliceSettings:
  """Splice-out parameters (torch-audiomentations SpliceOut defaults; p 1)."""
  p: float
  num_intervals: int
  max_width_s: float
  fade_s: float = 0.005


class SpliceParams(NamedTuple):
  """Drawn per view."""
  starts: jax.Array  # [num_intervals] int32 first removed sample.
  widths: jax.Array  # [num_intervals] int32 removed samples (may be 0).


def sample_splice(key: jax.Array, settings: SpliceSettings, sample_rate: int,
                  length: int) -> SpliceParams:
  """Draws the removed intervals of one view of `length` samples."""
  k_width, k_start = jax.random.split(key)
  max_width = max(1, int(settings.max_width_s * sample_rate))
  widths = jax.random.randint(k_width, (settings.num_intervals,), 0, max_width)
  starts = jnp.floor(jax.random.uniform(k_start, (settings.num_intervals,))
                     * (length - widths + 1)).astype(jnp.int32)
  return SpliceParams(starts, widths)


def splice_out(x: jax.Array, params: SpliceParams, fade_samples: int) -> jax.Array:
  """Removes the drawn intervals, fades their edges and zero-pads the end.

  Args:
    x: [T] float32.
    params: intervals.
    fade_samples: static fade length on each side of a cut (>= 1).

  Returns:
    [T] float32.
  """
  length = x.shape[-1]
  n = jnp.arange(length, dtype=jnp.int32)[:, None]  # [T, 1]
  starts, ends = params.starts[None, :], (params.starts + params.widths)[None, :]
  removed = jnp.any((n >= starts) & (n < ends), axis=1)
  # Distance (in samples) to the nearest cut, for the fades; cuts of width 0 are no cuts.
  distance = jnp.where(n < starts, starts - 1 - n, n - ends)
  distance = jnp.where(params.widths[None, :] > 0, distance, length)
  ramp = jnp.clip(jnp.min(distance, axis=1).astype(jnp.float32) / fade_samples, 0.0, 1.0)
  fade = jnp.sin(ramp * np.float32(np.pi / 2)) ** 2
  keep = ~removed
  destination = jnp.where(keep, jnp.cumsum(keep) - 1, length)  # Removed samples: dropped.
  return jnp.zeros_like(x).at[destination].add(jnp.where(keep, x * fade, 0.0), mode="drop")


@dataclasses.dataclass(frozen=True)
class ReverseSettings:
  """Time reversal (p 1)."""
  p: float


def reverse(x: jax.Array) -> jax.Array:
  """x played backwards (exact)."""
  return x[::-1]
