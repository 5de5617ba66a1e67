"""Defaults shared by every pretraining config; each field is documented where it is defined.

A config file imports `base_config()` and overrides what its experiment changes. Every field
can be overridden on the command line, e.g. `--config.loss.temperature=0.2`; unknown fields are
refused.
"""

import ml_collections

from configs import augment

# Batches of probe training audio on which a random-init reference's BatchNorm statistics are
# recalibrated (configs/probe.py `random_init`, the demo's comparison; docs/evaluation.md).
REFERENCE_RECALIBRATION_BATCHES = 8


def base_config() -> ml_collections.ConfigDict:
  """Returns the paper's main SemiSupCon setup on the built-in synthetic dataset."""
  c = ml_collections.ConfigDict()
  c.seed = 0  # Seeds parameter init, data sampling and augmentation.

  # --- Encoder and projection head (spec §3). ---
  c.model = ml_collections.ConfigDict()
  c.model.encoder = "samplecnn"  # "samplecnn" or "tuneplus".
  c.model.width = 1.0  # Channel multiplier (1.0 = the paper's SampleCNN; 0.25 for the demo).
  c.model.projection_hidden = 512  # Hidden width of the bias-free projection MLP.
  c.model.projection_dim = 128  # Output width of the projection MLP (the contrastive space).
  # Compute dtype of convolutions and dense layers: "float32" or "bfloat16". Parameters,
  # optimizer state, BatchNorm statistics, the projection output and the loss stay float32.
  c.model.dtype = "float32"

  # --- Data (spec §4). ---
  c.data = ml_collections.ConfigDict()
  c.data.labeled = "synthetic_music/demo"  # TFDS "name/config" of the labeled source ("" = none).
  c.data.labeled_split = "train"  # Its split used for pretraining.
  c.data.unlabeled = "synthetic_music/demo"  # TFDS "name/config" of the unlabeled pool ("" = none).
  c.data.unlabeled_split = "unlabeled"  # Its split used for pretraining.
  c.data.data_dir = ""  # TFDS data dir; "" = $TFDS_DATA_DIR or ~/ssc_jax_data.
  c.data.label_key = "pitch_classes"  # Which label feature defines label positives.
  c.data.sample_rate = 22050  # Hz; audio is stored at this rate.
  c.data.view_length = 59535  # T, samples per view (2.7 s at 22050 Hz).
  c.data.num_views = 2  # N, adjacent views per item.
  c.data.batch_size = 96  # B, items per GLOBAL batch (B·N views are contrasted together).
  c.data.labeled_share = 0.5  # b_s: share of each global batch that is labeled (int(B·b_s) items).
  c.data.labeled_fraction = 1.0  # p_s: share of the labeled train set whose labels are used (applied once).
  c.data.shuffle_buffer = 256  # Examples held by each host's shuffle buffer.

  # --- On-device augmentation (spec §5); applied inside the jitted step. ---
  # Fields (chain, severity, per-transform overrides) are documented in configs/augment.py.
  c.augment = augment.defaults()

  # --- Loss (spec §2). ---
  c.loss = ml_collections.ConfigDict()
  c.loss.temperature = 0.1  # τ.
  c.loss.positives = "threshold"  # "threshold" (share ≥ pos_threshold labels) or "weighted" (Dice).
  c.loss.pos_threshold = 1  # T_pos, used when positives == "threshold".
  # Label positives from a label-similarity source instead (docs/similarity.md): "label_overlap"
  # (shared labels, as above: the paper's), "regression", "key_distance", "pitch_class_overlap"
  # or a name registered with ssc_jax.losses.register_similarity. Weights in [0, 1] for pairs
  # of labeled views, max'ed with the same-item positives.
  c.loss.similarity = "label_overlap"
  c.loss.regression_sigma = 1.0  # regression: w = exp(-|y_i - y_j|² / (2 σ²)), σ in target units.
  c.loss.key_weights = (1.0, 0.5, 0.25)  # key_distance: w by key distance 0, 1, 2; 0 beyond.
  c.loss.pitch_class_measure = "jaccard"  # pitch_class_overlap: "jaccard" or "dice".
  c.loss.parity = False  # True: -log(p + 1e-6) exactly as the original; False: stable log-softmax.
  c.loss.chunk_size = 0  # >0: column-chunked loss with O(R_local·chunk) memory; 0 = dense.

  # --- Optimiser (spec §6: Adam 1e-4, no schedule, no decay, no clipping); ssc_jax/optim.py. ---
  c.optimizer = ml_collections.ConfigDict()
  c.optimizer.name = "adam"  # "adam", "adamw", "lamb" or "lars".
  c.optimizer.learning_rate = 1e-4  # Peak lr at reference_batch_size views (see lr_scaling).
  c.optimizer.schedule = "constant"  # "constant", "warmup_cosine" or "warmup_linear" (to 0).
  c.optimizer.warmup_steps = 0  # Linear warm-up from 0 (warmup_* schedules).
  c.optimizer.lr_scaling = "none"  # "none", "linear" or "sqrt" in (B·N / reference_batch_size).
  c.optimizer.reference_batch_size = 256  # Views per global batch that learning_rate is for.
  c.optimizer.weight_decay = 0.0  # Decoupled decay of kernels (adamw, lamb, lars); not biases/BN.
  c.optimizer.grad_clip_norm = 0.0  # > 0: clip the global gradient norm to this first.
  c.optimizer.b1 = 0.9  # Adam-family first-moment decay.
  c.optimizer.b2 = 0.999  # Adam-family second-moment decay.
  c.optimizer.eps = 1e-8  # Adam-family epsilon.
  c.optimizer.momentum = 0.9  # LARS momentum.
  c.optimizer.trust_coefficient = 0.001  # LARS trust coefficient η.

  # --- Loop, logging, checkpoints. ---
  c.train = ml_collections.ConfigDict()
  c.train.total_steps = 200_000
  c.train.log_every_steps = 50  # Progress line + TensorBoard/JSONL metrics.
  c.train.checkpoint_every_steps = 1000
  # Also save when this many minutes passed since the last save (checked at log steps); 0 = off.
  c.train.checkpoint_every_minutes = 30.0
  c.train.keep_checkpoints = 3  # Orbax keeps this many most recent steps.
  # Resume a workdir whose saved config differs in fields that change the math.
  c.train.allow_config_change = False
  # Debug: append each host batch's sha256 to DIR/batch_hashes.<process>.jsonl.
  c.train.record_batch_hashes = False
  # Validation (spec §2.6): the loss and its SSL/SL components (val_loss, val_ssl_loss,
  # val_sl_loss in TensorBoard/metrics.jsonl) on a fixed held-out set, in inference mode, with
  # a fixed augmentation key; data_pipelines/pretrain_input.py `ValidationInput`.
  c.train.eval_every_steps = 0  # Validate every this many steps; 0 = off.
  c.train.eval_batches = 8  # Global batches (data.batch_size items each) of the fixed set.
  c.train.eval_labeled_split = "validation"  # Split of data.labeled validated on.
  c.train.eval_unlabeled_split = "validation"  # Split of data.unlabeled validated on.

  # --- Multi-process start-up (spec: jax.distributed only when asked). ---
  c.distributed = distributed()

  # --- Probes run by ssc_jax.main after pretraining (the demo uses them). ---
  c.evaluate = ml_collections.ConfigDict()
  # True: probe every entry of `probes` for the trained encoder and for a random-init
  # reference, print the comparison table and write DIR/probe_results.md.
  c.evaluate.probe = False
  # Label set -> a configs/probe.py config (`pretrained` and `data.data_dir` are filled in).
  c.evaluate.probes = ml_collections.ConfigDict()
  # The random-init reference's BatchNorm recalibration batches (0 would be degenerate).
  c.evaluate.reference_recalibrate_batchnorm_batches = REFERENCE_RECALIBRATION_BATCHES
  return c


def distributed() -> ml_collections.ConfigDict:
  """The multi-process start-up section of every config (spec: jax.distributed only when asked)."""
  c = ml_collections.ConfigDict()
  c.initialize = False  # True: jax.distributed.initialize() (auto-detects TPU/SLURM).
  c.coordinator_address = ""  # host:port; "" = auto-detect from the cluster.
  c.num_processes = 0  # 0 = auto-detect.
  c.process_id = -1  # -1 = auto-detect.
  return c
