"""Downstream probe of a frozen encoder: `run(config, workdir)`, read top to bottom (spec §7).

  python -m ssc_jax.main --config=configs/probe.py:<task> --workdir=DIR \
      --config.pretrained=PRETRAIN_WORKDIR_OR_MSGPACK

1. Load the task's facts and the encoder (exported msgpack or a pretraining workdir); for a
   random-init reference (`random_init`), the same architecture at its initialisation, with
   BatchNorm statistics optionally recalibrated on training audio (`evaluation.batchnorm`).
2. Embed each split ONCE with the frozen encoder in inference mode, on all devices: training
   clips as cached chunks, validation and test tracks as chunk means (first 64 chunks).
3. Train the head (linear or MLP, bias-free by default) with Adam + coupled L2, early stopping
   on the validation loss, best head restored, optionally on standardised features (training
   split statistics, stored with the head); optionally a learning-rate grid picked on the
   validation headline metric (MARBLE). The results record whether the head trained.
4. The evaluators, each taking the one frozen `ProbeContext`: test scoring (every test track
   exactly once), the robustness sweep (corrupted test audio), prototypes, figures. Then
   results.{json,md,csv}, predictions.npz and TensorBoard summaries.

Caching vs the original: the original re-encodes a random crop of every clip in every epoch,
so the encoder runs epochs × n_train times. Here it runs once per cached chunk (≤
`data.train_max_chunks` per clip) and the head then trains on those representations; each
epoch draws one cached chunk per clip. `results.json` records both counts under
`training.encoder_forwards` (see docs/evaluation.md for measured times).
`probe.train_features = "fresh_crops"` restores the original's behaviour.

Several runs in one process (the demo's label sets, for two encoders) can share prepared
encoders and split features through one `Memo`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import time
from collections.abc import Callable, Hashable
from typing import Any

from absl import logging
from clu import metric_writers
import flax.serialization
import jax
import ml_collections
import numpy as np

from ssc_jax import models
from ssc_jax import parallel
from ssc_jax import paths
from ssc_jax.evaluation import batchnorm
from ssc_jax.evaluation import features
from ssc_jax.evaluation import head_training
from ssc_jax.evaluation import key_score
from ssc_jax.evaluation import metrics
from ssc_jax.evaluation import plots
from ssc_jax.evaluation import prototypes
from ssc_jax.evaluation import reports
from ssc_jax.evaluation import robustness
from ssc_jax.inference import embedding as embed
from ssc_jax.inference import pretrained

HEAD_FILE = "head.msgpack"
HEAD_FORMAT = "ssc_jax.probe_head/1"


# ------------------------------------------------------------------------------ checks ---
def check_config(config: ml_collections.ConfigDict) -> None:
  """Refuses a bad probe config before any work, naming the field."""
  if config.get("job", "probe") != "probe":
    raise ValueError(f"config.job is {config.job!r}; the probe runs configs with job='probe'.")
  if not config.pretrained:
    raise ValueError("config.pretrained is empty; pass --config.pretrained=<pretraining workdir "
                     "or encoder.msgpack>.")
  if config.probe.train_features not in ("cached", "fresh_crops"):
    raise ValueError("config.probe.train_features must be 'cached' or 'fresh_crops', got "
                     f"{config.probe.train_features!r}.")
  if config.report.projection not in ("tsne", "pca", "none"):
    raise ValueError("config.report.projection must be 'tsne', 'pca' or 'none', got "
                     f"{config.report.projection!r}.")
  for field in ("max_chunks", "train_max_chunks"):
    if config.data[field] < 1:
      raise ValueError(f"config.data.{field} must be >= 1, got {config.data[field]}.")
  if config.probe.recalibrate_batchnorm_batches < 0:
    raise ValueError("config.probe.recalibrate_batchnorm_batches must be >= 0 (0 = off), got "
                     f"{config.probe.recalibrate_batchnorm_batches}.")
  features.check_batch_size(config.data.batch_size)
  if config.robustness.enabled:
    features.check_batch_size(config.robustness.tracks_per_batch,
                              "config.robustness.tracks_per_batch")
  if any(lr <= 0 for lr in (config.probe.learning_rate, *config.probe.learning_rates)):
    raise ValueError("config.probe learning rates must be > 0.")


def _encoder_name(config: ml_collections.ConfigDict) -> str:
  if config.name:
    return config.name
  path = paths.resolve(config.pretrained)
  if path.is_file():
    name = path.parent.name if path.stem == "encoder" else f"{path.parent.name}/{path.stem}"
  else:
    name = path.name
  return f"{name} (random init)" if config.random_init else name


def _head_description(cfg: head_training.HeadConfig) -> str:
  shape = f"MLP {cfg.hidden}" if cfg.hidden else "linear"
  extras = ["bias" if cfg.use_bias else "no bias"]
  if cfg.dropout:
    extras.append(f"dropout {cfg.dropout:g}")
  return f"{shape} ({', '.join(extras)})"


class Memo:
  """Values shared by several `run` calls in one process: prepared encoders and split
  features, each keyed by everything it depends on."""

  def __init__(self) -> None:
    self._values: dict[Hashable, Any] = {}

  def get(self, key: Hashable, compute: Callable[[], Any]) -> Any:
    if key not in self._values:
      self._values[key] = compute()
    return self._values[key]


# ------------------------------------------------------------------ what is probed ---
@dataclasses.dataclass(frozen=True)
class Task:
  """The downstream task's facts, read once from the config and the dataset.

  Attributes:
    name, dataset, label_key, train_split, validation_split, test_split: from `config.task`.
    data_dir: the resolved TFDS data dir.
    kind: "multilabel", "multiclass" or "regression".
    num_outputs: K.
    names: the K class (or target) names.
    key_names: the classes are musical keys (the weighted key score applies).
    num_tracks: {'train', 'validation', 'test'} -> tracks in the split.
    sample_rate: Hz the audio is stored at (None: the dataset does not say).
  """
  name: str
  dataset: str
  label_key: str
  train_split: str
  validation_split: str
  test_split: str
  data_dir: str
  kind: str
  num_outputs: int
  names: tuple[str, ...]
  key_names: bool
  num_tracks: dict[str, int]
  sample_rate: int | None


def load_task(config: ml_collections.ConfigDict) -> Task:
  """Reads the task's label kind, class names and split sizes from its prepared dataset."""
  from data_pipelines import datasets  # pylint: disable=g-import-not-at-top
  task = config.task
  data_dir = datasets.resolve_data_dir(config.data.get("data_dir"))
  builder = datasets.get_builder(task.dataset, data_dir)
  num_tracks = {name: datasets.split_num_examples(builder, split) for name, split in
                (("train", task.train_split), ("validation", task.validation_split),
                 ("test", task.test_split))}
  num_outputs, kind, names = datasets.label_info(builder, task.label_key)
  rate = (builder.info.metadata or {}).get("sample_rate")
  return Task(name=task.name, dataset=task.dataset, label_key=task.label_key,
              train_split=task.train_split, validation_split=task.validation_split,
              test_split=task.test_split, data_dir=data_dir, kind=kind,
              num_outputs=num_outputs, names=tuple(names),
              key_names=kind == metrics.MULTICLASS and key_score.are_key_names(names),
              num_tracks=num_tracks,
              sample_rate=None if rate is None else int(rate))


