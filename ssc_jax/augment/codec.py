"""An MP3-like lossy codec degradation (stands in for pedalboard.MP3Compressor, spec §5.3).

pedalboard runs LAME (VBR quality 9, its lowest) and decodes again. A bitstream encoder is
out of place inside a jitted step, so this module reproduces the mechanisms that make a
low-rate MP3 sound like one, on a transform with MP3's geometry:
  * MDCT with MP3's long-block size: 576 lines per granule, 1152-sample sine window,
    50 % overlap (time-domain aliasing cancellation restores the input when nothing is
    quantised); the 1152-sample frames spread quantisation noise in time, giving the usual
    pre-echo before attacks;
  * a low-pass that drops every line above `lowpass_hz` (LAME's low-rate VBR modes low-pass
    the signal; 7 kHz is our estimate for V9 on 22.05 kHz mono, not LAME's table);
  * per granule and per critical band (one Bark wide, as MP3's scale-factor bands roughly
    are), MP3's power-law quantiser q = floor((|X| / step)^(3/4) + 0.4054) with a step
    that leaves `band_snr_db` of signal-to-noise in the band, so weak lines fall to zero
    ("birdies", spectral holes) and loud ones keep a relative precision;
  * bands more than `band_floor_db` below the granule's loudest band get no bits at all.
Deterministic, like LAME. Not an MP3 bitstream: bit rate, psychoacoustic model, joint coding
and bit reservoir are not modelled; its severity is chosen to be audibly comparable.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

GRANULE = 576  # MDCT lines per frame (MP3 long blocks).


@dataclasses.dataclass(frozen=True)
class CodecSettings:
  """MP3-like degradation parameters."""
  p: float
  lowpass_hz: float
  band_snr_db: float
  band_floor_db: float


@functools.lru_cache(maxsize=None)
def _tables(sample_rate: int) -> dict[str, np.ndarray]:
  m = GRANULE
  n = np.arange(2 * m)
  k = np.arange(m)
  n0 = 0.5 + m / 2
  freqs = (k + 0.5) * sample_rate / (2 * m)
  bark = 13.0 * np.arctan(0.00076 * freqs) + 3.5 * np.arctan((freqs / 7500.0) ** 2)
  band = np.floor(bark).astype(np.int32)
  return {
      "window": np.sin(np.pi * (n + 0.5) / (2 * m)).astype(np.float32),
      "pre": np.exp(-1j * np.pi * n / (2 * m)).astype(np.complex64),
      "post": np.exp(-1j * np.pi * n0 * (k + 0.5) / m).astype(np.complex64),
      "ipre": np.exp(1j * np.pi * n0 * k / m).astype(np.complex64),
      "ipost": np.exp(1j * np.pi * (n + n0) / (2 * m)).astype(np.complex64),
      "band": band,
      "one_hot": (band[:, None] == np.arange(band.max() + 1)[None, :]).astype(np.float32),
      "freqs": freqs.astype(np.float32),
  }


def mdct(frames: jax.Array, sample_rate: int) -> jax.Array:
  """MDCT of sine-windowed frames [F, 1152] -> [F, 576] float32."""
  t = _tables(sample_rate)
  z = jnp.fft.fft(frames * t["window"] * t["pre"], axis=-1)[..., :GRANULE]
  return jnp.real(z * t["post"])


def imdct(coeffs: jax.Array, sample_rate: int) -> jax.Array:
  """Windowed inverse MDCT [F, 576] -> [F, 1152]; overlap-adding frames at hop 576 (TDAC)
  reconstructs the signal."""
  t = _tables(sample_rate)
  spec = jnp.concatenate([coeffs * t["ipre"], jnp.zeros_like(coeffs, jnp.complex64)], axis=-1)
  # IMDCT y[n] = (2 / M) sum_k X[k] cos(...) = 4 Re(ifft(...)) since ifft carries 1 / (2 M).
  y = jnp.real(jnp.fft.ifft(spec, axis=-1) * t["ipost"]) * 4.0
  return y * t["window"]


def _quantise(coeffs: jax.Array, settings: CodecSettings, sample_rate: int) -> jax.Array:
  t = _tables(sample_rate)
  coeffs = jnp.where(t["freqs"] < settings.lowpass_hz, coeffs, 0.0)
  count = np.maximum(t["one_hot"].sum(0), 1.0)
  band_power = (coeffs * coeffs) @ t["one_hot"] / count  # [F, bands] mean power.
  loud = jnp.max(band_power, axis=-1, keepdims=True)
  allocated = band_power > loud * 10.0 ** (-settings.band_floor_db / 10.0)
  # Uniform-quantiser noise step^2 / 12 = band power / SNR (before companding).
  step = jnp.sqrt(12.0 * band_power * 10.0 ** (-settings.band_snr_db / 10.0))
  step = jnp.where(allocated, step, 0.0) @ t["one_hot"].T  # Back to lines.
  safe = jnp.where(step > 0, step, 1.0)
  level = jnp.floor(jnp.power(jnp.abs(coeffs) / safe, 0.75) + 0.4054)
  return jnp.where(step > 0, jnp.sign(coeffs) * jnp.power(level, 4.0 / 3.0) * safe, 0.0)


def mp3_like(x: jax.Array, settings: CodecSettings, sample_rate: int,
             quantise: bool = True) -> jax.Array:
  """Encodes and decodes one view [T] (see the module docstring); `quantise=False` only
  runs the transform pair (exact reconstruction, used by tests)."""
  length = x.shape[-1]
  m = GRANULE
  n_frames = -(-length // m) + 1
  padded = jnp.pad(x, (m, (n_frames + 1) * m - m - length)).reshape(-1, m)  # [F + 1, m]
  frames = jnp.concatenate([padded[:-1], padded[1:]], axis=-1)  # [F, 2m]
  coeffs = mdct(frames, sample_rate)
  if quantise:
    coeffs = _quantise(coeffs, settings, sample_rate)
  out = imdct(coeffs, sample_rate)
  halves = out.reshape(n_frames, 2, m)
  joined = (jnp.pad(halves[:, 0], ((0, 1), (0, 0))) + jnp.pad(halves[:, 1], ((1, 0), (0, 0))))
  return joined.reshape(-1)[m:m + length]
