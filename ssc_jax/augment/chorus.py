"""Chorus: a sine-modulated fractional delay, as pedalboard.Chorus (spec §5.3).

pedalboard's Chorus is JUCE's `dsp::Chorus`: a linearly interpolated delay line whose delay
is max(1 ms, centre_delay + 20 ms * 0.5 * depth * lfo(t)) with lfo(t) = sin(2 pi rate t - pi)
(JUCE's oscillator starts at -pi), mixed linearly with the dry signal (mix 1 = all wet, a
vibrato). With the spec's rate 5 Hz, depth 1, centre 7 ms the delay sweeps 1..17 ms five
times a second. Feedback (0 in the spec and pedalboard's default) is not supported: it would
make the effect recursive. Being deterministic, every view gets the same modulation phase,
as each pedalboard call starts its oscillator afresh.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np


@dataclasses.dataclass(frozen=True)
class ChorusSettings:
  """pedalboard.Chorus parameters (the spec's rate 5 Hz, depth 1, mix 1; centre 7 ms)."""
  p: float
  rate_hz: float
  depth: float
  centre_delay_ms: float
  mix: float


def chorus(x: jax.Array, settings: ChorusSettings, sample_rate: int) -> jax.Array:
  """Applies the modulated delay to one view.

  Args:
    x: [T] float32.
    settings: chorus parameters.
    sample_rate: Hz.

  Returns:
    [T] float32.
  """
  length = x.shape[-1]
  t = np.arange(length) / sample_rate
  lfo = np.sin(2 * np.pi * settings.rate_hz * t - np.pi)
  delay_ms = np.maximum(1.0, settings.centre_delay_ms + 10.0 * settings.depth * lfo)
  position = np.arange(length) - delay_ms * sample_rate / 1000.0  # Fractional read index.
  first = np.floor(position).astype(np.int32)
  frac = (position - first).astype(np.float32)
  padded = jnp.concatenate([jnp.zeros((1,), x.dtype), x])  # Index -1 reads 0 (before start).
  read = lambda i: padded[np.clip(i, -1, length - 1) + 1]
  wet = (1.0 - frac) * read(first) + frac * read(first + 1)
  return settings.mix * wet + (1.0 - settings.mix) * x
