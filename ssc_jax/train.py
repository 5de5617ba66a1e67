"""SemiSupCon pretraining: `train_and_evaluate(config, workdir)`, read top to bottom.

One jitted step over a 1-D device mesh: augment (on device) → encoder + projection on all B·N
views → semi-supervised NT-Xent over the GLOBAL batch → optimiser. Parameters are replicated, the
batch is sharded on its item axis, so N devices at global batch B compute exactly what one
device computes at B (BatchNorm statistics and negatives are global).

Every `train.eval_every_steps` the same loss and its SSL/SL components are computed on a fixed
held-out set (data_pipelines/pretrain_input.py `ValidationInput`) in inference mode with a fixed
augmentation key, and logged as val_loss, val_ssl_loss and val_sl_loss (spec §2.6). Every log
step prints one progress line: step/total, loss, views/s, elapsed time and ETA.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from absl import logging
from clu import parameter_overview
from etils import epath
import flax.struct
import jax
from jax.experimental import multihost_utils
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from ssc_jax import augment
from ssc_jax import checkpoint
from ssc_jax import config_checks
from ssc_jax import losses
from ssc_jax import metric_logging
from ssc_jax import models
from ssc_jax import optim
from ssc_jax import parallel
from ssc_jax import paths
from ssc_jax import preemption


@flax.struct.dataclass
class TrainState:
  """Everything a resumed run needs; replicated over the mesh.

  Attributes:
    step: [] int32, number of updates applied.
    params: {'encoder': ..., 'head': ...}.
    batch_stats: BatchNorm running statistics {'encoder': ...}.
    opt_state: optax state of `make_optimizer(config)`.
  """
  step: jax.Array
  params: Any
  batch_stats: Any
  opt_state: Any

  @property
  def variables(self) -> dict[str, Any]:
    return {"params": self.params, "batch_stats": self.batch_stats}


def make_optimizer(config: ml_collections.ConfigDict) -> optax.GradientTransformation:
  """The optimiser of `config.optimizer` (ssc_jax/optim.py); the paper's is Adam at 1e-4."""
  return optim.make_optimizer(config)


def _state_init_fn(config: ml_collections.ConfigDict, model: models.SemiSupConModel,
                   tx: optax.GradientTransformation) -> Callable[[jax.Array], TrainState]:
  """Returns `init(key) -> TrainState`, the fresh state."""
  dummy = jnp.zeros((1, config.data.view_length), jnp.float32)

  def init(key: jax.Array) -> TrainState:
    variables = model.init(key, dummy, train=False)
    params = variables["params"]
    return TrainState(step=jnp.zeros((), jnp.int32), params=params,
                      batch_stats=variables["batch_stats"], opt_state=tx.init(params))

  return init


def abstract_initial_state(config: ml_collections.ConfigDict, model: models.SemiSupConModel,
                           tx: optax.GradientTransformation,
                           mesh: jax.sharding.Mesh) -> TrainState:
  """Shapes, dtypes and replicated shardings of a fresh state, computing nothing.

  For ahead-of-time compiles of the step (bench/scale.py), also on meshes of devices this
  process cannot run on.
  """
  shapes = jax.eval_shape(_state_init_fn(config, model, tx), jax.random.key(0))
  return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype,
                                                     sharding=parallel.replicated(mesh)), shapes)


def create_train_state(config: ml_collections.ConfigDict, model: models.SemiSupConModel,
                       tx: optax.GradientTransformation, mesh: jax.sharding.Mesh,
                       rng: jax.Array) -> TrainState:
  """Initialises the state directly with replicated shardings (never built on one host first)."""
  init = _state_init_fn(config, model, tx)
  shardings = jax.tree.map(lambda _: parallel.replicated(mesh), jax.eval_shape(init, rng))
  init_fn = jax.jit(init, out_shardings=shardings).lower(rng).compile(
      models.init_compile_options())
  return init_fn(rng)


def abstract_train_state(state: TrainState) -> TrainState:
  """Shapes, dtypes and shardings of `state`, the restore target for checkpoints."""
  return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding),
                      state)


