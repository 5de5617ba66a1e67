"""Dataset-level test metrics of the probes (spec §7.2), from scikit-learn where it has them.

* multi-label: macro ROC-AUC and macro PR-AUC (average precision) over the classes that can be
  scored. A class with no positive (or no negative) test track has no ROC curve; torchmetrics
  (the original) silently scores it 0 and warns. Here such classes are left out of the macro
  average explicitly and counted in `num_classes_unscored` (with their names in the result).
* multi-class: accuracy (the original's micro precision and recall equal it), plus macro
  one-vs-rest ROC-AUC over the classes that can be scored.
* keys: the weighted key score (see `key_score.py`).
* regression (EmoMusic): R² averaged uniformly over the outputs, and R² per output.

Every function takes the whole split at once: [n, K] scores and [n, K] targets.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn import metrics as skm

from data_pipelines import conventions
from ssc_jax.evaluation import key_score

# The label kinds (defined in data_pipelines/conventions.py), named here for evaluation code.
MULTICLASS, MULTILABEL, REGRESSION = (conventions.MULTICLASS, conventions.MULTILABEL,
                                      conventions.REGRESSION)
# The metric that summarises a task kind (used for lr selection and robustness curves).
PRIMARY_METRIC = {MULTILABEL: "roc_auc", MULTICLASS: "accuracy", REGRESSION: "r2"}


def scorable_classes(targets: np.ndarray) -> np.ndarray:
  """Which classes have both positive and negative examples.

  Args:
    targets: [n, K] {0, 1} multi-hot (or one-hot) targets.

  Returns:
    [K] bool.
  """
  targets = np.asarray(targets) > 0.5
  positives = targets.sum(axis=0)
  return (positives > 0) & (positives < targets.shape[0])


def _check_2d(scores: np.ndarray, targets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  scores, targets = np.asarray(scores, np.float64), np.asarray(targets, np.float64)
  if scores.ndim != 2 or scores.shape != targets.shape:
    raise ValueError(f"scores {scores.shape} and targets {targets.shape} must both be [n, K].")
  if not np.all(np.isfinite(scores)):
    raise ValueError("scores contain NaN or Inf.")
  return scores, targets


def macro_auc(scores: np.ndarray, targets: np.ndarray,
              names: Sequence[str] | None = None) -> dict[str, Any]:
  """Macro ROC-AUC and PR-AUC over the scorable classes.

  Args:
    scores: [n, K] real scores (logits or probabilities; both metrics are rank-based per
      class, so a monotone map such as the sigmoid changes nothing).
    targets: [n, K] {0, 1}.
    names: K class names (default "0".."K-1"), used to list unscored classes.

  Returns:
    {'roc_auc', 'pr_auc': float (NaN when no class is scorable), 'num_classes_scored': int,
     'num_classes_unscored': int, 'unscored_classes': list of names,
     'per_class_roc_auc', 'per_class_pr_auc': [K] lists, NaN for unscored classes}.
  """
  scores, targets = _check_2d(scores, targets)
  k = scores.shape[1]
  names = list(names) if names is not None else [str(i) for i in range(k)]
  ok = scorable_classes(targets)
  roc = np.full(k, np.nan)
  pr = np.full(k, np.nan)
  for c in np.flatnonzero(ok):
    roc[c] = skm.roc_auc_score(targets[:, c] > 0.5, scores[:, c])
    pr[c] = skm.average_precision_score(targets[:, c] > 0.5, scores[:, c])
  return {
      "roc_auc": float(np.mean(roc[ok])) if ok.any() else float("nan"),
      "pr_auc": float(np.mean(pr[ok])) if ok.any() else float("nan"),
      "num_classes_scored": int(ok.sum()),
      "num_classes_unscored": int(k - ok.sum()),
      "unscored_classes": [names[c] for c in np.flatnonzero(~ok)],
      "per_class_roc_auc": roc.tolist(),
      "per_class_pr_auc": pr.tolist(),
  }


def accuracy(scores: np.ndarray, targets: np.ndarray) -> float:
  """Share of rows whose argmax score is the argmax target. scores, targets: [n, K]."""
  scores, targets = _check_2d(scores, targets)
  return float(np.mean(np.argmax(scores, axis=1) == np.argmax(targets, axis=1)))


def r2(predictions: np.ndarray, targets: np.ndarray,
       names: Sequence[str] | None = None) -> dict[str, float]:
  """Coefficient of determination, uniform average over outputs and per output.

  Args:
    predictions: [n, K]; targets: [n, K].
    names: K output names (default "0".."K-1"); per-output keys are "r2_<name>".

  Returns:
    {'r2': mean over outputs, 'r2_<name>': per output}.
  """
  predictions, targets = _check_2d(predictions, targets)
  k = targets.shape[1]
  names = list(names) if names is not None else [str(i) for i in range(k)]
  per = skm.r2_score(targets, predictions, multioutput="raw_values")
  out = {"r2": float(np.mean(per))}
  out.update({f"r2_{n}": float(v) for n, v in zip(names, per)})
  return out


def task_metrics(kind: str, scores: np.ndarray, targets: np.ndarray,
                 names: Sequence[str], *, key_names: bool = False) -> dict[str, Any]:
  """All test metrics of one task kind.

  Args:
    kind: "multilabel", "multiclass" or "regression".
    scores: [n, K] head outputs (logits, or predictions for regression).
    targets: [n, K] multi-hot, one-hot or real targets.
    names: K class (or output) names.
    key_names: the classes are musical keys ("C major", "Db minor", ...): add the weighted
      key scores.

  Returns:
    Flat dict of scalars (plus a few lists/str for the details, see `macro_auc`).
  """
  if kind == MULTILABEL:
    return macro_auc(scores, targets, names)
  if kind == MULTICLASS:
    out: dict[str, Any] = {"accuracy": accuracy(scores, targets)}
    auc = macro_auc(scores, targets, names)
    out["roc_auc"] = auc["roc_auc"]
    out["num_classes_scored"] = auc["num_classes_scored"]
    if key_names:
      ref = [names[i] for i in np.argmax(targets, axis=1)]
      est = [names[i] for i in np.argmax(scores, axis=1)]
      out["weighted_key_score"] = key_score.mean_weighted_score(ref, est)
      out["weighted_key_score_both_fifths"] = key_score.mean_weighted_score(
          ref, est, allow_descending_fifths=True)
    return out
  if kind == REGRESSION:
    return r2(scores, targets, names)
  raise ValueError(f"unknown task kind {kind!r}; expected one of "
                   f"{(MULTILABEL, MULTICLASS, REGRESSION)}")


def scalar_metrics(result: dict[str, Any]) -> dict[str, float | int]:
  """The scalar entries of a metrics dict (ints stay ints), for tables and TensorBoard."""
  out = {}
  for k, v in result.items():
    if isinstance(v, (bool, np.bool_)):
      continue
    if isinstance(v, (int, np.integer)):
      out[k] = int(v)
    elif isinstance(v, (float, np.floating)):
      out[k] = float(v)
  return out
