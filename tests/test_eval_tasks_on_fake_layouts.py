"""Every probe task of configs/probe.py runs on prepared data, end to end, as a user runs it.

Each real dataset is prepared (`data_pipelines.prepare`, the user's command) from a tiny fake
copy of its on-disk layout (tests/fake_layouts.py, shared with the builder tests), once per
layout; the synthetic tasks use synthetic_music/tiny. Then `probe.run` runs
`configs/probe.py:<task>,smoke` (two epochs) with one small exported encoder, and the test
checks what the run produced: results.{md,csv,json} and predictions.npz written, the task's
metric names (ROC-AUC/PR-AUC, accuracy, weighted key score, R²) with finite values in range,
and every test track of the fake layout scored exactly once (count, chunks and targets).
"""

from __future__ import annotations

import collections
import csv
import dataclasses
import math
import os
import pathlib
from collections.abc import Callable

import numpy as np
import pytest

from configs import probe as probe_config
from data_pipelines import prepare
from tests import tfds_tracks as tracks
from data_pipelines.builders import base
from ssc_jax import checkpoint
from ssc_jax.evaluation import probe
from tests import fake_layouts as fake
from tests import test_builders_util as util

MULTILABEL, MULTICLASS, REGRESSION = "multilabel", "multiclass", "regression"
# Test metrics (the rows of results.csv) by task kind; key tasks add the key scores.
METRICS = {
    MULTILABEL: {"roc_auc", "pr_auc", "num_classes_scored", "num_classes_unscored"},
    MULTICLASS: {"accuracy", "roc_auc", "num_classes_scored"},
    REGRESSION: {"r2", "r2_arousal", "r2_valence"},
}
KEY_METRICS = {"weighted_key_score", "weighted_key_score_both_fifths"}
_PITCH_CLASSES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")
# Test files beyond the one of the shipped-lists layout, so that test has 3 genres.
GTZAN_EXTRA_TEST = 2
# A second instrument common enough to get a test row (i00 has the other), so that test has
# 2 classes.
MEDLEYDB_COUNTS = {**fake.MEDLEYDB_COUNTS, "i01": 6}


# ------------------------------------------------------------------- fake layouts ---
@dataclasses.dataclass(frozen=True)
class Layout:
  """A fake manual download.

  Attributes:
    write: writes the layout under the folder it is given.
    datasets: the TFDS "name/config"s prepared from it.
  """
  write: Callable[[pathlib.Path], object]
  datasets: tuple[str, ...]


MTG_SUBSETS = {"mtg_jamendo/top50": "autotagging_top50tags", "mtg_jamendo/genre":
               "autotagging_genre", "mtg_jamendo/moodtheme": "autotagging_moodtheme",
               "mtg_jamendo/instrument": "autotagging_instrument"}
LAYOUTS = {
    "mtat": Layout(fake.write_mtat, ("mtat/top50", "mtat/all188")),
    "mtg_jamendo": Layout(lambda root: fake.write_mtg_jamendo(root, tuple(MTG_SUBSETS.values())),
                          tuple(MTG_SUBSETS)),
    "gtzan": Layout(lambda root: fake.write_gtzan(root, extra_test=GTZAN_EXTRA_TEST),
                    ("gtzan_filtered",)),
    "giantsteps": Layout(fake.write_giantsteps, ("giantsteps_key",)),
    "nsynth": Layout(lambda root: fake.write_nsynth(root, fake.NSYNTH_NOTES_WITH_TRAIN),
                     ("nsynth_notes",)),
    "vocalset": Layout(fake.write_vocalset, ("vocalset/singer", "vocalset/technique")),
    "medleydb": Layout(lambda root: fake.write_medleydb(root, MEDLEYDB_COUNTS), ("medleydb",)),
    "emomusic": Layout(fake.write_emomusic, ("emomusic",)),
}


# ------------------------------- what each task's test split holds, from the layouts ---
def _midi_name(pitch: int) -> str:
  return f"{_PITCH_CLASSES[pitch % 12]}{pitch // 12 - 1}"


