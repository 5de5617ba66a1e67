"""Train-state checkpoints (Orbax) and the plain-Flax-params export. The only Orbax importer.

Checkpoints live in `<workdir>/checkpoints/<step>/`; saves are asynchronous and atomic (Orbax
writes to a temporary directory and renames it on commit), so a run killed mid-save resumes
from the previous complete step. Running the same command again resumes automatically.

The export is one msgpack file holding plain nested dicts:
  {'params': {'encoder': ..., 'head': ...}, 'batch_stats': {'encoder': ...},
   'ssc_jax': {'format': 'ssc_jax.encoder/1', 'model_config': '<json>', 'card': '<json>'}}
The card (`model_card`) makes the file usable alone: sample rate, view length, model kind and
sizes, dtype, version, and where the weights came from. Exports written before cards existed
have no 'card' entry; `read_export` warns about them.
`flax.serialization.msgpack_restore(open(path, 'rb').read())` reads it without ssc_jax;
`read_export(path)` is the one reader; `load_exported(path)` also rebuilds the Flax module.
"""

from __future__ import annotations

import dataclasses
import json
import warnings
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


def model_card(model_config: ml_collections.ConfigDict, *, sample_rate: int, view_length: int,
               training: dict[str, Any] | None = None,
               source: dict[str, Any] | None = None) -> dict[str, Any]:
  """What an exported encoder needs to be used alone (stored in every export).

  Args:
    model_config: the `config.model` section that builds the module.
    sample_rate: Hz of the audio the encoder expects.
    view_length: T, samples per view (the chunk length for embeddings).
    training: for weights trained here, e.g. {'datasets': [...], 'steps': int}.
    source: for converted weights, e.g. {'path', 'sha256', 'format'}.

  Returns:
    A JSON-serialisable dict: encoder, width, sample_rate, view_length, projection_hidden,
    projection_dim, dtype, ssc_jax_version, training, source.
  """
  import ssc_jax  # pylint: disable=g-import-not-at-top
  return {
      "encoder": model_config.encoder, "width": float(model_config.width),
      "sample_rate": int(sample_rate), "view_length": int(view_length),
      "projection_hidden": int(model_config.projection_hidden),
      "projection_dim": int(model_config.projection_dim),
      "dtype": str(model_config.get("dtype", "float32")),
      "ssc_jax_version": ssc_jax.__version__, "training": training, "source": source,
  }


def export_variables(path: paths.PathLike, variables: dict[str, Any],
                     model_config: ml_collections.ConfigDict, *, sample_rate: int,
                     view_length: int, training: dict[str, Any] | None = None,
                     source: dict[str, Any] | None = None) -> None:
  """Writes encoder+head variables, the model config and the model card to one msgpack file.

  Args:
    path: output file (its directory is created).
    variables: {'params': ..., 'batch_stats': ...} as used by `models.SemiSupConModel`.
    model_config: the `config.model` section that builds the module.
    sample_rate, view_length, training, source: the card's fields (see `model_card`).
  """
  models.check_view_length(model_config.encoder, view_length)
  card = model_card(model_config, sample_rate=sample_rate, view_length=view_length,
                    training=training, source=source)
  tree = jax.tree.map(np.asarray, jax.device_get(
      {"params": variables["params"], "batch_stats": variables["batch_stats"]}))
  tree["ssc_jax"] = {"format": EXPORT_FORMAT, "model_config": model_config.to_json(),
                     "card": json.dumps(card)}
  paths.write_atomic(path, flax.serialization.msgpack_serialize(tree))


@dataclasses.dataclass
class Exported:
  """An export file's contents.

  Attributes:
    model_config: the `config.model` section that rebuilds the module.
    variables: {'params', 'batch_stats'} as host NumPy arrays.
    card: the model card (`model_card`), or None for an export written before cards existed.
  """
  model_config: ml_collections.ConfigDict
  variables: dict[str, Any]
  card: dict[str, Any] | None


def read_export(path: paths.PathLike) -> Exported:
  """Reads an `export_variables` file (the one reader of exports).

  Warns (UserWarning) when the file has no model card.

  Raises:
    ValueError: if the file is not an ssc_jax export.
  """
  data = paths.resolve(path).read_bytes()
  try:
    tree = flax.serialization.msgpack_restore(data)
  except Exception as e:  # pylint: disable=broad-except
    raise ValueError(f"{path}: not an ssc_jax encoder export (unreadable msgpack: {e}).") from e
  meta = tree.get("ssc_jax") if isinstance(tree, dict) else None
  if not meta or meta.get("format") != EXPORT_FORMAT:
    raise ValueError(f"{path}: not an ssc_jax encoder export (expected format {EXPORT_FORMAT}).")
  model_config = ml_collections.ConfigDict(json.loads(meta["model_config"]))
  card = json.loads(meta["card"]) if "card" in meta else None
  if card is None:
    warnings.warn(f"{path}: exported before model cards existed; its sample rate and view "
                  "length are not recorded in the file. Re-export it to add a card.",
                  UserWarning, stacklevel=2)
  return Exported(model_config, {"params": tree["params"], "batch_stats": tree["batch_stats"]},
                  card)


def load_exported(path: paths.PathLike) -> tuple[models.SemiSupConModel, dict[str, Any]]:
  """Rebuilds the model and its variables from an `export_variables` file.

  Returns:
    (model, variables) where `model.apply(variables, audio, method=model.embed)` gives the
    representation of audio [B, T] at the card's sample rate (`read_export(path).card`).

  Raises:
    ValueError: if the file is not an ssc_jax export.
  """
  exported = read_export(path)
  return models.build_model(exported.model_config), exported.variables