def _loss_kwargs(config: ml_collections.ConfigDict,
                 label_names: tuple[str, ...] | None) -> dict[str, Any]:
  """Keyword arguments of `losses.semisup_ntxent` / `losses.loss_metrics` for `config.loss`.

  `label_names` are the class names of the label feature (for loss.similarity='key_distance';
  None: the synthetic dataset's key order).
  """
  lc = config.loss
  return dict(temperature=lc.temperature, pos_threshold=config_checks.pos_threshold(lc),
              parity=lc.parity, chunk_size=lc.chunk_size,
              similarity=config_checks.similarity(lc, label_names))


def _flat_views(audio: jax.Array, batch: dict[str, jax.Array]
                ) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
  """Rows of the loss from a batch of items.

  Args:
    audio: [B, N, T] (augmented) views.
    batch: its 'labels' [B, K] and 'labeled' [B].

  Returns:
    views [B·N, T] in item-major rows r = b·N + n (a reshape: no communication), item_ids
    [B·N] int32, labels [B·N, K] float32 and labeled [B·N] bool, repeated per view.
  """
  b, n, t = audio.shape
  item_ids = jnp.arange(b * n, dtype=jnp.int32) // n
  labels = jnp.repeat(batch["labels"].astype(jnp.float32), n, axis=0)
  return audio.reshape(b * n, t), item_ids, labels, jnp.repeat(batch["labeled"], n, axis=0)


