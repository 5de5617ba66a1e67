"""Filters, pitch shift and time stretch, checked on sines and tone bursts."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import augment as augment_defaults
from ssc_jax.augment import filters
from ssc_jax.augment import pitch
from ssc_jax.augment import severity
from ssc_jax.augment import stft
from ssc_jax.augment import stretch

SR = 22050
NYQUIST = SR / 2


def _sine(freq, seconds=1.0, amplitude=0.5):
  t = np.arange(int(seconds * SR)) / SR
  return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.float32)


@functools.lru_cache(maxsize=None)
def _apply_filter():
  return jax.jit(lambda x, p: filters.apply(x, p, SR))


def _gain_db(params, freq):
  x = _sine(freq)
  y = np.asarray(_apply_filter()(jnp.asarray(x), params))
  mid = slice(len(x) // 4, 3 * len(x) // 4)
  return 20 * np.log10(np.std(y[mid]) / np.std(x[mid]))


def _usable(f):
  return 40.0 <= f <= 0.93 * NYQUIST


@pytest.mark.parametrize("kind", filters.FILTER_KINDS)
def test_filters_pass_and_stop_relative_to_the_drawn_cutoffs(kind):
  st = severity.resolve(augment_defaults.defaults(), SR).filtering
  index = filters.FILTER_KINDS.index(kind)
  checked = {"pass": 0, "stop": 0}
  for seed in range(4):
    p = filters.sample(jax.random.key(seed), st, index)
    lo, hi = float(p.low_hz), float(p.high_hz)
    outside = [f for f in (0.6 * lo, 1.5 * hi) if _usable(f) and lo > 0]
    if kind == "low_pass":
      passes, stops = [0.6 * hi], [1.5 * hi]
    elif kind == "high_pass":
      passes, stops = [1.5 * hi], [0.6 * hi]
    elif kind == "band_pass":
      passes, stops = [(lo + hi) / 2], outside + ([1.5 * hi] if lo == 0 else [])
    else:
      passes, stops = outside, [(lo + hi) / 2]
    for f in filter(_usable, passes):
      assert _gain_db(p, f) >= -3.0, (kind, lo, hi, f)
      checked["pass"] += 1
    for f in filter(_usable, stops):
      assert _gain_db(p, f) <= -20.0, (kind, lo, hi, f)
      checked["stop"] += 1
  assert checked["pass"] > 0 and checked["stop"] > 0


def test_filter_response_closed_form():
  f = np.linspace(0, NYQUIST, 4001).astype(np.float32)
  p = filters.FilterParams(jnp.float32(500.0), jnp.float32(2000.0), jnp.float32(0.0))
  bp = np.asarray(filters.response(f, p))
  bs = np.asarray(filters.response(f, p._replace(complement=jnp.float32(1.0))))
  np.testing.assert_allclose(bp + bs, 1.0, atol=1e-6)  # Complementary.
  lp = np.asarray(filters.lowpass_response(np.float32([0.0, 750.0, 1000.0, 1250.0, 3e3]),
                                           jnp.float32(1000.0)))
  np.testing.assert_allclose(lp, [1.0, 1.0, 0.5, 0.0, 0.0], atol=1e-6)  # -6 dB at fc.
  assert np.all(np.diff(np.asarray(filters.lowpass_response(f, jnp.float32(1e3)))) <= 0)


def test_filter_cutoffs_are_mel_uniform():
  st = severity.resolve(augment_defaults.defaults(), SR).filtering
  keys = jax.random.split(jax.random.key(0), 4000)
  cut = np.asarray(jax.vmap(lambda k: filters.sample(k, st, 3).high_hz)(keys))
  mel = 2595 * np.log10(1 + cut / 700)
  lo, hi = [2595 * np.log10(1 + f / 700) for f in (st.lowpass_min_hz, st.lowpass_max_hz)]
  assert mel.min() >= lo - 1e-3 and mel.max() <= hi + 1e-3
  u = (mel - lo) / (hi - lo)  # Uniform on [0, 1]: mean 1/2, variance 1/12.
  assert abs(u.mean() - 0.5) < 4 * np.sqrt(1 / 12 / 4000)
  assert abs(np.mean(u < 0.25) - 0.25) < 4 * np.sqrt(0.25 * 0.75 / 4000)


def test_fast_ratio_sets_match_the_spec():
  counts = {s: len(pitch.fast_ratios(SR, 4 * s / 2)) for s in (1, 2, 3, 4)}
  assert counts == {1: 8, 2: 14, 3: 24, 4: 32}
  up = [12 * np.log2(r) for r in pitch.fast_ratios(SR, 4.0) if r > 1]
  np.testing.assert_allclose(up, [0.35, 1.19, 1.47, 1.82, 2.67, 3.02, 3.16], atol=0.005)
  assert all(r != 1 for r in pitch.fast_ratios(SR, 8.0))


@pytest.mark.parametrize("overlap", [2, 4])
def test_stft_round_trip_is_exact(overlap):
  x = np.random.default_rng(0).normal(size=5001).astype(np.float32)
  geom = stft.geometry(len(x), 1024, overlap)
  y = np.asarray(stft.istft(stft.stft(jnp.asarray(x), geom), geom))
  np.testing.assert_allclose(y, x, atol=1e-5)


@functools.lru_cache(maxsize=None)
def _pitch_fn(overlap):
  return jax.jit(lambda x, r: pitch.pitch_shift(x, pitch.PitchShiftParams(r), 1024, overlap))


def _dominant_hz(y):
  mid = y[len(y) // 8: -len(y) // 8]
  spectrum = np.abs(np.fft.rfft(mid * np.hanning(len(mid)), 16 * len(mid)))
  return np.argmax(spectrum) * SR / (16 * len(mid))


@pytest.mark.parametrize("overlap", [4, 2])
def test_pitch_shift_moves_a_sine_by_the_ratio_and_keeps_length(overlap):
  ratios = pitch.fast_ratios(SR, 8.0)  # Severity 4: the widest set.
  for freq, ratio in [(440.0, ratios[0]), (440.0, ratios[-1]), (1000.0, 50 / 49),
                      (220.0, 6 / 5), (3000.0, 5 / 6)]:
    x = _sine(freq)
    y = np.asarray(_pitch_fn(overlap)(jnp.asarray(x), jnp.float32(ratio)))
    assert y.shape == x.shape and y.dtype == np.float32
    assert _dominant_hz(y) == pytest.approx(freq * ratio, rel=0.01)
    mid = slice(len(x) // 8, -len(x) // 8)  # Partials keep their level (phase locking).
    assert abs(20 * np.log10(np.std(y[mid]) / np.std(x[mid]))) < 1.5


def test_pitch_shift_draws_only_from_the_ratio_set():
  ratios = pitch.fast_ratios(SR, 4.0)
  keys = jax.random.split(jax.random.key(1), 2000)
  drawn = np.asarray(jax.vmap(lambda k: pitch.sample(k, ratios).ratio)(keys))
  np.testing.assert_allclose(np.unique(drawn), np.float32(ratios))


@pytest.mark.parametrize("rate", [0.75, 1.25])
def test_time_stretch_changes_a_burst_duration_by_the_rate(rate):
  x = np.zeros(int(1.5 * SR), np.float32)
  start, duration = int(0.1 * SR), 0.4
  x[start:start + int(duration * SR)] = _sine(800.0, duration)
  fn = jax.jit(lambda v, r: stretch.time_stretch(v, stretch.TimeStretchParams(r), 1024))
  y = np.asarray(fn(jnp.asarray(x), jnp.float32(rate)))
  assert y.shape == x.shape
  frames = y[: len(y) // 220 * 220].reshape(-1, 220)  # 10 ms frames.
  level = np.sqrt(np.mean(frames ** 2, axis=1))
  on = np.flatnonzero(level > 0.5 * level.max())
  measured = (on[-1] - on[0] + 1) * 0.01
  assert measured == pytest.approx(duration / rate, abs=0.03)
  assert _dominant_hz(y[int(0.15 * SR):int(0.35 * SR)]) == pytest.approx(800.0, rel=0.01)
