"""Downstream probe of a frozen encoder: `run(config, workdir)`, read top to bottom (spec §7).

  python -m ssc_jax.main --config=configs/probe.py:<task> --workdir=DIR \
      --config.pretrained=PRETRAIN_WORKDIR_OR_MSGPACK

1. Load the encoder (exported msgpack or a pretraining workdir) and the task's dataset.
2. Embed each split ONCE with the frozen encoder in inference mode, on all devices: training
   clips as cached chunks, validation and test tracks as chunk means (first 64 chunks).
3. Train the head (linear or MLP, bias-free by default) with Adam + coupled L2, early stopping
   on the validation loss, best head restored; optionally a learning-rate grid picked on the
   validation headline metric (MARBLE).
4. Score every test track exactly once; write results.{json,md,csv}, predictions.npz, figures
   and TensorBoard summaries.
5. Optionally: the robustness sweep (corrupted test audio) and prototype evaluation.

Caching vs the original: the original re-encodes a random crop of every clip in every epoch,
so the encoder runs epochs × n_train times. Here it runs once per cached chunk (≤
`data.train_max_chunks` per clip) and the head then trains on those representations; each
epoch draws one cached chunk per clip. `results.json` records both counts under
`training.encoder_forwards` (see docs/evaluation.md for measured times).
`probe.train_features = "fresh_crops"` restores the original's behaviour.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import time
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
    return path.parent.name if path.stem == "encoder" else f"{path.parent.name}/{path.stem}"
  return path.name


def _head_description(cfg: head_training.HeadConfig) -> str:
  shape = f"MLP {cfg.hidden}" if cfg.hidden else "linear"
  extras = ["bias" if cfg.use_bias else "no bias"]
  if cfg.dropout:
    extras.append(f"dropout {cfg.dropout:g}")
  return f"{shape} ({', '.join(extras)})"


# -------------------------------------------------------------------------- head files ---
def head_fingerprint(config: ml_collections.ConfigDict,
                     encoder: pretrained.PretrainedEncoder) -> dict[str, Any]:
  """What a trained head depends on: the encoder (source and a hash of its variables) and the
  head's settings (`config.probe` without `reuse_head`, and the seed)."""
  digest = hashlib.sha256()
  for path, leaf in jax.tree_util.tree_flatten_with_path(encoder.variables)[0]:
    digest.update(jax.tree_util.keystr(path).encode())
    digest.update(np.ascontiguousarray(jax.device_get(leaf)).tobytes())
  probe = {k: v for k, v in config.probe.to_dict().items() if k != "reuse_head"}
  return {"encoder": encoder.source, "encoder_sha256": digest.hexdigest(),
          "probe": json.loads(json.dumps(probe, default=str)), "seed": config.seed}


def _fingerprint_changes(saved: dict[str, Any] | None, current: dict[str, Any]) -> list[str]:
  """Names of the fingerprint entries that differ (all of them for a head saved without one)."""
  if not saved:
    return sorted(current)
  return [k for k in sorted(current) if saved.get(k) != current[k]]


def save_head(path: paths.PathLike, head: head_training.TrainedHead,
              info: dict[str, Any]) -> None:
  """Writes the head params and its config/training info to one msgpack file."""
  tree = {"params": jax.tree.map(np.asarray, head.params),
          "meta": {"format": HEAD_FORMAT,
                   "head_config": json.dumps(dataclasses.asdict(head.config)),
                   "info": json.dumps(info, default=reports.json_default)}}
  paths.write_atomic(path, flax.serialization.msgpack_serialize(tree))


def load_head(path: paths.PathLike) -> tuple[head_training.HeadConfig, Any, dict[str, Any]]:
  """Reads `save_head`'s file: (HeadConfig, params, training info)."""
  tree = flax.serialization.msgpack_restore(paths.resolve(path).read_bytes())
  meta = tree.get("meta", {}) if isinstance(tree, dict) else {}
  if meta.get("format") != HEAD_FORMAT:
    raise ValueError(f"{path}: not an ssc_jax probe head (expected format {HEAD_FORMAT}).")
  return (head_training.HeadConfig(**json.loads(meta["head_config"])), tree["params"],
          json.loads(meta["info"]))


# ---------------------------------------------------------------------- head training ---
def _sampler(config, model, variables, mesh, train_feats, n_train, view_length):
  """The epoch sampler for the configured training features."""
  if config.probe.train_features == "cached":
    return head_training.cached_crop_sampler(train_feats.chunk_h, train_feats.chunk_owner,
                                             train_feats.labels)
  from data_pipelines import probe_input  # pylint: disable=g-import-not-at-top
  batch = config.data.batch_size
  host_batches = probe_input.make_probe_train_dataset(
      config.task.dataset, config.task.train_split, config.data.data_dir, config.task.label_key,
      batch_size=batch // jax.process_count(), view_length=view_length, seed=config.seed,
      process_index=jax.process_index(), process_count=jax.process_count(),
  ).as_numpy_iterator()
  crop_fn = features.make_crop_fn(model, mesh)
  num_batches = math.ceil(n_train / batch)
  rows = np.arange(n_train)

  def sample(epoch, rng):
    del epoch, rng
    h, y = features.embed_crops(crop_fn, variables, mesh, host_batches, num_batches)
    return h, y, rows

  return sample


