"""Reports: per-run markdown/CSV, the multi-run comparison, and the figures."""

import csv
import json
import os

import numpy as np
import pytest

from ssc_jax import report as report_cli
from ssc_jax.evaluation import plots
from ssc_jax.evaluation import reports


def _results(name, task, kind, test, robustness=()):
  return {"name": name, "task": task, "dataset": "d", "label_key": "k", "kind": kind,
          "num_classes": 2, "class_names": ["a", "b"], "encoder": {"source": f"/x/{name}"},
          "protocol": "semisupcon", "head": {"description": "linear (no bias)"},
          "training": {"features": "cached", "learning_rate": 3e-4, "best_epoch": 3,
                       "epochs_run": 5, "stopped_early": True, "best_val_loss": 0.5,
                       "history": [], "lr_search": []},
          "view_length": 59535, "max_chunks": 64, "num_tracks": {"test": 3}, "test": test,
          "unscored_classes": [], "robustness": list(robustness), "prototypes": []}


def _write(tmp_path, sub, results):
  d = tmp_path / sub
  d.mkdir()
  reports.write_probe_report(str(d), results)
  return str(d)


def test_probe_report_files(tmp_path):
  r = _results("ssl", "mtat_top50", "multilabel", {"roc_auc": 0.9, "pr_auc": 0.4,
                                                   "num_classes_scored": 2},
               [{"level": 0, "name": "severity_0", "roc_auc": 0.9, "pr_auc": 0.4},
                {"level": 1, "name": "severity_1", "roc_auc": 0.8, "pr_auc": float("nan")}])
  d = _write(tmp_path, "a", r)
  assert json.load(open(os.path.join(d, "results.json")))["test"]["roc_auc"] == 0.9
  rows = list(csv.reader(open(os.path.join(d, "results.csv"))))
  assert rows == [["metric", "value"], ["roc_auc", "0.9"], ["pr_auc", "0.4"],
                  ["num_classes_scored", "2"]]
  md = open(os.path.join(d, "results.md")).read()
  assert "| roc_auc | 0.9000 |" in md and "| 1 | severity_1 | 0.8000 | n/a |" in md
  rob = list(csv.reader(open(os.path.join(d, "robustness.csv"))))
  assert rob[0] == ["level", "name", "roc_auc", "pr_auc"] and rob[2][3] == ""


def test_gather_pivots_encoders_by_task_metric(tmp_path):
  dirs = [
      _write(tmp_path, "1", _results("ssl", "gtzan", "multiclass", {"accuracy": 0.6})),
      _write(tmp_path, "2", _results("semisup", "gtzan", "multiclass", {"accuracy": 0.7})),
      _write(tmp_path, "3", _results("ssl", "emomusic", "regression",
                                     {"r2": 0.5, "r2_arousal": 0.6, "r2_valence": 0.4})),
  ]
  tables = reports.gather(dirs)
  header, rows = tables["main"]
  assert header == ["encoder", "gtzan/accuracy", "emomusic/r2", "emomusic/r2_arousal",
                    "emomusic/r2_valence"]
  assert rows[0] == ["ssl", 0.6, 0.5, 0.6, 0.4]
  assert rows[1][:2] == ["semisup", 0.7] and all(np.isnan(rows[1][2:]))
  out = tmp_path / "cmp" / "compare.md"
  assert report_cli.main(dirs + [f"--out={out}"]) == 0
  assert "| semisup | 0.7000 | n/a | n/a | n/a |" in out.read_text()
  rows = list(csv.reader(open(tmp_path / "cmp" / "compare.main.csv")))
  assert rows[2] == ["semisup", "0.7", "", "", ""]
  assert report_cli.main([str(tmp_path)]) == 2  # not a probe workdir: a clear error
  with pytest.raises(FileNotFoundError, match="results.json"):
    reports.gather([str(tmp_path)])


def test_figures_are_written(tmp_path):
  rng = np.random.default_rng(0)
  x = rng.standard_normal((40, 6))
  onehot = np.eye(3)[rng.integers(0, 3, 40)]
  multi = (rng.random((40, 4)) < 0.3).astype(float)
  paths = [
      plots.embedding_map(x, onehot, "multiclass", list("abc"), str(tmp_path / "t.png")),
      plots.embedding_map(x, multi, "multilabel", list("abcd"), str(tmp_path / "p.png"),
                          method="pca", max_points=10),
      plots.embedding_map(x[:5], rng.random((5, 2)), "regression", ["v", "a"],
                          str(tmp_path / "r.png")),
      plots.confusion_matrix(onehot + rng.random((40, 3)), onehot, list("abc"),
                             str(tmp_path / "c.png")),
      plots.robustness_curve([{"name": "a", "m": 1.0}, {"name": "b", "m": 0.5}], ["m"],
                             str(tmp_path / "rc.png")),
      plots.loss_curves([{"epoch": 1, "train_loss": 1.0, "val_loss": 1.1}],
                        str(tmp_path / "l.png"), 1),
  ]
  for p in paths:
    img = plots.read_png(p)
    assert img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 3 and img.std() > 0
