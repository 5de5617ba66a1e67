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
   'ssc_jax': {'format': 'ssc_jax.encoder/1', 'model_config': '<json>', 'card': '<json>'}}
The card (`model_card`) makes the file usable alone: sample rate, view length, model kind and
sizes, dtype, version, and where the weights came from. Exports written before cards existed
have no 'card' entry; `read_export` warns about them.
`flax.serialization.msgpack_restore(open(path, 'rb').read())` reads it without ssc_jax;
`read_export(path)` is the one reader (`ssc_jax.inference.pretrained.load_pretrained` builds the
model from it). `restore_variables(workdir)` reads the model's variables from the newest
train-state checkpoint without the optimizer state.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import warnings
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
from ssc_jax import paths

EXPORT_FORMAT = "ssc_jax.encoder/1"
_STATE, _INPUT = "state", "input"
_VARIABLES = ("params", "batch_stats")  # The train state's fields that make the model.


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

  def restore_variables(self, step: int) -> dict[str, Any]:
    """Restores only {'params', 'batch_stats'} of `step`, as host NumPy arrays.

    The optimizer state and step counter stay on disk (Orbax partial restore), so no train
    state or optimizer is built; the arrays' saved shapes come from the checkpoint metadata,
    and they load whatever device count or process count wrote them.
    """
    tree = ocp.PyTreeCheckpointHandler().metadata(self.directory / str(step) / _STATE).tree
    item = {k: tree[k] for k in _VARIABLES}
    as_numpy = jax.tree.map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray), item)
    restored = self._manager.restore(step, args=ocp.args.Composite(**{
        _STATE: ocp.args.PyTreeRestore(item=item, restore_args=as_numpy,
                                       partial_restore=True)}))
    return dict(restored[_STATE])

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


def restore_variables(workdir: paths.PathLike) -> tuple[int, dict[str, Any]]:
  """{'params', 'batch_stats'} of the newest checkpoint of a pretraining workdir.

  Args:
    workdir: the run's directory (local or `gs://`).

  Returns:
    (step, variables as host NumPy arrays).

  Raises:
    FileNotFoundError: the workdir holds no committed checkpoint.
  """
  ckpt = Checkpointer(workdir)
  try:
    step = ckpt.latest_step()
    if step is None:
      raise FileNotFoundError(f"{workdir}: no checkpoint under {ckpt.directory}.")
    return step, ckpt.restore_variables(step)
  finally:
    ckpt.close()


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