def _mtat_test(columns: list[int]) -> list[frozenset[str]]:
  """Test = folders d, e, f; a clip without any of the columns' tags is not a labeled clip."""
  out = []
  for path, tags in fake.mtat_clips():
    kept = frozenset(fake.MTAT_TAGS[j] for j in tags if j in columns)
    if path[0] in "def" and kept:
      out.append(kept)
  return out


def _mtg_test(subset: str) -> list[frozenset[str]]:
  tags = fake.mtg_tracks(fake.MTG_SUBSET_NAMES[subset])
  return [frozenset(tags[t]) for t in fake.MTG_SPLITS["test"] if t != fake.MTG_CORRUPT_TRACK]


def _gtzan_test() -> list[str]:
  """rock.00090 and the extra test files, whose genre is their folder."""
  return ["rock"] + [entry.split("/")[0] for entry in fake.gtzan_extra_test(GTZAN_EXTRA_TEST)]


def _vocalset_test(config: str) -> list[str]:
  """Singer split: 80/10/10 by sha1 of the path; technique split: the listed test singers."""
  files = fake.vocalset_files()
  if config == "singer":
    return [prefix for rel, (prefix, _) in files.items()
            if base.stable_fraction(rel, "vocalset-singer") >= 0.9]
  test_prefixes = {p for p, folder in fake.VOCALSET_SINGERS.items()
                   if folder in fake.VOCALSET_TEST_SINGERS}
  return [technique for prefix, technique in files.values() if prefix in test_prefixes]


def _medleydb_test() -> list[str]:
  """Per top-20 instrument, 10% of its rows (rounded half up); the missing stem is no test
  row (see test_builders_medleydb)."""
  top = sorted(MEDLEYDB_COUNTS, key=lambda name: (-MEDLEYDB_COUNTS[name], name))[:20]
  return [name for name in top for _ in range(math.floor(0.1 * MEDLEYDB_COUNTS[name] + 0.5))]


def _emomusic_test() -> list[tuple[float, float]]:
  """Evaluation songs, z-scored with the development songs' mean and std."""
  songs = fake.emomusic_songs()
  raw = {s: np.round(v, 4) for s, _, _, v in songs}
  dev = np.array([raw[s] for s, _, g, _ in songs if g == "development"])
  mean, std = dev.mean(axis=0), dev.std(axis=0)
  return [tuple((raw[s] - mean) / std) for s, _, g, _ in songs if g == "evaluation"]


@dataclasses.dataclass(frozen=True)
class Expected:
  """What a task's run must report.

  Attributes:
    layout: key of LAYOUTS, or "" for the synthetic set.
    kind: label kind.
    num_classes: K.
    test_labels: the labels of the layout's test tracks, one entry per track (a frozenset of
      names for multi-label, a name for multi-class, the target vector for regression); None
      for the synthetic set (its 4 test clips' labels are read back from it).
    chunks: chunks per test track.
    key_metrics: the classes are keys, so the weighted key scores are reported.
  """
  layout: str
  kind: str
  num_classes: int
  test_labels: list | None
  chunks: int = 1  # Fake clips are shorter than a view: one zero-padded chunk.
  key_metrics: bool = False

  @property
  def num_test(self) -> int:
    return SYNTHETIC_TINY_TEST if self.test_labels is None else len(self.test_labels)


