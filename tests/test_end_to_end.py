"""train_and_evaluate end to end on the tiny synthetic dataset: train, resume, export, probe."""

import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest
import tensorflow as tf

from configs import demo
from configs import mtat
from data_pipelines import datasets
from data_pipelines import pretrain_input
from ssc_jax import checkpoint
from ssc_jax import config_checks
from ssc_jax import main
from ssc_jax import train

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
  return str(tmp_path_factory.mktemp("data"))


def _smoke_config(data_dir, total_steps=4, probe=False):
  c = demo.get_config("smoke")
  c.data.data_dir = data_dir
  c.train.total_steps = total_steps
  c.evaluate.probe = probe
  return c


def _metric_rows(workdir):
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    return [json.loads(line) for line in f]


@pytest.mark.slow
def test_train_export_probe_then_resume(tmp_path, data_dir):
  workdir = str(tmp_path / "run")
  main.run_job(_smoke_config(data_dir, 4, probe=True), workdir)  # Train, export, compare probes.
  state = train.train_and_evaluate(_smoke_config(data_dir, 4), workdir)  # Restores step 4.
  assert int(state.step) == 4
  rows = _metric_rows(workdir)
  assert [r["step"] for r in rows] == [2, 4]
  for r in rows:
    assert np.isfinite(r["loss"]) and r["views_per_second"] > 0
    assert {"ssl_loss", "sl_loss", "sparsity_sl", "sparsity_semisl", "learning_rate"} <= set(r)
  with open(os.path.join(workdir, "probe_results.md")) as f:
    table = f.read()
  assert "| label set | metric | random init | pretrained |" in table
  for key, metric in (("instrument", "accuracy"), ("register", "accuracy"), ("key", "accuracy"),
                      ("pitch_classes", "roc_auc")):
    assert f"| {key} | {metric} |" in table
    for encoder in ("pretrained", "random_init"):
      results = json.load(open(os.path.join(workdir, "probes", key, encoder, "results.json")))
      # Same protocol for both (standardised features, linear head); only the reference is
      # at random init, with BatchNorm statistics recalibrated on training audio.
      assert results["head"]["standardized"] and results["head"]["hidden"] == 0
      assert results["encoder"]["random_init"] == (encoder == "random_init")
      assert results["encoder"]["batchnorm_recalibration_batches"] == (
          2 if encoder == "random_init" else 0)
      assert {"train_loss_initial", "train_loss_final", "best_epoch", "epochs_run"} <= set(
          results["training"]["convergence"])
      value = float(table.split(f"| {key} | {metric} | ")[1].split(" |")[
          0 if encoder == "random_init" else 1])
      assert value == pytest.approx(results["test"][metric], abs=5e-5)

  # The export is the final state's encoder + head.
  exported = checkpoint.read_export(os.path.join(workdir, "encoder.msgpack")).variables
  jax.tree.map(np.testing.assert_array_equal, exported["params"],
               jax.device_get(state.params))

  # Rerunning the same command with a larger budget resumes at the saved step: the restored
  # state is bit-identical to the one saved, and only the new steps are logged.
  ckpt = checkpoint.Checkpointer(workdir)
  assert ckpt.latest_step() == 4
  restored = ckpt.restore(4, train.abstract_train_state(state))
  ckpt.close()
  jax.tree.map(np.testing.assert_array_equal, jax.device_get(restored), jax.device_get(state))
  # The resumed run also validates (train.* fields may change on resume): at step 6, on one
  # fixed batch of the validation split.
  config = _smoke_config(data_dir, 6)
  config.train.eval_every_steps, config.train.eval_batches = 3, 1
  resumed = train.train_and_evaluate(config, workdir)
  assert int(resumed.step) == 6
  rows = _metric_rows(workdir)
  assert [r["step"] for r in rows] == [2, 4, 6, 6]
  assert set(rows[-1]) == {"step", "val_loss", "val_ssl_loss", "val_sl_loss"}
  assert all(np.isfinite(v) for v in rows[-1].values())


def test_non_finite_loss_stops_and_keeps_last_good_checkpoint(tmp_path, data_dir, monkeypatch):
  make_dataset = pretrain_input.make_pretrain_dataset

  def poisoned(*args, **kwargs):
    ds = make_dataset(*args, **kwargs)
    return ds.enumerate().map(
        lambda i, b: {**b, "audio": b["audio"] * tf.where(i < 2, 1.0, float("nan"))})

  monkeypatch.setattr(pretrain_input, "make_pretrain_dataset", poisoned)
  workdir = str(tmp_path / "nan")
  with pytest.raises(FloatingPointError, match=r"at step 3.*last good checkpoint is step 2"):
    train.train_and_evaluate(_smoke_config(data_dir, 6), workdir)
  ckpt = checkpoint.Checkpointer(workdir)
  assert ckpt.all_steps() == [2]
  ckpt.close()


def test_mtat_config_fails_fast_naming_the_prepare_command(tmp_path):
  c = mtat.get_config()
  c.data.data_dir = str(tmp_path / "empty")
  with pytest.raises(datasets.DatasetNotPreparedError) as e:
    train.train_and_evaluate(c, str(tmp_path / "run"))
  assert "mtat" in str(e.value) and "python -m data_pipelines.prepare" in str(e.value)
  assert not os.path.exists(os.path.join(tmp_path, "run", "checkpoints", "0"))


@pytest.mark.parametrize("field, value, devices, processes, message", [
    ("batch_size", 12, 8, 1, r"data\.batch_size=12 .* device count \(8\)"),
    ("batch_size", 24, 24, 16, r"data\.batch_size=24 must split evenly over 16 processes"),
    ("labeled_share", 0.25, 8, 8,
     r"int\(data\.batch_size \* data\.labeled_share\) = 4 .* over 8 processes"),
    ("labeled_share", 1.5, 8, 1, r"data\.labeled_share=1\.5 must be in \[0, 1\]"),
    ("labeled_fraction", -0.1, 8, 1, r"data\.labeled_fraction=-0\.1 must be in \(0, 1\]"),
    ("num_views", 0, 8, 1, r"data\.num_views=0"),
    ("shuffle_buffer", 0, 8, 1, r"data\.shuffle_buffer=0 must be >= 1"),
    ("view_length", 22050, 8, 1, "data.view_length"),
])
def test_impossible_configs_are_refused(field, value, devices, processes, message):
  # The one place where these rules are checked; data_pipelines/pretrain_input assumes them.
  c = demo.get_config()
  c.data.batch_size = 16
  setattr(c.data, field, value)
  with pytest.raises(config_checks.ConfigError, match=message):
    config_checks.check_pretrain_config(c, device_count=devices, process_count=processes)


def test_cli_refuses_unknown_override():
  result = subprocess.run(
      [sys.executable, "-m", "ssc_jax.main", "--config=configs/demo.py", "--workdir=/tmp/x",
       "--config.loss.no_such_field=1"], cwd=REPO, capture_output=True, text=True, timeout=120)
  assert result.returncode != 0
  assert "no_such_field" in result.stderr
