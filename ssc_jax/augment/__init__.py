"""On-device waveform augmentation: the SemiSupCon chain and the robustness corruptions.

Everything is jit-able, vmapped over (item, view) with static shapes, and seeded by explicit
PRNG keys. The `augment` config section (its defaults are plain data in configs/augment.py)
says which transforms run; `registry.TABLE` lists them, one entry each. See
docs/augmentation.md for the semantics, the DSP designs and the benchmark.

Public API:
  make_augment_fn(config, sample_rate)   fn(key, audio [B, N, T]) -> [B, N, T] for the train step.
  make_corruption_fn(names, severity, sample_rate, with_chain)   same, for robustness tests.
  robustness_levels(), single_corruption_levels(), tier2_levels(), make_level_fn(level, sr)
  TRANSFORM_NAMES, CHAIN_NAMES, CORRUPTION_NAMES
"""

from ssc_jax.augment.pipeline import identity
from ssc_jax.augment.pipeline import make_augment_fn
from ssc_jax.augment.pipeline import make_corruption_fn
from ssc_jax.augment.registry import CHAIN_NAMES
from ssc_jax.augment.registry import CORRUPTION_NAMES
from ssc_jax.augment.registry import TRANSFORM_NAMES
from ssc_jax.augment.robustness import RobustnessLevel
from ssc_jax.augment.robustness import make_level_fn
from ssc_jax.augment.robustness import robustness_levels
from ssc_jax.augment.robustness import single_corruption_levels
from ssc_jax.augment.robustness import tier2_levels

__all__ = [
    "CHAIN_NAMES", "CORRUPTION_NAMES", "RobustnessLevel", "TRANSFORM_NAMES", "identity",
    "make_augment_fn", "make_corruption_fn", "make_level_fn",
    "robustness_levels", "single_corruption_levels", "tier2_levels",
]