SYNTHETIC_TINY_TEST = 4  # synthetic_music/tiny: 8 train, 4 validation, 4 test clips of 6 s.
EXPECTED = {
    "mtat_top50": Expected("mtat", MULTILABEL, 50, _mtat_test(fake.MTAT_TOP)),
    "mtat_all188": Expected("mtat", MULTILABEL, 188, _mtat_test(list(range(188)))),
    "mtg_top50": Expected("mtg_jamendo", MULTILABEL, 50, _mtg_test("autotagging_top50tags")),
    "mtg_genre": Expected("mtg_jamendo", MULTILABEL, 87, _mtg_test("autotagging_genre")),
    "mtg_moodtheme": Expected("mtg_jamendo", MULTILABEL, 56, _mtg_test("autotagging_moodtheme")),
    "mtg_instrument": Expected("mtg_jamendo", MULTILABEL, 40,
                               _mtg_test("autotagging_instrument")),
    "gtzan": Expected("gtzan", MULTICLASS, 10, _gtzan_test()),
    "nsynth_pitch": Expected("nsynth", MULTICLASS, 112,
                             [_midi_name(p) for _, p, _ in fake.NSYNTH_NOTES["nsynth-test"]]),
    "nsynth_instrument_family": Expected(
        "nsynth", MULTICLASS, 11,
        [fake.NSYNTH_FAMILY[f] for _, _, f in fake.NSYNTH_NOTES["nsynth-test"]]),
    "giantsteps_key": Expected("giantsteps", MULTICLASS, 24, ["Eb minor", "Ab major", "C major"],
                               key_metrics=True),  # 10400 is corrupt: skipped.
    "vocalset_singer": Expected("vocalset", MULTICLASS, 4, _vocalset_test("singer")),
    "vocalset_technique": Expected("vocalset", MULTICLASS, 3, _vocalset_test("technique")),
    "medleydb": Expected("medleydb", MULTICLASS, 20, _medleydb_test()),
    "emomusic": Expected("emomusic", REGRESSION, 2, _emomusic_test()),
    "synthetic_instrument": Expected("", MULTICLASS, 5, None, chunks=2),
    "synthetic_register": Expected("", MULTICLASS, 3, None, chunks=2),
    "synthetic_key": Expected("", MULTICLASS, 24, None, chunks=2, key_metrics=True),
    "synthetic_pitch_classes": Expected("", MULTILABEL, 12, None, chunks=2),
}


def test_every_task_has_a_fake_layout():
  assert set(EXPECTED) == set(probe_config.TASKS)
  for task, expected in EXPECTED.items():
    dataset = probe_config.TASKS[task][0]
    assert (expected.layout == "") == dataset.startswith("synthetic_music/"), task
    if expected.layout:
      assert dataset in LAYOUTS[expected.layout].datasets, task


# ----------------------------------------------------------------------- fixtures ---
@pytest.fixture(scope="module")
def env(tmp_path_factory, small_encoder):
  """The session's small encoder, exported; the data dir; and `prepared(dataset)`.

  `prepared` prepares a dataset from its fake layout with the prepare CLI's `main`, on first
  use; each layout is written once, however many datasets it gives.
  """
  root = tmp_path_factory.mktemp("tasks")
  model_config, _, variables = small_encoder  # conftest: calibrated, width 0.125.
  export = str(root / "pretrain" / "encoder.msgpack")
  checkpoint.export_variables(export, variables, model_config, sample_rate=22050,
                              view_length=59535)
  data_dir = str(root / "data")
  written, done = {}, set()

  def prepared(dataset: str) -> None:
    if dataset.startswith("synthetic_music/") or dataset in done:
      return  # The synthetic set generates itself on first use.
    name = next(k for k, layout in LAYOUTS.items() if dataset in layout.datasets)
    if name not in written:
      written[name] = root / "manual" / name
      LAYOUTS[name].write(written[name])
    assert prepare.main([f"--dataset={dataset}", f"--manual_dir={written[name]}",
                         f"--data_dir={data_dir}", f"--min_samples={util.MIN_SAMPLES}",
                         "--num_workers=2"]) == 0
    done.add(dataset)

  return {"root": root, "export": export, "data_dir": data_dir, "prepared": prepared}


# --------------------------------------------------------------------------- checks ---
def _label_of(kind: str, target: np.ndarray, names: list[str]):
  """A target row as in Expected.test_labels."""
  if kind == MULTILABEL:
    return frozenset(names[i] for i in np.flatnonzero(target > 0.5))
  if kind == MULTICLASS:
    assert target.sum() == 1.0 and target.max() == 1.0
    return names[int(np.argmax(target))]
  return tuple(float(v) for v in target)


def _synthetic_targets(config, num_classes: int) -> np.ndarray:
  """The synthetic test clips' targets, in split order, read back with `tracks.load_tracks`."""
  key = config.task.label_key
  labels = tracks.load_tracks(config.task.dataset, config.task.test_split,
                              config.data.data_dir, [key])[key]
  return np.eye(num_classes, dtype=np.float32)[labels] if labels.ndim == 1 else labels


