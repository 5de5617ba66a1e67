"""Phase-vocoder building blocks shared by pitch shifting and time stretching.

Both effects re-synthesise an STFT whose partials must keep coherent phases. They follow the
phase-locked vocoder of Laroche & Dolson (IEEE WASPAA 1999, "Improved phase vocoder
time-scale modification of audio"; and "New phase-vocoder techniques for pitch-shifting,
harmonizing and other exotic effects"):
  * peaks: bins whose magnitude exceeds that of their two neighbours on each side;
  * region of influence: every bin belongs to the nearest peak within `radius` bins (bins with
    no peak that close are their own region), and moves and rotates with it, so the shape
    and inter-bin phases of each partial's main lobe are kept ("identity phase locking");
  * instantaneous frequency of a peak from the principal value of its phase advance between
    frames (unambiguous for peaks at 50 % and 75 % overlap).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from ssc_jax.augment import dsp
from ssc_jax.augment import stft as stft_lib

PEAK_RADIUS = 2  # Bins around a peak that follow it: a Hann main lobe spans +-2 bins.


def expected_advance(geom: stft_lib.StftGeometry) -> np.ndarray:
  """Phase advance over one hop of each bin's centre frequency, 2 pi k hop / n_fft.

  Returns:
    [K] float32, wrapped to [-pi, pi] (the hop divides n_fft, so it takes `overlap` values).
  """
  k = np.arange(geom.n_bins)
  return np.angle(np.exp(2j * np.pi * k * geom.hop / geom.n_fft)).astype(np.float32)


def phase_deviation(cur: jax.Array, prev: jax.Array, geom: stft_lib.StftGeometry) -> jax.Array:
  """Deviation of each bin's phase advance over one hop from its centre frequency's advance.

  princarg(arg(cur) - arg(prev) - 2 pi k hop / n_fft), computed as the angle of
  cur * conj(prev) so that only one arctangent per bin is needed. The instantaneous
  frequency of bin k is (2 pi k hop / n_fft + deviation) / hop radians per sample.

  Args:
    cur: [..., K] complex64 STFT frame(s).
    prev: [..., K] complex64 previous frame(s), same shape.
    geom: STFT layout.

  Returns:
    [..., K] float32 in [-pi, pi].
  """
  d = cur * jnp.conj(prev)
  return dsp.wrap_phase(dsp.fast_atan2(jnp.imag(d), jnp.real(d)) - expected_advance(geom))


def scaled_advance(deviation: jax.Array, bins: jax.Array, scale: jax.Array,
                   geom: stft_lib.StftGeometry) -> jax.Array:
  """scale * (2 pi bins hop / n_fft + deviation), wrapped to [-pi, pi], without precision loss.

  Args:
    deviation: [..., K] float32 from `phase_deviation`, taken at `bins`.
    bins: [..., K] int32 bin indices of those deviations.
    scale: scalar (or broadcastable) float32 multiplier.
    geom: STFT layout.
  """
  cycles = scale * bins.astype(jnp.float32) * np.float32(geom.hop / geom.n_fft)
  centre = np.float32(dsp.TWO_PI) * (cycles - jnp.round(cycles))
  return dsp.wrap_phase(centre + scale * deviation)


def nearest_peak(power: jax.Array, radius: int = PEAK_RADIUS) -> jax.Array:
  """For each bin, the index of the nearest spectral peak within `radius` bins (else itself).

  Args:
    power: [F, K] float32 squared magnitudes.
    radius: search distance in bins.

  Returns:
    [F, K] int32 bin indices.
  """
  n_bins = power.shape[-1]
  padded = jnp.pad(power, ((0, 0), (2, 2)))
  centre = padded[:, 2:-2]
  is_peak = ((centre > padded[:, 1:-3]) & (centre > padded[:, :-4])
             & (centre >= padded[:, 3:-1]) & (centre >= padded[:, 4:]))
  # Float flags: XLA:CPU vectorises these selects better than ones on booleans.
  flags = jnp.pad(is_peak.astype(jnp.float32), ((0, 0), (radius, radius)))
  # Nearest first, and the lower one at equal distance (ties go to the lower-frequency
  # peak): the selects run from the lowest priority (+radius) to the highest (0).
  offset = jnp.zeros(power.shape, jnp.int32)
  for d in range(radius, -1, -1):
    for signed in ((d, -d) if d else (0,)):
      offset = jnp.where(flags[:, radius + signed:radius + signed + n_bins] > 0, signed, offset)
  return jnp.arange(n_bins, dtype=jnp.int32) + offset


def cumulative_phase(increments: jax.Array) -> jax.Array:
  """Running sum over frames (axis 0) of per-frame phase increments in [-pi, pi].

  On CPU a sequential scan over the F frames (each step vectorised over bins and views) is
  3-5x faster than XLA's cumsum or a log-depth associative scan; accelerators get the
  associative scan. The sums stay below F pi, so float32 keeps them to ~1e-4 rad.

  Args:
    increments: [F, K] float32.

  Returns:
    [F, K] float32 inclusive prefix sums along frames.
  """
  if jax.default_backend() == "cpu":
    step = lambda total, inc: (total + inc, total + inc)
    return jax.lax.scan(step, jnp.zeros_like(increments[0]), increments)[1]
  return jax.lax.associative_scan(jnp.add, increments, axis=0)


def rotate(re: jax.Array, im: jax.Array, phase: jax.Array) -> jax.Array:
  """(re + i im) * exp(i phase) as complex64, with the polynomial sincos."""
  s, c = dsp.fast_sincos(phase)
  return jax.lax.complex(re * c - im * s, re * s + im * c)
