"""Self-supervised baseline (b_s = 0): FMA only, view positives only (spec §6 SSL template).

  python -m ssc_jax.main --config=configs/ssl.py --workdir=$HOME/runs/ssl
"""

import ml_collections

from configs import common


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  if arg:
    raise ValueError(f"configs/ssl.py takes no preset, got {arg!r}.")
  c = common.base_config()
  c.data.labeled = ""
  c.data.label_key = "tags"
  c.data.unlabeled = "fma/medium"
  c.data.unlabeled_split = "train"
  c.data.shuffle_buffer = 1024
  c.data.labeled_share = 0.0
  c.train.total_steps = 50_000
  return c
