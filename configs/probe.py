"""Downstream probes of a pretrained encoder (spec §7); the config arg names the task.

  python -m ssc_jax.main --config=configs/probe.py:mtat_top50 --workdir=DIR \
      --config.pretrained=PRETRAIN_WORKDIR_OR_ENCODER_MSGPACK

Without any download (the built-in synthetic dataset generates itself):

  python -m ssc_jax.main --config=configs/probe.py:synthetic_key --workdir=/tmp/probe_key \
      --config.pretrained=workdirs/demo

The arg is `<task>[,<option>...]`. Tasks (spec §7.3 table; `python -c "import configs.probe as
p; print(sorted(p.TASKS))"`): mtat_top50, mtat_all188, mtg_top50, mtg_genre, mtg_moodtheme,
mtg_instrument, gtzan, nsynth_pitch, nsynth_instrument_family, giantsteps_key,
vocalset_singer, vocalset_technique, medleydb, emomusic, synthetic_instrument,
synthetic_register, synthetic_key, synthetic_pitch_classes, smoke (= synthetic_instrument,smoke).
Options:
  linear | mlp     override the task's head;
  bias             heads with biases (the original's have none);
  fresh_crops      encode a fresh random crop of every clip each epoch (the original's way)
                   instead of training on cached chunk embeddings;
  robustness       after the probe, evaluate it on corrupted test audio (spec §7.4);
  prototypes       prototype evaluation at several labeled fractions (spec §7.5);
  standardize      standardise the features per dimension (training-split statistics);
  random_init      the random-init reference: the same architecture at init, BatchNorm
                   statistics recalibrated on 8 batches of training audio, standardised
                   features (docs/evaluation.md);
  marble           MARBLE protocol: 1x512 MLP with biases, dropout 0.2, batch 64, Adam without
                   weight decay, lr chosen on validation from {5e-5, ..., 1e-2};
  smoke            tiny settings for tests (synthetic tasks switch to synthetic_music/tiny).
Running again in the same workdir reuses the trained head (`head.msgpack`), e.g. to add the
robustness sweep later: `--config=configs/probe.py:mtat_top50,robustness`.
"""

import ml_collections

from configs import common

# task -> (TFDS dataset, label key, head, learning rate, max epochs, early-stopping patience).
TASKS = {
    "mtat_top50": ("mtat/top50", "tags", "mlp", 3e-4, 100, 15),
    "mtat_all188": ("mtat/all188", "tags", "mlp", 3e-4, 200, 15),
    "mtg_top50": ("mtg_jamendo/top50", "tags", "mlp", 3e-4, 200, 7),
    "mtg_genre": ("mtg_jamendo/genre", "tags", "mlp", 3e-4, 200, 7),
    "mtg_moodtheme": ("mtg_jamendo/moodtheme", "tags", "mlp", 3e-4, 200, 7),
    "mtg_instrument": ("mtg_jamendo/instrument", "tags", "mlp", 3e-4, 200, 7),
    "gtzan": ("gtzan_filtered", "genre", "mlp", 3e-4, 200, 50),
    "nsynth_pitch": ("nsynth_notes", "pitch", "mlp", 3e-4, 20, 2),
    "nsynth_instrument_family": ("nsynth_notes", "instrument_family", "mlp", 3e-4, 20, 2),
    "giantsteps_key": ("giantsteps_key", "key", "linear", 3e-4, 200, 50),
    "vocalset_singer": ("vocalset/singer", "singer", "linear", 3e-4, 200, 50),
    "vocalset_technique": ("vocalset/technique", "technique", "linear", 3e-4, 200, 50),
    "medleydb": ("medleydb", "instrument", "linear", 3e-4, 200, 10),
    "emomusic": ("emomusic", "emotion", "linear", 1e-4, 200, 200),
    "synthetic_instrument": ("synthetic_music/demo", "instrument", "linear", 3e-4, 100, 10),
    "synthetic_register": ("synthetic_music/demo", "register", "linear", 3e-4, 100, 10),
    "synthetic_key": ("synthetic_music/demo", "key", "linear", 3e-4, 100, 10),
    "synthetic_pitch_classes": ("synthetic_music/demo", "pitch_classes", "mlp", 3e-4, 100, 10),
}
ALIASES = {"smoke": "synthetic_instrument", "giantsteps": "giantsteps_key",
           "mtg_mood": "mtg_moodtheme", "mtg_instr": "mtg_instrument", "mtat_all": "mtat_all188",
           "nsynth_instr_family": "nsynth_instrument_family"}
