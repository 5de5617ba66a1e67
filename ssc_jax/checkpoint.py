"""Train-state checkpoints (Orbax) and the plain-Flax-params export. The only Orbax importer.

Checkpoints live in `<workdir>/checkpoints/<step>/`; saves are asynchronous and atomic (Orbax
writes to a temporary directory and renames it on commit), so a run killed mid-save resumes
from the previous complete step. Running the same command again resumes automatically.

The export is one msgpack file holding plain nested dicts:
  {'params': {'encoder': ..., 'head': ...}, 'batch_stats': {'encoder': ...},
   'ssc_jax': {'format': 'ssc_jax.encoder/1', 'model_config': '<json>'}}
`flax.serialization.msgpack_restore(open(path, 'rb').read())` reads it without ssc_jax;
`load_exported(path)` also rebuilds the Flax module for inference.
"""

from __future__ import annotations

import json
from typing import Any

import flax.serialization
import jax
import ml_collections
import numpy as np
import orbax.checkpoint as ocp

from ssc_jax import models
from ssc_jax import paths

EXPORT_FORMAT = "ssc_jax.encoder/1"


class Checkpointer:
  """Saves and restores the train state of one workdir.

  Args:
    workdir: the run's directory (local or `gs://`); checkpoints go to `<workdir>/checkpoints`.
    keep: how many most recent steps to keep.
  """

  def __init__(self, workdir: paths.PathLike, keep: int = 3):
    self.directory = paths.resolve(workdir) / "checkpoints"
    options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=True,
                                           enable_async_checkpointing=True)
    self._manager = ocp.CheckpointManager(self.directory, options=options)

  def latest_step(self) -> int | None:
    """The newest complete step in the workdir, or None."""
    return self._manager.latest_step()

  def all_steps(self) -> list[int]:
    """Every complete step kept in the workdir, oldest first."""
    return sorted(self._manager.all_steps())

  def save(self, step: int, state: Any) -> None:
    """Starts an asynchronous save of `state` at `step` (a no-op if it exists)."""
    if step in self._manager.all_steps():
      return
    self._manager.save(step, args=ocp.args.StandardSave(state))

  def restore(self, step: int, abstract_state: Any) -> Any:
    """Restores `step` onto the shapes, dtypes and shardings of `abstract_state`.

    Args:
      step: a step returned by `latest_step()`.
      abstract_state: pytree of jax.ShapeDtypeStruct (with shardings), same structure as saved.
    """
    return self._manager.restore(step, args=ocp.args.StandardRestore(abstract_state))

  def wait(self) -> None:
    """Blocks until pending saves are committed."""
    self._manager.wait_until_finished()

  def close(self) -> None:
    self._manager.wait_until_finished()
    self._manager.close()


def export_variables(path: paths.PathLike, variables: dict[str, Any],
                     model_config: ml_collections.ConfigDict) -> None:
  """Writes encoder+head variables and the model config to one msgpack file.

  Args:
    path: output file (its directory is created).
    variables: {'params': ..., 'batch_stats': ...} as used by `models.SemiSupConModel`.
    model_config: the `config.model` section that builds the module.
  """
  tree = jax.tree.map(np.asarray, jax.device_get(
      {"params": variables["params"], "batch_stats": variables["batch_stats"]}))
  tree["ssc_jax"] = {"format": EXPORT_FORMAT, "model_config": model_config.to_json()}
  paths.write_atomic(path, flax.serialization.msgpack_serialize(tree))


def load_exported(path: paths.PathLike) -> tuple[models.SemiSupConModel, dict[str, Any]]:
  """Rebuilds the model and its variables from an `export_variables` file.

  Returns:
    (model, variables) where `model.apply(variables, audio, method=model.embed)` gives the
    512-d representation of audio [B, T] at 22050 Hz.

  Raises:
    ValueError: if the file is not an ssc_jax export.
  """
  tree = flax.serialization.msgpack_restore(paths.resolve(path).read_bytes())
  meta = tree.get("ssc_jax") if isinstance(tree, dict) else None
  if not meta or meta.get("format") != EXPORT_FORMAT:
    raise ValueError(f"{path}: not an ssc_jax encoder export (expected format {EXPORT_FORMAT}).")
  model_config = ml_collections.ConfigDict(json.loads(meta["model_config"]))
  return models.build_model(model_config), {"params": tree["params"],
                                            "batch_stats": tree["batch_stats"]}
