"""Train-state checkpoints (Orbax) and the plain-Flax-params export. The only Orbax importer.

Checkpoints live in `<workdir>/checkpoints/<step>/`, two items per step: `state/` (the train
state, saved asynchronously) and `input/` (each host's input-stream position, one file set
`process_<p>-of-<P>.*` per host, written before the step commits). Saves are atomic (Orbax
writes to `<step>.orbax-checkpoint-tmp-*` and renames it on commit), so a run killed mid-save
leaves a temporary directory that is ignored (with a warning naming it) and resumes from the
previous complete step. A committed step that fails to restore is skipped with a warning; when
an older step restores, the unreadable newer ones are renamed `<step>.unreadable` (never
deleted) so that the resumed run can save those steps again. Running the same command again
resumes automatically.

The export is one msgpack file holding plain nested dicts:
  {'params': {'encoder': ..., 'head': ...}, 'batch_stats': {'encoder': ...},
   'ssc_jax': {'format': 'ssc_jax.encoder/1', 'model_config': '<json>'}}
`flax.serialization.msgpack_restore(open(path, 'rb').read())` reads it without ssc_jax;
`load_exported(path)` also rebuilds the Flax module for inference.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
from collections.abc import Callable
from typing import Any

from absl import logging
from etils import epath
import flax.serialization
import jax
import ml_collections
import numpy as np
import orbax.checkpoint as ocp

from ssc_jax import models

EXPORT_FORMAT = "ssc_jax.encoder/1"
_STATE, _INPUT = "state", "input"


class _HostInputHandler(ocp.CheckpointHandler):
  """Saves/restores each host's input position to its own files in the item directory."""

  @staticmethod
  def _prefix(directory: epath.Path) -> str:
    return str(directory / f"process_{jax.process_index()}-of-{jax.process_count()}")

  def save(self, directory: epath.Path, args: "_HostInputSave") -> None:
    args.save_fn(self._prefix(directory))

  def restore(self, directory: epath.Path, args: "_HostInputRestore") -> None:
    prefix = self._prefix(directory)
    if not epath.Path(prefix + ".index").exists():
      raise FileNotFoundError(f"{prefix}.*: no input state for this process (the checkpoint "
                              f"was written by another number of processes?)")
    args.restore_fn(prefix)


@ocp.args.register_with_handler(_HostInputHandler, for_save=True)
@dataclasses.dataclass
class _HostInputSave(ocp.args.CheckpointArgs):
  save_fn: Callable[[str], None]  # Writes this host's input state to files `<prefix>.*`.


@ocp.args.register_with_handler(_HostInputHandler, for_restore=True)
@dataclasses.dataclass
class _HostInputRestore(ocp.args.CheckpointArgs):
  restore_fn: Callable[[str], None]  # Reads it back from `<prefix>.*`.


