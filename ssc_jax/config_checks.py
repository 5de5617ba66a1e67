"""Refuses impossible pretraining configs before any work starts, naming the field.

The rules on `config.data` live here only: `data_pipelines.pretrain_input` assumes a config
that passed `check_pretrain_config` (train.py checks it before building the input).
"""

from __future__ import annotations

import json
import uuid
from typing import Any, Sequence

from absl import logging
from etils import epath
import ml_collections

from configs import common
from data_pipelines import conventions

from ssc_jax import losses
from ssc_jax import models
from ssc_jax import optim


COMPUTE_DTYPES = ("float32", "bfloat16")
ONE_DEVICE_VIEWS = 192  # The paper's single-GPU global batch: 96 items × 2 views.


class ConfigError(ValueError):
  """A config value that cannot work; the message names the field."""


def check_pretrain_config(config: ml_collections.ConfigDict, *, device_count: int,
                          process_count: int) -> None:
  """Raises ConfigError for a config that cannot run on this topology.

  Args:
    config: the full pretraining config.
    device_count: global number of devices in the mesh.
    process_count: number of JAX processes (hosts).
  """
  d = config.data
  if d.num_views < 1:
    raise ConfigError(f"data.num_views={d.num_views}: need at least 1 view per item.")
  if d.num_views == 1 and d.labeled_share < 1.0:
    raise ConfigError("data.num_views=1 leaves unlabeled items without any positive; use "
                      "num_views >= 2 or data.labeled_share=1.")
  if d.batch_size < 1 or d.batch_size % device_count:
    raise ConfigError(f"data.batch_size={d.batch_size} must be a positive multiple of the "
                      f"device count ({device_count}).")
  if d.batch_size % process_count:
    raise ConfigError(f"data.batch_size={d.batch_size} must split evenly over "
                      f"{process_count} processes.")
  if not 0.0 <= d.labeled_share <= 1.0:
    raise ConfigError(f"data.labeled_share={d.labeled_share} must be in [0, 1].")
  if not 0.0 < d.labeled_fraction <= 1.0:
    raise ConfigError(f"data.labeled_fraction={d.labeled_fraction} must be in (0, 1].")
  if d.shuffle_buffer < 1:
    raise ConfigError(f"data.shuffle_buffer={d.shuffle_buffer} must be >= 1.")
  num_labeled = int(d.batch_size * d.labeled_share)
  if num_labeled % process_count:
    raise ConfigError(f"int(data.batch_size * data.labeled_share) = {num_labeled} labeled items "
                      f"per batch must split evenly over {process_count} processes.")
  if num_labeled and not d.labeled:
    raise ConfigError("data.labeled_share > 0 but data.labeled names no dataset.")
  if num_labeled < d.batch_size and not d.unlabeled:
    raise ConfigError("data.labeled_share < 1 but data.unlabeled names no dataset.")
  if config.model.encoder not in models.ENCODERS:
    raise ConfigError(f"model.encoder={config.model.encoder!r}: use one of "
                      f"{sorted(models.ENCODERS)}.")
  try:
    models.check_view_length(config.model.encoder, d.view_length)
  except ValueError as e:
    raise ConfigError(str(e)) from e
  if config.model.width <= 0:
    raise ConfigError(f"model.width={config.model.width} must be positive.")
  if config.model.dtype not in COMPUTE_DTYPES:
    raise ConfigError(f"model.dtype={config.model.dtype!r}: use one of {COMPUTE_DTYPES}.")
  loss = config.loss
  if loss.temperature <= 0:
    raise ConfigError(f"loss.temperature={loss.temperature} must be positive.")
  if loss.positives not in ("threshold", "weighted"):
    raise ConfigError(f"loss.positives={loss.positives!r}: use 'threshold' or 'weighted'.")
  if loss.positives == "threshold" and loss.pos_threshold < 1:
    raise ConfigError(f"loss.pos_threshold={loss.pos_threshold} must be >= 1 (0 would make "
                      "every pair positive).")
  if loss.chunk_size < 0:
    raise ConfigError(f"loss.chunk_size={loss.chunk_size} must be >= 0.")
  similarity(loss)  # Refuses unknown sources and bad parameters.
  if loss.similarity != losses.LABEL_OVERLAP and len(d.label_key.split(",")) != 1:
    raise ConfigError(f"loss.similarity={loss.similarity!r} compares one label feature; "
                      f"data.label_key={d.label_key!r} names several.")
  t = config.train
  if t.total_steps < 1 or t.log_every_steps < 1 or t.checkpoint_every_steps < 1:
    raise ConfigError("train.total_steps, train.log_every_steps and "
                      "train.checkpoint_every_steps must be >= 1.")
  if t.checkpoint_every_minutes < 0:
    raise ConfigError(f"train.checkpoint_every_minutes={t.checkpoint_every_minutes} must be "
                      ">= 0 (0 = off).")
  if t.eval_every_steps < 0 or (t.eval_every_steps and t.eval_batches < 1):
    raise ConfigError(f"train.eval_every_steps={t.eval_every_steps} must be >= 0 (0 = off) and "
                      f"train.eval_batches={t.eval_batches} >= 1 when it is on.")
  _check_optimizer(config.optimizer, t.total_steps)


