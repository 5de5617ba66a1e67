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
  # Validation once per epoch of the original's MixedDataLoader (spec §4.5, §6): steps
  # ≈ FMA-medium train ~22.5k tracks / B 96; batches ≈ FMA val ~2.5k / 96.
  c.train.eval_every_steps = 235
  c.train.eval_batches = 27
  return c
