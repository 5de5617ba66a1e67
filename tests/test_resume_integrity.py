"""Resume integrity: partial and unreadable checkpoints are skipped, changed configs refused."""

import json
import os

import jax
import numpy as np
import pytest

from configs import demo
from ssc_jax import checkpoint
from ssc_jax import config_checks
from ssc_jax import train


def _state(value: float):
  return {"w": jax.numpy.full((64, 64), value, jax.numpy.float32),
          "step": jax.numpy.asarray(int(value), jax.numpy.int32)}


def _abstract(state):
  return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding),
                      state)


def test_truncated_newest_step_is_skipped_and_set_aside(tmp_path, caplog):
  ckpt = checkpoint.Checkpointer(str(tmp_path), keep=5)
  ckpt.save(1, _state(1.0))
  ckpt.wait()
  ckpt.save(2, _state(2.0))
  ckpt.close()
  # Kill mid-write of step 2's array data: every data file of its state cut to half.
  data_files = [os.path.join(d, f) for d, _, fs in os.walk(tmp_path / "checkpoints" / "2" / "state")
                for f in fs if os.path.getsize(os.path.join(d, f)) > 0 and "/d/" in
                os.path.join(d, f) + "/"]
  assert data_files
  for path in data_files:
    with open(path, "r+b") as f:
      f.truncate(os.path.getsize(path) // 2)
  # And a save of step 3 that never committed.
  os.makedirs(tmp_path / "checkpoints" / "3.orbax-checkpoint-tmp-17" / "state")

  ckpt = checkpoint.Checkpointer(str(tmp_path), keep=5)
  assert ckpt.all_steps() == [1, 2]
  with caplog.at_level("WARNING"):
    step, state = ckpt.restore_newest(_abstract(_state(0.0)))
  assert step == 1
  np.testing.assert_array_equal(np.asarray(state["w"]), np.ones((64, 64), np.float32))
  log = caplog.text
  assert "3.orbax-checkpoint-tmp-17" in log and "step 2" in log and "failed to restore" in log
  # Nothing deleted: the unreadable step is renamed, the partial one left where it was.
  assert os.path.isdir(tmp_path / "checkpoints" / "2.unreadable")
  assert os.path.isdir(tmp_path / "checkpoints" / "3.orbax-checkpoint-tmp-17")
  # The resumed run can save step 2 again.
  assert ckpt.all_steps() == [1]
  ckpt.save(2, _state(2.0))
  ckpt.close()
  assert checkpoint.Checkpointer(str(tmp_path)).all_steps() == [1, 2]


def test_no_step_restores_raises_instead_of_starting_over(tmp_path):
  ckpt = checkpoint.Checkpointer(str(tmp_path))
  ckpt.save(1, _state(1.0))
  ckpt.close()
  ckpt = checkpoint.Checkpointer(str(tmp_path))
  other_shape = {"w": jax.ShapeDtypeStruct((32, 64), np.float32),
                 "step": jax.ShapeDtypeStruct((), np.int32)}
  with pytest.raises(RuntimeError, match=r"No checkpoint in .* restores:\n  step 1"):
    ckpt.restore_newest(other_shape)
  assert ckpt.all_steps() == [1]  # Nothing renamed.
  ckpt.close()


def _workdir_with_run(tmp_path, config):
  workdir = str(tmp_path / "run")
  ckpt = checkpoint.Checkpointer(workdir)
  ckpt.save(2, _state(2.0))
  ckpt.close()
  with open(os.path.join(workdir, "config.json"), "w") as f:
    f.write(config.to_json_best_effort(indent=2))
  return workdir


def test_changed_config_resume_is_refused_listing_fields(tmp_path):
  saved = demo.get_config("smoke")
  workdir = _workdir_with_run(tmp_path, saved)
  changed = demo.get_config("smoke")
  changed.model.width = 0.25
  changed.data.batch_size = 16
  changed.train.total_steps = 100  # Budget, logging, topology: not a change of the run.
  changed.distributed.initialize = True
  changed.data.data_dir = "/elsewhere"
  with pytest.raises(config_checks.ConfigError) as e:
    train.train_and_evaluate(changed, workdir)  # Refused before any work.
  message = str(e.value)
  assert "model.width: 0.125 -> 0.25" in message and "data.batch_size: 8 -> 16" in message
  assert "allow_config_change=True" in message
  for field in ("total_steps", "distributed", "data_dir"):
    assert field not in message.split("differ:")[1].split("Use a new")[0]
  assert not os.path.exists(os.path.join(workdir, "metrics.jsonl"))

  changed.train.allow_config_change = True
  config_checks.check_resume_config(changed, workdir)  # Allowed: only a warning.


def test_changed_fields_reports_added_and_removed_fields():
  saved = json.loads(demo.get_config("smoke").to_json_best_effort())
  saved["loss"]["old_field"] = 3
  del saved["model"]["projection_dim"]
  config = demo.get_config("smoke")
  assert config_checks.changed_fields(saved, config) == [
      ("loss.old_field", 3, "(absent)"), ("model.projection_dim", "(absent)", 128)]
  assert not config_checks.changed_fields(
      json.loads(config.to_json_best_effort()), demo.get_config("smoke"))


def test_runs_saved_before_the_similarity_fields_resume_with_their_defaults():
  # Runs saved before `loss.similarity` and its parameters existed computed label overlap.
  saved = json.loads(demo.get_config("smoke").to_json_best_effort())
  for field in ("similarity", "regression_sigma", "key_weights", "pitch_class_measure"):
    del saved["loss"][field]
  config = demo.get_config("smoke")
  assert not config_checks.changed_fields(saved, config)
  config.loss.similarity = "key_distance"
  config.loss.key_weights = (1.0, 0.25, 0.0)
  assert config_checks.changed_fields(saved, config) == [
      ("loss.key_weights", [1.0, 0.5, 0.25], [1.0, 0.25, 0.0]),
      ("loss.similarity", "label_overlap", "key_distance")]
