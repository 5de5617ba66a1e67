"""Band-pass, band-stop, high-pass and low-pass filters with mel-uniform random cutoffs.

Design (one family for all four): zero-phase FFT-domain filters whose low-pass prototype is
  LP(f; fc) = 1                                         for f <= fc (1 - w)
            = sin^2(pi/2 * (fc (1 + w) - f) / (2 w fc))  for fc (1 - w) < f < fc (1 + w)
            = 0                                         for f >= fc (1 + w)
with w = 0.25: a raised-cosine transition band +-25 % around the cutoff, -6 dB (gain 0.5)
at fc, as with the original's julius filters (8-zero-crossing Hann-windowed sincs, whose
transition is also about +-fc / 4 wide). Then, exactly like the original:
  band-pass(lo, hi) = LP(hi) - LP(lo)      band-stop = 1 - band-pass
  low-pass(fc)      = LP(fc)               high-pass = 1 - LP(fc)
Response: passband gain exactly 1 beyond the transition bands (below 0.75 fc for LP, above
1.25 fc for HP, inside [1.25 lo, 0.75 hi] for BP), stopband gain exactly 0 in the
continuous-frequency design; what leaks is the view's own spectral leakage and the filter's
impulse-response tails (1/t^3 decay, ~4 / (w fc) seconds long) past the view's ends.
The filter runs on a zero-padded FFT of length fast_fft_length(T + 4096): the padding
(186 ms at 22.05 kHz) absorbs the tails so they do not wrap around the view.

One transform, `filtering`, is the original's OneOf: one of the four filters is chosen
uniformly per item, then applied to each view with probability p and its own cutoffs.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ssc_jax.augment import dsp

FILTER_KINDS = ("band_pass", "band_stop", "high_pass", "low_pass")
TRANSITION = 0.25  # Half-width of the transition band, relative to the cutoff.
_TAIL_PADDING = 4096  # Zeros appended before the FFT to hold the impulse-response tails.


@dataclasses.dataclass(frozen=True)
class FilterSettings:
  """Cutoff ranges of the four filters (spec §5.2; s = severity / 2).

  Attributes:
    p: per-view probability of the chosen (or named) filter.
    center_min_hz, center_max_hz: band-pass/stop centre range, drawn mel-uniform.
    min_bandwidth, max_bandwidth: band width as a fraction of the centre, drawn uniform;
      the band is centre * (1 -+ bandwidth / 2).
    highpass_min_hz, highpass_max_hz: high-pass cutoff range, drawn mel-uniform.
    lowpass_min_hz, lowpass_max_hz: low-pass cutoff range, drawn mel-uniform.
  """
  p: float
  center_min_hz: float
  center_max_hz: float
  min_bandwidth: float
  max_bandwidth: float
  highpass_min_hz: float
  highpass_max_hz: float
  lowpass_min_hz: float
  lowpass_max_hz: float


class FilterParams(NamedTuple):
  """One filter as a band and a complement flag: response = c + (1 - 2c) (LP(hi) - LP(lo))."""
  low_hz: jax.Array  # [] float32; 0 for low-pass and high-pass.
  high_hz: jax.Array  # [] float32.
  complement: jax.Array  # [] float32, 1 for band-stop and high-pass, else 0.


def _band(key: jax.Array, settings: FilterSettings) -> tuple[jax.Array, jax.Array]:
  k_center, k_width = jax.random.split(key)
  center = dsp.mel_uniform(k_center, settings.center_min_hz, settings.center_max_hz)
  width = jax.random.uniform(k_width, (), jnp.float32, settings.min_bandwidth,
                             settings.max_bandwidth)
  return center * (1.0 - width / 2), center * (1.0 + width / 2)


def sample(key: jax.Array, settings: FilterSettings, kind: jax.Array | int) -> FilterParams:
  """Draws the cutoffs of filter `kind` (index into FILTER_KINDS; may be traced) for one view.

  All four filters' parameters are drawn from the same key and the requested one is
  selected, so that `kind` can be a per-item random choice inside jit.
  """
  k_band, k_high, k_low = jax.random.split(key, 3)
  low, high = _band(k_band, settings)
  cut_high = dsp.mel_uniform(k_high, settings.highpass_min_hz, settings.highpass_max_hz)
  cut_low = dsp.mel_uniform(k_low, settings.lowpass_min_hz, settings.lowpass_max_hz)
  zero = jnp.zeros((), jnp.float32)
  table = jnp.stack([
      jnp.stack([low, high, zero]),  # band_pass
      jnp.stack([low, high, zero + 1.0]),  # band_stop
      jnp.stack([zero, cut_high, zero + 1.0]),  # high_pass
      jnp.stack([zero, cut_low, zero]),  # low_pass
  ])
  row = table[kind]
  return FilterParams(row[0], row[1], row[2])


def lowpass_response(freqs: jax.Array | np.ndarray, cutoff: jax.Array) -> jax.Array:
  """LP(f; fc) of the module docstring; identically 0 when fc <= 0."""
  ramp = jnp.clip((cutoff * (1.0 + TRANSITION) - freqs)
                  / jnp.maximum(2.0 * TRANSITION * cutoff, 1e-6), 0.0, 1.0)
  s, _ = dsp.fast_sincos(ramp * np.float32(np.pi / 2))
  return jnp.where(cutoff > 0, s * s, 0.0)


def response(freqs: jax.Array | np.ndarray, params: FilterParams) -> jax.Array:
  """Real zero-phase gain of the filter at `freqs` (Hz), any shape."""
  band = lowpass_response(freqs, params.high_hz) - lowpass_response(freqs, params.low_hz)
  return params.complement + (1.0 - 2.0 * params.complement) * band


def fft_length(length: int) -> int:
  """FFT size used for a view of `length` samples (static)."""
  return dsp.fast_fft_length(length + _TAIL_PADDING)


def apply(x: jax.Array, params: FilterParams, sample_rate: int) -> jax.Array:
  """Filters one view.

  Args:
    x: [T] float32.
    params: band and complement flag.
    sample_rate: Hz.

  Returns:
    [T] float32.
  """
  n = fft_length(x.shape[-1])
  freqs = np.fft.rfftfreq(n, 1.0 / sample_rate).astype(np.float32)
  return dsp.fft_filter(x, response(freqs, params), n)