def _check_optimizer(o: ml_collections.ConfigDict, total_steps: int) -> None:
  """Raises ConfigError for an `optimizer` section that optim.make_optimizer cannot build."""
  for field, valid in (("name", optim.OPTIMIZERS), ("schedule", optim.SCHEDULES),
                       ("lr_scaling", optim.LR_SCALINGS)):
    if o[field] not in valid:
      raise ConfigError(f"optimizer.{field}={o[field]!r}: use one of {valid}.")
  if o.learning_rate <= 0:
    raise ConfigError(f"optimizer.learning_rate={o.learning_rate} must be > 0.")
  if o.reference_batch_size < 1:
    raise ConfigError(f"optimizer.reference_batch_size={o.reference_batch_size} must be >= 1.")
  if o.schedule != "constant" and not 0 <= o.warmup_steps < total_steps:
    raise ConfigError(f"optimizer.warmup_steps={o.warmup_steps} must be in [0, "
                      f"train.total_steps={total_steps}) for schedule {o.schedule!r}.")
  if o.weight_decay < 0 or o.grad_clip_norm < 0:
    raise ConfigError("optimizer.weight_decay and optimizer.grad_clip_norm must be >= 0.")
  if o.weight_decay > 0 and o.name == "adam":
    raise ConfigError("optimizer.weight_decay > 0 needs optimizer.name 'adamw', 'lamb' or "
                      "'lars' (the paper's 'adam' has no decay).")


def cpu_only_warning(config: ml_collections.ConfigDict, backend: str) -> str | None:
  """A start-up warning when a config sized for accelerators finds only a CPU, else None.

  Args:
    config: the full pretraining config.
    backend: `jax.default_backend()` ("cpu", "gpu", "tpu").
  """
  if backend != "cpu":
    return None
  views = config.data.batch_size * config.data.num_views
  reasons = []
  if views > ONE_DEVICE_VIEWS:
    reasons.append(f"its global batch of {views} views (data.batch_size × data.num_views) is "
                   f"more than one accelerator's worth (the paper used {ONE_DEVICE_VIEWS} on "
                   "one GPU)")
  if config.model.dtype == "bfloat16":
    reasons.append("model.dtype='bfloat16' is emulated, and slow, on CPU")
  if not reasons:
    return None
  return ("JAX found only CPU devices, but this config is meant for accelerators: "
          + "; ".join(reasons) + ". If you have a GPU or TPU, install the matching JAX build "
          "(README, section 'GPU and TPU'); otherwise expect this run to be very slow.")


def check_workdir(workdir: epath.PathLike) -> None:
  """Creates `workdir` (local or gs://) and proves it writable with a probe file.

  Raises:
    ConfigError: naming the workdir and the operating system's reason.
  """
  path = epath.Path(workdir)
  probe = path / f".write_probe.{uuid.uuid4().hex}"  # One per process: hosts check at once.
  try:
    path.mkdir(parents=True, exist_ok=True)
    probe.write_text("ok")
    probe.unlink()
  except OSError as e:
    raise ConfigError(f"--workdir={workdir} is not a writable directory ({e}).") from e


def pos_threshold(loss_config: ml_collections.ConfigDict) -> int | str:
  """The `pos_threshold` argument of the loss functions for this config."""
  return "weighted" if loss_config.positives == "weighted" else int(loss_config.pos_threshold)


# Parameter of each built-in similarity source -> its `loss` config field.
_SIMILARITY_FIELDS = {
    "regression": {"sigma": "regression_sigma"},
    "key_distance": {"weights": "key_weights"},
    "pitch_class_overlap": {"measure": "pitch_class_measure"},
}


def similarity(loss_config: ml_collections.ConfigDict,
               key_names: Sequence[str] | None = None) -> losses.Similarity | None:
  """The `similarity` argument of the loss functions for this config.

  Args:
    loss_config: `config.loss`.
    key_names: for key_distance, the key label's class names in class order; None for the
      synthetic dataset's order (see `losses.key_similarity_table`).

  Returns:
    None for 'label_overlap' (shared labels, `pos_threshold`), else the checked source.

  Raises:
    ConfigError: unknown source or bad parameter, naming the fields.
  """
  name = loss_config.similarity
  if name == losses.LABEL_OVERLAP:
    return None
  fields = _SIMILARITY_FIELDS.get(name, {})
  params = {param: loss_config[field] for param, field in fields.items()}
  if name == "key_distance" and key_names is not None:
    params["key_names"] = tuple(key_names)
  try:
    return losses.make_similarity(name, **params)
  except ValueError as e:
    settings = "".join(f", loss.{f}={loss_config[f]!r}" for f in fields.values())
    raise ConfigError(f"loss.similarity={name!r}{settings}: {e}") from e


