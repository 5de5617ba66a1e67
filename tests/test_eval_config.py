"""configs/probe.py: every task builds with the spec's §7.3 settings; options; bad args."""

import pytest

from configs import probe as probe_config
from ssc_jax.evaluation import probe


@pytest.mark.parametrize("task", sorted(probe_config.TASKS))
def test_every_task_builds_a_probe_config(task):
  c = probe_config.get_config(task)
  assert c.job == "probe" and c.task.name == task
  dataset, label_key, head, lr, epochs, patience = probe_config.TASKS[task]
  assert (c.task.dataset, c.task.label_key, c.probe.head) == (dataset, label_key, head)
  assert (c.probe.learning_rate, c.probe.max_epochs, c.probe.patience) == (lr, epochs, patience)
  assert not c.probe.use_bias and c.probe.weight_decay == 1e-6 and c.probe.batch_size == 64
  assert c.data.max_chunks == 64
  c.pretrained = "x"
  probe.check_config(c)


def test_spec_table_values():
  t = probe_config.TASKS
  assert t["emomusic"][3] == 1e-4 and t["emomusic"][5] == 200
  assert t["giantsteps_key"][2] == "linear" and t["nsynth_pitch"][4:] == (20, 2)
  assert t["mtat_top50"][4:] == (100, 15) and t["mtg_genre"][4:] == (200, 7)


def test_options():
  c = probe_config.get_config("mtat_top50,marble,robustness,prototypes,fresh_crops")
  assert c.probe.protocol == "marble" and c.probe.use_bias and c.probe.dropout == 0.2
  assert c.probe.hidden == 512 and c.probe.head == "mlp" and c.probe.batch_size == 64
  assert c.probe.learning_rates == (5e-5, 1e-4, 5e-4, 1e-3, 5e-3, 1e-2)
  assert c.robustness.enabled and c.prototypes.enabled
  assert c.probe.train_features == "fresh_crops"
  smoke = probe_config.get_config("smoke")
  assert smoke.task.dataset == "synthetic_music/tiny" and smoke.task.name == "synthetic_instrument"
  assert probe_config.get_config("gtzan,linear,bias").probe.head == "linear"
  assert probe_config.get_config("giantsteps").task.name == "giantsteps_key"
  plain = probe_config.get_config("gtzan")
  assert not plain.random_init and not plain.probe.standardize
  assert plain.probe.recalibrate_batchnorm_batches == 0
  assert probe_config.get_config("gtzan,standardize").probe.standardize
  ref = probe_config.get_config("gtzan,random_init")
  assert ref.random_init and ref.probe.standardize
  assert ref.probe.recalibrate_batchnorm_batches == 8  # The documented default.
  assert probe_config.get_config("smoke,random_init").probe.recalibrate_batchnorm_batches == 2


@pytest.mark.parametrize("arg,match", [
    ("", "needs a task"), ("mtat", "unknown task"), ("gtzan,fast", "unknown option"),
    ("gtzan,linear,mlp", "exclude each other")])
def test_bad_args_are_refused(arg, match):
  with pytest.raises(ValueError, match=match):
    probe_config.get_config(arg)


def test_check_config_names_the_bad_field():
  c = probe_config.get_config("smoke")
  with pytest.raises(ValueError, match="config.pretrained"):
    probe.check_config(c)
  c.pretrained = "x"
  c.probe.train_features = "cache"
  with pytest.raises(ValueError, match="train_features"):
    probe.check_config(c)
  c.probe.train_features = "cached"
  c.data.batch_size = 12  # not a multiple of the 8 test devices
  with pytest.raises(ValueError, match="config.data.batch_size"):
    probe.check_config(c)
  c.data.batch_size = 8
  c.probe.recalibrate_batchnorm_batches = -1
  with pytest.raises(ValueError, match="recalibrate_batchnorm_batches"):
    probe.check_config(c)