# ------------------------------------------------------------------------ the encoder ---
def encoder_sha256(variables: Any) -> str:
  """sha256 over the variables' paths and bytes (what a trained head depends on)."""
  digest = hashlib.sha256()
  for path, leaf in jax.tree_util.tree_flatten_with_path(variables)[0]:
    digest.update(jax.tree_util.keystr(path).encode())
    digest.update(np.ascontiguousarray(jax.device_get(leaf)).tobytes())
  return digest.hexdigest()


def _training_audio(config: ml_collections.ConfigDict, task: Task, view_length: int):
  """This host's share of batches of random training crops, forever: {'audio' [B_host, T],
  'labels' [B_host, K]}."""
  from data_pipelines import probe_input  # pylint: disable=g-import-not-at-top
  return probe_input.make_probe_train_dataset(
      task.dataset, task.train_split, task.data_dir, task.label_key,
      batch_size=config.data.batch_size // jax.process_count(), view_length=view_length,
      seed=config.seed, process_index=jax.process_index(), process_count=jax.process_count(),
  ).as_numpy_iterator()


def load_encoder(config: ml_collections.ConfigDict, task: Task,
                 mesh: jax.sharding.Mesh) -> tuple[pretrained.PretrainedEncoder, int]:
  """The encoder to probe, prepared as the config asks.

  `config.random_init`: the pretrained encoder's architecture with fresh variables (seeded by
  `config.seed`). `config.probe.recalibrate_batchnorm_batches` > 0: BatchNorm running
  statistics averaged over that many train-mode batches of random training crops.

  Returns:
    (encoder, view_length).
  """
  encoder = pretrained.load_pretrained(config.pretrained, config.dtype)
  if task.sample_rate is not None and task.sample_rate != encoder.sample_rate:
    raise ValueError(f"{task.dataset} is stored at {task.sample_rate} Hz but the encoder "
                     f"({encoder.source}) was trained at {encoder.sample_rate} Hz.")
  view_length = config.data.view_length or encoder.view_length
  models.check_view_length(encoder.model_config.encoder, view_length)
  if config.random_init:
    variables = jax.device_get(models.init_variables(encoder.model, jax.random.key(config.seed),
                                                     view_length))
    encoder = dataclasses.replace(
        encoder, variables=variables, card=None,
        source=f"{encoder.source} architecture at random init (seed {config.seed})")
  batches = config.probe.recalibrate_batchnorm_batches
  if batches:
    audio = (b["audio"] for b in _training_audio(config, task, view_length))
    variables = batchnorm.recalibrate(encoder.model, encoder.variables, mesh, audio, batches)
    encoder = dataclasses.replace(
        encoder, variables=variables,
        source=f"{encoder.source}, BatchNorm recalibrated on {batches} batches of "
               f"{task.dataset}:{task.train_split}")
    logging.info("BatchNorm statistics recalibrated on %d batches of %d training crops.",
                 batches, config.data.batch_size)
  return encoder, view_length


