"""Prototype evaluation: the mean-of-unit-projections identity, prototypes, and metrics."""

import numpy as np
import pytest

from ssc_jax.evaluation import features
from ssc_jax.evaluation import prototypes


def test_scores_equal_mean_chunk_cosine_computed_directly():
  rng = np.random.default_rng(0)
  protos = rng.standard_normal((4, 8))
  chunks = [rng.standard_normal((c, 8)) for c in (1, 3, 5)]  # 3 tracks' chunk projections.
  direct = np.array([[np.mean([z @ p / np.linalg.norm(z) / np.linalg.norm(p) for z in track])
                      for p in protos] for track in chunks])
  zhat = np.stack([(t / np.linalg.norm(t, axis=1, keepdims=True)).mean(0) for t in chunks])
  np.testing.assert_allclose(prototypes.prototype_scores(zhat, protos), direct, rtol=1e-10)


def test_class_prototypes_average_the_clips_of_each_class():
  z = np.array([[1.0, 0.0], [3.0, 2.0], [0.0, 4.0]])
  targets = np.array([[1, 0, 0], [1, 1, 0], [0, 1, 0]])
  protos, has = prototypes.class_prototypes(z, targets)
  np.testing.assert_allclose(protos, [[2.0, 1.0], [1.5, 3.0], [0.0, 0.0]])
  np.testing.assert_array_equal(has, [True, True, False])
  # A class without prototype scores 0 (no division by zero).
  assert np.all(prototypes.prototype_scores(np.ones((2, 2)), protos)[:, 2] == 0)


def _split(rng, centers, n, chunks, noise=0.3):
  ids = rng.integers(0, len(centers), n)
  owner = np.repeat(np.arange(n), chunks)
  h = centers[ids][owner] + noise * rng.standard_normal((n * chunks, centers.shape[1]))
  hat = h / np.linalg.norm(h, axis=1, keepdims=True)
  zhat = np.stack([hat[owner == i].mean(0) for i in range(n)])
  labels = np.eye(len(centers), dtype=np.float32)[ids]
  return features.SplitFeatures("x", h.mean(0, keepdims=True).repeat(n, 0), zhat, labels,
                                np.full(n, chunks), chunk_h=h.astype(np.float32),
                                chunk_owner=owner)


def test_evaluate_separable_classes_and_counts_missing_prototypes():
  rng = np.random.default_rng(1)
  centers = 3 * np.eye(4, 6)
  train, test = _split(rng, centers, 40, 3), _split(rng, centers, 30, 2)
  rows = prototypes.evaluate(lambda h: h, train, test, "multiclass", list("abcd"),
                             fractions=(0.025, 1.0), seed=0)
  assert [r["num_clips"] for r in rows] == [1, 40]
  assert rows[0]["num_classes_without_prototype"] == 3
  assert rows[1]["num_classes_without_prototype"] == 0
  assert rows[1]["accuracy"] == 1.0 and rows[1]["roc_auc"] == 1.0
  with pytest.raises(ValueError, match="class labels"):
    prototypes.evaluate(lambda h: h, train, test, "regression", list("abcd"))
  with pytest.raises(ValueError, match=r"\(0, 1\]"):
    prototypes.evaluate(lambda h: h, train, test, "multiclass", list("abcd"), fractions=(0,))