def make_train_step(config: ml_collections.ConfigDict, model: models.SemiSupConModel,
                    tx: optax.GradientTransformation,
                    augment_fn: Callable[[jax.Array, jax.Array], jax.Array],
                    mesh: jax.sharding.Mesh, *, label_names: tuple[str, ...] | None = None
                    ) -> Callable[..., tuple[TrainState, dict]]:
  """Returns the jitted `train_step(state, batch, rng) -> (state, metrics)`.

  `batch` holds global arrays sharded on 'data': audio [B, N, T] float32, labels [B, K]
  float32 (zeros for unlabeled items), labeled [B] bool. `rng` is the run's augmentation key;
  the step folds in `state.step`, so a resumed run draws the same augmentations.
  The state argument is donated. `label_names`: see `_loss_kwargs`.
  """
  loss_kwargs = _loss_kwargs(config, label_names)
  learning_rate = optim.make_schedule(config)  # Of the update count, = state.step.

  def train_step(state: TrainState, batch: dict[str, jax.Array], rng: jax.Array):
    audio = augment_fn(jax.random.fold_in(rng, state.step), batch["audio"])
    views, item_ids, labels, labeled = _flat_views(audio, batch)

    def loss_fn(params):
      (_, z), updates = model.apply({"params": params, "batch_stats": state.batch_stats},
                                    views, train=True, mutable=["batch_stats"])
      return (losses.semisup_ntxent(z, item_ids, labels, labeled=labeled, **loss_kwargs),
              (z, updates))

    (loss, (z, updates)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    param_updates, opt_state = tx.update(grads, state.opt_state, state.params)
    new_state = state.replace(step=state.step + 1,
                              params=optax.apply_updates(state.params, param_updates),
                              batch_stats=updates["batch_stats"], opt_state=opt_state)
    metrics = {"loss": loss,
               "learning_rate": jnp.asarray(learning_rate(state.step), jnp.float32),
               "grad_norm": optax.tree.norm(grads),
               **losses.loss_metrics(jax.lax.stop_gradient(z), item_ids, labels, labeled,
                                     **loss_kwargs)}
    return new_state, metrics

  replicated = parallel.replicated(mesh)
  return jax.jit(train_step, donate_argnums=(0,), out_shardings=(replicated, replicated))


# ------------------------------------------------------------------------------------------------
# Validation (spec §2.6): the training loss and its components on a fixed held-out set.
# ------------------------------------------------------------------------------------------------
VALIDATION_KEY_SALT = 0x5A11D  # fold_in(key(seed), salt): the fixed validation augmentation key.


def make_eval_step(config: ml_collections.ConfigDict, model: models.SemiSupConModel,
                   augment_fn: Callable[[jax.Array, jax.Array], jax.Array],
                   mesh: jax.sharding.Mesh, *, label_names: tuple[str, ...] | None = None
                   ) -> Callable[..., dict[str, jax.Array]]:
  """Returns the jitted `eval_step(variables, batch, key) -> metrics` of one validation batch.

  The batch (laid out as the train step's) is augmented with `key`, encoded in inference mode
  (BatchNorm running statistics, as Lightning's validation loop in eval mode) and scored with
  the training loss: metrics 'loss', 'ssl_loss' and 'sl_loss' ([] float32, replicated).
  `label_names`: see `_loss_kwargs`.
  """
  loss_kwargs = _loss_kwargs(config, label_names)

  def eval_step(variables: dict[str, Any], batch: dict[str, jax.Array], key: jax.Array):
    views, item_ids, labels, labeled = _flat_views(augment_fn(key, batch["audio"]), batch)
    _, z = model.apply(variables, views, train=False)
    components = losses.loss_metrics(z, item_ids, labels, labeled, **loss_kwargs)
    return {"loss": losses.semisup_ntxent(z, item_ids, labels, labeled=labeled, **loss_kwargs),
            "ssl_loss": components["ssl_loss"], "sl_loss": components["sl_loss"]}

  return jax.jit(eval_step, out_shardings=parallel.replicated(mesh))


def evaluate_validation(eval_step: Callable[..., dict[str, jax.Array]],
                        variables: dict[str, Any],
                        host_batches: Iterable[dict[str, np.ndarray]], mesh: jax.sharding.Mesh,
                        key: jax.Array, names: set[str]) -> dict[str, float]:
  """Means over the validation batches of the eval step's metrics, as 'val_<name>'.

  Args:
    eval_step: from `make_eval_step`.
    variables: the model's {'params', 'batch_stats'}.
    host_batches: this host's share of each global validation batch (the same every call).
    mesh: the device mesh.
    key: batch i is augmented with fold_in(key, i).
    names: metric names to keep (components whose rows are empty by construction are left out).

  Returns:
    {'val_loss', 'val_ssl_loss', 'val_sl_loss'} ∩ names, as Python floats.
  """
  sums: dict[str, float] = {}
  count = 0
  for i, batch in enumerate(host_batches):
    metrics = jax.device_get(eval_step(variables, parallel.host_batch_to_global(batch, mesh),
                                       jax.random.fold_in(key, i)))
    for k, v in metrics.items():
      sums[k] = sums.get(k, 0.0) + float(v)
    count += 1
  return {f"val_{k}": v / count for k, v in sums.items() if k in names}


def _component_metric_names(config: ml_collections.ConfigDict) -> set[str]:
  """Drops component losses whose row subset is empty by construction (b_s = 0 or 1)."""
  num_labeled = int(config.data.batch_size * config.data.labeled_share)
  names = {"loss", "learning_rate", "grad_norm", "sparsity_sl", "sparsity_semisl"}
  if num_labeled > 0:
    names.add("sl_loss")
  if num_labeled < config.data.batch_size:
    names.add("ssl_loss")
  return names


def _clock(seconds: float) -> str:
  """Seconds as h:mm:ss."""
  if not np.isfinite(seconds):
    return "?"
  minutes, secs = divmod(int(round(seconds)), 60)
  return f"{minutes // 60}:{minutes % 60:02d}:{secs:02d}"


def progress_line(step: int, total: int, loss: float, views_per_second: float,
                  elapsed_s: float, seconds_per_step: float) -> str:
  """The log step's progress line: step/total, loss, views/s, elapsed time and ETA.

  Args:
    step: steps done.
    total: train.total_steps.
    loss: the step's training loss.
    views_per_second: training throughput over the last log window.
    elapsed_s: seconds since this process's loop started.
    seconds_per_step: mean step time over the last log window (the ETA extrapolates it).
  """
  eta = (total - step) * seconds_per_step
  return (f"step {step}/{total} ({100.0 * step / total:.1f}%)  loss {loss:.4f}  "
          f"views/s {views_per_second:.1f}  elapsed {_clock(elapsed_s)}  ETA {_clock(eta)}")


def _minutes_elapsed(config: ml_collections.ConfigDict, since: float) -> bool:
  """Whether `train.checkpoint_every_minutes` passed since `since` (time.monotonic()).

  Multi-process runs follow process 0's clock, so every process saves at the same step.
  """
  minutes = config.train.checkpoint_every_minutes
  due = bool(minutes) and time.monotonic() - since >= 60 * minutes
  if jax.process_count() > 1:
    due = bool(multihost_utils.broadcast_one_to_all(np.asarray(due)))
  return due


def _record_batch_hashes(host_batches: Iterator[dict[str, np.ndarray]], workdir: epath.Path,
                         start_step: int) -> Iterator[dict[str, np.ndarray]]:
  """Passes host batches through, appending {"step", "sha256"} lines to
  `<workdir>/batch_hashes.<process>.jsonl` (`train.record_batch_hashes`, for fault tests)."""
  from data_pipelines import pretrain_input  # pylint: disable=g-import-not-at-top
  path = workdir / f"batch_hashes.{jax.process_index()}.jsonl"
  for step, batch in enumerate(host_batches, start=start_step + 1):
    with path.open("a") as f:
      f.write(json.dumps({"step": step, "sha256": pretrain_input.batch_digest(batch)}) + "\n")
    yield batch


def train_and_evaluate(config: ml_collections.ConfigDict,
                       workdir: paths.PathLike) -> TrainState:
  """Pretrains (resuming from `workdir` if it holds a checkpoint), then exports the encoder.

  Returns:
    The final train state.
  """
  # Deferred so that `import ssc_jax.train` does not start TensorFlow.
  from data_pipelines import pretrain_input  # pylint: disable=g-import-not-at-top

  # ----------------------------------------------------------------------- checks & mesh ---
  workdir = paths.resolve(workdir)
  config_checks.check_workdir(workdir)
  mesh = parallel.make_mesh()
  config_checks.check_pretrain_config(config, device_count=jax.device_count(),
                                      process_count=jax.process_count())
  logging.info("Mesh %s over %d processes.", dict(mesh.shape), jax.process_count())
  if warning := config_checks.cpu_only_warning(config, jax.default_backend()):
    logging.warning(warning)

  # ------------------------------------------- input (fails fast on unprepared data) ---
  ckpt = checkpoint.Checkpointer(workdir, keep=config.train.keep_checkpoints)
  if ckpt.all_steps():
    config_checks.check_resume_config(config, workdir)

  label_features = pretrain_input.label_features(config.data)
  config_checks.check_similarity_labels(config, label_features)
  label_names = label_features[0][2] if len(label_features) == 1 else None

  allow_regression_labels = config.loss.similarity != losses.LABEL_OVERLAP

  def make_host_input(start_step: int) -> pretrain_input.HostBatchIterator:
    return pretrain_input.HostBatchIterator(pretrain_input.make_pretrain_dataset(
        config.data, seed=config.seed, start_step=start_step,
        process_index=jax.process_index(), process_count=jax.process_count(),
        allow_regression_labels=allow_regression_labels))

  host_input = make_host_input(0)
  validation_input = None
  if config.train.eval_every_steps:
    validation_input = pretrain_input.ValidationInput(
        config.data, labeled_split=config.train.eval_labeled_split,
        unlabeled_split=config.train.eval_unlabeled_split,
        num_batches=config.train.eval_batches, seed=config.seed,
        process_index=jax.process_index(), process_count=jax.process_count(),
        allow_regression_labels=allow_regression_labels)

  # ----------------------------------------------------------------- model & optimiser ---
  model = models.build_model(config.model)
  tx = make_optimizer(config)
  init_rng, augment_rng = jax.random.split(jax.random.key(config.seed))
  augment_fn = augment.make_augment_fn(config.augment, config.data.sample_rate)

  # ----------------------------------------------------------- state: fresh or resumed ---
  state = create_train_state(config, model, tx, mesh, init_rng)
  start_step, restored = ckpt.restore_newest(abstract_train_state(state))
  start_step = start_step or 0
  if start_step:
    state = restored
    if ckpt.restore_input(start_step, host_input):
      logging.info("Resumed from step %d in %s; the input continues its saved stream.",
                   start_step, ckpt.directory)
    else:
      host_input = make_host_input(start_step)
      logging.warning("Resumed from step %d in %s; the input restarts a fresh deterministic "
                      "stream seeded by the step (not the interrupted stream's continuation).",
                      start_step, ckpt.directory)
  else:
    parameter_overview.log_parameter_overview(state.params)
  host_batches = host_input
  if config.train.record_batch_hashes:
    host_batches = _record_batch_hashes(host_input, workdir, start_step)
  # Prefetch depth 1: the next host batch is read only when the loop asks for it, so after the
  # step that consumed batch s the iterator stands exactly at s and its saved position is the
  # continuation. The host→device copy still overlaps the previous (asynchronous) step.
  batches = parallel.prefetch_to_mesh(host_batches, mesh, size=1)

  # ---------------------------------------------------------------------- train loop ---
  train_step = make_train_step(config, model, tx, augment_fn, mesh, label_names=label_names)
  eval_step = None
  if validation_input:
    eval_step = make_eval_step(config, model, augment_fn, mesh, label_names=label_names)
  validation_rng = jax.random.fold_in(jax.random.key(config.seed), VALIDATION_KEY_SALT)
  writer = metric_logging.MetricLogger(workdir)
  if jax.process_index() == 0:
    paths.write_atomic(workdir / "config.json", config.to_json_best_effort(indent=2))
  keep_metrics = _component_metric_names(config)
  views_per_step = config.data.batch_size * config.data.num_views
  total = config.train.total_steps
  last_saved, last_save_time = start_step, time.monotonic()
  loop_start = window_start = time.perf_counter()
  window_steps = 0
  step = start_step
  pending: tuple[int, dict[str, jax.Array]] | None = None  # read one step late.

  def check_finite(step_: int, metrics_: dict[str, jax.Array]) -> dict[str, float]:
    values = {k: float(v) for k, v in jax.device_get(metrics_).items() if k in keep_metrics}
    if not np.isfinite(values["loss"]):
      ckpt.wait()
      raise FloatingPointError(
          f"Non-finite training loss ({values['loss']}) at step {step_}; stopping. The last good "
          f"checkpoint is step {last_saved} in {ckpt.directory}.")
    return values

  stop = preemption.StopRequest(listen=jax.process_count() == 1)
  with stop:
    while step < total:
      state, metrics = train_step(state, next(batches), augment_rng)
      step += 1
      window_steps += 1
      if pending is not None:
        check_finite(*pending)
      pending = (step, metrics)
      stop_now = stop.requested or ckpt.reached_preemption(step)
      log_now = step % config.train.log_every_steps == 0 or step == total
      save_now = (step % config.train.checkpoint_every_steps == 0 or step == total or stop_now
                  or (log_now and _minutes_elapsed(config, last_save_time)))
      if log_now or save_now:  # Never log or save past a non-finite loss.
        values = check_finite(*pending)
        pending = None
      if log_now:
        now = time.perf_counter()
        values["views_per_second"] = window_steps * views_per_step / (now - window_start)
        writer.write(step, values)
        logging.info("%s", progress_line(step, total, values["loss"], values["views_per_second"],
                                         now - loop_start, (now - window_start) / window_steps))
        window_start, window_steps = now, 0
      eval_every = config.train.eval_every_steps
      if eval_every and step % eval_every == 0:
        t_eval = time.perf_counter()
        val_values = evaluate_validation(eval_step, state.variables, validation_input, mesh,
                                         validation_rng, keep_metrics)
        writer.write(step, val_values)
        logging.info("step %d validation (%d batches): %s", step, validation_input.num_batches,
                     "  ".join(f"{k} {v:.4f}" for k, v in val_values.items()))
        window_start += time.perf_counter() - t_eval  # Not in views/s nor the ETA.
      if save_now:
        logging.info("Saving step %d.", step)
        ckpt.save(step, state, host_input)
        last_saved, last_save_time = step, time.monotonic()
      if stop_now:
        break
    ckpt.close()
  writer.close()
  if step < total:
    logging.warning("Stopped at step %d/%d on %s; checkpoint committed in %s. Run the same "
                    "command to resume.", step, total,
                    stop.signal_name or "a preemption notice", ckpt.directory)
    return state

  # -------------------------------------------------------------------------- export ---
  export_path = workdir / "encoder.msgpack"
  if jax.process_index() == 0:
    checkpoint.export_variables(
        export_path, state.variables, config.model, sample_rate=config.data.sample_rate,
        view_length=config.data.view_length,
        training={"datasets": [d for d in (config.data.labeled, config.data.unlabeled) if d],
                  "steps": int(jax.device_get(state.step))})
    logging.info("Exported encoder + head to %s.", export_path)
  return state