# -------------------------------------------------------------------------- head files ---
def head_fingerprint(config: ml_collections.ConfigDict, encoder: pretrained.PretrainedEncoder,
                     sha256: str | None = None) -> dict[str, Any]:
  """What a trained head depends on: the encoder (source and a hash of its variables) and the
  head's settings (`config.probe` without `reuse_head`, and the seed)."""
  probe = {k: v for k, v in config.probe.to_dict().items() if k != "reuse_head"}
  return {"encoder": encoder.source,
          "encoder_sha256": sha256 or encoder_sha256(encoder.variables),
          "probe": json.loads(json.dumps(probe, default=str)), "seed": config.seed}


def _fingerprint_changes(saved: dict[str, Any] | None, current: dict[str, Any]) -> list[str]:
  """Names of the fingerprint entries that differ (all of them for a head saved without one)."""
  if not saved:
    return sorted(current)
  return [k for k in sorted(current) if saved.get(k) != current[k]]


def save_head(path: paths.PathLike, head: head_training.TrainedHead,
              info: dict[str, Any]) -> None:
  """Writes the head params, its feature statistics and its config/training info to one
  msgpack file."""
  tree = {"params": jax.tree.map(np.asarray, head.params),
          "meta": {"format": HEAD_FORMAT,
                   "head_config": json.dumps(dataclasses.asdict(head.config)),
                   "info": json.dumps(info, default=reports.json_default)}}
  if head.standardizer is not None:
    tree["standardizer"] = head.standardizer.to_dict()
  paths.write_atomic(path, flax.serialization.msgpack_serialize(tree))


def load_head(path: paths.PathLike) -> tuple[head_training.TrainedHead, dict[str, Any]]:
  """Reads `save_head`'s file: (the head with its feature statistics, training info)."""
  tree = flax.serialization.msgpack_restore(paths.resolve(path).read_bytes())
  meta = tree.get("meta", {}) if isinstance(tree, dict) else {}
  if meta.get("format") != HEAD_FORMAT:
    raise ValueError(f"{path}: not an ssc_jax probe head (expected format {HEAD_FORMAT}).")
  info = json.loads(meta["info"])
  std = tree.get("standardizer")
  head = head_training.TrainedHead(
      config=head_training.HeadConfig(**json.loads(meta["head_config"])), params=tree["params"],
      best_epoch=info["best_epoch"], best_val_loss=info["best_val_loss"],
      epochs_run=info["epochs_run"], stopped_early=info["stopped_early"],
      history=info["history"],
      initial_train_loss=info.get("convergence", {}).get("train_loss_initial", math.nan),
      standardizer=head_training.Standardizer.from_dict(std) if std is not None else None)
  return head, info


