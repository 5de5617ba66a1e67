"""The top-level user errors of docs/errors.md: each is refused with the message documented there.

Rows already covered elsewhere: unknown field (test_end_to_end.test_cli_refuses_unknown_override),
unprepared dataset (test_end_to_end.test_mtat_config_fails_fast_naming_the_prepare_command),
batch not divisible by the devices and view length out of range
(test_end_to_end.test_impossible_configs_are_refused), changed config on resume
(test_resume_integrity.test_changed_config_resume_is_refused_listing_fields).
"""

import errno
import os
import subprocess
import sys

import pytest

from configs import demo
from data_pipelines import datasets
from data_pipelines import pretrain_input
from ssc_jax import checkpoint
from ssc_jax import config_checks
from ssc_jax import train

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
  return str(tmp_path_factory.mktemp("data"))


def _smoke(data_dir, **data):
  c = demo.get_config("smoke")
  c.data.data_dir = data_dir
  c.evaluate.probe = False
  for k, v in data.items():
    setattr(c.data, k, v)
  return c


def test_wrong_type_on_the_command_line():
  result = subprocess.run(
      [sys.executable, "-m", "ssc_jax.main", "--config=configs/demo.py", "--workdir=/tmp/x",
       "--config.train.total_steps=abc"], cwd=REPO, capture_output=True, text=True,
      timeout=120)
  assert result.returncode != 0
  assert ("flag --config.train.total_steps=abc: invalid literal for int() with base 10: 'abc'"
          in result.stderr)


def test_unknown_dataset_names_the_dataset_and_the_prepare_command(tmp_path, data_dir):
  with pytest.raises(datasets.DatasetNotPreparedError,
                     match=r"(?s)Dataset 'no_such_dataset' is not prepared .*data_pipelines.prepare"):
    train.train_and_evaluate(_smoke(data_dir, unlabeled="no_such_dataset"), str(tmp_path))


def test_label_key_missing_from_the_labeled_source(tmp_path, data_dir):
  with pytest.raises(ValueError, match=r"label_key 'genre' is not a label feature of dataset "
                     r"'synthetic_music/tiny.*label features are: \['instrument', 'key'"):
    train.train_and_evaluate(_smoke(data_dir, label_key="genre"), str(tmp_path))


def test_non_writable_workdir(tmp_path, data_dir):
  blocker = tmp_path / "a_file"
  blocker.write_text("")
  with pytest.raises(config_checks.ConfigError,
                     match=rf"--workdir={blocker}/run is not a writable directory"):
    train.train_and_evaluate(_smoke(data_dir), str(blocker / "run"))


def test_disk_full_during_save_keeps_the_last_complete_checkpoint(tmp_path, data_dir,
                                                                  monkeypatch):
  calls = {"n": 0}
  save = pretrain_input.HostBatchIterator.save

  def full_on_second_save(self, prefix):
    calls["n"] += 1
    if calls["n"] == 2:
      raise OSError(errno.ENOSPC, "No space left on device", prefix)
    save(self, prefix)

  monkeypatch.setattr(pretrain_input.HostBatchIterator, "save", full_on_second_save)
  workdir = str(tmp_path / "run")
  with pytest.raises(OSError, match=r"Saving step 4 to .*checkpoints failed \(\[Errno 28\] "
                     r"No space left on device.*newest: step 2\)") as e:
    train.train_and_evaluate(_smoke(data_dir), workdir)
  assert e.value.errno == errno.ENOSPC
  ckpt = checkpoint.Checkpointer(workdir)
  assert ckpt.all_steps() == [2]
  ckpt.close()
