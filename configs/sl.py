"""Fully supervised contrastive baseline (p_s = b_s = 1): MTAT top-50 only (spec §6 SL).

Every batch is labeled; positives are the other view of the same clip and every clip sharing
at least `loss.pos_threshold` tags. As the original SL template, no augmentation.

  python -m ssc_jax.main --config=configs/sl.py --workdir=$HOME/runs/sl
"""

import ml_collections

from configs import common


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  if arg:
    raise ValueError(f"configs/sl.py takes no preset, got {arg!r}.")
  c = common.base_config()
  c.data.labeled = "mtat/top50"
  c.data.labeled_split = "train"
  c.data.label_key = "tags"
  c.data.unlabeled = ""
  c.data.shuffle_buffer = 1024
  c.data.labeled_share = 1.0
  c.data.labeled_fraction = 1.0
  c.augment.severity = 0
  c.train.total_steps = 50_000
  # Validation once per epoch of the original's MixedDataLoader (spec §4.5, §6): steps
  # ≈ MTAT top-50 train ~15.2k clips / B 96; batches ≈ folder c ~1.3k / 96.
  c.train.eval_every_steps = 160
  c.train.eval_batches = 14
  return c
