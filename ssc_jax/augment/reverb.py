"""Reverb: the Freeverb network of pedalboard.Reverb, run as an FFT convolution (spec §5.3).

pedalboard's Reverb is JUCE's `Reverb`, Jezar's public-domain Freeverb: for mono input,
  wet = allpass_4(...allpass_1(sum_{i=1..8} comb_i(0.015 x)))
  y   = 2 dry_level x + 3 wet_level (1 + width) / 2 * wet
where comb_i is a feedback comb with a one-pole low-pass in its loop (feedback
0.28 room_size + 0.7, damping 0.4 damping) and the allpasses have gain 0.5; delay lengths are
the Freeverb tunings (combs 1116..1617, allpasses 556..225 samples at 44.1 kHz) scaled to the
sample rate. With fixed parameters the network is linear and time-invariant, so this module
computes its impulse response once per (sample rate, view length) in float64 with
scipy.signal.lfilter and applies it by FFT convolution on the accelerator. The view is
processed from silence and the tail past its end is dropped, as pedalboard does per call.

Not bit-identical to pedalboard: JUCE runs the recursion in float32 and smooths parameter
changes over 10 ms; neither matters at the level of a corruption.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from ssc_jax.augment import dsp

_COMB_TUNINGS = (1116, 1188, 1277, 1356, 1422, 1491, 1557, 1617)  # Samples at 44.1 kHz.
_ALLPASS_TUNINGS = (556, 441, 341, 225)
_INPUT_GAIN = 0.015


@dataclasses.dataclass(frozen=True)
class ReverbSettings:
  """pedalboard.Reverb parameters (the spec's room_size 1, wet 1, dry 1; others default)."""
  p: float
  room_size: float
  damping: float
  wet_level: float
  dry_level: float
  width: float = 1.0


@functools.lru_cache(maxsize=16)
def impulse_response(settings: ReverbSettings, sample_rate: int, length: int) -> np.ndarray:
  """First `length` samples of the wet path's impulse response, float32 [length]."""
  from scipy import signal  # Lazy: only this corruption needs scipy.
  feedback = settings.room_size * 0.28 + 0.7
  damp = settings.damping * 0.4
  impulse = np.zeros(length)
  impulse[0] = _INPUT_GAIN
  wet = np.zeros(length)
  for tuning in _COMB_TUNINGS:
    d = sample_rate * tuning // 44100
    b = np.zeros(d + 2)
    b[d], b[d + 1] = 1.0, -damp
    a = np.zeros(d + 1)
    a[0], a[1] = 1.0, -damp
    a[d] -= feedback * (1.0 - damp)
    wet += signal.lfilter(b, a, impulse)
  for tuning in _ALLPASS_TUNINGS:
    d = sample_rate * tuning // 44100
    b = np.zeros(d + 1)
    b[0], b[d] = -1.0, 1.5
    a = np.zeros(d + 1)
    a[0], a[d] = 1.0, -0.5
    wet = signal.lfilter(b, a, wet)
  return (1.5 * settings.wet_level * (1.0 + settings.width) * wet).astype(np.float32)


def reverb(x: jax.Array, settings: ReverbSettings, sample_rate: int) -> jax.Array:
  """Adds the Freeverb tail to one view (linear convolution truncated to the view).

  Args:
    x: [T] float32.
    settings: reverb parameters.
    sample_rate: Hz.

  Returns:
    [T] float32 = 2 dry_level x + (h * x)[:T].
  """
  length = x.shape[-1]
  n = dsp.fast_fft_length(2 * length - 1)
  h = jnp.fft.rfft(impulse_response(settings, sample_rate, length), n=n)
  wet = jnp.fft.irfft(jnp.fft.rfft(x, n=n) * h, n=n)[:length]
  return 2.0 * settings.dry_level * x + wet
