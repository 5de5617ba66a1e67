"""The supervised end-to-end baseline: its config (spec §7.3) and a run on the tiny synthetic
task, scored and reported as the probes are."""

import json
import os

import jax
import numpy as np
import optax
import pytest

from configs import probe as probe_config
from configs import supervised as supervised_config
from ssc_jax import checkpoint
from ssc_jax import models
from ssc_jax import parallel
from ssc_jax.evaluation import head_training
from ssc_jax.evaluation import reports
from ssc_jax.evaluation import supervised


def test_config_has_the_spec_settings_and_refuses_unknown_tasks():
  c = supervised_config.get_config("mtat_top50")
  assert (c.job, c.task.dataset, c.task.label_key) == ("supervised", "mtat/top50", "tags")
  assert (c.optimizer.learning_rate, c.optimizer.weight_decay) == (3e-4, 1e-6)
  assert (c.data.batch_size, c.train.total_steps, c.train.patience) == (64, 200_000, 15)
  assert (c.model.encoder, c.model.width) == ("samplecnn", 1.0)
  assert supervised_config.get_config("emomusic").optimizer.learning_rate == 1e-4
  assert supervised_config.get_config("synthetic").task.name == "synthetic_instrument"
  assert supervised_config.get_config("giantsteps").task.name == "giantsteps_key"
  for task in probe_config.TASKS:
    assert supervised_config.get_config(task).task.name == task
  with pytest.raises(ValueError, match=r"configs/supervised\.py: unknown task 'no_such_task'"):
    supervised_config.get_config("no_such_task")
  with pytest.raises(ValueError, match=r"unknown option.*'fast'"):
    supervised_config.get_config("gtzan,fast")
  with pytest.raises(ValueError, match="needs a task"):
    supervised_config.get_config()


def test_train_step_loss_is_bce_of_the_linear_head_on_train_mode_embeddings(small_encoder):
  """Multi-label: the step's loss is the mean binary cross-entropy (NumPy, float64) of the
  bias-free linear head on the encoder's train-mode (batch-statistics) representations."""
  _, model, variables = small_encoder
  mesh = parallel.make_mesh(jax.devices()[:1])
  head_cfg = head_training.HeadConfig(kind="multilabel", num_outputs=3, hidden=0)
  head_params = jax.device_get(head_training.init_params(head_cfg, 512 // 8))
  params = {"encoder": variables["params"]["encoder"], "head": head_params}
  tx = optax.sgd(0.0)
  state = {"params": params, "batch_stats": variables["batch_stats"],
           "opt_state": tx.init(params)}
  rng = np.random.default_rng(0)
  audio = rng.standard_normal((4, 59049)).astype(np.float32) * 0.1
  labels = (rng.random((4, 3)) < 0.5).astype(np.float32)
  step = supervised.make_train_step(model, head_cfg, tx, mesh)
  _, loss = step(jax.device_put(state), {"audio": audio, "labels": labels})

  h = jax.jit(lambda x: model.apply(variables, x, train=True, mutable=["batch_stats"])[0][0])(
      audio)
  logits = np.asarray(h, np.float64) @ np.asarray(head_params["dense"]["kernel"], np.float64)
  probability = 1.0 / (1.0 + np.exp(-logits))
  bce = -(labels * np.log(probability) + (1 - labels) * np.log(1 - probability)).mean()
  np.testing.assert_allclose(float(loss), bce, rtol=1e-4)


@pytest.mark.slow
def test_smoke_run_trains_end_to_end_and_reports_like_a_probe(tmp_path):
  config = supervised_config.get_config("smoke")
  config.data.data_dir = str(tmp_path / "data")
  workdir = str(tmp_path / "sup")
  results = supervised.run(config, workdir)

  # Validation every 2 steps (early stopping) on the validation split, best one tested.
  training = results["training"]
  assert [r["step"] for r in training["history"]] == [2, 4]
  assert training["best_val_loss"] == min(r["val_loss"] for r in training["history"])
  rows = [json.loads(line) for line in open(os.path.join(workdir, "metrics.jsonl"))]
  assert [sorted(r) for r in rows] == [["step", "train_loss"], ["step", "val_loss"]] * 2

  # The test metrics are those of the saved predictions (every test track once), recomputed
  # here without the metrics module: multi-class accuracy of the argmax.
  assert results["kind"] == "multiclass" and results["num_tracks"]["test"] == 4
  saved = np.load(os.path.join(workdir, "predictions.npz"))
  assert saved["scores"].shape == (4, results["num_classes"])
  accuracy = np.mean(saved["scores"].argmax(1) == saved["targets"].argmax(1))
  assert results["test"]["accuracy"] == pytest.approx(accuracy)
  report = open(os.path.join(workdir, "results.md")).read()
  assert report.startswith(f"# Supervised baseline: {config.task.name} (")

  # The encoder was trained (differs from its initialisation) and is exported.
  exported = checkpoint.read_export(os.path.join(workdir, "encoder.msgpack"))
  init = models.init_variables(models.build_model(config.model), jax.random.key(0),
                               config.data.view_length)
  moved = [not np.allclose(a, b) for a, b in zip(
      jax.tree.leaves(exported.variables["params"]["encoder"]),
      jax.tree.leaves(init["params"]["encoder"]))]
  assert any(moved)

  # Resuming: 2 steps, then the same command with the full budget continues from the step-2
  # checkpoint (state, best variables, input position) and gives the uninterrupted run's numbers.
  split = str(tmp_path / "split")
  config.train.total_steps = 2
  supervised.run(config, split)
  config.train.total_steps = 4
  resumed = supervised.run(config, split)
  steps = [json.loads(line)["step"] for line in open(os.path.join(split, "metrics.jsonl"))]
  assert steps == [2, 2, 4, 4]  # Steps 1-2 were not trained again.
  for key in ("train_loss", "val_loss"):
    np.testing.assert_allclose([r[key] for r in resumed["training"]["history"]],
                               [r[key] for r in training["history"]], rtol=1e-6, err_msg=key)
  assert resumed["test"]["accuracy"] == results["test"]["accuracy"]
  np.testing.assert_allclose(np.load(os.path.join(split, "predictions.npz"))["scores"],
                             saved["scores"], rtol=1e-5, atol=1e-6)

  # One row "supervised" in the comparison table, like any probed encoder.
  header, table = reports.gather([workdir])["main"]
  assert header == ["encoder", "synthetic_instrument/accuracy"]
  assert table == [["supervised", results["test"]["accuracy"]]]
