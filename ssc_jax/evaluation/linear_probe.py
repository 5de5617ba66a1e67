"""Linear probes on frozen track embeddings: pretrained encoder vs the same encoder at init.

Used at the end of the demo run. Each label set of the labeled dataset gets one probe fitted on
the train split and scored on the test split: multinomial logistic regression (accuracy) for
multi-class labels, one logistic regression per class (macro ROC-AUC) for multi-label ones.
Features are chunk-mean 512-d encoder outputs, standardised on the train split.
"""

from __future__ import annotations

from typing import Any

from absl import logging
import jax
import ml_collections
import numpy as np
from sklearn import linear_model
from sklearn import metrics
from sklearn import preprocessing

from ssc_jax import models
from ssc_jax import paths
from ssc_jax.inference import embedding as embed


def probe_score(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray,
                test_y: np.ndarray) -> tuple[str, float]:
  """Fits a linear probe and scores it on the test set.

  Args:
    train_x: [n, D] features; train_y: [n] int class ids (multi-class) or [n, K] {0,1}
      (multi-label). test_x, test_y: the same for the test set.

  Returns:
    (metric name, value): ("accuracy", …) for multi-class, ("roc_auc_macro", …) for multi-label,
    averaged over the classes that have both positives and negatives in the test set.
  """
  scaler = preprocessing.StandardScaler().fit(train_x)
  train_x, test_x = scaler.transform(train_x), scaler.transform(test_x)
  if train_y.ndim == 1:
    clf = linear_model.LogisticRegression(max_iter=2000).fit(train_x, train_y)
    return "accuracy", float(np.mean(clf.predict(test_x) == test_y))
  aucs = []
  for k in range(train_y.shape[1]):
    if len(np.unique(train_y[:, k])) < 2 or len(np.unique(test_y[:, k])) < 2:
      continue  # AUC undefined for a class absent (or always present) in either split.
    clf = linear_model.LogisticRegression(max_iter=2000).fit(train_x, train_y[:, k])
    aucs.append(metrics.roc_auc_score(test_y[:, k], clf.decision_function(test_x)))
  if not aucs:
    raise ValueError("No class has both positive and negative examples in train and test.")
  return "roc_auc_macro", float(np.mean(aucs))


def compare_with_random_init(config: ml_collections.ConfigDict, workdir: paths.PathLike,
                             model: models.SemiSupConModel, variables: dict[str, Any],
                             init_variables: dict[str, Any]) -> list[dict[str, Any]]:
  """Probes every `config.evaluate.label_keys` for both encoders; prints and saves a table.

  Args:
    config: the pretraining config (its `data.labeled` dataset provides train/test tracks).
    workdir: where `probe_results.md` is written.
    model: the SemiSupCon model.
    variables: pretrained {'params', 'batch_stats'}.
    init_variables: the same model at its initialisation.

  Returns:
    One row per label set: {'label_set', 'metric', 'random_init', 'pretrained'}.
  """
  from data_pipelines import datasets  # pylint: disable=g-import-not-at-top
  from data_pipelines import tracks  # pylint: disable=g-import-not-at-top

  data_dir = datasets.resolve_data_dir(config.data.get("data_dir"))
  label_keys = list(config.evaluate.label_keys)
  splits = {s: tracks.load_tracks(config.data.labeled, s, data_dir, label_keys)
            for s in ("train", "test")}
  features = {}
  for name, v in (("random_init", init_variables), ("pretrained", variables)):
    for split, data in splits.items():
      features[name, split] = embed.embed_tracks(model, v, data["audio"],
                                                 config.data.view_length)
  rows = []
  for key in label_keys:
    row = {"label_set": key}
    for name in ("random_init", "pretrained"):
      row["metric"], row[name] = probe_score(features[name, "train"], splits["train"][key],
                                             features[name, "test"], splits["test"][key])
    rows.append(row)

  n_train, n_test = len(splits["train"]["audio"]), len(splits["test"]["audio"])
  lines = [f"Linear probes on frozen embeddings ({config.data.labeled}: {n_train} train / "
           f"{n_test} test tracks)", "",
           "| label set | metric | random init | pretrained |", "|---|---|---|---|"]
  lines += [f"| {r['label_set']} | {r['metric']} | {r['random_init']:.3f} | "
            f"{r['pretrained']:.3f} |" for r in rows]
  table = "\n".join(lines)
  if jax.process_index() == 0:
    paths.write_atomic(paths.resolve(workdir) / "probe_results.md", table + "\n")
  print(table, flush=True)
  logging.info("Probe results written to %s.", paths.resolve(workdir) / "probe_results.md")
  return rows
