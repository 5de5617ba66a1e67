"""Supervision beyond shared labels: key-distance positives against same-key positives.

Demo-sized SemiSupCon runs on the built-in synthetic dataset whose label positives come from
its `key` label (24 keys), half of each batch labeled:
  key_threshold   the paper's positives: views of two items in the same key (T_pos = 1);
  key_distance    a label similarity (docs/similarity.md): same key 1, keys one step apart on
                  the circle of fifths (fifth up or down, relative major/minor) 0.5, two steps
                  0.25, else 0 (`loss.key_weights`).
Both use the same eighth-width SampleCNN (sized for a shared 2-core machine: a few minutes per
run), batch of 32 items, augmentations, 120 steps and seed, and are scored by the synthetic key
probe:

  python -m ssc_jax.main --config=configs/similarity.py:key_distance --workdir=/tmp/sim_kd
  python -m ssc_jax.main --config=configs/probe.py:synthetic_key --workdir=/tmp/sim_kd/probe \
      --config.pretrained=/tmp/sim_kd

(likewise `key_threshold`). README, section "Supervision beyond shared labels", records a run.
Add `,smoke` (e.g. `configs/similarity.py:key_distance,smoke`) for a few steps on the tiny
dataset (used by the tests). Unknown presets are refused.
"""

import ml_collections

from configs import common
from configs import demo

PRESETS = ("key_threshold", "key_distance")


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """`arg` = "<preset>[,smoke]"; see the module docstring."""
  parts = [p.strip() for p in (arg or "").split(",") if p.strip()]
  if not parts or parts[0] not in PRESETS or set(parts[1:]) - {"smoke"}:
    raise ValueError(f"configs/similarity.py: unknown preset {arg!r}; use one of {PRESETS}, "
                     f"optionally followed by ',smoke'.")
  c = common.base_config()
  c.model.width = 0.125
  c.data.label_key = "key"
  c.data.batch_size = 32
  c.data.labeled_share = 0.5
  c.augment.chain = demo.PITCH_PRESERVING_CHAIN  # Pitch shift and filters would hide the key.
  c.optimizer.learning_rate = 1e-3
  c.train.total_steps = 120
  c.train.log_every_steps = 10
  c.train.checkpoint_every_steps = 120
  if parts[0] == "key_distance":
    c.loss.similarity = "key_distance"
  if "smoke" in parts[1:]:
    c.data.labeled = c.data.unlabeled = "synthetic_music/tiny"
    c.data.batch_size = 8
    c.data.shuffle_buffer = 16
    c.train.total_steps = 2
    c.train.log_every_steps = 1
    c.train.checkpoint_every_steps = 2
  return c
