"""Prototype ("zero-shot") evaluation (spec §7.5), repaired and generalised.

For each labeled fraction p: take ceil(p·n) training clips (the same random order for every p,
so the subsets are nested), one random chunk of each (the original's one random crop per clip),
and average their 128-d PROJECTION outputs z per class: the class prototypes. A test track's
score for class k is the mean over its chunks of cos(z_c, prototype_k), which equals
mean_c(ẑ_c) · p̂_k, so the per-track mean of unit projections (`SplitFeatures.track_zhat`) is
all the test side needs. Multi-label tasks get macro ROC-AUC and PR-AUC, multi-class tasks
accuracy (argmax) and macro ROC-AUC. A class that no selected clip carries has no prototype:
it is left out of the metrics and counted in `num_classes_without_prototype` (the original
script crashed before getting there).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ssc_jax.evaluation import features as features_lib
from ssc_jax.evaluation import metrics

DEFAULT_FRACTIONS = (0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 0.9, 1.0)


def class_prototypes(z: np.ndarray, targets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """Mean projection per class.

  Args:
    z: [m, P] projections of the selected clips.
    targets: [m, K] {0, 1} their labels.

  Returns:
    (prototypes [K, P] float64 (zero rows for classes without clips), has_prototype [K] bool).
  """
  targets = (np.asarray(targets) > 0.5).astype(np.float64)
  counts = targets.sum(axis=0)
  sums = targets.T @ np.asarray(z, np.float64)
  has = counts > 0
  protos = np.zeros_like(sums)
  protos[has] = sums[has] / counts[has, None]
  return protos, has


def prototype_scores(track_zhat: np.ndarray, prototypes: np.ndarray) -> np.ndarray:
  """Mean chunk cosine similarity to each prototype.

  Args:
    track_zhat: [n, P] per-track mean of unit-norm chunk projections.
    prototypes: [K, P] (zero rows allowed: they score 0).

  Returns:
    [n, K] float64.
  """
  norms = np.linalg.norm(prototypes, axis=1, keepdims=True)
  unit = np.divide(prototypes, norms, out=np.zeros_like(prototypes), where=norms > 0)
  return np.asarray(track_zhat, np.float64) @ unit.T


def prototype_metrics(kind: str, scores: np.ndarray, targets: np.ndarray,
                      has_prototype: np.ndarray, names: Sequence[str]) -> dict[str, Any]:
  """Metrics over the classes that have a prototype."""
  cols = np.flatnonzero(has_prototype)
  sub_names = [names[c] for c in cols]
  out: dict[str, Any] = {"num_classes_without_prototype": int(len(names) - len(cols))}
  if not len(cols):
    return out
  auc = metrics.macro_auc(scores[:, cols], targets[:, cols], sub_names)
  out.update(roc_auc=auc["roc_auc"], pr_auc=auc["pr_auc"],
             num_classes_scored=auc["num_classes_scored"])
  if kind == metrics.MULTICLASS:
    masked = np.where(has_prototype[None], scores, -np.inf)
    out["accuracy"] = float(np.mean(np.argmax(masked, 1) == np.argmax(targets, 1)))
  return out


def evaluate(project: Callable[[np.ndarray], np.ndarray], train: features_lib.SplitFeatures,
             test: features_lib.SplitFeatures, kind: str, names: Sequence[str],
             fractions: Sequence[float] = DEFAULT_FRACTIONS, seed: int = 0
             ) -> list[dict[str, Any]]:
  """Prototype metrics for each labeled fraction.

  Args:
    project: fn(h [m, D]) -> z [m, P], the model's projection head.
    train: training split features with the chunk cache (`keep_chunks=True`).
    test: test split features.
    kind: "multilabel" or "multiclass".
    names: K class names.
    fractions: labeled fractions p in (0, 1].
    seed: selects the clips and their chunks.

  Returns:
    One dict per fraction: {'fraction', 'num_clips', metrics...}.
  """
  if kind not in (metrics.MULTILABEL, metrics.MULTICLASS):
    raise ValueError(f"prototype evaluation needs class labels; this task is {kind}.")
  if train.chunk_h is None or train.chunk_owner is None:
    raise ValueError("prototype evaluation needs the training chunk cache (keep_chunks=True).")
  bad = [f for f in fractions if not 0 < f <= 1]
  if bad:
    raise ValueError(f"config.prototypes.fractions must lie in (0, 1], got {bad}.")
  rng = np.random.default_rng(seed)
  n = train.num_tracks
  order = rng.permutation(n)
  counts = np.bincount(train.chunk_owner, minlength=n)
  starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
  chunk_of_clip = starts + rng.integers(0, counts)
  z_all = np.asarray(project(train.chunk_h[chunk_of_clip]), np.float64)
  rows = []
  for fraction in fractions:
    m = min(n, max(1, math.ceil(fraction * n)))
    chosen = order[:m]
    protos, has = class_prototypes(z_all[chosen], train.labels[chosen])
    scores = prototype_scores(test.track_zhat, protos)
    rows.append({"fraction": float(fraction), "num_clips": int(m),
                 **prototype_metrics(kind, scores, test.labels, has, names)})
  return rows
