"""Additive coloured noise at a random SNR and spectral slope, per view (spec §5.2).

One second of noise (sample_rate samples) is synthesised in the rFFT domain: independent
complex Gaussian bins (the spectrum of white Gaussian noise; Box-Muller from 16-bit
uniforms) multiplied by
  mask_k = linspace(1, sqrt(sr / 2), K)_k ^ (-decay),   K = sr // 2 + 1,
as in the original, so the amplitude spectrum falls as f^-decay above ~100 Hz (decay > 0:
pink/brown-like; decay < 0: blue/violet-like). The inverse rFFT is tiled to the view length
and then scaled to the RMS that gives the drawn SNR against the view's RMS:
  y = x + n * rms(x) / (rms(n) 10^(snr / 20)).
The original normalises the 1 s noise before tiling; normalising the tiled noise (what is
actually added) makes the SNR exact. A silent view stays silent (its RMS is 0).
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ssc_jax.augment import dsp


@dataclasses.dataclass(frozen=True)
class NoiseSettings:
  """Coloured-noise parameters (SNR U[3/s, 30/s] dB, decay U[-2 s, 2 s] in the spec).

  Attributes:
    p: per-view probability.
    min_snr_db, max_snr_db: SNR range in dB (uniform).
    min_decay, max_decay: spectral decay exponent range (uniform).
  """
  p: float
  min_snr_db: float
  max_snr_db: float
  min_decay: float
  max_decay: float


class NoiseParams(NamedTuple):
  """Drawn per view. The white spectrum is generated from `key` when the noise is applied,
  so that views whose gate is off (skipped on CPU) do not pay for it."""
  snr_db: jax.Array  # [] float32.
  decay: jax.Array  # [] float32, amplitude spectrum ~ f^-decay.
  key: jax.Array  # [] PRNG key of the white noise bins.


def _mix32(x: jax.Array) -> jax.Array:
  """A 32-bit integer hash with full avalanche (C. Wellons' "lowbias32")."""
  x = x ^ (x >> 16)
  x = x * jnp.uint32(0x7FEB352D)
  x = x ^ (x >> 15)
  x = x * jnp.uint32(0x846CA68B)
  return x ^ (x >> 16)


def complex_gaussian(key: jax.Array, n: int) -> jax.Array:
  """[2, n] float32 independent standard normals (real and imaginary parts of n bins).

  Box-Muller on the two 16-bit halves of one random 32-bit word per bin: half the random
  bits and none of the erfinv of `jax.random.normal` (tails reach 4.8 sigma). The words are
  a counter hashed twice with two seeds drawn from `key` (10x cheaper on CPU than
  `jax.random.bits`' threefry for the ~10^4 words of a view; statistical quality is ample
  for noise).
  """
  seed = jax.random.bits(key, (2,), jnp.uint32)
  bits = _mix32(_mix32(jnp.arange(n, dtype=jnp.uint32) ^ seed[0]) + seed[1])
  scale = np.float32(1.0 / 65536)
  u1 = ((bits >> 16).astype(jnp.float32) + 0.5) * scale
  u2 = ((bits & 0xFFFF).astype(jnp.float32) + 0.5) * scale
  radius = jnp.sqrt(-2.0 * jnp.log(u1))
  s, c = dsp.fast_sincos(np.float32(dsp.TWO_PI) * u2)
  return jnp.stack([radius * c, radius * s])


def sample(key: jax.Array, settings: NoiseSettings) -> NoiseParams:
  """Draws the SNR, the decay and the key of the white noise spectrum (one view)."""
  k_snr, k_decay, k_white = jax.random.split(key, 3)
  return NoiseParams(
      jax.random.uniform(k_snr, (), jnp.float32, settings.min_snr_db, settings.max_snr_db),
      jax.random.uniform(k_decay, (), jnp.float32, settings.min_decay, settings.max_decay),
      k_white)


def log_mask_axis(sample_rate: int) -> np.ndarray:
  """log(linspace(1, sqrt(sr / 2), sr // 2 + 1)): the mask's log-frequency axis [K] float32."""
  return np.log(np.linspace(1.0, np.sqrt(sample_rate / 2), sample_rate // 2 + 1)).astype(
      np.float32)


def colored_noise(x: jax.Array, params: NoiseParams, sample_rate: int) -> jax.Array:
  """Adds coloured noise to one view at the drawn SNR (see the module docstring).

  Args:
    x: [T] float32.
    params: drawn SNR, decay and white spectrum.
    sample_rate: Hz; the noise period is one second.

  Returns:
    [T] float32.
  """
  white = complex_gaussian(params.key, sample_rate // 2 + 1)
  mask = jnp.exp(-params.decay * log_mask_axis(sample_rate))
  spectrum = jax.lax.complex(white[0] * mask, white[1] * mask)
  period = jnp.fft.irfft(spectrum, n=sample_rate)
  length = x.shape[-1]
  noise = jnp.tile(period, -(-length // sample_rate))[:length]
  scale = dsp.rms(x) / (jnp.maximum(dsp.rms(noise), 1e-20) * dsp.db_to_amplitude(params.snr_db))
  return x + noise * scale
