"""End to end on the built-in synthetic dataset: export → probe → report, exactly-once test
evaluation on 1 and 8 devices, a frozen encoder, head reuse with the robustness sweep, and
loading a pretraining workdir's checkpoint."""

import json
import os

import jax
import numpy as np
import pytest

from configs import probe as probe_config
from tests import tfds_tracks as tracks
from ssc_jax import checkpoint
from ssc_jax import parallel
from ssc_jax import report as report_cli
from ssc_jax.evaluation import features
from ssc_jax.evaluation import probe
from ssc_jax.inference import embedding as embed
from ssc_jax.inference import pretrained

T = 59535
DATASET = "synthetic_music/tiny"


@pytest.fixture(scope="module")
def setup(tmp_path_factory, small_encoder):
  root = tmp_path_factory.mktemp("probe_e2e")
  model_config, model, variables = small_encoder  # conftest: calibrated, width 0.125.
  path = str(root / "pretrain" / "encoder.msgpack")
  checkpoint.export_variables(path, variables, model_config, sample_rate=22050, view_length=T)
  return {"root": root, "data_dir": str(root / "data"), "export": path, "model": model,
          "variables": variables}


def _reference(setup, split):
  """Independent path: whole tracks from TFDS, plain model.apply per chunk, mean per track."""
  data = tracks.load_tracks(DATASET, split, setup["data_dir"], ["instrument"])
  model, variables = setup["model"], setup["variables"]
  apply = {
      False: jax.jit(lambda x: model.apply(variables, x, train=False, method=model.embed)),
      True: jax.jit(lambda x: model.apply(variables, x, train=True, method=model.embed,
                                          mutable=["batch_stats"])[0])}
  out = {}
  for train_mode, fn in apply.items():
    means = []
    for audio in data["audio"]:
      n = len(audio) // T
      means.append(np.asarray(fn(audio[:n * T].reshape(n, T))).mean(0))
    out[train_mode] = np.stack(means)
  return out, data["instrument"]


