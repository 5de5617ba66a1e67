"""Pitch shift that keeps duration: a phase-locked phase vocoder shifting spectral peaks.

Method (Laroche & Dolson 1999, "New phase-vocoder techniques for pitch-shifting"), applied to
the STFT of `stft.py` (46 ms frames, 75 % overlap by default):
  1. every output bin k is served by the input peak p nearest to k / ratio (its region of
     influence, see `vocoder.nearest_peak`);
  2. the whole region moves rigidly by delta = round(ratio p) - p bins, so the main lobe of
     each partial keeps its shape, level and inter-bin phases (no lobe stretching);
  3. its phase is rotated by the running sum of (ratio - 1) * omega_p * hop, omega_p being the
     peak's instantaneous frequency, so that between frames the partial advances as a
     sinusoid at ratio * omega_p: the re-synthesised partial sits at exactly ratio x its
     input frequency (the integer bin move only places the lobe to within half a bin);
  4. all bins of a region share their peak's rotation (phase locking), and the overlap-add
     inverse STFT returns a view of the original length.
Content that would land above Nyquist (ratio > 1) is dropped; output bins whose source lies
above Nyquist (ratio < 1) are zero.

The original resamples then time-stretches with torchaudio's (non-locked) phase vocoder with
a 344-sample rectangular window and a 10-sample hop; the ratios are the same discrete set.
"""

from __future__ import annotations

import dataclasses
import fractions
import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp

from ssc_jax.augment import stft as stft_lib
from ssc_jax.augment import vocoder


@dataclasses.dataclass(frozen=True)
class PitchShiftSettings:
  """Pitch-shift parameters (spec §5.2).

  Attributes:
    p: per-view probability.
    max_semitones: transpositions within +-max_semitones (4 s in the spec).
    n_fft: STFT frame size; 0 = ~46 ms (1024 at 22.05 kHz).
    overlap: frames per sample: 4 (75 %, default) or 2 (50 %, ~2x cheaper, more smearing).
  """
  p: float
  max_semitones: float
  n_fft: int = 0
  overlap: int = 4


class PitchShiftParams(NamedTuple):
  """Drawn per view."""
  ratio: jax.Array  # [] float32 frequency ratio (output / input).


@functools.lru_cache(maxsize=None)
def fast_ratios(sample_rate: int, max_semitones: float) -> tuple[float, ...]:
  """The discrete transposition set of the original ("fast" shifts for `sample_rate`).

  Ratios i / j where i and j divide the sample rate, within 2^(+-max_semitones / 12),
  excluding 1. For 22050 Hz = 2 * 3^2 * 5^2 * 7^2 and 4 semitones: 14 ratios,
  +-{0.35, 1.19, 1.47, 1.82, 2.67, 3.02, 3.16} semitones.

  Args:
    sample_rate: Hz (a positive integer).
    max_semitones: half-width of the range, in semitones.

  Returns:
    Sorted ratios as floats.
  """
  divisors = [d for d in range(1, sample_rate + 1) if sample_rate % d == 0]
  low = fractions.Fraction(2 ** (-max_semitones / 12))
  high = fractions.Fraction(2 ** (max_semitones / 12))
  ratios = {fractions.Fraction(i, j) for i in divisors for j in divisors}
  return tuple(float(r) for r in sorted(r for r in ratios if low <= r <= high and r != 1))


def sample(key: jax.Array, ratios: tuple[float, ...]) -> PitchShiftParams:
  """Draws one ratio uniformly from `ratios` (one view)."""
  index = jax.random.randint(key, (), 0, len(ratios))
  return PitchShiftParams(jnp.asarray(ratios, jnp.float32)[index])


def shift_spectrum(spectrum: jax.Array, ratio: jax.Array,
                   geom: stft_lib.StftGeometry) -> jax.Array:
  """Moves every partial of an STFT to `ratio` x its frequency (steps 1-4 of the module doc).

  Args:
    spectrum: [F, K] complex64 STFT of one view.
    ratio: [] float32 frequency ratio.
    geom: its layout.

  Returns:
    [F, K] complex64 shifted STFT.
  """
  n_bins = geom.n_bins
  re, im = jnp.real(spectrum), jnp.imag(spectrum)
  bins = jnp.arange(n_bins, dtype=jnp.int32)
  source_position = bins.astype(jnp.float32) / ratio  # [K] where output bin k reads from.
  nearest_input = jnp.clip(jnp.round(source_position).astype(jnp.int32), 0, n_bins - 1)
  peak = jnp.take(vocoder.nearest_peak(re * re + im * im), nearest_input, axis=1,
                  mode="clip")  # [F, K]: the peak serving each output bin (input index).
  target = jnp.round(ratio * peak.astype(jnp.float32)).astype(jnp.int32)
  source = bins - (target - peak)
  valid = (source >= 0) & (source < n_bins) & (source_position <= n_bins - 1)
  source = jnp.clip(source, 0, n_bins - 1)
  # Every index below is clipped to [0, K), so the gathers skip their bounds handling.
  take = functools.partial(jnp.take_along_axis, axis=1, mode="promise_in_bounds")
  deviation = vocoder.phase_deviation(spectrum[1:], spectrum[:-1], geom)  # [F - 1, K]
  rotation = vocoder.scaled_advance(take(deviation, peak[1:]), peak[1:], ratio - 1.0, geom)
  theta = vocoder.cumulative_phase(
      jnp.concatenate([jnp.zeros((1, n_bins), jnp.float32), rotation]))
  theta = take(theta, jnp.clip(target, 0, n_bins - 1))  # Lock each region to its peak.
  zero = jnp.zeros((), jnp.float32)
  return vocoder.rotate(jnp.where(valid, take(re, source), zero),
                        jnp.where(valid, take(im, source), zero), theta)


def pitch_shift(x: jax.Array, params: PitchShiftParams, n_fft: int,
                overlap: int = 4) -> jax.Array:
  """Shifts the pitch of one view by `params.ratio`, keeping its length.

  Args:
    x: [T] float32.
    params: the drawn ratio.
    n_fft: STFT frame size (static).
    overlap: 4 or 2 frames per sample (static).

  Returns:
    [T] float32.
  """
  geom = stft_lib.geometry(x.shape[-1], n_fft, overlap)
  return stft_lib.istft(shift_spectrum(stft_lib.stft(x, geom), params.ratio, geom), geom)
