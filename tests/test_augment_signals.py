"""Closed-form signal properties of the level, noise, delay and simple corruption transforms."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import augment as augment_defaults
from ssc_jax.augment import delay as delay_lib
from ssc_jax.augment import dynamics
from ssc_jax.augment import edit
from ssc_jax.augment import gain as gain_lib
from ssc_jax.augment import noise
from ssc_jax.augment import severity

SR = 22050


def _settings(level=2):
  cfg = augment_defaults.defaults()
  cfg.severity = level
  return severity.resolve(cfg, SR)


def _rms_db(x):
  return 10 * np.log10(np.mean(np.square(np.asarray(x, np.float64))))


def test_gain_changes_rms_by_the_drawn_db():
  st = _settings().gain
  x = jnp.asarray(np.random.default_rng(0).normal(size=4000).astype(np.float32))
  draws = []
  for seed in range(6):
    params = gain_lib.sample_gain(jax.random.key(seed), st)
    draws.append(float(params.db))
    y = gain_lib.gain(x, params)
    assert _rms_db(y) - _rms_db(x) == pytest.approx(float(params.db), abs=1e-3)
  assert min(draws) >= st.min_db and max(draws) <= st.max_db
  assert len(set(draws)) == len(draws)


def test_polarity_inversion_negates_exactly():
  x = jnp.asarray(np.random.default_rng(1).uniform(-1, 1, 1000).astype(np.float32))
  np.testing.assert_array_equal(gain_lib.polarity_inversion(x, ()), -np.asarray(x))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_noise_hits_the_drawn_snr(seed):
  st = _settings().colored_noise
  x = jnp.asarray(np.random.default_rng(seed).normal(size=30000).astype(np.float32) * 0.3)
  params = noise.sample(jax.random.key(seed), st)
  y = noise.colored_noise(x, params, SR)
  snr = _rms_db(x) - _rms_db(np.asarray(y) - np.asarray(x))
  assert abs(snr - float(params.snr_db)) < 0.5
  assert st.min_snr_db <= float(params.snr_db) <= st.max_snr_db


@pytest.mark.parametrize("decay", [-2.0, 0.0, 1.0, 2.5])
def test_noise_spectral_slope_follows_the_decay(decay):
  params = noise.sample(jax.random.key(7), _settings().colored_noise)._replace(
      decay=jnp.float32(decay), snr_db=jnp.float32(0.0))
  x = jnp.full((SR,), 0.1, jnp.float32)  # One period: y - x is exactly the noise period.
  n = np.asarray(noise.colored_noise(x, params, SR), np.float64) - 0.1
  power = np.abs(np.fft.rfft(n))[1:] ** 2
  axis = np.log(np.linspace(1.0, np.sqrt(SR / 2), SR // 2 + 1))[1:]
  slope = np.polyfit(axis, np.log(power), 1)[0]  # Power ~ axis^(-2 decay).
  assert slope == pytest.approx(-2 * decay, abs=0.1)


def test_noise_keeps_silence_silent():
  params = noise.sample(jax.random.key(0), _settings().colored_noise)
  np.testing.assert_array_equal(noise.colored_noise(jnp.zeros(5000), params, SR), 0.0)


@pytest.mark.parametrize("seed", range(5))
def test_delay_puts_echoes_at_the_drawn_lag_and_amplitudes(seed):
  st = _settings().delay  # s = 1: d in [2205, 11025], R in {1, 3}.
  params = delay_lib.sample(jax.random.key(seed), st)
  d, v, r, a = int(params.delay), float(params.volume), int(params.repeats), float(
      params.attenuation)
  assert st.min_samples <= d <= st.max_samples
  assert r in st.repeats
  assert min(abs(v - c) for c in st.volumes) < 1e-6
  assert min(abs(a - c) for c in st.attenuations) < 1e-6
  x = np.zeros(3 * st.max_samples + 500, np.float32)
  x[100] = 1.0
  y = np.asarray(delay_lib.delay(jnp.asarray(x), params, max(st.repeats)))
  expected = 0.5 * x
  for i in range(r):
    expected[100 + i * d] += 0.5 * v * a ** i
  np.testing.assert_allclose(y, expected, atol=1e-6)


def test_delay_with_no_repeat_halves_the_signal():
  params = delay_lib.DelayParams(jnp.int32(300), jnp.float32(0.45), jnp.int32(0),
                                 jnp.float32(0.45))
  x = jnp.asarray(np.random.default_rng(3).normal(size=2000).astype(np.float32))
  np.testing.assert_allclose(delay_lib.delay(x, params, 2), 0.5 * np.asarray(x),
                             atol=1e-7)


def test_reverse_is_exact():
  x = np.random.default_rng(4).normal(size=777).astype(np.float32)
  np.testing.assert_array_equal(edit.reverse(jnp.asarray(x)), x[::-1])


def test_bitcrush_rounds_to_steps_of_2_to_the_minus_bits_like_pedalboard():
  # bits = 4: a step of 1/16, round half to even, no saturation (pedalboard.Bitcrush).
  x = jnp.asarray([0.03, 0.04, -0.97, 1.0, 0.03125, 0.09375, -0.03125, 0.7], jnp.float32)
  y = dynamics.bitcrush(x, dynamics.BitcrushSettings(p=1.0, bits=4))
  np.testing.assert_array_equal(y, [0.0, 0.0625, -1.0, 1.0, 0.0, 0.125, 0.0, 0.6875])


@pytest.mark.parametrize("bits", [1, 3, 4, 8])
def test_bitcrush_level_count_and_error_bound(bits):
  x = jnp.asarray(np.concatenate([np.linspace(-1.0, 1.0, 20001),
                                  np.random.default_rng(5).uniform(-1, 1, 20000)]).astype(
                                      np.float32))
  y = np.asarray(dynamics.bitcrush(x, dynamics.BitcrushSettings(p=1.0, bits=bits)))
  assert len(np.unique(y)) == 2 ** (bits + 1) + 1  # The ramp visits every level.
  assert np.max(np.abs(y - np.asarray(x))) <= 2.0 ** -(bits + 1)


def test_distortion_is_tanh_of_the_driven_signal():
  x = np.linspace(-1, 1, 101).astype(np.float32)
  y = dynamics.distortion(jnp.asarray(x), dynamics.DistortionSettings(p=1.0, drive_db=9.0))
  np.testing.assert_allclose(y, np.tanh(x * 10 ** (9 / 20)), rtol=1e-5, atol=1e-6)


def test_compressor_settles_to_the_static_curve():
  st = _settings().compression  # -30 dB threshold, ratio 5.
  x = jnp.full((SR,), 0.5, jnp.float32)  # -6.02 dB, a constant above the threshold.
  y = np.asarray(dynamics.compressor(x, st, SR))
  expected_db = -30 + (20 * np.log10(0.5) + 30) / 5
  assert 20 * np.log10(y[-1]) == pytest.approx(expected_db, abs=0.01)
  quiet = np.asarray(dynamics.compressor(jnp.full((SR,), 0.01, jnp.float32), st, SR))
  np.testing.assert_allclose(quiet, 0.01, rtol=1e-6)  # Below threshold: untouched.


def test_splice_out_removes_the_drawn_intervals_and_pads_with_zeros():
  st = _settings().splice
  length = 30000
  x = jnp.asarray(1.0 + np.arange(length, dtype=np.float32) / length)  # Never zero.
  params = edit.sample_splice(jax.random.key(3), st, SR, length)
  removed = np.zeros(length, bool)
  for s, w in zip(np.asarray(params.starts), np.asarray(params.widths)):
    assert 0 <= w < int(0.1 * SR) and 0 <= s <= length - w
    removed[s:s + w] = True
  y = np.asarray(edit.splice_out(x, params, fade_samples=110))
  kept = length - removed.sum()
  assert removed.sum() > 0
  np.testing.assert_array_equal(y[kept:], 0.0)
  # Away from the joins the output is the kept input, in order.
  source = np.asarray(x)[~removed]
  far = np.ones(kept, bool)
  joins = np.flatnonzero(np.diff(np.flatnonzero(~removed)) > 1)
  for j in joins:
    far[max(0, j - 110):j + 112] = False
  np.testing.assert_allclose(y[:kept][far], source[far], rtol=1e-6)