def fit_head(config, kind, num_outputs, names, sampler, val_feats, writer
             ) -> tuple[head_training.TrainedHead, dict[str, Any]]:
  """Trains one head per learning rate (one, or the grid) and keeps the best on validation."""
  grid = tuple(config.probe.learning_rates) or (config.probe.learning_rate,)
  val_metric = metrics.PRIMARY_METRIC[kind]
  key_names = key_score.are_key_names(names)
  best, search = None, []
  for lr in grid:
    cfg = head_training.HeadConfig.from_probe_config(config.probe, kind, num_outputs,
                                                     config.seed, learning_rate=lr)
    prefix = "probe" if len(grid) == 1 else f"probe_lr{lr:g}"

    def log(record, prefix=prefix):
      writer.write_scalars(record["epoch"], {f"{prefix}/train_loss": record["train_loss"],
                                             f"{prefix}/val_loss": record["val_loss"]})
    head = head_training.train_head(cfg, sampler, val_feats.track_h, val_feats.labels,
                                    on_epoch=log)
    val_scores = head_training.predict(cfg, head.params, val_feats.track_h)
    value = metrics.task_metrics(kind, val_scores, val_feats.labels, names,
                                 key_names=key_names)[val_metric]
    search.append({"learning_rate": lr, "val_metric": value, "best_val_loss": head.best_val_loss,
                   "best_epoch": head.best_epoch, "epochs_run": head.epochs_run})
    logging.info("Probe lr %g: best epoch %d/%d, val loss %.4f, val %s %.4f.", lr,
                 head.best_epoch, head.epochs_run, head.best_val_loss, val_metric, value)
    if best is None or (np.isfinite(value) and not value <= best[1]):
      best = (head, value)
  head = best[0]
  info = {"learning_rate": head.config.learning_rate, "best_epoch": head.best_epoch,
          "epochs_run": head.epochs_run, "stopped_early": head.stopped_early,
          "best_val_loss": head.best_val_loss, "val_metric_name": val_metric,
          "val_metric": best[1], "history": head.history,
          "total_epochs": sum(r["epochs_run"] for r in search),
          "lr_search": search if len(grid) > 1 else []}
  return head, info