# --------------------------------------------------------------------- split features ---
@dataclasses.dataclass(frozen=True)
class _Embedder:
  """Embeds the task's splits with one prepared encoder, through the memo."""
  config: ml_collections.ConfigDict
  task: Task
  encoder: pretrained.PretrainedEncoder
  variables: Any  # encoder.variables replicated over `mesh`.
  sha256: str  # encoder_sha256(encoder.variables).
  mesh: jax.sharding.Mesh
  view_length: int
  memo: Memo
  row_fn: Any

  @classmethod
  def prepare(cls, config: ml_collections.ConfigDict, task: Task, mesh: jax.sharding.Mesh,
              memo: Memo) -> _Embedder:
    """Loads (or takes from the memo) the encoder the config asks for."""
    key = ("encoder", str(config.pretrained), config.dtype, config.random_init, config.seed,
           config.probe.recalibrate_batchnorm_batches, task.dataset, task.data_dir,
           task.train_split, config.data.batch_size, config.data.view_length)

    def load():
      encoder, view_length = load_encoder(config, task, mesh)
      return encoder, view_length, encoder_sha256(encoder.variables)

    encoder, view_length, sha256 = memo.get(key, load)
    model = encoder.model
    architecture = json.dumps(encoder.model_config.to_dict(), sort_keys=True)
    return cls(config=config, task=task, encoder=encoder,
               variables=memo.get(("replicated", sha256),
                                  lambda: embed.replicate(encoder.variables, mesh)),
               sha256=sha256, mesh=mesh, view_length=view_length, memo=memo,
               row_fn=memo.get(("row_fn", architecture),
                               lambda: features.make_row_fn(model, mesh)))

  def split(self, split: str, max_chunks: int, keep_chunks: bool = False
            ) -> features.SplitFeatures:
    """Every track of `split` once, labelled with the task's label key."""
    from data_pipelines import probe_input  # pylint: disable=g-import-not-at-top
    task = self.task
    key = ("features", self.sha256, task.dataset, task.data_dir, split, self.view_length,
           max_chunks, keep_chunks, self.config.data.batch_size)
    feats, label_key = self.memo.get(key, lambda: (features.embed_split(
        self.encoder.model, self.variables, self.mesh, dataset=task.dataset, split=split,
        data_dir=task.data_dir, label_key=task.label_key,
        batch_size=self.config.data.batch_size, view_length=self.view_length,
        max_chunks=max_chunks, keep_chunks=keep_chunks, row_fn=self.row_fn), task.label_key))
    if label_key == task.label_key:
      return feats
    labels = self.memo.get(("labels", task.dataset, task.data_dir, split, task.label_key),
                           lambda: probe_input.split_labels(task.dataset, split, task.data_dir,
                                                            task.label_key))
    return dataclasses.replace(feats, labels=labels)


# ---------------------------------------------------------------------- head training ---
def _sampler(config, embedder: _Embedder, train_feats, n_train) -> head_training.EpochSampler:
  """The epoch sampler for the configured training features."""
  if config.probe.train_features == "cached":
    return head_training.cached_crop_sampler(train_feats.chunk_h, train_feats.chunk_owner,
                                             train_feats.labels)
  host_batches = _training_audio(config, embedder.task, embedder.view_length)
  crop_fn = features.make_crop_fn(embedder.encoder.model, embedder.mesh)
  num_batches = math.ceil(n_train / config.data.batch_size)
  rows = np.arange(n_train)

  def sample(epoch, rng):
    del epoch, rng
    h, y = features.embed_crops(crop_fn, embedder.variables, embedder.mesh, host_batches,
                                num_batches)
    return h, y, rows

  return sample


