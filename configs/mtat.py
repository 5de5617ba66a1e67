"""The paper's main semi-supervised setup (spec §6): FMA unlabeled + MTAT top-50 labeled.

SampleCNN, B = 96 items × N = 2 views, p_s = 1, b_s = 0.5, τ = 0.1, T_pos = 1, the 6-transform
augmentation chain at severity 2, Adam 1e-4, 200k steps, 2.7 s views at 22050 Hz.

Prepare the data once (see docs/datasets.md), then:

  python -m ssc_jax.main --config=configs/mtat.py --workdir=$HOME/runs/mtat_semisup

On a Cloud TPU pod run the same command on every host with
`--config.distributed.initialize=True`.
"""

import ml_collections

from configs import common


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  if arg:
    raise ValueError(f"configs/mtat.py takes no preset, got {arg!r}.")
  c = common.base_config()
  c.data.labeled = "mtat/top50"
  c.data.labeled_split = "train"
  c.data.label_key = "tags"
  c.data.unlabeled = "fma/medium"
  c.data.unlabeled_split = "train"
  c.data.shuffle_buffer = 1024
  c.data.batch_size = 96
  c.data.labeled_share = 0.5
  c.data.labeled_fraction = 1.0
  c.train.total_steps = 200_000
  # Validation once per epoch of the original's MixedDataLoader (spec §4.5, §6): steps
  # ≈ FMA-medium train ~22.5k tracks / B_u 48; batches ≈ FMA val ~2.5k / 48.
  c.train.eval_every_steps = 470
  c.train.eval_batches = 53
  return c