class Checkpointer:
  """Saves and restores the train state (and each host's input position) of one workdir.

  Args:
    workdir: the run's directory; checkpoints go to `<workdir>/checkpoints`.
    keep: how many most recent steps to keep.
  """

  def __init__(self, workdir: str, keep: int = 3):
    self.directory = os.path.join(os.path.abspath(workdir), "checkpoints")
    options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=True,
                                           enable_async_checkpointing=True)
    self._manager = ocp.CheckpointManager(self.directory, options=options)

  def latest_step(self) -> int | None:
    """The newest complete step in the workdir, or None."""
    return self._manager.latest_step()

  def all_steps(self) -> list[int]:
    """Every complete step kept in the workdir, oldest first."""
    return sorted(self._manager.all_steps())

  def save(self, step: int, state: Any, host_input: Any = None) -> None:
    """Starts an asynchronous save of `state` at `step` (a no-op if it exists).

    Args:
      step: the step `state` has reached.
      state: the train state.
      host_input: None, or this host's input iterator (`save(prefix)` writes its position);
        written before this call returns, so the iterator may advance afterwards. Every
        process must call `save` with the same step.
    """
    if step in self._manager.all_steps():
      return
    items = {_STATE: ocp.args.StandardSave(state)}
    if host_input is not None:
      items[_INPUT] = _HostInputSave(host_input.save)
    with self._explain_failed_save(step):
      self._manager.save(step, args=ocp.args.Composite(**items))

  @contextlib.contextmanager
  def _explain_failed_save(self, step: int | None):
    """Re-raises an OSError of a save (disk full, permissions) naming what is still safe."""
    try:
      yield
    except OSError as e:
      what = f"step {step}" if step is not None else "a checkpoint"
      raise OSError(e.errno, f"Saving {what} to {self.directory} failed ({e}). Complete "
                    f"checkpoints are untouched (newest: step {self._newest_committed()}); the "
                    f"partial one is ignored on resume. Free space and run the same command "
                    f"again.") from e

  def _newest_committed(self) -> int | None:
    self._manager.reload()
    return self._manager.latest_step()

  def restore(self, step: int, abstract_state: Any) -> Any:
    """Restores the train state of `step` onto the shapes, dtypes, shardings of `abstract_state`.

    Args:
      step: a step returned by `latest_step()`.
      abstract_state: pytree of jax.ShapeDtypeStruct (with shardings), same structure as saved.
    """
    restored = self._manager.restore(
        step, args=ocp.args.Composite(**{_STATE: ocp.args.StandardRestore(abstract_state)}))
    return restored[_STATE]

  def restore_newest(self, abstract_state: Any) -> tuple[int, Any] | tuple[None, None]:
    """Restores the newest step that restores; skips (and sets aside) unreadable newer ones.

    Logs a warning for every temporary (uncommitted) step directory and every step that fails
    to restore. When an older step restores, the failed newer ones are renamed
    `<step>.unreadable` by process 0 (nothing is deleted).

    Returns:
      (step, state), or (None, None) when the workdir holds no committed step.

    Raises:
      RuntimeError: steps exist but none restores (e.g. a changed model); nothing is renamed.
    """
    for tmp in sorted(epath.Path(self.directory).glob("*.orbax-checkpoint-tmp*")):
      logging.warning("Ignoring partial checkpoint %s (a save that never committed).", tmp)
    failed: list[tuple[int, str]] = []
    for step in reversed(self.all_steps()):
      try:
        state = self.restore(step, abstract_state)
      except Exception as e:  # pylint: disable=broad-except
        logging.warning("Checkpoint step %d in %s failed to restore (%s); trying the "
                        "previous step.", step, self.directory, _summary(e))
        failed.append((step, _summary(e)))
        continue
      if failed:
        self._set_aside([s for s, _ in failed])
      return step, state
    if failed:
      details = "\n".join(f"  step {s}: {m}" for s, m in failed)
      raise RuntimeError(f"No checkpoint in {self.directory} restores:\n{details}\nA changed "
                         f"model cannot resume this run: use a new --workdir.")
    return None, None

  def _set_aside(self, steps: list[int]) -> None:
    if jax.process_index() == 0:
      for step in steps:
        path = epath.Path(self.directory) / str(step)
        target = path.parent / f"{step}.unreadable"
        n = 1
        while target.exists():
          target, n = path.parent / f"{step}.unreadable-{n}", n + 1
        path.rename(target)
        logging.warning("Renamed the unreadable checkpoint %s to %s.", path, target)
    ocp.multihost.sync_global_processes("ssc_jax_set_aside_unreadable_checkpoints")
    self._manager.reload()

  def restore_input(self, step: int, host_input: Any) -> bool:
    """Moves `host_input` (with `restore(prefix)`) to its position saved at `step`.

    Returns:
      False (with a warning) when `step` holds no input state for this process or it does not
      fit this input pipeline; True when restored.
    """
    try:
      self._manager.restore(
          step, args=ocp.args.Composite(**{_INPUT: _HostInputRestore(host_input.restore)}))
    except Exception as e:  # pylint: disable=broad-except
      logging.warning("Step %d in %s: the input position of process %d cannot be restored "
                      "(%s).", step, self.directory, jax.process_index(), _summary(e))
      return False
    return True

  def reached_preemption(self, step: int) -> bool:
    """True on every process at the same step once the JAX distributed runtime announced a
    preemption (multi-process runs with the preemption service; always False otherwise)."""
    return self._manager.reached_preemption(step)

  def wait(self) -> None:
    """Blocks until pending saves are committed."""
    with self._explain_failed_save(None):
      self._manager.wait_until_finished()

  def close(self) -> None:
    self.wait()
    self._manager.close()


def _summary(e: BaseException) -> str:
  """'Type: first line of the message' (Orbax and TensorStore errors run to pages)."""
  lines = str(e).splitlines()
  return f"{type(e).__name__}: {lines[0][:300] if lines else ''}"


def export_variables(path: str, variables: dict[str, Any],
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
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  tmp = path + ".tmp"
  with open(tmp, "wb") as f:
    f.write(flax.serialization.msgpack_serialize(tree))
  os.replace(tmp, path)


def load_exported(path: str) -> tuple[models.SemiSupConModel, dict[str, Any]]:
  """Rebuilds the model and its variables from an `export_variables` file.

  Returns:
    (model, variables) where `model.apply(variables, audio, method=model.embed)` gives the
    512-d representation of audio [B, T] at 22050 Hz.

  Raises:
    ValueError: if the file is not an ssc_jax export.
  """
  with open(path, "rb") as f:
    tree = flax.serialization.msgpack_restore(f.read())
  meta = tree.get("ssc_jax") if isinstance(tree, dict) else None
  if not meta or meta.get("format") != EXPORT_FORMAT:
    raise ValueError(f"{path}: not an ssc_jax encoder export (expected format {EXPORT_FORMAT}).")
  model_config = ml_collections.ConfigDict(json.loads(meta["model_config"]))
  return models.build_model(model_config), {"params": tree["params"],
                                            "batch_stats": tree["batch_stats"]}
