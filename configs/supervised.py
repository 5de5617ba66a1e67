"""Fully supervised end-to-end baseline (spec §7.3, the original's from_scratch/train_MTAT.yaml):
SampleCNN trained from scratch with a linear head on one task's labels, then tested exactly as
the probes are, so `python -m ssc_jax.report` puts it beside the SSL, SL and SemiSL encoders.

  python -m ssc_jax.main --config=configs/supervised.py:mtat_top50 --workdir=$HOME/runs/sup_mtat

Without any download (the built-in synthetic dataset generates itself):

  python -m ssc_jax.main --config=configs/supervised.py:synthetic --workdir=/tmp/sup_synthetic

The arg is `<task>[,smoke]`. Tasks are the probe tasks of configs/probe.py, with the same names
and aliases (`synthetic` = synthetic_instrument; `smoke` = synthetic_instrument,smoke). Unknown
tasks and options are refused.

Settings (spec §7.3): the encoder is not frozen; linear head without bias; Adam at the task's
probe learning rate (3e-4; EmoMusic 1e-4) with coupled weight decay 1e-6; batches of 64 random
2.7 s crops, no augmentation; 200k steps. The loss follows the label kind: BCE (multi-label),
cross-entropy (multi-class), MSE (regression). Early stopping: the original stops on the
validation loss (patience as the task's probe, spec §7.1) and reloads the best checkpoint, but
only when wandb logging is on (§10.6); here always: every `train.eval_every_steps` (0 = one
epoch, ceil(n_train / batch_size) steps) the validation loss of the chunk-mean representations,
as at test time; stop after `train.patience` evaluations without improvement; test the best.
`smoke`: the tiny synthetic set, a 1/8-width encoder and a few steps (used by the tests).
"""

import ml_collections

from configs import common
from configs import probe

ALIASES = {"synthetic": "synthetic_instrument", "smoke": "synthetic_instrument",
           **probe.ALIASES}
OPTIONS = ("smoke",)


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """`arg` = "<task>[,smoke]"; see the module docstring."""
  parts = [p.strip() for p in (arg or "").split(",") if p.strip()]
  if not parts:
    raise ValueError(f"configs/supervised.py needs a task, e.g. "
                     f"configs/supervised.py:mtat_top50; tasks: {sorted(probe.TASKS)}.")
  task, options = ALIASES.get(parts[0], parts[0]), set(parts[1:])
  if parts[0] == "smoke":
    options.add("smoke")
  if task not in probe.TASKS:
    raise ValueError(f"configs/supervised.py: unknown task {parts[0]!r}; tasks: "
                     f"{sorted(probe.TASKS)} (aliases {sorted(ALIASES)}).")
  if options - set(OPTIONS):
    raise ValueError(f"configs/supervised.py: unknown option(s) {sorted(options - set(OPTIONS))};"
                     f" options: {list(OPTIONS)}.")
  dataset, label_key, _, learning_rate, _, patience = probe.TASKS[task]
  base = common.base_config()

  c = ml_collections.ConfigDict()
  c.job = "supervised"  # ssc_jax.main dispatches to ssc_jax.evaluation.supervised.run.
  c.name = "supervised"  # Row name in reports (ssc_jax.report), beside the pretrained encoders.
  c.seed = 0  # Seeds the init, the crops and the order of the training clips.
  # The encoder (SampleCNN at width 1.0). Its projection head is built (so the model embeds as
  # any pretrained one) but not trained: only the encoder and the linear head are.
  c.model = base.model

  # --- The task (configs/probe.py TASKS). ---
  c.task = ml_collections.ConfigDict()
  c.task.name = task
  c.task.dataset = dataset  # TFDS "name/config" (see docs/datasets.md).
  c.task.label_key = label_key  # Label feature; its kind (class, multi-label, real) sets the loss.
  c.task.train_split = "train"
  c.task.validation_split = "validation"  # Early stopping.
  c.task.test_split = "test"  # Scored once at the end, every track exactly once.

  # --- Audio. ---
  c.data = ml_collections.ConfigDict()
  c.data.data_dir = ""  # TFDS data dir; "" = $SSC_JAX_DATA_DIR or ~/ssc_jax_data.
  c.data.sample_rate = base.data.sample_rate  # Hz; the dataset must be stored at this rate.
  c.data.view_length = base.data.view_length  # T, samples per crop / test chunk (2.7 s).
  c.data.batch_size = 64  # Random crops (one per clip) per GLOBAL training batch.
  c.data.shuffle_buffer = 1024  # Crops held by each host's shuffle buffer.
  c.data.max_chunks = 64  # Validation/test: chunk-mean over the first this many chunks.
  c.data.eval_batch_size = 64  # Chunk rows per GLOBAL batch when embedding validation/test.

  # --- Optimiser (spec §7.3: Adam with coupled L2, no schedule). ---
  c.optimizer = ml_collections.ConfigDict()
  c.optimizer.learning_rate = learning_rate
  c.optimizer.weight_decay = 1e-6  # Coupled L2 (PyTorch Adam weight_decay), not AdamW.

  # --- Loop. ---
  c.train = ml_collections.ConfigDict()
  c.train.total_steps = 200_000
  c.train.eval_every_steps = 0  # Validation (early stopping) cadence; 0 = once per epoch.
  c.train.patience = patience  # Evaluations without a validation-loss improvement before stopping.
  c.train.log_every_steps = 50  # Progress line + TensorBoard/JSONL training loss.

  c.distributed = base.distributed  # Multi-process start-up (read by ssc_jax.main).

  if "smoke" in options:
    if dataset.startswith("synthetic_music/"):
      c.task.dataset = "synthetic_music/tiny"
    c.model.width = 0.125
    c.data.batch_size = 8
    c.data.shuffle_buffer = 8
    c.data.max_chunks = 2
    c.data.eval_batch_size = 8
    c.train.total_steps = 4
    c.train.eval_every_steps = 2
    c.train.patience = 2
    c.train.log_every_steps = 2
  return c
