"""Reverb, chorus and the MP3-like codec against independent references and closed forms."""

import jax.numpy as jnp
import numpy as np

from configs import augment as augment_defaults
from ssc_jax.augment import chorus as chorus_lib
from ssc_jax.augment import codec
from ssc_jax.augment import reverb as reverb_lib
from ssc_jax.augment import severity

SR = 22050
DEFAULTS = severity.resolve(augment_defaults.defaults(), SR)  # The spec's parameters.


def _freeverb_loop(x, sample_rate, room_size=1.0, damping=0.5, wet=1.0, dry=1.0, width=1.0):
  """Sample-by-sample mono Freeverb (JUCE Reverb::processMono), the independent reference."""
  combs = [[np.zeros(sample_rate * t // 44100), 0, 0.0]
           for t in (1116, 1188, 1277, 1356, 1422, 1491, 1557, 1617)]
  allpasses = [[np.zeros(sample_rate * t // 44100), 0] for t in (556, 441, 341, 225)]
  feedback, damp = room_size * 0.28 + 0.7, damping * 0.4
  wet_gain, dry_gain = 0.5 * 3 * wet * (1 + width), 2 * dry
  out = np.zeros_like(x)
  for n, sample in enumerate(x):
    inp, acc = sample * 0.015, 0.0
    for c in combs:
      buf, i, last = c
      o = buf[i]
      last = o * (1 - damp) + last * damp
      buf[i] = inp + last * feedback
      c[1], c[2] = (i + 1) % len(buf), last
      acc += o
    for a in allpasses:
      buf, i = a
      b = buf[i]
      buf[i] = acc + b * 0.5
      a[1] = (i + 1) % len(buf)
      acc = b - acc
    out[n] = acc * wet_gain + sample * dry_gain
  return out


def test_reverb_matches_the_freeverb_recursion():
  x = np.random.default_rng(0).normal(size=3000).astype(np.float64) * 0.3
  settings = DEFAULTS.reverb
  y = np.asarray(reverb_lib.reverb(jnp.asarray(x, jnp.float32), settings, SR))
  np.testing.assert_allclose(y, _freeverb_loop(x, SR), atol=2e-4)


def test_chorus_reads_the_input_at_the_modulated_delay():
  # On a ramp, linear interpolation is exact: y[n] = x(n - D(n)) reveals the delay D(n).
  n = np.arange(SR, dtype=np.float64)
  x = (n / SR).astype(np.float32)
  y = np.asarray(chorus_lib.chorus(jnp.asarray(x), DEFAULTS.chorus, SR), np.float64)
  measured_ms = (n - y * SR)[400:] / SR * 1000
  t = n[400:] / SR
  expected_ms = np.maximum(1.0, 7.0 - 10.0 * np.sin(2 * np.pi * 5.0 * t))
  np.testing.assert_allclose(measured_ms, expected_ms, atol=0.01)


def test_codec_transform_reconstructs_exactly_without_quantisation():
  x = jnp.asarray(np.random.default_rng(1).normal(size=7000).astype(np.float32))
  y = codec.mp3_like(x, DEFAULTS.mp3, SR, quantise=False)
  np.testing.assert_allclose(y, x, atol=1e-5)


def test_codec_lowpasses_and_degrades_by_the_band_snr():
  rng = np.random.default_rng(2)
  x = rng.normal(size=SR).astype(np.float32) * 0.2
  settings = DEFAULTS.mp3
  y = np.asarray(codec.mp3_like(jnp.asarray(x), settings, SR))
  assert np.all(np.isfinite(y))
  spec_x, spec_y = (np.abs(np.fft.rfft(v[2000:-2000])) ** 2 for v in (x, y))
  f = np.fft.rfftfreq(len(x) - 4000, 1 / SR)
  high = f > settings.lowpass_hz + 400
  assert 10 * np.log10(spec_y[high].sum() / spec_x[high].sum()) < -30
  low = f < settings.lowpass_hz - 400
  err = np.fft.rfft((y - x)[2000:-2000])
  snr = 10 * np.log10(spec_x[low].sum() / (np.abs(err[low]) ** 2).sum())
  assert 3.0 < snr < 25.0  # A lossy, audibly degraded but recognisable signal.