# Label kind, class-name parser and description of what key_distance / pitch_class_overlap compare.
_SIMILARITY_LABELS = {
    "key_distance": ("multiclass", losses.parse_key,
                     "a key (one class per key, named like 'C major', 'Eb minor')"),
    "pitch_class_overlap": ("multilabel", conventions.parse_pitch_class,
                            "a pitch-class set (classes named 'C' ... 'B')"),
}


def check_similarity_labels(config: ml_collections.ConfigDict,
                            label_features: Sequence[tuple[str, str, Sequence[str]]]) -> None:
  """Refuses a label feature that `config.loss.similarity` cannot compare.

  Args:
    config: the full pretraining config.
    label_features: (label key, kind, class names) of the labeled source's `data.label_key`
      features (`pretrain_input.label_features`); empty when no batch holds labeled items.

  Raises:
    ConfigError: naming the similarity, the dataset and the label feature.
  """
  name = config.loss.similarity
  if name == losses.LABEL_OVERLAP or not label_features:
    return
  (label_key, kind, names), = label_features
  where = (f"loss.similarity={name!r} but data.label_key={label_key!r} of "
           f"'{config.data.labeled}' is a {kind} label")
  if name == "regression" and kind != "regression":
    raise ConfigError(f"{where}; it compares real-valued (regression) targets.")
  if name in _SIMILARITY_LABELS:
    expected, parse, what = _SIMILARITY_LABELS[name]
    try:
      parsed = [parse(n) for n in names]
    except ValueError as e:
      raise ConfigError(f"{where}, not {what}: {e}") from e
    if kind != expected or len(set(parsed)) != len(parsed):
      raise ConfigError(f"{where} with classes {list(names)}, not {what}.")
  similarity(config.loss, names if name == "key_distance" else None)


# Fields that may differ between a run and its resumption: they do not change what a step
# computes (budget, logging, checkpoint cadence, topology, where data lives, evaluation, how
# the augmentation is scheduled: every strategy draws the same).
_RESUMABLE_PREFIXES = ("train.", "distributed.", "evaluate.", "data.data_dir",
                       "data.cache_megabytes", "augment.strategy")
_ABSENT = "(absent)"
# Math fields added after runs were saved. Their defaults reproduce what those runs computed
# (the default label-overlap similarity ignores the other three), so a saved config without
# them reads as holding the defaults.
_ADDED_LATER = ("loss.similarity", "loss.regression_sigma", "loss.key_weights",
                "loss.pitch_class_measure")


def _flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
  if isinstance(tree, dict):
    out = {}
    for k, v in tree.items():
      out.update(_flatten(v, f"{prefix}{k}."))
    return out
  return {prefix[:-1]: tree}


def changed_fields(saved: dict[str, Any], config: ml_collections.ConfigDict
                   ) -> list[tuple[str, Any, Any]]:
  """Fields that change the math between a saved run config and `config`.

  Args:
    saved: the saved run's config as JSON data (`config.json` of the workdir).
    config: the config of the run about to resume.

  Returns:
    Sorted (field, saved value, new value); values absent on one side are "(absent)".
  """
  defaults = _flatten(json.loads(common.base_config().to_json_best_effort()))
  old = {**{k: defaults[k] for k in _ADDED_LATER}, **_flatten(saved)}
  new = _flatten(json.loads(config.to_json_best_effort()))
  return [(k, old.get(k, _ABSENT), new.get(k, _ABSENT)) for k in sorted(set(old) | set(new))
          if not k.startswith(_RESUMABLE_PREFIXES) and old.get(k, _ABSENT) != new.get(k, _ABSENT)]


def check_resume_config(config: ml_collections.ConfigDict, workdir: epath.PathLike) -> None:
  """Refuses to resume a workdir whose saved run config differs in fields that change the math.

  Call only when the workdir holds a checkpoint. `config.train.allow_config_change=True`
  turns the refusal into a warning.

  Raises:
    ConfigError: listing every differing field with its saved and new value.
  """
  path = epath.Path(workdir) / "config.json"
  if not path.exists():
    return
  with path.open() as f:
    saved = json.load(f)
  diff = changed_fields(saved, config)
  if not diff:
    return
  lines = "\n".join(f"  {k}: {old!r} -> {new!r}" for k, old, new in diff)
  if config.train.allow_config_change:
    logging.warning("Resuming %s with a changed config (allowed):\n%s", workdir, lines)
    return
  raise ConfigError(
      f"{workdir} holds a run with a different config ({path}); the fields that change the "
      f"math differ:\n{lines}\nUse a new --workdir, or pass "
      f"--config.train.allow_config_change=True to resume anyway.")
