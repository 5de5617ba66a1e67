"""Workdirs and data dirs on a non-local filesystem: TensorFlow's in-memory `ram://`.

train → resume → export → probe → embed with `--workdir`, `data_dir` and the outputs on
`ram://` (registered for etils.epath by tests/ram_fs.py). Everything is then read back through
tf.io.gfile, and nothing may appear on the local disk.

The dataset is prepared on local disk and copied to `ram://`, as one prepares data once and
copies it to a bucket: TFDS's own preparation fails on `ram://` (after renaming its temporary
directory, TFDS's clean-up `rmtree` gets NotFoundError from TensorFlow's in-memory filesystem),
which says nothing about `gs://`. Reading the prepared data from `ram://` is covered.

What this does NOT cover: Orbax writes its array data through tensorstore, which knows local
files and `gs://` but no offline non-local filesystem (it refuses `ram://` paths as "not
absolute"). Here the checkpoints alone go to a local directory (`LocalCheckpointer`);
`test_checkpointer_keeps_gs_paths` checks what can be checked of the `gs://` path offline.
"""

import io
import json
import os

import jax
import numpy as np
import pytest
import soundfile as sf
from orbax.checkpoint._src.serialization import tensorstore_utils
import tensorflow as tf

from configs import demo
from configs import probe as probe_config
from data_pipelines import datasets
from ssc_jax import checkpoint
from ssc_jax import embed as embed_cli
from ssc_jax import paths
from ssc_jax import train
from ssc_jax.evaluation import probe
from tests import ram_fs  # noqa: F401  # Registers ram:// with epath.

ROOT = "ram://ssc_jax_test"


def _read(path: str, mode: str = "r"):
  with tf.io.gfile.GFile(path, mode) as f:
    return f.read()


def _smoke_config(data_dir: str, total_steps: int):
  c = demo.get_config("smoke")
  c.data.data_dir = data_dir
  c.train.total_steps = total_steps
  c.evaluate.probe = False  # probe.run below is the probe.
  return c


@pytest.mark.slow
def test_train_resume_export_probe_embed_on_ram_filesystem(tmp_path, monkeypatch):
  local_ckpt = tmp_path / "orbax"

  class LocalCheckpointer(checkpoint.Checkpointer):
    """Checkpoints of `ram://X` in `<tmp>/orbax/X` (tensorstore cannot write ram://)."""

    def __init__(self, workdir, keep=3):
      super().__init__(local_ckpt / str(workdir).removeprefix(ROOT + "/"), keep)

  monkeypatch.setattr(checkpoint, "Checkpointer", LocalCheckpointer)
  monkeypatch.chdir(tmp_path)  # A path mistaken for a local one would land here.
  data_dir, workdir = f"{ROOT}/data", f"{ROOT}/run"
  local_data = tmp_path / "data"
  datasets.get_builder("synthetic_music/tiny", str(local_data))  # Prepares it.
  for root, _, files in os.walk(local_data):
    target = data_dir + root[len(str(local_data)):]
    tf.io.gfile.makedirs(target)
    for name in files:
      tf.io.gfile.copy(os.path.join(root, name), f"{target}/{name}")

  # Train 2 steps, then resume to 4.
  train.train_and_evaluate(_smoke_config(data_dir, 2), workdir)
  state = train.train_and_evaluate(_smoke_config(data_dir, 4), workdir)
  assert int(state.step) == 4 and sorted(os.listdir(local_ckpt / "run" / "checkpoints")) == [
      "2", "4"]
  rows = [json.loads(line) for line in _read(f"{workdir}/metrics.jsonl").splitlines()]
  assert [r["step"] for r in rows] == [2, 4]
  assert tf.io.gfile.glob(f"{workdir}/events.out.tfevents.*")  # TensorBoard.
  assert json.loads(_read(f"{workdir}/config.json"))["train"]["total_steps"] == 4

  # The export is the resumed run's final state.
  exported = checkpoint.read_export(f"{workdir}/encoder.msgpack").variables
  jax.tree.map(np.testing.assert_array_equal, exported["params"],
               jax.device_get(state.params))

  # Probe the ram:// workdir into a ram:// probe workdir (head, results, figures).
  config = probe_config.get_config("smoke")
  config.pretrained, config.data.data_dir = workdir, data_dir
  probe_dir = f"{ROOT}/probe"
  results = probe.run(config, probe_dir)
  for name in ("results.json", "results.md", "results.csv", "head.msgpack", "predictions.npz",
               "loss_curves.png", "confusion_matrix.png"):
    assert tf.io.gfile.exists(f"{probe_dir}/{name}"), name
  assert json.loads(_read(f"{probe_dir}/results.json"))["task"] == results["task"]
  assert _read(f"{probe_dir}/loss_curves.png", "rb")[:8] == b"\x89PNG\r\n\x1a\n"

  # Embed local audio files with the ram:// workdir; outputs and the skip report on ram://.
  audio = tmp_path / "a.wav"
  sf.write(audio, 0.1 * np.sin(np.arange(70000) / 10.0), 22050)
  (tmp_path / "empty.wav").write_bytes(b"")
  for out in (f"{ROOT}/emb.npz", f"{ROOT}/emb.csv"):
    assert embed_cli.main(["--workdir", workdir, "--out", out, str(audio),
                           str(tmp_path / "empty.wav")]) == 0
  npz = np.load(io.BytesIO(_read(f"{ROOT}/emb.npz", "rb")))
  assert npz["embeddings"].shape == (1, 64) and list(npz["skipped_paths"]) == [
      str(tmp_path / "empty.wav")]
  assert _read(f"{ROOT}/emb.csv").count("\n") == 2
  assert "empty.wav" in _read(f"{ROOT}/emb.csv.skipped.tsv")

  # Nothing landed on the local disk but the checkpoints and the test's own files.
  assert sorted(os.listdir(tmp_path)) == ["a.wav", "data", "empty.wav", "orbax"]


def test_checkpointer_keeps_gs_paths(monkeypatch):
  """A `gs://` workdir reaches Orbax as a `gs://` epath (not made "absolute" as a local path).

  Orbax itself is not run: without network, GCS cannot be reached.
  """
  seen = {}

  class FakeManager:
    def __init__(self, directory, options):
      seen["directory"], seen["options"] = directory, options

  monkeypatch.setattr(checkpoint.ocp, "CheckpointManager", FakeManager)
  ckpt = checkpoint.Checkpointer("gs://bucket/runs/pod", keep=2)
  assert str(ckpt.directory) == str(seen["directory"]) == "gs://bucket/runs/pod/checkpoints"
  assert seen["options"].max_to_keep == 2
  # What Orbax hands tensorstore for that directory: its GCS driver on the bucket (Orbax's
  # private helper; it refuses any other non-local scheme).
  spec = tensorstore_utils.build_kvstore_tspec(str(ckpt.directory / "4" / "default"),
                                               name="params", use_ocdbt=True)
  assert spec["base"] == {"driver": "gcs", "bucket": "bucket",
                          "path": "runs/pod/checkpoints/4/default"}
  assert str(paths.resolve("gs://bucket/x") / "y.json") == "gs://bucket/x/y.json"
  assert str(paths.resolve("~/run")) == os.path.expanduser("~/run")