def test_test_split_is_embedded_exactly_once_on_1_and_8_devices(setup):
  reference, labels = _reference(setup, "test")
  model = setup["model"]
  results = []
  for devices in (jax.devices()[:1], jax.devices()):
    mesh = parallel.make_mesh(devices)
    variables = embed.replicate(setup["variables"], mesh)
    results.append(features.embed_split(
        model, variables, mesh, dataset=DATASET, split="test", data_dir=setup["data_dir"],
        label_key="instrument", batch_size=8, view_length=T, max_chunks=64))
  for feats in results:
    assert feats.num_tracks == len(labels) == 4  # T tracks -> T predictions, each once.
    np.testing.assert_array_equal(feats.chunks_per_track, [2, 2, 2, 2])  # 6 s clips.
    np.testing.assert_array_equal(np.argmax(feats.labels, 1), labels)
    np.testing.assert_allclose(feats.track_h, reference[False], rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(results[0].track_h, results[1].track_h, rtol=1e-5, atol=1e-6)
  # The tracks' representations differ (a track mix-up would show), and BatchNorm in train
  # mode would give other representations: the comparisons can tell.
  gaps = np.abs(reference[False][:, None] - reference[False][None]).max(-1)
  assert gaps[~np.eye(4, dtype=bool)].min() > 1e-2
  assert np.abs(reference[True] - reference[False]).max() > 1e-2


def test_probe_end_to_end_then_reuse_head_with_robustness(setup, monkeypatch):
  loaded = pretrained.load_pretrained(setup["export"])
  before = jax.tree.map(np.array, loaded.variables)
  monkeypatch.setattr(pretrained, "load_pretrained", lambda path, dtype="": loaded)

  config = probe_config.get_config("smoke,prototypes")
  config.pretrained = setup["export"]
  config.data.data_dir = setup["data_dir"]
  workdir = str(setup["root"] / "probe")
  results = probe.run(config, workdir)

  # Frozen encoder: parameters and BatchNorm statistics untouched (and not donated).
  jax.tree.map(np.testing.assert_array_equal, jax.tree.map(np.asarray, loaded.variables),
               before)
  # The probe saw inference-mode representations of every test track, each once.
  pred = np.load(os.path.join(workdir, "predictions.npz"))
  assert sorted(pred["track_index"].tolist()) == [0, 1, 2, 3]
  reference, labels = _reference(setup, "test")
  np.testing.assert_allclose(pred["embeddings"], reference[False], rtol=1e-4, atol=1e-5)
  assert pred["scores"].shape == (4, 5)
  acc = np.mean(np.argmax(pred["scores"], 1) == labels)
  assert results["test"]["accuracy"] == pytest.approx(acc)

  for name in ("results.json", "results.md", "results.csv", "prototypes.csv", "head.msgpack",
               "loss_curves.png", "embedding_map.png", "confusion_matrix.png"):
    assert os.path.isfile(os.path.join(workdir, name)), name
  assert any(f.startswith("events.out.tfevents") for f in os.listdir(workdir))
  saved = json.load(open(os.path.join(workdir, "results.json")))
  assert saved["name"] == "pretrain" and saved["num_tracks"] == {"train": 8, "validation": 4,
                                                                 "test": 4}
  t = saved["training"]
  assert 1 <= t["best_epoch"] <= t["epochs_run"] <= 3 and t["features"] == "cached"
  # Cached crops: the encoder ran once per cached training chunk (8 clips x 2 chunks).
  assert t["encoder_forwards"] == {"this_run": 16, "re_encoding_every_epoch":
                                   8 * t["epochs_run"]}
  assert [r["num_clips"] for r in saved["prototypes"]] == [4, 8]

  # Second run in the same workdir: the head is reused, and the sweep runs. Severity 0 is the
  # clean test set, so it must reproduce the clean metrics.
  config.robustness.enabled = True
  config.prototypes.enabled = False
  again = probe.run(config, workdir)
  assert again["test"]["accuracy"] == results["test"]["accuracy"]
  assert again["training"]["best_epoch"] == t["best_epoch"]
  levels = {r["name"]: r for r in again["robustness"]}
  assert list(levels) == ["severity_0", "only_reverse"]
  assert levels["severity_0"]["accuracy"] == results["test"]["accuracy"]
  assert levels["severity_0"]["roc_auc"] == pytest.approx(results["test"]["roc_auc"])
  assert os.path.isfile(os.path.join(workdir, "robustness_curve.png"))

  # A second encoder name, then the comparison table over both runs.
  config2 = probe_config.get_config("smoke,mlp,bias")
  config2.pretrained = setup["export"]
  config2.name = "other"
  config2.data.data_dir = setup["data_dir"]
  workdir2 = str(setup["root"] / "probe2")
  other = probe.run(config2, workdir2)
  assert other["head"]["description"] == "MLP 512 (bias)"
  text, tables = report_cli.render([workdir, workdir2])
  header, rows = tables["main"]
  assert header == ["encoder", "synthetic_instrument/accuracy"]
  assert [r[0] for r in rows] == ["pretrain", "other"]
  assert "robustness/synthetic_instrument/accuracy" in tables
  assert "| other |" in text


def test_fresh_crops_then_a_reused_head_for_another_task_is_refused(setup, tmp_path):
  config = probe_config.get_config("smoke,fresh_crops")
  config.pretrained = setup["export"]
  config.data.data_dir = setup["data_dir"]
  config.probe.max_epochs = 2
  results = probe.run(config, str(tmp_path))
  t = results["training"]
  assert t["features"] == "fresh_crops" and t["epochs_run"] == 2
  assert t["encoder_forwards"] == {"this_run": 16, "re_encoding_every_epoch": 16}
  other = probe_config.get_config("synthetic_pitch_classes,smoke")
  other.pretrained = setup["export"]
  other.data.data_dir = setup["data_dir"]
  with pytest.raises(ValueError, match="head.msgpack was trained for multiclass"):
    probe.run(other, str(tmp_path))


def test_a_head_trained_on_another_encoder_or_with_other_settings_is_retrained(setup,
                                                                              tmp_path):
  config = probe_config.get_config("smoke")
  config.pretrained = setup["export"]
  config.data.data_dir = setup["data_dir"]
  config.probe.max_epochs = 2
  workdir = str(tmp_path / "probe")
  first = probe.run(config, workdir)["training"]["fingerprint"]
  assert first["encoder"] == setup["export"] and first["probe"]["max_epochs"] == 2

  exported = checkpoint.read_export(setup["export"])
  other = str(tmp_path / "other.msgpack")
  checkpoint.export_variables(other, jax.tree.map(lambda a: a * 1.01, exported.variables),
                              exported.model_config, sample_rate=exported.card["sample_rate"],
                              view_length=exported.card["view_length"])
  config.pretrained = other
  second = probe.run(config, workdir)["training"]["fingerprint"]
  assert second["encoder"] == other and second["encoder_sha256"] != first["encoder_sha256"]

  config.probe.max_epochs = 3  # Same encoder, other head settings.
  third = probe.run(config, workdir)["training"]
  assert third["fingerprint"]["probe"]["max_epochs"] == 3
  assert third["fingerprint"]["encoder_sha256"] == second["encoder_sha256"]


def test_random_init_reference_standardised_and_sharing_features_across_label_sets(setup,
                                                                                   tmp_path):
  memo = probe.Memo()
  runs = {}
  for task in ("synthetic_instrument", "synthetic_key"):
    config = probe_config.get_config(f"{task},smoke,random_init")
    config.pretrained = setup["export"]
    config.data.data_dir = setup["data_dir"]
    workdir = tmp_path / task
    runs[task] = (workdir, probe.run(config, str(workdir), memo=memo, print_report=False))
  for task, (workdir, results) in runs.items():
    assert results["encoder"]["random_init"] and results["name"] == "pretrain (random init)"
    assert results["encoder"]["batchnorm_recalibration_batches"] == 2
    assert "random init (seed 0), BatchNorm recalibrated" in results["encoder"]["source"]
    assert ("head training on standardised (random-init encoder, BatchNorm recalibrated on 2 "
            "batches) features: training loss") in (workdir / "results.md").read_text()
    conv = results["training"]["convergence"]
    assert conv["epochs_run"] == results["training"]["epochs_run"]
    assert conv["train_loss_drop"] == pytest.approx(conv["train_loss_initial"]
                                                    - conv["train_loss_final"])
    pred = np.load(workdir / "predictions.npz")
    # A meaningful reference: the recalibrated random-init embeddings differ between clips.
    h = pred["embeddings"]
    assert np.abs(h[:, None] - h[None]).max() / np.abs(h).max() > 1e-2
    # The head carries its training-split statistics and scores with them.
    head, _ = probe.load_head(workdir / probe.HEAD_FILE)
    assert head.standardizer is not None and results["head"]["standardized"]
    np.testing.assert_allclose(head.predict(h), pred["scores"], rtol=1e-5, atol=1e-6)
  # The second label set reused the first one's encoder and embeddings (one memo), relabelled
  # with its own labels, which match the TFDS reference reader's.
  first, second = (np.load(w / "predictions.npz") for w, _ in runs.values())
  np.testing.assert_array_equal(first["embeddings"], second["embeddings"])
  keys = tracks.load_tracks(DATASET, "test", setup["data_dir"], ["key"])["key"]
  np.testing.assert_array_equal(np.argmax(second["targets"], 1), keys)
  assert second["targets"].shape[1] == 24
  # Rerun in the same workdir: the head (and its statistics) is reused, same test metrics.
  workdir, results = runs["synthetic_key"]
  config = probe_config.get_config("synthetic_key,smoke,random_init")
  config.pretrained = setup["export"]
  config.data.data_dir = setup["data_dir"]
  again = probe.run(config, str(workdir), print_report=False)
  assert again["test"] == results["test"]
