"""The table of transforms: one `Entry` per name, from which everything else derives.

An entry gives the transform's name, its kind, the config section it reads (with the spec's
severity row, how the section becomes settings, and its checks) and its builder. The name lists
(`TRANSFORM_NAMES`, `CHAIN_NAMES`, `CORRUPTION_NAMES`), `severity.resolve` (config -> settings),
the robustness sets and the renderer all read `TABLE`. Adding a transform = one entry here plus
its defaults, as plain data, in configs/augment.py (docs/augmentation.md).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

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
from ssc_jax.augment import stft
from ssc_jax.augment import stretch

# Kinds: the pretraining chain's transforms (spec §5.2), the single members of its filtering
# OneOf, and the robustness corruptions (spec §5.3).
CHAIN, FILTER, CORRUPTION = "chain", "filter", "corruption"
# Views per CPU branch of the transforms built on long FFTs (noise, filters): XLA:CPU's FFT of
# one long signal is ~2x slower per signal than a batch of a few (measured on the bench's
# 2.7 s views: 4 is the best of 1, 2, 4, 8).
_FFT_BRANCH_VIEWS = 4

Row = Callable[[float, int], dict[str, Any]]  # (s = severity / 2, sample_rate) -> fields.


def require(condition: bool, message: str) -> None:
  """Raises ValueError("augment config: <message>") unless `condition`."""
  if not condition:
    raise ValueError(f"augment config: {message}")


@dataclasses.dataclass(frozen=True)
class Section:
  """One section of the `augment` config and how it becomes frozen settings.

  Attributes:
    name: the section's key in the `augment` config (configs/augment.py holds its defaults).
    settings: (fields, sample_rate) -> the settings object the builder takes; fields are the
      section's values, None ones filled from `severity_row`.
    severity_row: the spec §5.2 row, (s, sample_rate) -> fields; None for fixed parameters.
    check: (settings, sample_rate) -> None, raising ValueError via `require` for values no
      transform can use. Probabilities in [0, 1] and min_* <= max_* pairs are checked for
      every section.
  """
  name: str
  settings: Callable[[dict[str, Any], int], Any]
  severity_row: Row | None = None
  check: Callable[[Any, int], None] | None = None


@dataclasses.dataclass(frozen=True)
class Entry:
  """One transform.

  Attributes:
    name: the name in `augment.chain` and in the robustness levels.
    kind: CHAIN, FILTER or CORRUPTION.
    section: the config section it reads (the four single filters share `filtering`'s).
    build: (section settings, sample_rate) -> the `chain.Transform`.
  """
  name: str
  kind: str
  section: Section
  build: Callable[[Any, int], chain.Transform]


def _plain(cls: type) -> Callable[[dict[str, Any], int], Any]:
  """Settings whose fields are the section's fields."""
  return lambda fields, sample_rate: cls(**fields)


def _leaf(name: str, p: float, sample: Callable, apply: Callable,
          skippable: bool = False, branch_views: int = 1) -> chain.Transform:
  """A transform with per-view parameters sample(key) and apply(view, params)."""
  return chain.Transform(name, p, lambda key, _: sample(key), apply, skippable=skippable,
                         branch_views=branch_views)


def _fixed(name: str, p: float, fn: Callable) -> chain.Transform:
  """A deterministic transform: only the gate is random."""
  return chain.Transform(name, p, lambda key, _: (), lambda x, _: fn(x))


# --------------------------------------------------------------------- the chain (§5.2) ---
def _gain(g: gain_lib.GainSettings, sr: int) -> chain.Transform:
  return dataclasses.replace(
      _leaf("gain", g.p, lambda k: gain_lib.sample_gain(k, g), gain_lib.gain),
      scale=lambda prm: dsp.db_to_amplitude(prm.db))


def _polarity(pol: gain_lib.PolaritySettings, sr: int) -> chain.Transform:
  return dataclasses.replace(
      _fixed("polarity_inversion", pol.p, lambda x: gain_lib.polarity_inversion(x, ())),
      scale=lambda prm: jnp.float32(-1.0))


def _noise(n: noise.NoiseSettings, sr: int) -> chain.Transform:
  return _leaf("colored_noise", n.p, lambda k: noise.sample(k, n),
               lambda x, prm: noise.colored_noise(x, prm, sr), skippable=True,
               branch_views=_FFT_BRANCH_VIEWS)


def _filtering(f: filters.FilterSettings, sr: int) -> chain.Transform:
  """OneOf(band-pass, band-stop, high-pass, low-pass): the member is drawn per item."""
  n_kinds = len(filters.FILTER_KINDS)
  return chain.Transform("filtering", f.p, lambda k, kind: filters.sample(k, f, kind),
                         lambda x, prm: filters.apply(x, prm, sr),
                         sample_item=lambda k: jax.random.randint(k, (), 0, n_kinds),
                         skippable=True, branch_views=_FFT_BRANCH_VIEWS)


def _single_filter(kind: str) -> Callable[[filters.FilterSettings, int], chain.Transform]:
  index = filters.FILTER_KINDS.index(kind)
  return lambda f, sr: _leaf(kind, f.p, lambda k: filters.sample(k, f, index),
                             lambda x, prm: filters.apply(x, prm, sr), skippable=True,
                             branch_views=_FFT_BRANCH_VIEWS)


def _check_filtering(f: filters.FilterSettings, sr: int) -> None:
  require(f.center_min_hz > 0 and f.lowpass_min_hz > 0 and f.highpass_min_hz > 0,
         "filter frequencies must be positive.")


def _pitch(ps: pitch.PitchShiftSettings, sr: int) -> chain.Transform:
  ratios = pitch.fast_ratios(sr, ps.max_semitones)
  n_fft = ps.n_fft or stft.default_n_fft(sr)
  return _leaf("pitch_shift", ps.p, lambda k: pitch.sample(k, ratios),
               lambda x, prm: pitch.pitch_shift(x, prm, n_fft, ps.overlap), skippable=True)


def _pitch_settings(fields: dict[str, Any], sr: int) -> pitch.PitchShiftSettings:
  return pitch.PitchShiftSettings(fields["p"], fields["max_semitones"], int(fields["n_fft"]),
                                  int(fields["overlap"]))


def _check_pitch(ps: pitch.PitchShiftSettings, sr: int) -> None:
  require(ps.overlap in (2, 4), f"pitch_shift.overlap must be 2 or 4, got {ps.overlap}.")
  if ps.p > 0:
    require(len(pitch.fast_ratios(sr, ps.max_semitones)) > 0,
           f"pitch_shift.max_semitones={ps.max_semitones} leaves no transposition in the "
           f"discrete set for {sr} Hz.")


def _delay(d: delay_lib.DelaySettings, sr: int) -> chain.Transform:
  return _leaf("delay", d.p, lambda k: delay_lib.sample(k, d),
               lambda x, prm: delay_lib.delay(x, prm, max(max(d.repeats), 1)))


def _delay_row(s: float, sr: int) -> dict[str, Any]:
  ms = sr / 1000.0
  return {"p": min(0.6, 0.6 * s), "min_ms": int(100.0 / s * ms) / ms,
          "max_ms": int(500.0 * ms) / ms, "volumes": (0.5 * s - 0.2, 0.5 * s + 0.2),
          "repeats": (int(2 * s) - 1, int(2 * s) + 1),
          "attenuations": (min(1.0, 0.5 * s) - 0.2, min(1.0, 0.5 * s) + 0.2)}


def _delay_settings(fields: dict[str, Any], sr: int) -> delay_lib.DelaySettings:
  """Milliseconds to whole samples."""
  ms = sr / 1000.0
  return delay_lib.DelaySettings(fields["p"], int(round(fields["min_ms"] * ms)),
                                 int(round(fields["max_ms"] * ms)), tuple(fields["volumes"]),
                                 tuple(fields["repeats"]), tuple(fields["attenuations"]))


def _check_delay(d: delay_lib.DelaySettings, sr: int) -> None:
  require(d.min_samples >= 1, "delay.min_ms must be at least one sample.")
  require(min(d.repeats) >= 0, f"delay repeats must be >= 0, got {d.repeats}.")


# ------------------------------------------------------------------ corruptions (§5.3) ---
def _timestretch(ts: stretch.TimeStretchSettings, sr: int) -> chain.Transform:
  n_fft = ts.n_fft or stft.default_n_fft(sr)
  return _leaf("timestretch", ts.p, lambda k: stretch.sample(k, ts),
               lambda x, prm: stretch.time_stretch(x, prm, n_fft), skippable=True)


def _splice(sp: edit.SpliceSettings, sr: int) -> chain.Transform:
  """The intervals depend on the view length, so they are drawn in `apply` from a key."""
  fade = max(1, int(sp.fade_s * sr))
  apply = lambda x, key: edit.splice_out(x, edit.sample_splice(key, sp, sr, x.shape[-1]), fade)
  return _leaf("splice", sp.p, lambda k: k, apply)


def _deterministic(name: str, fn: Callable[[jax.Array, Any, int], jax.Array],
                   ) -> Callable[[Any, int], chain.Transform]:
  """The builder of a corruption fn(view, settings, sample_rate) without random parameters."""
  return lambda st, sr: _fixed(name, st.p, lambda x: fn(x, st, sr))


_FILTERING = Section(
    "filtering", _plain(filters.FilterSettings),
    lambda s, sr: {"p": min(0.6, 0.3 * s), "center_min_hz": 200.0, "center_max_hz": 4000.0,
                   "min_bandwidth": 0.5 * s, "max_bandwidth": 1.99,
                   "highpass_min_hz": 200.0 * s, "highpass_max_hz": min(sr / 2, 2400.0 * s),
                   "lowpass_min_hz": max(75.0, 150.0 / s),
                   "lowpass_max_hz": 7500.0 / max(1.0, s)},
    _check_filtering)

TABLE: tuple[Entry, ...] = (
    Entry("gain", CHAIN, build=_gain, section=Section(
        "gain", _plain(gain_lib.GainSettings),
        lambda s, sr: {"p": min(0.7, 0.4 * s), "min_db": -15.0 * s, "max_db": 5.0 * s})),
    Entry("polarity_inversion", CHAIN, build=_polarity, section=Section(
        "polarity_inversion", _plain(gain_lib.PolaritySettings),
        lambda s, sr: {"p": min(0.8, 0.6 * s)})),
    Entry("colored_noise", CHAIN, build=_noise, section=Section(
        "colored_noise", _plain(noise.NoiseSettings),
        lambda s, sr: {"p": min(0.8, 0.6 * s), "min_snr_db": 3.0 / s, "max_snr_db": 30.0 / s,
                       "min_decay": -2.0 * s, "max_decay": 2.0 * s})),
    Entry("filtering", CHAIN, build=_filtering, section=_FILTERING),
    Entry("pitch_shift", CHAIN, build=_pitch, section=Section(
        "pitch_shift", _pitch_settings,
        lambda s, sr: {"p": min(0.75, 0.6 * s), "max_semitones": 4.0 * s}, _check_pitch)),
    Entry("delay", CHAIN, build=_delay,
          section=Section("delay", _delay_settings, _delay_row, _check_delay)),
    *(Entry(kind, FILTER, build=_single_filter(kind), section=_FILTERING)
      for kind in filters.FILTER_KINDS),
    Entry("timestretch", CORRUPTION, build=_timestretch, section=Section(
        "timestretch", _plain(stretch.TimeStretchSettings),
        check=lambda ts, sr: require(ts.min_rate > 0, "timestretch.min_rate must be positive."))),
    Entry("splice", CORRUPTION, build=_splice,
          section=Section("splice", _plain(edit.SpliceSettings))),
    Entry("reverb", CORRUPTION, build=_deterministic("reverb", reverb_lib.reverb),
          section=Section("reverb", _plain(reverb_lib.ReverbSettings))),
    Entry("chorus", CORRUPTION, build=_deterministic("chorus", chorus_lib.chorus),
          section=Section("chorus", _plain(chorus_lib.ChorusSettings))),
    Entry("distortion", CORRUPTION,
          build=_deterministic("distortion", lambda x, st, sr: dynamics.distortion(x, st)),
          section=Section("distortion", _plain(dynamics.DistortionSettings))),
    Entry("compression", CORRUPTION, build=_deterministic("compression", dynamics.compressor),
          section=Section(
              "compression", _plain(dynamics.CompressorSettings),
              check=lambda c, sr: require(c.ratio >= 1.0, "compression.ratio must be >= 1."))),
    Entry("reverse", CORRUPTION, build=_deterministic("reverse", lambda x, st, sr: edit.reverse(x)),
          section=Section("reverse", _plain(edit.ReverseSettings))),
    Entry("bitcrush", CORRUPTION,
          build=_deterministic("bitcrush", lambda x, st, sr: dynamics.bitcrush(x, st)),
          section=Section(
              "bitcrush", _plain(dynamics.BitcrushSettings),
              check=lambda b, sr: require(1 <= b.bits <= 24,
                                         f"bitcrush.bits must be in 1..24, got {b.bits}."))),
    Entry("mp3", CORRUPTION, build=_deterministic("mp3", codec.mp3_like),
          section=Section("mp3", _plain(codec.CodecSettings))),
)

# ------------------------------------------------------------------- derived from TABLE ---
ENTRIES: dict[str, Entry] = {e.name: e for e in TABLE}
SECTIONS: tuple[Section, ...] = tuple({e.section.name: e.section for e in TABLE}.values())
TRANSFORM_NAMES = tuple(ENTRIES)
CHAIN_NAMES = tuple(e.name for e in TABLE if e.kind in (CHAIN, FILTER))
CORRUPTION_NAMES = tuple(e.name for e in TABLE if e.kind == CORRUPTION)
assert len(ENTRIES) == len(TABLE) and {e.kind for e in TABLE} <= {CHAIN, FILTER, CORRUPTION}


def check_names(names) -> None:
  """Raises ValueError listing the valid names if any of `names` is unknown."""
  if isinstance(names, str):
    raise ValueError(f"transform names must be a sequence of strings, got the string {names!r}.")
  unknown = [n for n in names if n not in ENTRIES]
  if unknown:
    raise ValueError(f"unknown augmentation(s) {unknown}; "
                     f"valid names: {', '.join(TRANSFORM_NAMES)}.")


def build(name: str, settings: Any, sample_rate: int) -> chain.Transform:
  """The transform called `name`, configured by `settings` (a `severity.Settings`)."""
  check_names([name])
  entry = ENTRIES[name]
  transform = entry.build(settings.sections[entry.section.name], sample_rate)
  assert transform.name == name, (transform.name, name)
  return transform