OPTIONS = ("linear", "mlp", "bias", "fresh_crops", "robustness", "prototypes", "marble",
           "standardize", "random_init", "smoke")
MARBLE_LEARNING_RATES = (5e-5, 1e-4, 5e-4, 1e-3, 5e-3, 1e-2)


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """`arg` = "<task>[,<option>...]"; see the module docstring."""
  parts = [p.strip() for p in (arg or "").split(",") if p.strip()]
  if not parts:
    raise ValueError(f"configs/probe.py needs a task, e.g. configs/probe.py:mtat_top50; tasks: "
                     f"{sorted(TASKS)}.")
  task, options = parts[0], set(parts[1:])
  if task == "smoke":
    options.add("smoke")
  task = ALIASES.get(task, task)
  if task not in TASKS:
    raise ValueError(f"configs/probe.py: unknown task {parts[0]!r}; tasks: {sorted(TASKS)}.")
  unknown = options - set(OPTIONS)
  if unknown:
    raise ValueError(f"configs/probe.py: unknown option(s) {sorted(unknown)}; options: "
                     f"{list(OPTIONS)}.")
  dataset, label_key, head, lr, max_epochs, patience = TASKS[task]

  c = ml_collections.ConfigDict()
  c.job = "probe"  # ssc_jax.main dispatches to ssc_jax.evaluation.probe.run.
  c.pretrained = ""  # Pretraining workdir or exported encoder.msgpack (required).
  # True: probe `pretrained`'s architecture at a random initialisation (seeded by `seed`)
  # instead of its trained weights: the random-init reference (see probe.recalibrate_*).
  c.random_init = False
  c.dtype = ""  # Encoder compute dtype ("float32", "bfloat16"); "" = the pretraining run's.
  c.name = ""  # Encoder name in reports; "" = the pretraining workdir's folder name.
  c.seed = 0  # Seeds the head init, epoch order, crops, corruptions and prototype draws.

  # --- The downstream task. ---
  c.task = ml_collections.ConfigDict()
  c.task.name = task
  c.task.dataset = dataset  # TFDS "name/config" (see docs/datasets.md).
  c.task.label_key = label_key  # Label feature; its kind (class, multi-label, real) sets the loss.
  c.task.train_split = "train"
  c.task.validation_split = "validation"  # Early stopping (and lr selection) use it.
  c.task.test_split = "test"  # Scored once at the end, every track exactly once.

  # --- Audio and embedding. ---
  c.data = ml_collections.ConfigDict()
  c.data.data_dir = ""  # TFDS data dir; "" = $TFDS_DATA_DIR or ~/ssc_jax_data.
  c.data.view_length = 0  # T, samples per chunk; 0 = the encoder's pretraining view length.
  c.data.max_chunks = 64  # Validation/test: chunk-mean over the first this many chunks (172.8 s).
  c.data.train_max_chunks = 16  # Training cache: chunks embedded per training clip (first ones).
  c.data.batch_size = 64  # Chunk rows per GLOBAL encoder batch (a multiple of the device count).

  # --- Probe head and its training (spec §7.1). ---
  c.probe = ml_collections.ConfigDict()
  c.probe.protocol = "semisupcon"  # "semisupcon" (the paper's) or "marble"; a label in reports.
  c.probe.head = head  # "linear": Linear(D->K); "mlp": Linear(D->hidden) -> ReLU -> Linear(->K).
  c.probe.hidden = 512  # Hidden width of the MLP head.
  c.probe.use_bias = False  # The original's heads have no bias.
  c.probe.dropout = 0.0  # Dropout after the hidden ReLU (MLP).
  c.probe.learning_rate = lr  # Adam learning rate.
  c.probe.learning_rates = ()  # Non-empty: grid searched on the validation headline metric.
  c.probe.weight_decay = 1e-6  # Coupled L2 (PyTorch Adam weight_decay), not AdamW.
  c.probe.batch_size = 64  # Clips per head update.
  c.probe.max_epochs = max_epochs  # One epoch = every training clip once.
  c.probe.patience = patience  # Early stopping on the validation loss; best head restored.
  c.probe.train_features = "cached"  # "cached": chunks embedded once; "fresh_crops": re-encode.
  c.probe.reuse_head = True  # Reuse <workdir>/head.msgpack if present (skip training).
  # Per-dimension standardisation of the features, mean/std of the training split's cached
  # chunk embeddings, stored with the head and applied to everything it scores.
  c.probe.standardize = "standardize" in options
  # > 0: before probing, replace the encoder's BatchNorm running statistics by their average
  # over this many train-mode batches (data.batch_size random training crops each); parameters
  # unchanged. Needed for a random-init encoder, whose init-time statistics make every clip's
  # embedding nearly the same (docs/evaluation.md). 0 = off.
  c.probe.recalibrate_batchnorm_batches = 0

  # --- Robustness sweep (spec §7.4). ---
  c.robustness = ml_collections.ConfigDict()
  c.robustness.enabled = "robustness" in options
  c.robustness.levels = ()  # Level names; () = severity_0..severity_4, tier_5..tier_10.
  c.robustness.tracks_per_batch = 8  # Whole tracks per GLOBAL batch (multiple of the devices).

  # --- Prototype evaluation (spec §7.5). ---
  c.prototypes = ml_collections.ConfigDict()
  c.prototypes.enabled = "prototypes" in options
  c.prototypes.fractions = (0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 0.9, 1.0)  # Labeled fractions.

  # --- Figures. ---
  c.report = ml_collections.ConfigDict()
  c.report.projection = "tsne"  # 2-D map of test embeddings: "tsne", "pca" or "none".
  c.report.max_points = 2000  # Tracks drawn in the map (random subsample above).

  c.distributed = common.distributed()  # Read by ssc_jax.main before dispatching.

  if "linear" in options and "mlp" in options:
    raise ValueError("configs/probe.py: options 'linear' and 'mlp' exclude each other.")
  if "linear" in options:
    c.probe.head = "linear"
  if "mlp" in options:
    c.probe.head = "mlp"
  if "bias" in options:
    c.probe.use_bias = True
  if "fresh_crops" in options:
    c.probe.train_features = "fresh_crops"
  if "marble" in options:
    c.probe.protocol = "marble"
    c.probe.head = "mlp"
    c.probe.hidden = 512
    c.probe.use_bias = True
    c.probe.dropout = 0.2
    c.probe.batch_size = 64
    c.probe.weight_decay = 0.0
    c.probe.learning_rates = MARBLE_LEARNING_RATES
  if "smoke" in options:
    if dataset.startswith("synthetic_music/"):
      c.task.dataset = "synthetic_music/tiny"
    c.data.batch_size = 8
    c.data.train_max_chunks = 2
    c.probe.batch_size = 4
    c.probe.max_epochs = 3
    c.probe.patience = 2
    if c.probe.learning_rates:
      c.probe.learning_rates = c.probe.learning_rates[:2]
    c.robustness.levels = ("severity_0", "only_reverse")  # Cheap to compile on CPU.
    c.robustness.tracks_per_batch = 8
    c.prototypes.fractions = (0.5, 1.0)
    c.report.projection = "pca"
  if "random_init" in options:
    as_random_init_reference(c, batches=2 if "smoke" in options else
                             common.REFERENCE_RECALIBRATION_BATCHES)
  return c


def as_random_init_reference(c: ml_collections.ConfigDict,
                             batches: int) -> ml_collections.ConfigDict:
  """Makes probe config `c` the random-init reference (the `random_init` option), in place.

  The same architecture at a random initialisation (seeded by `seed`), its BatchNorm running
  statistics recalibrated on `batches` batches of training audio, features standardised: an
  init-time encoder in inference mode is degenerate otherwise (docs/evaluation.md).
  """
  c.random_init = True
  c.probe.standardize = True
  c.probe.recalibrate_batchnorm_batches = batches
  return c
