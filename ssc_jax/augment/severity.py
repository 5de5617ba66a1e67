"""The spec's severity table (§5.2) and its merge with config overrides.

s = severity / 2 drives every range and probability of the pretraining chain. The formulas
below are the spec table's, row for row; `resolve` fills each None config field from them,
checks the result and returns one frozen settings object per transform.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import ml_collections

from ssc_jax.augment import chorus as chorus_lib
from ssc_jax.augment import codec
from ssc_jax.augment import delay as delay_lib
from ssc_jax.augment import dynamics
from ssc_jax.augment import edit
from ssc_jax.augment import filters
from ssc_jax.augment import gain as gain_lib
from ssc_jax.augment import noise
from ssc_jax.augment import pitch
from ssc_jax.augment import reverb as reverb_lib
from ssc_jax.augment import stretch

MAX_SEVERITY = 4


@dataclasses.dataclass(frozen=True)
class Settings:
  """Everything the transforms need, resolved for one severity and sample rate."""
  severity: int
  compose_p: float
  gain: gain_lib.GainSettings
  polarity_inversion: gain_lib.PolaritySettings
  colored_noise: noise.NoiseSettings
  filtering: filters.FilterSettings
  pitch_shift: pitch.PitchShiftSettings
  delay: delay_lib.DelaySettings
  timestretch: stretch.TimeStretchSettings
  splice: edit.SpliceSettings
  reverb: reverb_lib.ReverbSettings
  chorus: chorus_lib.ChorusSettings
  distortion: dynamics.DistortionSettings
  compression: dynamics.CompressorSettings
  reverse: edit.ReverseSettings
  bitcrush: dynamics.BitcrushSettings
  mp3: codec.CodecSettings


def table(severity: int, sample_rate: int) -> dict[str, dict[str, Any]]:
  """The spec §5.2 parameters at `severity` (s = severity / 2), by transform and field.

  Only meaningful for severity >= 1 (severity 0 disables augmentation; its s = 0 would
  divide by zero, so it is evaluated at s = 1 and never applied).
  """
  s = severity / 2 if severity > 0 else 1.0
  ms = sample_rate / 1000.0
  return {
      "compose": {"p": min(1.0, 0.8 * s)},
      "gain": {"p": min(0.7, 0.4 * s), "min_db": -15.0 * s, "max_db": 5.0 * s},
      "polarity_inversion": {"p": min(0.8, 0.6 * s)},
      "colored_noise": {"p": min(0.8, 0.6 * s), "min_snr_db": 3.0 / s, "max_snr_db": 30.0 / s,
                        "min_decay": -2.0 * s, "max_decay": 2.0 * s},
      "filtering": {"p": min(0.6, 0.3 * s), "center_min_hz": 200.0, "center_max_hz": 4000.0,
                    "min_bandwidth": 0.5 * s, "max_bandwidth": 1.99,
                    "highpass_min_hz": 200.0 * s,
                    "highpass_max_hz": min(sample_rate / 2, 2400.0 * s),
                    "lowpass_min_hz": max(75.0, 150.0 / s),
                    "lowpass_max_hz": 7500.0 / max(1.0, s)},
      "pitch_shift": {"p": min(0.75, 0.6 * s), "max_semitones": 4.0 * s, "n_fft": 0,
                      "overlap": 2},
      "delay": {"p": min(0.6, 0.6 * s), "min_ms": int(100.0 / s * ms) / ms,
                "max_ms": int(500.0 * ms) / ms,
                "volumes": (0.5 * s - 0.2, 0.5 * s + 0.2),
                "repeats": (int(2 * s) - 1, int(2 * s) + 1),
                "attenuations": (min(1.0, 0.5 * s) - 0.2, min(1.0, 0.5 * s) + 0.2)},
  }


def _merged(defaults: dict[str, Any], section: ml_collections.ConfigDict | None,
            ) -> dict[str, Any]:
  """defaults updated by every non-None field of the config section."""
  out = dict(defaults)
  if section is not None:
    for key, value in section.items():
      if value is not None:
        out[key] = value
  return out


def _check(condition: bool, message: str) -> None:
  if not condition:
    raise ValueError(f"augment config: {message}")


def resolve(config: ml_collections.ConfigDict, sample_rate: int) -> Settings:
  """Merges the config's overrides into the severity table and validates the result.

  Args:
    config: an `augment` section shaped like `config.default_config()`.
    sample_rate: Hz of the audio the transforms will see.

  Returns:
    The resolved settings.

  Raises:
    ValueError: naming the field, for an out-of-range severity, probability or range.
  """
  severity = config.severity
  _check(isinstance(severity, int) and 0 <= severity <= MAX_SEVERITY,
         f"severity must be an int in 0..{MAX_SEVERITY}, got {severity!r}.")
  _check(sample_rate > 0, f"sample_rate must be positive, got {sample_rate}.")
  t = table(severity, sample_rate)
  get = lambda name: config.get(name)
  compose_p = config.get("compose_p")
  compose_p = t["compose"]["p"] if compose_p is None else compose_p
  g = _merged(t["gain"], get("gain"))
  n = _merged(t["colored_noise"], get("colored_noise"))
  fl = _merged(t["filtering"], get("filtering"))
  ps = _merged(t["pitch_shift"], get("pitch_shift"))
  d = _merged(t["delay"], get("delay"))
  ms = sample_rate / 1000.0
  settings = Settings(
      severity=severity,
      compose_p=float(compose_p),
      gain=gain_lib.GainSettings(g["p"], g["min_db"], g["max_db"]),
      polarity_inversion=gain_lib.PolaritySettings(
          _merged(t["polarity_inversion"], get("polarity_inversion"))["p"]),
      colored_noise=noise.NoiseSettings(n["p"], n["min_snr_db"], n["max_snr_db"],
                                        n["min_decay"], n["max_decay"]),
      filtering=filters.FilterSettings(**fl),
      pitch_shift=pitch.PitchShiftSettings(ps["p"], ps["max_semitones"], int(ps["n_fft"]),
                                           int(ps["overlap"])),
      delay=delay_lib.DelaySettings(d["p"], int(round(d["min_ms"] * ms)),
                                    int(round(d["max_ms"] * ms)), tuple(d["volumes"]),
                                    tuple(d["repeats"]), tuple(d["attenuations"])),
      timestretch=stretch.TimeStretchSettings(**dict(get("timestretch") or {})),
      splice=edit.SpliceSettings(**dict(get("splice") or {})),
      reverb=reverb_lib.ReverbSettings(**dict(get("reverb") or {})),
      chorus=chorus_lib.ChorusSettings(**dict(get("chorus") or {})),
      distortion=dynamics.DistortionSettings(**dict(get("distortion") or {})),
      compression=dynamics.CompressorSettings(**dict(get("compression") or {})),
      reverse=edit.ReverseSettings(**dict(get("reverse") or {})),
      bitcrush=dynamics.BitcrushSettings(**dict(get("bitcrush") or {})),
      mp3=codec.CodecSettings(**dict(get("mp3") or {})),
  )
  _validate(settings, sample_rate)
  return settings


def _validate(st: Settings, sample_rate: int) -> None:
  _check(0.0 <= st.compose_p <= 1.0, f"compose_p must be in [0, 1], got {st.compose_p}.")
  for field in dataclasses.fields(st):
    sub = getattr(st, field.name)
    if dataclasses.is_dataclass(sub):
      _check(0.0 <= sub.p <= 1.0, f"{field.name}.p must be in [0, 1], got {sub.p}.")
  ranges = [
      ("gain", "min_db", "max_db"), ("colored_noise", "min_snr_db", "max_snr_db"),
      ("colored_noise", "min_decay", "max_decay"),
      ("filtering", "center_min_hz", "center_max_hz"),
      ("filtering", "min_bandwidth", "max_bandwidth"),
      ("filtering", "highpass_min_hz", "highpass_max_hz"),
      ("filtering", "lowpass_min_hz", "lowpass_max_hz"),
      ("delay", "min_samples", "max_samples"), ("timestretch", "min_rate", "max_rate")]
  for name, lo, hi in ranges:
    sub = getattr(st, name)
    _check(getattr(sub, lo) <= getattr(sub, hi),
           f"{name}.{lo} ({getattr(sub, lo)}) must not exceed {name}.{hi} "
           f"({getattr(sub, hi)}).")
  _check(st.filtering.center_min_hz > 0 and st.filtering.lowpass_min_hz > 0
         and st.filtering.highpass_min_hz > 0, "filter frequencies must be positive.")
  _check(st.delay.min_samples >= 1, "delay.min_ms must be at least one sample.")
  _check(min(st.delay.repeats) >= 0, f"delay repeats must be >= 0, got {st.delay.repeats}.")
  _check(st.timestretch.min_rate > 0, "timestretch.min_rate must be positive.")
  _check(st.pitch_shift.overlap in (2, 4),
         f"pitch_shift.overlap must be 2 or 4, got {st.pitch_shift.overlap}.")
  _check(1 <= st.bitcrush.bits <= 24, f"bitcrush.bits must be in 1..24, got {st.bitcrush.bits}.")
  _check(st.compression.ratio >= 1.0, "compression.ratio must be >= 1.")
  if st.severity > 0 and st.pitch_shift.p > 0:
    _check(len(pitch.fast_ratios(sample_rate, st.pitch_shift.max_semitones)) > 0,
           f"pitch_shift.max_semitones={st.pitch_shift.max_semitones} leaves no transposition "
           f"in the discrete set for {sample_rate} Hz.")
