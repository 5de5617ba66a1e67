"""Distortion, compression and bit crushing (spec §5.3, pedalboard equivalents).

* Distortion (pedalboard.Distortion = JUCE Gain + tanh WaveShaper): y = tanh(10^(drive/20) x).
  Same formula as pedalboard.
* Compressor (pedalboard.Compressor = JUCE dsp::Compressor): a half-wave rectifier feeds a
  peak ballistics filter env[n] = u + c (env[n-1] - u), u = max(x[n], 0), with
  c = exp(-2 pi 1000 / (sr t_ms)) for the attack time when u > env[n-1] and the release time
  otherwise; gain = 1 below the threshold, (env / threshold)^(1/ratio - 1) above. Same
  recursion as JUCE, run as a sequential `lax.scan` over samples (vectorised over views): it
  is the one transform whose cost grows with the view length rather than the batch, so it
  suits the robustness sweep more than the training chain.
* Bitcrush (pedalboard.Bitcrush): y = round(x 2^b) / 2^b, rounding half to even, without
  saturation, as pedalboard does: a step of 2^-b, so 2^(b+1) + 1 levels over [-1, 1]. The
  original's bit_depth = 4 is our default bits = 4.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from ssc_jax.augment import dsp


@dataclasses.dataclass(frozen=True)
class DistortionSettings:
  """tanh drive in dB (the spec's 9 dB)."""
  p: float
  drive_db: float


def distortion(x: jax.Array, settings: DistortionSettings) -> jax.Array:
  """tanh(10^(drive_db / 20) x) for one view [T]."""
  return jnp.tanh(x * dsp.db_to_amplitude(settings.drive_db))


@dataclasses.dataclass(frozen=True)
class CompressorSettings:
  """Compressor parameters (the spec's threshold -30 dB, ratio 5; JUCE default times)."""
  p: float
  threshold_db: float
  ratio: float
  attack_ms: float
  release_ms: float


def _ballistic_coefficient(time_ms: float, sample_rate: int) -> float:
  return 0.0 if time_ms < 1e-3 else float(np.exp(-2 * np.pi * 1000.0 / (sample_rate * time_ms)))


def compressor(x: jax.Array, settings: CompressorSettings, sample_rate: int) -> jax.Array:
  """Compresses one view [T] (see the module docstring)."""
  attack = _ballistic_coefficient(settings.attack_ms, sample_rate)
  release = _ballistic_coefficient(settings.release_ms, sample_rate)

  def step(env, u):
    env = u + jnp.where(u > env, attack, release) * (env - u)
    return env, env

  _, envelope = jax.lax.scan(step, jnp.zeros((), x.dtype), jnp.maximum(x, 0.0), unroll=16)
  threshold = float(10.0 ** (settings.threshold_db / 20.0))
  gain = jnp.power(jnp.maximum(envelope, threshold) / threshold, 1.0 / settings.ratio - 1.0)
  return x * gain


@dataclasses.dataclass(frozen=True)
class BitcrushSettings:
  """Quantiser resolution: a step of 2^-bits (pedalboard's bit_depth; the spec's 4)."""
  p: float
  bits: int


def bitcrush(x: jax.Array, settings: BitcrushSettings) -> jax.Array:
  """pedalboard's bit crusher on one view [T]: round(x 2^bits) / 2^bits, half to even."""
  scale = float(2 ** settings.bits)
  return jnp.round(x * scale) / scale
