"""The paper's data and model at pod scale: B = 4,096 items × N = 2 views, bf16, LAMB or LARS.

Same data, encoder, loss and augmentation as configs/mtat.py; what changes is what a large
global batch needs (docs/scaling.md explains each choice):
* `model.dtype = "bfloat16"` (convolutions and dense layers; parameters, BatchNorm statistics,
  optimizer state, logits and loss stay float32);
* LAMB (default) or LARS (`:lars`), peak learning rate scaled by √(B·N / 256) from the value
  given at 256 views, linear warm-up over 500 steps then cosine decay to 0, weight decay of
  kernels only;
* `loss.chunk_size = 1024`: the B·N × B·N logits are visited in column blocks, so the loss
  needs O(R_local · 1024) memory per chip instead of O(R_local · B·N);
* 10,000 steps: 41M items, about twice the paper's 200k × 96.

B = 4,096 needs a chip count that divides it. Memory per chip (compile-time figures of the real
step, bench/README.md "Scale evidence"): on a v5e (16 GiB HBM) this preset at 256 items per
chip (a v5e-16) needs 14.0 GiB and fits; 320 per chip does not; at 64 per chip (a v5e-64) it
needs 4.0 GiB. In float32 a v5e chip holds about 156 items. Fewer chips: lower
`--config.data.batch_size`.

Prepare the data once (docs/datasets.md, with `data_dir` on gs:// for a pod), then on every
host of the slice:

  python -m ssc_jax.main --config=configs/pod.py --workdir=gs://BUCKET/runs/pod_lamb \\
      --config.distributed.initialize=True --config.data.data_dir=gs://BUCKET/ssc_jax_data

`--config=configs/pod.py:lars` uses LARS instead of LAMB.
"""

import ml_collections

from configs import mtat


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """Returns the pod preset; `arg` is "" / "lamb" (default) or "lars"."""
  c = mtat.get_config()
  c.data.batch_size = 4096
  c.data.num_views = 2
  c.data.shuffle_buffer = 8192  # Per host; a pod host feeds 4-8 chips.
  c.model.dtype = "bfloat16"
  c.loss.chunk_size = 1024
  c.train.total_steps = 10_000
  c.train.log_every_steps = 50
  c.train.checkpoint_every_steps = 500
  o = c.optimizer
  o.schedule = "warmup_cosine"
  o.warmup_steps = 500
  o.lr_scaling = "sqrt"
  o.reference_batch_size = 256
  if arg in (None, "", "lamb"):
    o.name = "lamb"
    o.learning_rate = 1e-3  # × √32 ≈ 5.7e-3 at B·N = 8,192 views.
    o.weight_decay = 1e-2
    o.eps = 1e-6
  elif arg == "lars":
    o.name = "lars"
    o.learning_rate = 0.85  # × √32 ≈ 4.8 at 8,192 views (SimCLR's 0.075·√4096).
    o.weight_decay = 1e-6
    o.momentum = 0.9
    o.trust_coefficient = 0.001
  else:
    raise ValueError(f"configs/pod.py: unknown preset {arg!r} (use 'lamb' or 'lars').")
  return c
