"""The spec's severity table (§5.2) merged with the config: `resolve(config) -> Settings`.

s = severity / 2 drives every range and probability of the pretraining chain. The rows are the
spec table's, one per config section (`Section.severity_row` in the table of `registry.py`);
`resolve` fills each None config field from them, checks the result and returns one frozen
settings object per section.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

import ml_collections

from ssc_jax.augment import registry

MAX_SEVERITY = 4


@dataclasses.dataclass(frozen=True)
class Settings:
  """Everything the transforms need, resolved for one severity and sample rate.

  Attributes:
    severity: 0..4.
    compose_p: per-item Compose probability.
    sections: section name -> its frozen settings (e.g. `gain.GainSettings`), one per
      `registry.SECTIONS`; also readable as attributes (`settings.gain.p`).
  """
  severity: int
  compose_p: float
  sections: Mapping[str, Any]

  def __getattr__(self, name: str) -> Any:
    if name != "sections" and name in self.sections:
      return self.sections[name]
    raise AttributeError(name)


def _fields(config: ml_collections.ConfigDict, section: registry.Section, s: float,
            sample_rate: int) -> dict[str, Any]:
  """The section's severity row updated by every non-None field of its config section."""
  out = dict(section.severity_row(s, sample_rate)) if section.severity_row else {}
  values = config.get(section.name)
  registry.require(values is not None, f"no section {section.name!r} (its defaults are in "
                   "configs/augment.py).")
  out.update((key, value) for key, value in values.items() if value is not None)
  return out


def _check_ranges(name: str, settings: Any) -> None:
  """p in [0, 1] and every min_* field (…_min_…) at most its max_* partner."""
  registry.require(0.0 <= settings.p <= 1.0, f"{name}.p must be in [0, 1], got {settings.p}.")
  values = dataclasses.asdict(settings)
  for lo, low in values.items():
    hi = lo.replace("min", "max", 1)
    if "min" in lo and hi in values:
      registry.require(low <= values[hi], f"{name}.{lo} ({low}) must not exceed "
                       f"{name}.{hi} ({values[hi]}).")


def resolve(config: ml_collections.ConfigDict, sample_rate: int) -> Settings:
  """Merges the config's overrides into the severity table and validates the result.

  Args:
    config: an `augment` section shaped like `configs/augment.py`'s `defaults()`.
    sample_rate: Hz of the audio the transforms will see.

  Returns:
    The resolved settings.

  Raises:
    ValueError: naming the field, for an out-of-range severity, probability or range.
  """
  severity = config.severity
  registry.require(isinstance(severity, int) and 0 <= severity <= MAX_SEVERITY,
                   f"severity must be an int in 0..{MAX_SEVERITY}, got {severity!r}.")
  registry.require(sample_rate > 0, f"sample_rate must be positive, got {sample_rate}.")
  # Severity 0 disables augmentation; its s = 0 would divide by zero, so the rows are
  # evaluated at s = 1 and never applied.
  s = severity / 2 if severity > 0 else 1.0
  compose_p = config.get("compose_p")
  compose_p = float(min(1.0, 0.8 * s) if compose_p is None else compose_p)
  registry.require(0.0 <= compose_p <= 1.0, f"compose_p must be in [0, 1], got {compose_p}.")
  sections = {}
  for section in registry.SECTIONS:
    settings = section.settings(_fields(config, section, s, sample_rate), sample_rate)
    _check_ranges(section.name, settings)
    if section.check:
      section.check(settings, sample_rate)
    sections[section.name] = settings
  return Settings(severity, compose_p, sections)