def fit_head(config: ml_collections.ConfigDict, task: Task,
             sampler: head_training.EpochSampler, val_feats: features.SplitFeatures,
             writer: Any, standardizer: head_training.Standardizer | None = None
             ) -> tuple[head_training.TrainedHead, dict[str, Any]]:
  """Trains one head per learning rate (one, or the grid) and keeps the best on validation."""
  grid = tuple(config.probe.learning_rates) or (config.probe.learning_rate,)
  val_metric = metrics.PRIMARY_METRIC[task.kind]
  best, search = None, []
  for lr in grid:
    cfg = head_training.HeadConfig.from_probe_config(config.probe, task.kind, task.num_outputs,
                                                     config.seed, learning_rate=lr)
    prefix = "probe" if len(grid) == 1 else f"probe_lr{lr:g}"

    def log(record, prefix=prefix):
      writer.write_scalars(record["epoch"], {f"{prefix}/train_loss": record["train_loss"],
                                             f"{prefix}/val_loss": record["val_loss"]})
    head = head_training.train_head(cfg, sampler, val_feats.track_h, val_feats.labels,
                                    on_epoch=log, standardizer=standardizer)
    value = metrics.task_metrics(task.kind, head.predict(val_feats.track_h), val_feats.labels,
                                 task.names, key_names=task.key_names)[val_metric]
    search.append({"learning_rate": lr, "val_metric": value, "best_val_loss": head.best_val_loss,
                   "best_epoch": head.best_epoch, "epochs_run": head.epochs_run,
                   "relative_drop": head.convergence()["relative_drop"]})
    logging.info("Probe lr %g: best epoch %d/%d, val loss %.4f, val %s %.4f.", lr,
                 head.best_epoch, head.epochs_run, head.best_val_loss, val_metric, value)
    if best is None or (np.isfinite(value) and not value <= best[1]):
      best = (head, value)
  head = best[0]
  convergence = head.convergence()
  if convergence["barely_trained"]:
    remedy = ("a larger probe.learning_rate or probe.max_epochs" if standardizer is not None
              else "probe.standardize=True or a larger probe.learning_rate")
    logging.warning("The probe head barely trained (training loss %.4f -> %.4f, best epoch "
                    "%d of %d): the probe measures the optimiser more than the features. Try "
                    "%s (docs/evaluation.md).", convergence["train_loss_initial"],
                    convergence["train_loss_final"], head.best_epoch, head.epochs_run, remedy)
  info = {"learning_rate": head.config.learning_rate, "best_epoch": head.best_epoch,
          "epochs_run": head.epochs_run, "stopped_early": head.stopped_early,
          "best_val_loss": head.best_val_loss, "val_metric_name": val_metric,
          "val_metric": best[1], "history": head.history, "convergence": convergence,
          "standardized": standardizer is not None,
          "total_epochs": sum(r["epochs_run"] for r in search),
          "lr_search": search if len(grid) > 1 else []}
  return head, info


def _reusable_head(config: ml_collections.ConfigDict, task: Task, head_path: Any,
                   fingerprint: dict[str, Any]
                   ) -> tuple[head_training.TrainedHead, dict[str, Any]] | None:
  """The head in `head_path` if it was trained for this task, encoder and settings; None when
  there is none or it must be retrained (with a warning saying why)."""
  if not head_path.is_file():
    return None
  head, info = load_head(head_path)
  if head.config.num_outputs != task.num_outputs or head.config.kind != task.kind:
    raise ValueError(f"{head_path} was trained for {head.config.kind} "
                     f"K={head.config.num_outputs}, not {task.name} ({task.kind}, "
                     f"K={task.num_outputs}); use a new workdir.")
  changed = _fingerprint_changes(info.get("fingerprint"), fingerprint)
  if changed:
    logging.warning("Retraining the probe head: %s was trained with another %s than this run "
                    "(encoder %s).", head_path, " and ".join(changed), fingerprint["encoder"])
    return None
  return head, info


def _train_new_head(config: ml_collections.ConfigDict, embedder: _Embedder,
                    train_feats: features.SplitFeatures | None,
                    val_feats: features.SplitFeatures, writer: Any
                    ) -> tuple[head_training.TrainedHead, dict[str, Any]]:
  """Fits the head (standardised on the training chunks if asked) and records its training."""
  standardizer = None
  if config.probe.standardize:
    standardizer = head_training.Standardizer.fit(train_feats.chunk_h)
  n_train = embedder.task.num_tracks["train"]
  sampler = _sampler(config, embedder, train_feats, n_train)
  head, info = fit_head(config, embedder.task, sampler, val_feats, writer, standardizer)
  cached = config.probe.train_features == "cached"
  info["features"] = config.probe.train_features
  # Encoder forward passes over training audio: what this run did, and what re-encoding a
  # fresh crop of every clip in every epoch (the original) would have cost.
  embedded = len(train_feats.chunk_h) if cached or standardizer is not None else 0
  reencode = info["total_epochs"] * n_train
  info["encoder_forwards"] = {"this_run": embedded + (0 if cached else reencode),
                              "re_encoding_every_epoch": reencode}
  return head, info


