"""Transform names and how each is built from resolved settings."""

from __future__ import annotations

import dataclasses
import functools
from typing import Callable

import jax
import jax.numpy as jnp

from ssc_jax.augment import chain
from ssc_jax.augment import chorus as chorus_lib
from ssc_jax.augment import codec
from ssc_jax.augment import delay as delay_lib
from ssc_jax.augment import dsp
from ssc_jax.augment import dynamics
from ssc_jax.augment import edit
from ssc_jax.augment import filters
from ssc_jax.augment import gain as gain_lib
from ssc_jax.augment import noise
from ssc_jax.augment import pitch
from ssc_jax.augment import reverb as reverb_lib
from ssc_jax.augment import severity as severity_lib
from ssc_jax.augment import stft
from ssc_jax.augment import stretch

S = severity_lib.Settings
# Views per CPU branch of the transforms built on long FFTs (noise, filters): XLA:CPU's FFT of
# one long signal is ~2x slower per signal than a batch of a few (measured on the bench's
# 2.7 s views: 4 is the best of 1, 2, 4, 8).
_FFT_BRANCH_VIEWS = 4
Builder = Callable[[S, int], chain.Transform]


def _leaf(name: str, p: float, sample: Callable, apply: Callable,
          skippable: bool = False, branch_views: int = 1) -> chain.Transform:
  """A transform with per-view parameters sample(key) and apply(view, params)."""
  return chain.Transform(name, p, lambda key, _: sample(key), apply, skippable=skippable,
                         branch_views=branch_views)


def _fixed(name: str, p: float, fn: Callable) -> chain.Transform:
  """A deterministic transform: only the gate is random."""
  return chain.Transform(name, p, lambda key, _: (), lambda x, _: fn(x))


def _gain(st: S, sr: int) -> chain.Transform:
  g = st.gain
  return dataclasses.replace(
      _leaf("gain", g.p, lambda k: gain_lib.sample_gain(k, g), gain_lib.gain),
      scale=lambda prm: dsp.db_to_amplitude(prm.db))


def _polarity(st: S, sr: int) -> chain.Transform:
  return dataclasses.replace(
      _fixed("polarity_inversion", st.polarity_inversion.p,
             lambda x: gain_lib.polarity_inversion(x, ())),
      scale=lambda prm: jnp.float32(-1.0))


def _noise(st: S, sr: int) -> chain.Transform:
  n = st.colored_noise
  return _leaf("colored_noise", n.p, lambda k: noise.sample(k, n),
               lambda x, prm: noise.colored_noise(x, prm, sr), skippable=True,
               branch_views=_FFT_BRANCH_VIEWS)


def _filtering(st: S, sr: int) -> chain.Transform:
  """OneOf(band-pass, band-stop, high-pass, low-pass): the member is drawn per item."""
  f = st.filtering
  n_kinds = len(filters.FILTER_KINDS)
  return chain.Transform("filtering", f.p, lambda k, kind: filters.sample(k, f, kind),
                         lambda x, prm: filters.apply(x, prm, sr),
                         sample_item=lambda k: jax.random.randint(k, (), 0, n_kinds),
                         skippable=True, branch_views=_FFT_BRANCH_VIEWS)


def _single_filter(kind: str, st: S, sr: int) -> chain.Transform:
  f = st.filtering
  index = filters.FILTER_KINDS.index(kind)
  return _leaf(kind, f.p, lambda k: filters.sample(k, f, index),
               lambda x, prm: filters.apply(x, prm, sr), skippable=True,
               branch_views=_FFT_BRANCH_VIEWS)


def _pitch(st: S, sr: int) -> chain.Transform:
  ps = st.pitch_shift
  ratios = pitch.fast_ratios(sr, ps.max_semitones)
  n_fft = ps.n_fft or stft.default_n_fft(sr)
  return _leaf("pitch_shift", ps.p, lambda k: pitch.sample(k, ratios),
               lambda x, prm: pitch.pitch_shift(x, prm, n_fft, ps.overlap), skippable=True)


def _delay(st: S, sr: int) -> chain.Transform:
  d = st.delay
  return _leaf("delay", d.p, lambda k: delay_lib.sample(k, d),
               lambda x, prm: delay_lib.delay(x, prm, max(max(d.repeats), 1)))


def _timestretch(st: S, sr: int) -> chain.Transform:
  ts = st.timestretch
  n_fft = ts.n_fft or stft.default_n_fft(sr)
  return _leaf("timestretch", ts.p, lambda k: stretch.sample(k, ts),
               lambda x, prm: stretch.time_stretch(x, prm, n_fft), skippable=True)


def _splice(st: S, sr: int) -> chain.Transform:
  """The intervals depend on the view length, so they are drawn in `apply` from a key."""
  sp = st.splice
  fade = max(1, int(sp.fade_s * sr))
  apply = lambda x, key: edit.splice_out(x, edit.sample_splice(key, sp, sr, x.shape[-1]), fade)
  return _leaf("splice", sp.p, lambda k: k, apply)


_BUILDERS: dict[str, Builder] = {
    "gain": _gain,
    "polarity_inversion": _polarity,
    "colored_noise": _noise,
    "filtering": _filtering,
    **{kind: functools.partial(_single_filter, kind) for kind in filters.FILTER_KINDS},
    "pitch_shift": _pitch,
    "delay": _delay,
    "timestretch": _timestretch,
    "splice": _splice,
    "reverb": lambda st, sr: _fixed("reverb", st.reverb.p,
                                    lambda x: reverb_lib.reverb(x, st.reverb, sr)),
    "chorus": lambda st, sr: _fixed("chorus", st.chorus.p,
                                    lambda x: chorus_lib.chorus(x, st.chorus, sr)),
    "distortion": lambda st, sr: _fixed("distortion", st.distortion.p,
                                        lambda x: dynamics.distortion(x, st.distortion)),
    "compression": lambda st, sr: _fixed("compression", st.compression.p,
                                         lambda x: dynamics.compressor(x, st.compression, sr)),
    "reverse": lambda st, sr: _fixed("reverse", st.reverse.p, edit.reverse),
    "bitcrush": lambda st, sr: _fixed("bitcrush", st.bitcrush.p,
                                      lambda x: dynamics.bitcrush(x, st.bitcrush)),
    "mp3": lambda st, sr: _fixed("mp3", st.mp3.p, lambda x: codec.mp3_like(x, st.mp3, sr)),
}

CHAIN_NAMES = ("gain", "polarity_inversion", "colored_noise", "filtering", "pitch_shift",
               "delay") + filters.FILTER_KINDS
CORRUPTION_NAMES = ("timestretch", "splice", "reverb", "chorus", "distortion", "compression",
                    "reverse", "bitcrush", "mp3")
TRANSFORM_NAMES = CHAIN_NAMES + CORRUPTION_NAMES
assert set(TRANSFORM_NAMES) == set(_BUILDERS)


def check_names(names) -> None:
  """Raises ValueError listing the valid names if any of `names` is unknown."""
  if isinstance(names, str):
    raise ValueError(f"transform names must be a sequence of strings, got the string {names!r}.")
  unknown = [n for n in names if n not in _BUILDERS]
  if unknown:
    raise ValueError(f"unknown augmentation(s) {unknown}; "
                     f"valid names: {', '.join(TRANSFORM_NAMES)}.")


def build(name: str, settings: S, sample_rate: int) -> chain.Transform:
  """The transform called `name`, configured by `settings`."""
  check_names([name])
  return _BUILDERS[name](settings, sample_rate)
