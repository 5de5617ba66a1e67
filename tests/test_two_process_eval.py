"""Evaluation on 2 local processes (jax.distributed, 2 devices each) = 1 process.

The embedding of a split (`features.embed_split`, each process feeding its share of every
global batch) and the whole smoke probe (`probe.run`: cached training features, head
training, test metrics and predictions) must not depend on how the input is split over hosts.
"""

import json
import os

import numpy as np
import pytest

from configs import probe as probe_config_lib
from ssc_jax import checkpoint
from ssc_jax import parallel
from ssc_jax.evaluation import features
from ssc_jax.evaluation import probe
from ssc_jax.inference import embedding
from ssc_jax.inference import pretrained
from tests import processes

DATASET = "synthetic_music/tiny"
VIEW_LENGTH = 59535


def embed_kwargs(data_dir: str) -> dict:
  return dict(dataset=DATASET, split="test", data_dir=data_dir, label_key="instrument",
              batch_size=8, view_length=VIEW_LENGTH, max_chunks=64)


def probe_config(export: str, data_dir: str):
  config = probe_config_lib.get_config("smoke")
  config.pretrained = export
  config.data.data_dir = data_dir
  return config


@pytest.mark.slow
def test_two_processes_evaluate_like_one(tmp_path, small_encoder):
  model_config, _, variables = small_encoder
  export = str(tmp_path / "encoder.msgpack")
  checkpoint.export_variables(export, variables, model_config, sample_rate=22050,
                              view_length=VIEW_LENGTH)
  data_dir = str(tmp_path / "data")

  # One process, all 8 local devices (this also prepares the data for the workers).
  mesh = parallel.make_mesh()
  encoder = pretrained.load_pretrained(export)
  one = features.embed_split(encoder.model, embedding.replicate(encoder.variables, mesh), mesh,
                             **embed_kwargs(data_dir))
  one_results = probe.run(probe_config(export, data_dir), str(tmp_path / "one" / "probe"))

  port, out = processes.free_port(), str(tmp_path / "two")
  processes.run_workers("two_process_eval_worker.py",
                        [[str(i), str(port), out, export, data_dir] for i in range(2)])

  two = np.load(os.path.join(out, "embed_test.npz"))
  np.testing.assert_array_equal(two["chunks_per_track"], one.chunks_per_track)
  np.testing.assert_array_equal(two["labels"], one.labels)
  np.testing.assert_allclose(two["track_h"], one.track_h, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(two["track_zhat"], one.track_zhat, rtol=1e-5, atol=1e-6)
  # The tracks differ from each other, so a mix-up of tracks between hosts would show.
  gaps = np.abs(one.track_h[:, None] - one.track_h[None]).max(-1)
  assert gaps[~np.eye(len(gaps), dtype=bool)].min() > 1e-2

  two_results = json.load(open(os.path.join(out, "probe", "results.json")))
  assert two_results["num_tracks"] == one_results["num_tracks"]
  assert two_results["training"]["best_epoch"] == one_results["training"]["best_epoch"]
  for name, value in one_results["test"].items():
    if isinstance(value, float):
      assert two_results["test"][name] == pytest.approx(value, rel=1e-4, abs=1e-5), name
  one_pred = np.load(str(tmp_path / "one" / "probe" / "predictions.npz"))
  two_pred = np.load(os.path.join(out, "probe", "predictions.npz"))
  np.testing.assert_array_equal(two_pred["track_index"], one_pred["track_index"])
  np.testing.assert_allclose(two_pred["embeddings"], one_pred["embeddings"], rtol=1e-4,
                             atol=1e-5)
  np.testing.assert_allclose(two_pred["scores"], one_pred["scores"], rtol=1e-4, atol=1e-5)
  assert float(two["accuracy"]) == one_results["test"]["accuracy"]