# ------------------------------------------------------------------------------- run ---
def run(config: ml_collections.ConfigDict, workdir: paths.PathLike) -> dict[str, Any]:
  """Probes a pretrained encoder on one task and writes the report to `workdir`.

  Args:
    config: a configs/probe.py config.
    workdir: output directory (created); a head.msgpack already there is reused when
      `config.probe.reuse_head` and it was trained on the same encoder with the same head
      settings (`head_fingerprint`); otherwise it is retrained, with a warning.

  Returns:
    The results dict also written to `<workdir>/results.json`.
  """
  from data_pipelines import datasets  # pylint: disable=g-import-not-at-top
  t_start = time.perf_counter()
  timing: dict[str, float] = {}
  is_writer = jax.process_index() == 0

  # --------------------------------------------------------- checks, data, encoder ---
  check_config(config)
  workdir = paths.resolve(workdir)
  workdir.mkdir(parents=True, exist_ok=True)
  task = config.task
  data_dir = datasets.resolve_data_dir(config.data.get("data_dir"))
  builder = datasets.get_builder(task.dataset, data_dir)
  num_tracks = {name: datasets.split_num_examples(builder, split) for name, split in
                (("train", task.train_split), ("validation", task.validation_split),
                 ("test", task.test_split))}
  num_outputs, kind, names = datasets.label_info(builder, task.label_key)
  key_names = kind == metrics.MULTICLASS and key_score.are_key_names(names)
  if config.prototypes.enabled and kind == metrics.REGRESSION:
    raise ValueError(f"config.prototypes.enabled: task {task.name} is a regression task; "
                     "prototypes need class labels.")
  encoder = pretrained.load_pretrained(config.pretrained, config.dtype)
  data_rate = int((builder.info.metadata or {}).get("sample_rate", encoder.sample_rate))
  if data_rate != encoder.sample_rate:
    raise ValueError(f"{task.dataset} is stored at {data_rate} Hz but the encoder "
                     f"({encoder.source}) was trained at {encoder.sample_rate} Hz.")
  view_length = config.data.view_length or encoder.view_length
  models.check_view_length(encoder.model_config.encoder, view_length)
  model = encoder.model
  mesh = parallel.make_mesh()
  variables = embed.replicate(encoder.variables, mesh)
  logging.info("Probe %s on %s:%s (%s, K=%d) with %s; mesh %s.", task.name, task.dataset,
               task.label_key, kind, num_outputs, encoder.source, dict(mesh.shape))

  head_path = workdir / HEAD_FILE
  fingerprint = head_fingerprint(config, encoder)
  reuse = bool(config.probe.reuse_head) and head_path.is_file()
  if reuse:
    head_cfg, head_params, info = load_head(head_path)
    if head_cfg.num_outputs != num_outputs or head_cfg.kind != kind:
      raise ValueError(f"{head_path} was trained for {head_cfg.kind} K={head_cfg.num_outputs}, "
                       f"not {task.name} ({kind}, K={num_outputs}); use a new workdir.")
    changed = _fingerprint_changes(info.get("fingerprint"), fingerprint)
    if changed:
      logging.warning("Retraining the probe head: %s was trained with another %s than this "
                      "run (encoder %s).", head_path, " and ".join(changed), encoder.source)
      reuse = False
  cached = config.probe.train_features == "cached"
  need_train_chunks = (not reuse and cached) or config.prototypes.enabled
  split_kwargs = dict(dataset=task.dataset, data_dir=data_dir, label_key=task.label_key,
                      batch_size=config.data.batch_size, view_length=view_length,
                      row_fn=features.make_row_fn(model, mesh))

  # ------------------------------------------------------- embed each split once ---
  t = time.perf_counter()
  train_feats = val_feats = None
  n_train = num_tracks["train"]
  if need_train_chunks:
    train_feats = features.embed_split(model, variables, mesh, split=task.train_split,
                                       max_chunks=config.data.train_max_chunks,
                                       keep_chunks=True, **split_kwargs)
  if not reuse:
    val_feats = features.embed_split(model, variables, mesh, split=task.validation_split,
                                     max_chunks=config.data.max_chunks, **split_kwargs)
  test_feats = features.embed_split(model, variables, mesh, split=task.test_split,
                                    max_chunks=config.data.max_chunks, **split_kwargs)
  timing["embed_splits_s"] = time.perf_counter() - t

  # --------------------------------------------------------------------- the head ---
  writer = metric_writers.create_default_writer(workdir, just_logging=not is_writer,
                                                asynchronous=False)
  t = time.perf_counter()
  if reuse:
    logging.info("Reusing the trained head in %s.", head_path)
  else:
    sampler = _sampler(config, model, variables, mesh, train_feats, n_train, view_length)
    head, info = fit_head(config, kind, num_outputs, names, sampler, val_feats, writer)
    head_cfg, head_params = head.config, head.params
    train_chunks = int(len(train_feats.chunk_h)) if train_feats is not None and cached else 0
    info["features"] = config.probe.train_features
    info["fingerprint"] = fingerprint
    # Encoder forward passes over training audio: what this run did, and what re-encoding a
    # fresh crop of every clip in every epoch (the original) would have cost.
    reencode = info["total_epochs"] * n_train
    info["encoder_forwards"] = {"this_run": train_chunks if cached else reencode,
                                "re_encoding_every_epoch": reencode}
    if is_writer:
      save_head(head_path, head, info)
  timing["head_s"] = time.perf_counter() - t

  # --------------------------------------------------------- test: each track once ---
  scores = head_training.predict(head_cfg, head_params, test_feats.track_h)
  test_metrics = metrics.task_metrics(kind, scores, test_feats.labels, names,
                                      key_names=key_names)
  if test_metrics.get("num_classes_unscored"):
    logging.warning("%d classes have no positive (or no negative) test track and are left out "
                    "of the macro averages: %s", test_metrics["num_classes_unscored"],
                    test_metrics["unscored_classes"])
  scalars = metrics.scalar_metrics(test_metrics)
  writer.write_scalars(info["epochs_run"], {f"test/{k}": v for k, v in scalars.items()})
  logging.info("Test (%d tracks): %s", test_feats.num_tracks,
               ", ".join(f"{k} {v:.4f}" for k, v in scalars.items()))

  # -------------------------------------------------------------- robustness sweep ---
  robustness_rows = []
  if config.robustness.enabled:
    t = time.perf_counter()
    robustness_rows = _robustness(config, model, variables, mesh, head_cfg, head_params, kind,
                                  names, key_names, test_feats, data_dir, view_length,
                                  encoder.sample_rate, writer)
    timing["robustness_s"] = time.perf_counter() - t

  # ------------------------------------------------------------------- prototypes ---
  prototype_rows = []
  if config.prototypes.enabled:
    project_fn = jax.jit(lambda v, h: model.apply(v, h, method=lambda m, x: m.head(x)))
    prototype_rows = prototypes.evaluate(
        lambda h: np.asarray(project_fn(encoder.variables, h)), train_feats, test_feats, kind,
        names, tuple(config.prototypes.fractions), seed=config.seed)
    for i, row in enumerate(prototype_rows):
      writer.write_scalars(i, {f"prototypes/{k}": v for k, v in row.items()
                               if isinstance(v, float) and k != "fraction"})

  # ------------------------------------------------------------------ report ---
  results = {
      "name": _encoder_name(config), "task": task.name, "dataset": task.dataset,
      "label_key": task.label_key, "kind": kind, "num_classes": num_outputs,
      "class_names": list(names),
      "encoder": {"source": encoder.source, "model": encoder.model_config.to_dict(),
                  "card": encoder.card},
      "protocol": config.probe.protocol,
      "head": {**dataclasses.asdict(head_cfg), "description": _head_description(head_cfg)},
      "training": info, "view_length": view_length, "max_chunks": config.data.max_chunks,
      "num_tracks": num_tracks,
      "test": test_metrics, "unscored_classes": test_metrics.get("unscored_classes", []),
      "robustness": robustness_rows, "prototypes": prototype_rows,
      "config": json.loads(config.to_json_best_effort()),
  }
  if is_writer:
    paths.save_npz(workdir / "predictions.npz", track_index=np.arange(len(scores)),
                   scores=scores, targets=test_feats.labels,
                   chunks=test_feats.chunks_per_track, embeddings=test_feats.track_h)
    t = time.perf_counter()
    results["figures"] = _figures(config, workdir, results, scores, test_feats, writer)
    timing["figures_s"] = time.perf_counter() - t
  timing["total_s"] = time.perf_counter() - t_start
  results["timing"] = timing
  if is_writer:
    text = reports.write_probe_report(workdir, results)
    print(text, flush=True)
  writer.flush()
  writer.close()
  return results