def _read_csv(path: str) -> dict[str, str]:
  with open(path, newline="") as f:
    rows = list(csv.reader(f))
  assert rows[0] == ["metric", "value"]
  return dict(rows[1:])


@pytest.mark.parametrize("task", sorted(probe_config.TASKS))
def test_task_runs_on_prepared_data(task, env):
  expected = EXPECTED[task]
  config = probe_config.get_config(f"{task},smoke")
  env["prepared"](config.task.dataset)
  config.pretrained = env["export"]
  config.data.data_dir = env["data_dir"]
  config.probe.max_epochs = 2
  workdir = os.path.join(env["root"], "probe", task)
  results = probe.run(config, workdir)

  # The run wrote its report and predictions, for this task.
  for name in ("results.json", "results.md", "results.csv", "predictions.npz", "head.msgpack"):
    assert os.path.isfile(os.path.join(workdir, name)), name
  assert results["task"] == task and results["kind"] == expected.kind
  assert results["num_classes"] == len(results["class_names"]) == expected.num_classes
  t = results["training"]
  assert 1 <= t["best_epoch"] <= t["epochs_run"] <= 2
  assert results["num_tracks"]["train"] >= 1 and results["num_tracks"]["validation"] >= 1

  # The task's metrics, the same in results.json, results.csv and results.md; finite, in range.
  test = results["test"]
  names = METRICS[expected.kind] | (KEY_METRICS if expected.key_metrics else set())
  rows = _read_csv(os.path.join(workdir, "results.csv"))
  assert set(rows) == names
  markdown = pathlib.Path(workdir, "results.md").read_text()
  assert markdown.startswith(f"# Probe: {task} ({config.task.dataset}")
  for name in names:
    assert float(rows[name]) == pytest.approx(test[name], rel=1e-6), name
    assert f"| {name} |" in markdown, name
  for name in names - {"num_classes_scored", "num_classes_unscored"}:
    assert math.isfinite(test[name]), (name, test[name])
    if name.startswith("r2"):
      assert test[name] <= 1.0, name
    else:
      assert 0.0 <= test[name] <= 1.0, (name, test[name])

  # Every test track of the layout scored exactly once: one prediction per track, each from
  # all of its chunks, with the track's own targets.
  pred = np.load(os.path.join(workdir, "predictions.npz"))
  n = expected.num_test
  assert results["num_tracks"]["test"] == n
  np.testing.assert_array_equal(pred["track_index"], np.arange(n))
  np.testing.assert_array_equal(pred["chunks"], np.full(n, expected.chunks))
  assert pred["scores"].shape == pred["targets"].shape == (n, expected.num_classes)
  assert np.isfinite(pred["scores"]).all() and np.isfinite(pred["embeddings"]).all()
  # Every clip has a tone of its own, so a track read twice (and another never) would show.
  gaps = np.abs(pred["embeddings"][:, None] - pred["embeddings"][None]).max(-1)
  assert gaps[~np.eye(n, dtype=bool)].min() > 1e-3
  labels = [_label_of(expected.kind, y, results["class_names"]) for y in pred["targets"]]
  if expected.test_labels is None:
    np.testing.assert_array_equal(pred["targets"],
                                  _synthetic_targets(config, expected.num_classes))
  elif expected.kind == REGRESSION:
    np.testing.assert_allclose(sorted(labels), sorted(expected.test_labels), rtol=1e-5,
                               atol=1e-5)
  else:
    assert collections.Counter(labels) == collections.Counter(expected.test_labels)

  # Metrics that follow from the predictions: classes scored (a positive and a negative test
  # track), accuracy.
  if expected.kind != REGRESSION:
    positives = pred["targets"].sum(0)
    assert test["num_classes_scored"] == np.sum((positives > 0) & (positives < n)) >= 1
  if expected.kind == MULTICLASS:
    accuracy = np.mean(np.argmax(pred["scores"], 1) == np.argmax(pred["targets"], 1))
    assert test["accuracy"] == pytest.approx(accuracy)
