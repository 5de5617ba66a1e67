"""Time stretch that keeps the view length: a phase-locked phase vocoder (spec §5.3).

Output frame t of the STFT (`stft.py`, 46 ms frames, 75 % overlap) is read at input frame
position s = t * rate, as librosa's `effects.time_stretch` does: magnitudes interpolated
linearly between frames floor(s) and floor(s) + 1, phases advanced by each bin's
instantaneous frequency measured between those two frames. Identity phase locking
(Laroche & Dolson 1999): only peaks keep their own running phase; every other bin takes its
peak's phase plus its own phase offset to that peak in the input frame, which keeps partials'
main lobes coherent. rate > 1 shortens (faster), rate < 1 lengthens; the result is truncated
or zero-padded to the view length, as in the original.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp

from ssc_jax.augment import stft as stft_lib
from ssc_jax.augment import vocoder


@dataclasses.dataclass(frozen=True)
class TimeStretchSettings:
  """Time-stretch parameters: rate ~ U[min_rate, max_rate] per view (0.7-1.3, p 1)."""
  p: float
  min_rate: float
  max_rate: float
  n_fft: int = 0  # 0 = ~46 ms (1024 at 22.05 kHz).


class TimeStretchParams(NamedTuple):
  """Drawn per view."""
  rate: jax.Array  # [] float32 speed factor (> 1: faster and shorter).


def sample(key: jax.Array, settings: TimeStretchSettings) -> TimeStretchParams:
  """Draws a rate uniformly in [min_rate, max_rate] (one view)."""
  return TimeStretchParams(
      jax.random.uniform(key, (), jnp.float32, settings.min_rate, settings.max_rate))


def _unit(z: jax.Array) -> jax.Array:
  """z / |z| (1 where z = 0)."""
  mag = jnp.abs(z)
  return jnp.where(mag > 0, z / jnp.where(mag > 0, mag, 1.0), 1.0 + 0.0j)


def time_stretch(x: jax.Array, params: TimeStretchParams, n_fft: int) -> jax.Array:
  """Plays one view `params.rate` times faster, keeping its length.

  Args:
    x: [T] float32.
    params: the drawn rate.
    n_fft: STFT frame size (static).

  Returns:
    [T] float32.
  """
  geom = stft_lib.geometry(x.shape[-1], n_fft, 4)
  spectrum = stft_lib.stft(x, geom)
  n_frames = geom.n_frames
  position = jnp.arange(n_frames, dtype=jnp.float32) * params.rate
  first = jnp.minimum(jnp.floor(position).astype(jnp.int32), n_frames - 1)
  second = jnp.minimum(first + 1, n_frames - 1)
  frac = (position - first.astype(jnp.float32))[:, None]
  inside = (position <= n_frames - 1)[:, None]
  a, b = spectrum[first], spectrum[second]  # [F, K] each.
  magnitude = jnp.where(inside, (1.0 - frac) * jnp.abs(a) + frac * jnp.abs(b), 0.0)
  bins = jnp.arange(geom.n_bins, dtype=jnp.int32)
  advance = vocoder.scaled_advance(vocoder.phase_deviation(b, a, geom), bins[None, :],
                                   jnp.float32(1.0), geom)
  start = jnp.angle(spectrum[0])[None, :]
  # Output frame t uses the phase reached after the advances of frames 0..t-1.
  phase = vocoder.cumulative_phase(
      jnp.concatenate([start, advance[:-1]], axis=0))
  peak = vocoder.nearest_peak(magnitude * magnitude)
  take = lambda v, i: jnp.take_along_axis(v, i, axis=1, mode="promise_in_bounds")
  locked = _unit(a * jnp.conj(take(a, peak)))  # Each bin's phase offset to its peak.
  out = magnitude * locked * vocoder.rotate(jnp.ones_like(magnitude),
                                            jnp.zeros_like(magnitude), take(phase, peak))
  return stft_lib.istft(out, geom)