# ------------------------------------------------------------- context and evaluators ---
@dataclasses.dataclass(frozen=True)
class ProbeContext:
  """Everything the evaluators read, fixed once the head is trained.

  Attributes:
    config: the probe config.
    workdir: the output directory.
    task: the task's facts.
    encoder: the probed encoder (its `variables` on the host).
    variables: the same variables replicated over `mesh`.
    mesh: the device mesh.
    view_length: T, samples per chunk.
    train: training split features with the chunk cache, or None when not embedded.
    test: test split features.
    head: the trained (or reused) head.
    writer: the TensorBoard/logging metric writer.
  """
  config: ml_collections.ConfigDict
  workdir: Any
  task: Task
  encoder: pretrained.PretrainedEncoder
  variables: Any
  mesh: jax.sharding.Mesh
  view_length: int
  train: features.SplitFeatures | None
  test: features.SplitFeatures
  head: head_training.TrainedHead
  writer: Any


@dataclasses.dataclass(frozen=True)
class TestScores:
  """The head's outputs on every test track once: scores [n, K] and the metrics dict."""
  scores: np.ndarray
  metrics: dict[str, Any]


@dataclasses.dataclass(frozen=True, kw_only=True)
class _MetricRow:
  """A row of an evaluator's table: the fields that name it, then its metrics."""
  metrics: dict[str, Any]

  def to_dict(self) -> dict[str, Any]:
    """The flat row written to results.json: naming fields first, then the metrics."""
    names = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
             if f.name != "metrics"}
    return {**names, **self.metrics}


@dataclasses.dataclass(frozen=True, kw_only=True)
class LevelRow(_MetricRow):
  """Test metrics at one robustness level."""
  level: int
  name: str


@dataclasses.dataclass(frozen=True, kw_only=True)
class PrototypeRow(_MetricRow):
  """Prototype metrics at one labeled fraction."""
  fraction: float
  num_clips: int


def score_test(ctx: ProbeContext) -> TestScores:
  """Scores every test track exactly once."""
  task = ctx.task
  scores = ctx.head.predict(ctx.test.track_h)
  test_metrics = metrics.task_metrics(task.kind, scores, ctx.test.labels, task.names,
                                      key_names=task.key_names)
  if test_metrics.get("num_classes_unscored"):
    logging.warning("%d classes have no positive (or no negative) test track and are left out "
                    "of the macro averages: %s", test_metrics["num_classes_unscored"],
                    test_metrics["unscored_classes"])
  scalars = metrics.scalar_metrics(test_metrics)
  ctx.writer.write_scalars(ctx.head.epochs_run, {f"test/{k}": v for k, v in scalars.items()})
  logging.info("Test (%d tracks): %s", ctx.test.num_tracks,
               ", ".join(f"{k} {v:.4f}" for k, v in scalars.items()))
  return TestScores(scores=scores, metrics=test_metrics)


