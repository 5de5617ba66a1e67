"""The robustness protocol's corruption sets (spec §7.4) as data.

* `robustness_levels()`: the 11-level ladder. Levels 0-4 are the pretraining chain at
  severity 0..4 (0 = clean); levels 5-10 ("tiers") are the chain at severity 2 plus
  cumulative corruptions: 5 +timestretch, 6 +splice, 7 +reverb +chorus, 8 +distortion,
  9 +compression +reverse, 10 +bitcrush +mp3.
* `single_corruption_levels()`: each corruption alone at severity 2 ("only").
* `tier2_levels()`: the chain at severity 2 plus one corruption ("tier2_only").
Build any level's function with `make_level_fn(level, sample_rate)`.
"""

from __future__ import annotations

from typing import NamedTuple

from ssc_jax.augment import chain
from ssc_jax.augment import pipeline
from ssc_jax.augment import registry

_TIER_ADDITIONS = (("timestretch",), ("splice",), ("reverb", "chorus"), ("distortion",),
                   ("compression", "reverse"), ("bitcrush", "mp3"))


class RobustnessLevel(NamedTuple):
  """One corruption setting of the protocol."""
  name: str  # e.g. "severity_2", "tier_7", "only_reverb", "tier2_mp3".
  severity: int  # Chain severity and Compose probability min(1, 0.4 severity).
  corruptions: tuple[str, ...]  # Applied after the chain, in order.
  with_chain: bool  # Whether the 6-transform pretraining chain runs first.


def robustness_levels() -> list[RobustnessLevel]:
  """The 11-level ladder: severities 0-4, then tiers 5-10 (cumulative corruptions)."""
  levels = [RobustnessLevel(f"severity_{s}", s, (), True) for s in range(5)]
  added: tuple[str, ...] = ()
  for tier, extra in enumerate(_TIER_ADDITIONS, start=5):
    added += extra
    levels.append(RobustnessLevel(f"tier_{tier}", 2, added, True))
  return levels


def single_corruption_levels() -> list[RobustnessLevel]:
  """Each corruption alone at severity 2 (Compose p 0.8)."""
  return [RobustnessLevel(f"only_{n}", 2, (n,), False) for n in registry.CORRUPTION_NAMES]


def tier2_levels() -> list[RobustnessLevel]:
  """The chain at severity 2 plus one corruption."""
  return [RobustnessLevel(f"tier2_{n}", 2, (n,), True) for n in registry.CORRUPTION_NAMES]


def make_level_fn(level: RobustnessLevel, sample_rate: int) -> chain.BatchFn:
  """fn(key, audio [B, N, T]) -> [B, N, T] for one level (see `make_corruption_fn`)."""
  return pipeline.make_corruption_fn(level.corruptions, level.severity, sample_rate,
                                     level.with_chain)
