"""Refuses impossible pretraining configs before any work starts, naming the field."""

from __future__ import annotations

import json
import uuid
from typing import Any

from absl import logging
from etils import epath
import ml_collections

from ssc_jax import models


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
  t = config.train
  if t.total_steps < 1 or t.log_every_steps < 1 or t.checkpoint_every_steps < 1:
    raise ConfigError("train.total_steps, train.log_every_steps and "
                      "train.checkpoint_every_steps must be >= 1.")
  if t.get("checkpoint_every_minutes", 0) < 0:
    raise ConfigError(f"train.checkpoint_every_minutes={t.checkpoint_every_minutes} must be "
                      ">= 0 (0 = off).")
  if config.optimizer.learning_rate <= 0:
    raise ConfigError(f"optimizer.learning_rate={config.optimizer.learning_rate} must be > 0.")


def check_workdir(workdir: str) -> None:
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


# Fields that may differ between a run and its resumption: they do not change what a step
# computes (budget, logging, checkpoint cadence, topology, where data lives, evaluation).
_RESUMABLE_PREFIXES = ("train.", "distributed.", "evaluate.", "data.data_dir",
                       "data.cache_megabytes")
_ABSENT = "(absent)"


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
  old = _flatten(saved)
  new = _flatten(json.loads(config.to_json_best_effort()))
  return [(k, old.get(k, _ABSENT), new.get(k, _ABSENT)) for k in sorted(set(old) | set(new))
          if not k.startswith(_RESUMABLE_PREFIXES) and old.get(k, _ABSENT) != new.get(k, _ABSENT)]


def check_resume_config(config: ml_collections.ConfigDict, workdir: str) -> None:
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
  if config.train.get("allow_config_change", False):
    logging.warning("Resuming %s with a changed config (allowed):\n%s", workdir, lines)
    return
  raise ConfigError(
      f"{workdir} holds a run with a different config ({path}); the fields that change the "
      f"math differ:\n{lines}\nUse a new --workdir, or pass "
      f"--config.train.allow_config_change=True to resume anyway.")