def _robustness(config, model, variables, mesh, head_cfg, head_params, kind, names, key_names,
                test_feats, data_dir, view_length, sample_rate, writer) -> list[dict[str, Any]]:
  """The sweep: one row of test metrics per corruption level."""
  task = config.task
  levels = robustness.build_levels(tuple(config.robustness.levels), sample_rate)
  base_key = jax.random.fold_in(jax.random.key(config.seed), 7)
  rows = []
  for level in levels:
    h = robustness.corrupted_track_features(
        model, variables, mesh, level, jax.random.fold_in(base_key, level.index),
        dataset=task.dataset, split=task.test_split, data_dir=data_dir,
        label_key=task.label_key, tracks_per_batch=config.robustness.tracks_per_batch,
        view_length=view_length, max_chunks=config.data.max_chunks,
        row_batch_size=max(1, config.data.batch_size // jax.process_count()))
    scores = head_training.predict(head_cfg, head_params, h)
    m = metrics.scalar_metrics(metrics.task_metrics(kind, scores, test_feats.labels, names,
                                                    key_names=key_names))
    m = {k: v for k, v in m.items() if not k.startswith("num_")}
    rows.append({"level": level.index, "name": level.name, **m})
    writer.write_scalars(level.index, {f"robustness/{k}": v for k, v in m.items()})
    logging.info("Robustness %s: %s", level.name, ", ".join(f"{k} {v:.4f}" for k, v in m.items()))
  return rows


def _figures(config, workdir, results, scores, test_feats, writer) -> dict[str, str]:
  """Writes the PNGs (and TensorBoard images); returns {name: path}."""
  kind, names = results["kind"], results["class_names"]
  figs = {"loss_curves": plots.loss_curves(results["training"]["history"],
                                           str(workdir / "loss_curves.png"),
                                           results["training"]["best_epoch"])}
  if config.report.projection != "none":
    figs["embedding_map"] = plots.embedding_map(
        test_feats.track_h, test_feats.labels, kind, names,
        str(workdir / "embedding_map.png"), method=config.report.projection,
        max_points=config.report.max_points, seed=config.seed,
        title=f"{results['task']}: test embeddings ({config.report.projection.upper()})")
  if kind == metrics.MULTICLASS:
    figs["confusion_matrix"] = plots.confusion_matrix(
        scores, test_feats.labels, names, str(workdir / "confusion_matrix.png"),
        title=f"{results['task']}: confusion matrix (test)")
  if results["robustness"]:
    headline = [m for m in reports.headline_columns(results) if m in results["robustness"][0]]
    figs["robustness_curve"] = plots.robustness_curve(
        results["robustness"], headline, str(workdir / "robustness_curve.png"),
        title=f"{results['task']}: robustness to corruptions")
  writer.write_images(0, {name: plots.read_png(p)[None] for name, p in figs.items()})
  return figs
