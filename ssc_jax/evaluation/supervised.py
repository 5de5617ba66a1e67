"""Fully supervised end-to-end baseline: `run(config, workdir)`, read top to bottom (spec §7.3).

  python -m ssc_jax.main --config=configs/supervised.py:<task> --workdir=DIR

1. A fresh encoder (configs/supervised.py `model`) and a linear, bias-free head train together
   on random crops of the task's training clips (one per clip, data_pipelines/probe_input.py),
   BatchNorm in train mode with statistics over the global batch, with the task's loss
   (`head_training.per_example_loss`: BCE, cross-entropy or MSE by label kind) and the probes'
   optimiser (`head_training.make_optimizer`: Adam + coupled L2).
2. Every `train.eval_every_steps` (0 = one epoch) the validation split is embedded in inference
   mode (chunk means, `features.embed_split`, as at test) and its loss computed through the
   head. Training stops after `train.patience` evaluations without improvement; the encoder and
   head of the best evaluation are kept.
3. The test is the probes' own: the best encoder embeds every test track once
   (`features.embed_split`), the head scores the chunk means (`head_training.predict`) and
   `metrics.task_metrics` computes the task's metrics. Results are written in the probes' format
   (`reports.write_probe_report`: results.json/.md/.csv, predictions.npz), so
   `python -m ssc_jax.report` shows this run as one more row (`config.name`). The best encoder
   is exported to `<workdir>/encoder.msgpack` (it can be probed like a pretrained one).

Training losses (`train_loss`) and validation losses (`val_loss`) go to TensorBoard and
`<workdir>/metrics.jsonl`. Every evaluation saves a checkpoint (the train state, the best
evaluation's variables and the input position; `<workdir>/checkpoints/`) and the validation
records (`validation_history.json`): running the same command again resumes, and a finished run
is only tested again.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from typing import Any

from absl import logging
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from ssc_jax import checkpoint
from ssc_jax import metric_logging
from ssc_jax import models
from ssc_jax import parallel
from ssc_jax import paths
from ssc_jax import train
from ssc_jax.evaluation import features
from ssc_jax.evaluation import head_training
from ssc_jax.evaluation import metrics
from ssc_jax.evaluation import probe
from ssc_jax.evaluation import reports

SOURCE = "trained from scratch (supervised end to end)"
HISTORY_FILE = "validation_history.json"  # The validation records, read back on resume.


def check_config(config: ml_collections.ConfigDict) -> None:
  """Refuses a bad supervised config before any work, naming the field."""
  if config.get("job") != "supervised":
    raise ValueError(f"config.job is {config.get('job')!r}; this runs configs/supervised.py.")
  t = config.train
  if t.total_steps < 1 or t.log_every_steps < 1 or t.patience < 1 or t.eval_every_steps < 0:
    raise ValueError("config.train: total_steps, log_every_steps and patience must be >= 1 and "
                     f"eval_every_steps >= 0 (0 = one epoch), got {t.to_dict()}.")
  if config.optimizer.learning_rate <= 0 or config.optimizer.weight_decay < 0:
    raise ValueError(f"config.optimizer: learning_rate must be > 0 and weight_decay >= 0, got "
                     f"{config.optimizer.to_dict()}.")
  if config.data.max_chunks < 1:
    raise ValueError(f"config.data.max_chunks must be >= 1, got {config.data.max_chunks}.")
  features.check_batch_size(config.data.batch_size)
  features.check_batch_size(config.data.eval_batch_size, "config.data.eval_batch_size")
  models.check_view_length(config.model.encoder, config.data.view_length)


def early_stopping_state(history: list[dict[str, Any]]) -> tuple[dict[str, Any], int]:
  """The best validation record (lowest loss, earliest on ties) and the evaluations since it.

  Args:
    history: the validation records in order ({'epoch', 'step', 'train_loss', 'val_loss'}).

  Returns:
    (best record, or {'epoch': 0, 'step': 0, 'val_loss': inf} before any; evaluations after it).
  """
  best: dict[str, Any] = {"epoch": 0, "step": 0, "val_loss": math.inf}
  waited = 0
  for record in history:
    if record["val_loss"] < best["val_loss"]:
      best, waited = record, 0
    else:
      waited += 1
  return best, waited


def make_train_step(model: models.SemiSupConModel, head_cfg: head_training.HeadConfig, tx: Any,
                    mesh: jax.sharding.Mesh):
  """Jitted `step(state, batch) -> (state, loss)`; state {'params': {'encoder', 'head'},
  'batch_stats', 'opt_state'} replicated, batch {'audio' [B, T], 'labels' [B, K]} sharded."""
  head = head_cfg.module()

  def step(state, batch):
    def loss_fn(params):
      h, updates = model.apply({"params": {"encoder": params["encoder"]},
                                "batch_stats": state["batch_stats"]}, batch["audio"], train=True,
                               method=models.SemiSupConModel.embed, mutable=["batch_stats"])
      outputs = head.apply({"params": params["head"]}, h, train=False)
      loss = jnp.mean(head_training.per_example_loss(head_cfg.kind, outputs, batch["labels"]))
      return loss, updates["batch_stats"]

    (loss, batch_stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(state["params"])
    updates, opt_state = tx.update(grads, state["opt_state"], state["params"])
    params = optax.apply_updates(state["params"], updates)
    return {"params": params, "batch_stats": batch_stats, "opt_state": opt_state}, loss

  replicated = parallel.replicated(mesh)
  return jax.jit(step, donate_argnums=(0,), out_shardings=(replicated, replicated))


def run(config: ml_collections.ConfigDict, workdir: paths.PathLike) -> dict[str, Any]:
  """Trains the supervised baseline on one task and writes its test report to `workdir`.

  Args:
    config: a configs/supervised.py config.
    workdir: output directory (created).

  Returns:
    The results dict also written to `<workdir>/results.json`.
  """
  from data_pipelines import pretrain_input  # pylint: disable=g-import-not-at-top
  from data_pipelines import probe_input  # pylint: disable=g-import-not-at-top
  t_start = time.perf_counter()

  # --------------------------------------------------------------- checks & data ---
  check_config(config)
  workdir = paths.resolve(workdir)
  workdir.mkdir(parents=True, exist_ok=True)
  data = config.data
  task = probe.load_task(config)
  data_dir, num_tracks = task.data_dir, task.num_tracks
  num_outputs, kind, names = task.num_outputs, task.kind, task.names
  if task.sample_rate not in (None, data.sample_rate):
    raise ValueError(f"{task.dataset} is stored at {task.sample_rate} Hz but "
                     f"config.data.sample_rate is {data.sample_rate}.")
  eval_every = config.train.eval_every_steps or math.ceil(num_tracks["train"] / data.batch_size)
  host_input = pretrain_input.HostBatchIterator(probe_input.make_probe_train_dataset(
      task.dataset, task.train_split, data_dir, task.label_key,
      batch_size=data.batch_size // jax.process_count(), view_length=data.view_length,
      seed=config.seed, process_index=jax.process_index(), process_count=jax.process_count(),
      shuffle_buffer=data.shuffle_buffer))

  # ------------------------------------------------------ model, head, optimiser ---
  mesh = parallel.make_mesh()
  model = models.build_model(config.model)
  head_cfg = head_training.HeadConfig(
      kind=kind, num_outputs=num_outputs, hidden=0, use_bias=False,
      learning_rate=config.optimizer.learning_rate, weight_decay=config.optimizer.weight_decay,
      batch_size=data.batch_size, max_epochs=math.ceil(config.train.total_steps / eval_every),
      patience=config.train.patience, seed=config.seed)
  tx = head_training.make_optimizer(head_cfg.learning_rate, head_cfg.weight_decay)
  variables = models.init_variables(model, jax.random.key(config.seed), data.view_length)
  # The projection is not trained; it is kept so that the model embeds as a pretrained one.
  projection = jax.device_put(variables["params"]["head"], parallel.replicated(mesh))
  params = {"encoder": variables["params"]["encoder"],
            "head": head_training.init_params(head_cfg, models.encoder_output_dim(config.model))}
  state = jax.device_put({"params": params, "batch_stats": variables["batch_stats"],
                          "opt_state": tx.init(params)}, parallel.replicated(mesh))
  train_step = make_train_step(model, head_cfg, tx, mesh)
  row_fn = features.make_row_fn(model, mesh)
  logging.info("Supervised %s on %s:%s (%s, K=%d); validation every %d steps; mesh %s.",
               task.name, task.dataset, task.label_key, kind, num_outputs, eval_every,
               dict(mesh.shape))

  def embed(model_variables, split):
    return features.embed_split(model, model_variables, mesh, dataset=task.dataset, split=split,
                                data_dir=data_dir, label_key=task.label_key,
                                batch_size=data.eval_batch_size, view_length=data.view_length,
                                max_chunks=data.max_chunks, row_fn=row_fn)

  def model_variables(trained):
    return {"params": {"encoder": trained["params"]["encoder"], "head": projection},
            "batch_stats": trained["batch_stats"]}

  def trained_copy(s):  # The trained variables, copied (the train step donates its state).
    return jax.tree.map(jnp.copy, {"params": s["params"], "batch_stats": s["batch_stats"]})

  # ------------------------------------------------------- fresh or resumed ---
  ckpt = checkpoint.Checkpointer(workdir, keep=1)
  best_trained = trained_copy(state)  # Of the best evaluation (saved with the state).
  step, restored = ckpt.restore_newest(train.abstract_train_state(
      {"train": state, "best": best_trained}))
  step, history = step or 0, []
  if step:
    state, best_trained = restored["train"], restored["best"]
    history = [r for r in json.loads((workdir / HISTORY_FILE).read_text()) if r["step"] <= step]
    logging.info("Resumed from step %d in %s.", step, ckpt.directory)
    if not ckpt.restore_input(step, host_input):
      logging.warning("The training input restarts its stream (not the continuation).")
  best, waited = early_stopping_state(history)

  # ------------------------------------------------------------------ train loop ---
  writer = metric_logging.MetricLogger(workdir)
  loss_sum, loss_count = 0.0, 0
  loop_start = window_start = time.perf_counter()
  window_steps = 0
  total = config.train.total_steps
  while step < total and waited < config.train.patience:
    state, loss = train_step(state, parallel.host_batch_to_global(next(host_input), mesh))
    step += 1
    window_steps += 1
    loss_sum, loss_count = loss_sum + loss, loss_count + 1  # Device values: no sync per step.
    if step % config.train.log_every_steps == 0:
      now = time.perf_counter()
      value = float(loss)
      writer.write(step, {"train_loss": value})
      logging.info("%s", train.progress_line(
          step, total, value, window_steps * data.batch_size / (now - window_start),
          now - loop_start, (now - window_start) / window_steps))
      window_start, window_steps = now, 0
    if step % eval_every and step != total:
      continue
    t_eval = time.perf_counter()
    val = embed(model_variables(state), task.validation_split)
    val_loss = head_training.mean_loss(
        head_cfg, head_training.predict(head_cfg, state["params"]["head"], val.track_h),
        val.labels)
    if not math.isfinite(val_loss):
      raise FloatingPointError(f"non-finite validation loss {val_loss} at step {step}.")
    history.append({"epoch": len(history) + 1, "step": step,
                    "train_loss": float(loss_sum) / loss_count, "val_loss": val_loss})
    writer.write(step, {"val_loss": val_loss})
    logging.info("Validation %d (step %d): train loss %.4f, val loss %.4f.", len(history), step,
                 history[-1]["train_loss"], val_loss)
    loss_sum, loss_count = 0.0, 0
    best, waited = early_stopping_state(history)
    if best["step"] == step:
      best_trained = trained_copy(state)
    if jax.process_index() == 0:  # Before the checkpoint: resuming drops later records.
      paths.write_atomic(workdir / HISTORY_FILE, json.dumps(history, indent=1))
    ckpt.save(step, {"train": state, "best": best_trained}, host_input)
    window_start += time.perf_counter() - t_eval  # Not in the crops/s nor the ETA.
  ckpt.close()
  writer.close()

  # --------------------------------------------- test: the probes' protocol, best model ---
  best_variables = model_variables(best_trained)
  test = embed(best_variables, task.test_split)
  scores = head_training.predict(head_cfg, best_trained["params"]["head"], test.track_h)
  test_metrics = metrics.task_metrics(kind, scores, test.labels, names,
                                      key_names=task.key_names)
  logging.info("Test (%d tracks): %s", test.num_tracks, ", ".join(
      f"{k} {v:.4f}" for k, v in metrics.scalar_metrics(test_metrics).items()))

  # ---------------------------------------------------------------------- report ---
  results = {
      "name": config.name, "task": task.name, "dataset": task.dataset,
      "label_key": task.label_key, "kind": kind, "num_classes": num_outputs,
      "class_names": list(names),
      "encoder": {"source": SOURCE, "model": config.model.to_dict(), "card": None},
      "protocol": "supervised",
      "head": {**dataclasses.asdict(head_cfg),
               "description": "linear (no bias), trained end to end with the encoder"},
      "training": {"features": "end to end (one random crop per clip per draw)",
                   "learning_rate": head_cfg.learning_rate, "best_epoch": best["epoch"],
                   "epochs_run": len(history), "stopped_early": waited >= config.train.patience,
                   "best_val_loss": best["val_loss"], "best_step": best["step"],
                   "steps_run": step, "eval_every_steps": eval_every, "history": history},
      "view_length": data.view_length, "max_chunks": data.max_chunks,
      "num_tracks": num_tracks, "test": test_metrics,
      "unscored_classes": test_metrics.get("unscored_classes", []),
      "robustness": [], "prototypes": [],
      "config": json.loads(config.to_json_best_effort()),
      "timing": {"total_s": time.perf_counter() - t_start},
  }
  if jax.process_index() == 0:
    checkpoint.export_variables(
        workdir / "encoder.msgpack", best_variables, config.model, sample_rate=data.sample_rate,
        view_length=data.view_length,
        training={"datasets": [task.dataset], "steps": best["step"], "supervised": task.name})
    paths.save_npz(workdir / "predictions.npz", track_index=np.arange(len(scores)),
                   scores=scores, targets=test.labels, chunks=test.chunks_per_track,
                   embeddings=test.track_h)
    print(reports.write_probe_report(workdir, results), flush=True)
  return results