def evaluate_robustness(ctx: ProbeContext) -> list[LevelRow]:
  """The sweep: test metrics at each corruption level (spec §7.4)."""
  config, task = ctx.config, ctx.task
  levels = robustness.build_levels(tuple(config.robustness.levels), ctx.encoder.sample_rate)
  base_key = jax.random.fold_in(jax.random.key(config.seed), 7)
  rows = []
  for level in levels:
    h = robustness.corrupted_track_features(
        ctx.encoder.model, ctx.variables, ctx.mesh, level,
        jax.random.fold_in(base_key, level.index), dataset=task.dataset, split=task.test_split,
        data_dir=task.data_dir, label_key=task.label_key,
        tracks_per_batch=config.robustness.tracks_per_batch, view_length=ctx.view_length,
        max_chunks=config.data.max_chunks,
        row_batch_size=max(1, config.data.batch_size // jax.process_count()))
    m = metrics.scalar_metrics(metrics.task_metrics(
        task.kind, ctx.head.predict(h), ctx.test.labels, task.names, key_names=task.key_names))
    m = {k: v for k, v in m.items() if not k.startswith("num_")}
    rows.append(LevelRow(level=level.index, name=level.name, metrics=m))
    ctx.writer.write_scalars(level.index, {f"robustness/{k}": v for k, v in m.items()})
    logging.info("Robustness %s: %s", level.name, ", ".join(f"{k} {v:.4f}" for k, v in m.items()))
  return rows


def evaluate_prototypes(ctx: ProbeContext) -> list[PrototypeRow]:
  """Projection-space class prototypes at each labeled fraction (spec §7.5)."""
  model, variables = ctx.encoder.model, ctx.encoder.variables
  project_fn = jax.jit(lambda v, h: model.apply(v, h, method=lambda m, x: m.head(x)))
  rows = prototypes.evaluate(lambda h: np.asarray(project_fn(variables, h)), ctx.train,
                             ctx.test, ctx.task.kind, ctx.task.names,
                             tuple(ctx.config.prototypes.fractions), seed=ctx.config.seed)
  out = []
  for i, row in enumerate(rows):
    row = dict(row)
    out.append(PrototypeRow(fraction=row.pop("fraction"), num_clips=row.pop("num_clips"),
                            metrics=row))
    ctx.writer.write_scalars(i, {f"prototypes/{k}": v for k, v in row.items()
                                 if isinstance(v, float)})
  return out


def write_figures(ctx: ProbeContext, test: TestScores,
                  robustness_rows: list[LevelRow]) -> dict[str, str]:
  """Writes the PNGs (and TensorBoard images); returns {name: path}."""
  config, task, workdir = ctx.config, ctx.task, ctx.workdir
  figs = {"loss_curves": plots.loss_curves(ctx.head.history, str(workdir / "loss_curves.png"),
                                           ctx.head.best_epoch)}
  if config.report.projection != "none":
    figs["embedding_map"] = plots.embedding_map(
        ctx.test.track_h, ctx.test.labels, task.kind, task.names,
        str(workdir / "embedding_map.png"), method=config.report.projection,
        max_points=config.report.max_points, seed=config.seed,
        title=f"{task.name}: test embeddings ({config.report.projection.upper()})")
  if task.kind == metrics.MULTICLASS:
    figs["confusion_matrix"] = plots.confusion_matrix(
        test.scores, ctx.test.labels, task.names, str(workdir / "confusion_matrix.png"),
        title=f"{task.name}: confusion matrix (test)")
  if robustness_rows:
    rows = [r.to_dict() for r in robustness_rows]
    headline = [m for m in reports.HEADLINE[task.kind] if m in rows[0]]
    figs["robustness_curve"] = plots.robustness_curve(
        rows, headline, str(workdir / "robustness_curve.png"),
        title=f"{task.name}: robustness to corruptions")
  ctx.writer.write_images(0, {name: plots.read_png(p)[None] for name, p in figs.items()})
  return figs


def _results(ctx: ProbeContext, info: dict[str, Any], test: TestScores,
             robustness_rows: list[LevelRow], prototype_rows: list[PrototypeRow]
             ) -> dict[str, Any]:
  """The results dict written to results.json (read back by `reports`)."""
  config, task, encoder, head = ctx.config, ctx.task, ctx.encoder, ctx.head
  return {
      "name": _encoder_name(config), "task": task.name, "dataset": task.dataset,
      "label_key": task.label_key, "kind": task.kind, "num_classes": task.num_outputs,
      "class_names": list(task.names),
      "encoder": {"source": encoder.source, "model": encoder.model_config.to_dict(),
                  "card": encoder.card, "random_init": bool(config.random_init),
                  "batchnorm_recalibration_batches":
                      int(config.probe.recalibrate_batchnorm_batches)},
      "protocol": config.probe.protocol,
      "head": {**dataclasses.asdict(head.config), "description": _head_description(head.config),
               "standardized": head.standardizer is not None},
      "training": info, "view_length": ctx.view_length, "max_chunks": config.data.max_chunks,
      "num_tracks": task.num_tracks,
      "test": test.metrics, "unscored_classes": test.metrics.get("unscored_classes", []),
      "robustness": [r.to_dict() for r in robustness_rows],
      "prototypes": [r.to_dict() for r in prototype_rows],
      "config": json.loads(config.to_json_best_effort()),
  }


# ------------------------------------------------------------------------------- run ---
def run(config: ml_collections.ConfigDict, workdir: paths.PathLike, *,
        memo: Memo | None = None, print_report: bool = True) -> dict[str, Any]:
  """Probes a pretrained encoder on one task and writes the report to `workdir`.

  Args:
    config: a configs/probe.py config.
    workdir: output directory (created); a head.msgpack already there is reused when
      `config.probe.reuse_head` and it was trained on the same encoder with the same head
      settings (`head_fingerprint`); otherwise it is retrained, with a warning.
    memo: shares prepared encoders and split features with other runs in this process.
    print_report: print the markdown report to stdout.

  Returns:
    The results dict also written to `<workdir>/results.json`.
  """
  t_start = time.perf_counter()
  timing: dict[str, float] = {}
  is_writer = jax.process_index() == 0
  memo = memo or Memo()

  # --------------------------------------------------------- checks, task, encoder ---
  check_config(config)
  workdir = paths.resolve(workdir)
  workdir.mkdir(parents=True, exist_ok=True)
  task = load_task(config)
  if config.prototypes.enabled and task.kind == metrics.REGRESSION:
    raise ValueError(f"config.prototypes.enabled: task {task.name} is a regression task; "
                     "prototypes need class labels.")
  mesh = parallel.make_mesh()
  t = time.perf_counter()
  embedder = _Embedder.prepare(config, task, mesh, memo)
  encoder, view_length = embedder.encoder, embedder.view_length
  timing["encoder_s"] = time.perf_counter() - t
  logging.info("Probe %s on %s:%s (%s, K=%d) with %s; mesh %s.", task.name, task.dataset,
               task.label_key, task.kind, task.num_outputs, encoder.source, dict(mesh.shape))

  head_path = workdir / HEAD_FILE
  fingerprint = head_fingerprint(config, encoder, embedder.sha256)
  reused = None
  if config.probe.reuse_head:
    reused = _reusable_head(config, task, head_path, fingerprint)
  need_train_chunks = config.prototypes.enabled or (reused is None and (
      config.probe.train_features == "cached" or config.probe.standardize))

  # ------------------------------------------------------- embed each split once ---
  t = time.perf_counter()
  train_feats = val_feats = None
  if need_train_chunks:
    train_feats = embedder.split(task.train_split, config.data.train_max_chunks,
                                 keep_chunks=True)
  if reused is None:
    val_feats = embedder.split(task.validation_split, config.data.max_chunks)
  test_feats = embedder.split(task.test_split, config.data.max_chunks)
  timing["embed_splits_s"] = time.perf_counter() - t

  # --------------------------------------------------------------------- the head ---
  writer = metric_writers.create_default_writer(workdir, just_logging=not is_writer,
                                                asynchronous=False)
  t = time.perf_counter()
  if reused is not None:
    logging.info("Reusing the trained head in %s.", head_path)
    head, info = reused
  else:
    head, info = _train_new_head(config, embedder, train_feats, val_feats, writer)
    info["fingerprint"] = fingerprint
    if is_writer:
      save_head(head_path, head, info)
  timing["head_s"] = time.perf_counter() - t

  # ----------------------------------------------------------------- evaluators ---
  ctx = ProbeContext(config=config, workdir=workdir, task=task, encoder=encoder,
                     variables=embedder.variables, mesh=mesh, view_length=view_length,
                     train=train_feats, test=test_feats, head=head, writer=writer)
  test = score_test(ctx)
  robustness_rows = []
  if config.robustness.enabled:
    t = time.perf_counter()
    robustness_rows = evaluate_robustness(ctx)
    timing["robustness_s"] = time.perf_counter() - t
  prototype_rows = evaluate_prototypes(ctx) if config.prototypes.enabled else []

  # ------------------------------------------------------------------ report ---
  results = _results(ctx, info, test, robustness_rows, prototype_rows)
  if is_writer:
    paths.save_npz(workdir / "predictions.npz", track_index=np.arange(len(test.scores)),
                   scores=test.scores, targets=test_feats.labels,
                   chunks=test_feats.chunks_per_track, embeddings=test_feats.track_h)
    t = time.perf_counter()
    results["figures"] = write_figures(ctx, test, robustness_rows)
    timing["figures_s"] = time.perf_counter() - t
  timing["total_s"] = time.perf_counter() - t_start
  results["timing"] = timing
  if is_writer:
    text = reports.write_probe_report(workdir, results)
    if print_report:
      print(text, flush=True)
  writer.flush()
  writer.close()
  return results
