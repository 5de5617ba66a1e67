"""Label-similarity sources of the target matrix against independent float64 references.

The references below build every weight with plain loops from the definitions in
docs/similarity.md (key distances by breadth-first search over the key graph's explicit edges,
set overlaps with Python sets); the loss itself is the loop reference of tests/test_losses.py
applied to that target.
"""

import collections
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding, PartitionSpec as P

from ssc_jax import losses
from tests import test_losses

SIGMA = 0.8
KEY_WEIGHTS = (1.0, 0.5, 0.25)

# -------------------------------------------------------------------------------------
# Float64 references.
# -------------------------------------------------------------------------------------


def ref_key_distances():
  """{(key_a, key_b): steps} over the 24 keys (tonic, is_minor) by breadth-first search.

  Edges: a fifth up or down within a mode (tonic ± 7 semitones) and relative keys (the
  minor key 9 semitones above a major tonic: C major – A minor).
  """
  keys = [(t, m) for m in (False, True) for t in range(12)]
  neighbours = {k: set() for k in keys}
  for t in range(12):
    for minor in (False, True):
      neighbours[(t, minor)].add(((t + 7) % 12, minor))
      neighbours[((t + 7) % 12, minor)].add((t, minor))
    neighbours[(t, False)].add(((t + 9) % 12, True))
    neighbours[((t + 9) % 12, True)].add((t, False))
  distances = {}
  for start in keys:
    seen, queue = {start: 0}, collections.deque([start])
    while queue:
      key = queue.popleft()
      for other in neighbours[key]:
        if other not in seen:
          seen[other] = seen[key] + 1
          queue.append(other)
    distances.update({(start, other): d for other, d in seen.items()})
  return distances


REF_KEY_DISTANCES = ref_key_distances()


def ref_weight(source, a, b, measure="jaccard"):
  """w(a, b) of one pair of label vectors."""
  if source == "regression":
    return math.exp(-sum((x - y) ** 2 for x, y in zip(a, b)) / (2 * SIGMA**2))
  if source == "key_distance":  # Synthetic class order: k = tonic + 12·minor.
    ka, kb = int(np.argmax(a)), int(np.argmax(b))
    steps = REF_KEY_DISTANCES[((ka % 12, ka >= 12), (kb % 12, kb >= 12))]
    return KEY_WEIGHTS[steps] if steps < len(KEY_WEIGHTS) else 0.0
  set_a = {k for k, v in enumerate(a) if v == 1}
  set_b = {k for k, v in enumerate(b) if v == 1}
  if not set_a and not set_b:
    return 0.0
  if measure == "dice":
    return 2 * len(set_a & set_b) / (len(set_a) + len(set_b))
  return len(set_a & set_b) / len(set_a | set_b)


def ref_target(item_ids, labels, labeled, weight_fn, view_positives=True,
               label_positives=True):
  """M_ij = max([same item], [both labeled]·w_ij) with loops."""
  num_rows = len(item_ids)
  target = np.zeros((num_rows, num_rows))
  for i in range(num_rows):
    for j in range(num_rows):
      same = float(view_positives and item_ids[i] == item_ids[j])
      label = 0.0
      if label_positives and labeled[i] and labeled[j]:
        label = weight_fn(labels[i].astype(np.float64), labels[j].astype(np.float64))
      target[i, j] = max(same, label)
  return target


# -------------------------------------------------------------------------------------
# Batches and settings.
# -------------------------------------------------------------------------------------

SOURCES = {
    "regression": dict(sigma=SIGMA),
    "key_distance": dict(weights=KEY_WEIGHTS),
    "pitch_class_overlap": dict(measure="jaccard"),
    "pitch_class_dice": dict(measure="dice"),
}


def similarity_of(source):
  name = "pitch_class_overlap" if source == "pitch_class_dice" else source
  return losses.make_similarity(name, **SOURCES[source])


def weight_fn_of(source):
  if source == "pitch_class_dice":
    return functools.partial(ref_weight, "pitch_class_overlap", measure="dice")
  return functools.partial(ref_weight, source)


def make_batch(source, seed, num_items, num_views, num_labeled, dim=8):
  """Item-major batch with labels of `source`'s kind; unlabeled items have zero labels.

  Regression: one labeled item has the target exactly 0 (as the unlabeled rows).
  Keys: drawn from C major's neighbourhood so that every distance 0-3 occurs.
  """
  rng = np.random.default_rng(seed)
  num_rows = num_items * num_views
  z = rng.normal(size=(num_rows, dim)).astype(np.float32)
  item_ids = (np.arange(num_rows) // num_views).astype(np.int32)
  if source == "regression":
    item_labels = rng.normal(scale=0.7, size=(num_items, 2)).astype(np.float32)
    item_labels[0] = 0.0
  elif source == "key_distance":
    keys = rng.choice([0, 7, 5, 9, 21, 2, 16, 3, 12], size=num_items)  # C G F Am Am D Em Eb Cm
    item_labels = np.eye(24, dtype=np.float32)[keys]
  else:
    item_labels = (rng.random((num_items, 12)) < 0.35).astype(np.float32)
  item_labels[num_labeled:] = 0.0
  labels = np.repeat(item_labels, num_views, axis=0)
  labeled = np.repeat(np.arange(num_items) < num_labeled, num_views)
  return z, item_ids, labels, labeled


STATIC = ("parity", "chunk_size", "similarity", "view_positives", "label_positives")
jit_loss = jax.jit(losses.semisup_ntxent, static_argnames=STATIC)


@functools.partial(jax.jit, static_argnames=STATIC)
def jit_loss_and_grad(z, item_ids, labels, **kwargs):
  return jax.value_and_grad(losses.semisup_ntxent)(z, item_ids, labels, **kwargs)


# -------------------------------------------------------------------------------------
# The sources' weights.
# -------------------------------------------------------------------------------------


def test_key_distance_matches_graph_search_and_hand_values():
  for (a, b), steps in REF_KEY_DISTANCES.items():
    assert losses.key_distance(a, b) == steps, (a, b)
  by_name = lambda x, y: losses.key_distance(losses.parse_key(x), losses.parse_key(y))
  hand = {("C major", "C major"): 0, ("C major", "G major"): 1, ("C major", "F major"): 1,
          ("C major", "A minor"): 1, ("A minor", "E minor"): 1, ("C major", "E minor"): 2,
          ("C major", "D major"): 2, ("C major", "C minor"): 4, ("C major", "F# major"): 6,
          ("C major", "Eb minor"): 7, ("Db major", "C# major"): 0, ("Bb minor", "Db major"): 1}
  for (x, y), steps in hand.items():
    assert by_name(x, y) == steps == by_name(y, x), (x, y)


def test_key_table_follows_the_class_names_order():
  tonics = ("C", "Db", "D", "Eb", "E", "F", "Gb", "G", "Ab", "A", "Bb", "B")
  names = [f"{t} {m}" for t in tonics for m in ("major", "minor")]  # GiantSteps' order.
  table = losses.key_similarity_table(KEY_WEIGHTS, names)
  index = names.index
  assert table[index("C major"), index("C major")] == 1.0
  assert table[index("C major"), index("A minor")] == 0.5
  assert table[index("C major"), index("G major")] == 0.5
  assert table[index("C major"), index("E minor")] == 0.25
  assert table[index("C major"), index("C minor")] == 0.0  # Parallel keys: 4 steps.
  assert table[index("C major"), index("C minor")] == 0.0
  np.testing.assert_array_equal(table, table.T)
  # The default (synthetic) order is majors C..B then minors C..B.
  default = losses.key_similarity_table(KEY_WEIGHTS)
  assert default[0, 9 + 12] == 0.5 and default[0, 12] == 0.0 and default[0, 7] == 0.5


@pytest.mark.parametrize("source", list(SOURCES))
def test_target_matrix_matches_reference(source):
  _, item_ids, labels, labeled = make_batch(source, 1, 10, 2, 7)
  got = losses.target_matrix(item_ids, labels, similarity=similarity_of(source),
                             labeled=labeled)
  expected = ref_target(item_ids, labels, labeled, weight_fn_of(source))
  np.testing.assert_allclose(np.asarray(got), expected, rtol=1e-5, atol=1e-6)
  # Partial positives across items exist, and unlabeled rows have only their own item.
  cross_item = expected[item_ids[:, None] != item_ids[None, :]]
  assert np.any((cross_item > 0) & (cross_item < 1))
  unlabeled = ~labeled
  np.testing.assert_array_equal(np.asarray(got)[unlabeled],
                                (item_ids[unlabeled, None] == item_ids[None, :]))


def test_key_distance_target_has_every_weight():
  _, item_ids, labels, labeled = make_batch("key_distance", 1, 10, 2, 7)
  got = np.asarray(losses.target_matrix(item_ids, labels, similarity=similarity_of(
      "key_distance"), labeled=labeled))
  assert {0.0, 0.25, 0.5, 1.0} <= set(np.unique(got))


def test_pitch_class_dice_equals_weighted_label_overlap():
  _, item_ids, labels, _ = make_batch("pitch_class_overlap", 2, 10, 2, 7)
  dice = losses.target_matrix(item_ids, labels, similarity=similarity_of("pitch_class_dice"))
  weighted = losses.target_matrix(item_ids, labels, "weighted")
  np.testing.assert_allclose(np.asarray(dice), np.asarray(weighted), rtol=1e-6)


# -------------------------------------------------------------------------------------
# Loss and gradient.
# -------------------------------------------------------------------------------------


@pytest.mark.parametrize("source,parity,chunk_size",
                         [("regression", False, 0), ("regression", True, 5),
                          ("key_distance", False, 5), ("key_distance", True, 0),
                          ("pitch_class_overlap", True, 5), ("pitch_class_dice", False, 0)])
def test_loss_matches_reference(source, parity, chunk_size):
  z, item_ids, labels, labeled = make_batch(source, 3, 12, 2, 8)  # R = 24; 5 ∤ 24.
  got = jit_loss(z, item_ids, labels, similarity=similarity_of(source), labeled=labeled,
                 parity=parity, chunk_size=chunk_size)
  target = ref_target(item_ids, labels, labeled, weight_fn_of(source))
  np.testing.assert_allclose(float(got), test_losses.ref_loss(z, target, 0.1, parity),
                             rtol=2e-5)
  # The similarity changes the loss: shared-label positives give another value.
  assert abs(float(got) - float(jit_loss(z, item_ids, labels, parity=parity))) > 1e-3


def _asymmetric(labels_i, labels_j):
  """A registered similarity with w(a, b) ≠ w(b, a): how much of b's first label a covers."""
  return jnp.minimum(labels_i[:, :1], labels_j[:, :1].T) / jnp.maximum(labels_j[:, :1].T, 1.0)


losses.register_similarity("test_asymmetric", _asymmetric)


def _ref_asymmetric(a, b):
  return min(max(min(a[0], b[0]) / max(b[0], 1.0), 0.0), 1.0)  # The loss clips to [0, 1].


@pytest.mark.parametrize("source,chunk_size", [("key_distance", 3), ("regression", 0),
                                               ("test_asymmetric", 0),
                                               ("test_asymmetric", 3)])
def test_gradient_matches_reference_finite_differences(source, chunk_size):
  if source == "test_asymmetric":
    z, item_ids, _, labeled = make_batch("regression", 4, 4, 2, 3, dim=4)
    labels = np.repeat(np.array([[2.0], [0.5], [1.0], [0.0]], np.float32), 2, axis=0)
    similarity, weight_fn = losses.make_similarity(source), _ref_asymmetric
  else:
    z, item_ids, labels, labeled = make_batch(source, 4, 4, 2, 3, dim=4)
    similarity, weight_fn = similarity_of(source), weight_fn_of(source)
  target = ref_target(item_ids, labels, labeled, weight_fn)
  if source == "test_asymmetric":
    assert not np.allclose(target, target.T)  # The test exercises an asymmetric M.
  temperature, step = 0.5, 1e-6
  z64 = z.astype(np.float64)
  expected = np.zeros_like(z64)
  for index in np.ndindex(*z64.shape):
    plus, minus = z64.copy(), z64.copy()
    plus[index] += step
    minus[index] -= step
    expected[index] = (test_losses.ref_loss(plus, target, temperature, False)
                       - test_losses.ref_loss(minus, target, temperature, False)) / (2 * step)
  _, got = jit_loss_and_grad(z, item_ids, labels, temperature=temperature,
                             similarity=similarity, labeled=labeled, chunk_size=chunk_size)
  np.testing.assert_allclose(np.asarray(got), expected, rtol=1e-3,
                             atol=1e-4 * np.abs(expected).max())


def test_labels_get_no_gradient():
  z, item_ids, labels, labeled = make_batch("regression", 5, 6, 2, 4)
  similarity = similarity_of("regression")
  grad = jax.grad(lambda y: losses.semisup_ntxent(z, item_ids, y, similarity=similarity,
                                                  labeled=labeled, chunk_size=5))(labels)
  assert np.all(np.asarray(grad) == 0.0)


def test_chunked_equals_dense_and_builds_no_rows_by_rows_array():
  num_rows, chunk_size = 48, 8
  z, item_ids, labels, labeled = make_batch("key_distance", 6, num_rows // 2, 2, 14)
  similarity = similarity_of("key_distance")

  def loss(z_, chunk):
    value = losses.semisup_ntxent(z_, item_ids, labels, similarity=similarity,
                                  labeled=labeled, chunk_size=chunk)
    metrics = losses.loss_metrics(z_, item_ids, labels, labeled, similarity=similarity,
                                  chunk_size=chunk)
    return value + metrics["sl_loss"] + metrics["sparsity_sl"]

  shapes = [getattr(a, "shape", ()) for a in test_losses._collect_avals(
      jax.make_jaxpr(jax.grad(loss), static_argnums=1)(z, chunk_size))]
  assert max(min(sorted(s)[-2:]) for s in shapes if len(s) >= 2) < num_rows
  dense_shapes = [getattr(a, "shape", ()) for a in test_losses._collect_avals(
      jax.make_jaxpr(jax.grad(loss), static_argnums=1)(z, 0))]
  assert max(len(s) for s in dense_shapes) == 2  # No [R, R, K] tensor, even dense.
  dense = jax.jit(jax.value_and_grad(loss), static_argnums=1)(z, 0)
  chunked = jax.jit(jax.value_and_grad(loss), static_argnums=1)(z, chunk_size)
  np.testing.assert_allclose(float(chunked[0]), float(dense[0]), rtol=1e-5)
  np.testing.assert_allclose(np.asarray(chunked[1]), np.asarray(dense[1]), rtol=1e-4,
                             atol=1e-5 * np.abs(np.asarray(dense[1])).max())


@pytest.mark.parametrize("source,chunk_size", [("regression", 8), ("test_asymmetric", 0)])
def test_sharded_loss_and_gradient_equal_single_device(source, chunk_size):
  mesh = test_losses._mesh()
  z, item_ids, labels, labeled = make_batch("regression", 7, 16, 2, 9)  # 4 rows per device.
  if source == "test_asymmetric":
    similarity, weight_fn = losses.make_similarity(source), _ref_asymmetric
  else:
    similarity, weight_fn = similarity_of(source), weight_fn_of(source)
  rows, matrix = NamedSharding(mesh, P("data")), NamedSharding(mesh, P("data", None))
  sharded = [jax.device_put(z, matrix), jax.device_put(item_ids, rows),
             jax.device_put(labels, matrix), jax.device_put(labeled, rows)]
  single = test_losses._single_device(z, item_ids, labels, labeled)
  kwargs = dict(similarity=similarity, chunk_size=chunk_size)
  loss_1, grad_1 = jit_loss_and_grad(*single[:3], labeled=single[3], **kwargs)
  loss_8, grad_8 = jit_loss_and_grad(*sharded[:3], labeled=sharded[3], **kwargs)
  assert len(sharded[0].sharding.device_set) == 8
  target = ref_target(item_ids, labels, labeled, weight_fn)
  np.testing.assert_allclose(float(loss_1), test_losses.ref_loss(z, target, 0.1, False),
                             rtol=2e-5)
  np.testing.assert_allclose(float(loss_8), float(loss_1), rtol=1e-6)
  np.testing.assert_allclose(np.asarray(grad_8), np.asarray(grad_1), rtol=1e-5,
                             atol=1e-6 * np.abs(np.asarray(grad_1)).max())


def test_loss_metrics_with_a_similarity_match_reference():
  z, item_ids, labels, labeled = make_batch("regression", 8, 8, 2, 4)
  similarity = similarity_of("regression")
  got = losses.loss_metrics(z, item_ids, labels, labeled, similarity=similarity, chunk_size=5)
  keep = labeled
  sl_target = ref_target(item_ids[keep], labels[keep], labeled[keep], weight_fn_of(
      "regression"), view_positives=False)
  np.testing.assert_allclose(float(got["sl_loss"]),
                             test_losses.ref_loss(z[keep], sl_target, 0.1, False), rtol=2e-5)
  label_target = ref_target(item_ids, labels, labeled, weight_fn_of("regression"),
                            view_positives=False)
  joint_target = ref_target(item_ids, labels, labeled, weight_fn_of("regression"))
  np.testing.assert_allclose(float(got["sparsity_sl"]), label_target.mean(), rtol=1e-5)
  np.testing.assert_allclose(float(got["sparsity_semisl"]), joint_target.mean(), rtol=1e-5)


# -------------------------------------------------------------------------------------
# Refusals.
# -------------------------------------------------------------------------------------


def test_sources_where_zero_is_a_label_need_labeled():
  z, item_ids, labels, _ = make_batch("regression", 9, 4, 2, 2)
  for similarity in (similarity_of("regression"), losses.make_similarity("test_asymmetric")):
    with pytest.raises(ValueError, match="needs `labeled`"):
      losses.semisup_ntxent(z, item_ids, labels, similarity=similarity)


@pytest.mark.parametrize("name,params,pattern", [
    ("cosine", {}, r"Unknown label similarity 'cosine'"),
    ("regression", {}, r"takes parameters \('sigma',\)"),
    ("regression", dict(sigma=0.0), r"sigma must be > 0"),
    ("key_distance", dict(weights=(1.0, 1.5)), r"values in \[0, 1\]"),
    ("key_distance", dict(weights=()), r"non-empty"),
    ("key_distance", dict(weights=(1.0,), key_names=("C major", "H minor")), r"'H minor'"),
    ("pitch_class_overlap", dict(measure="cosine"), r"'jaccard', 'dice'"),
    ("test_asymmetric", dict(sigma=1.0), r"takes parameters \(\)"),
])
def test_make_similarity_refuses_bad_settings(name, params, pattern):
  with pytest.raises(ValueError, match=pattern):
    losses.make_similarity(name, **params)


def test_register_similarity_refuses_reserved_and_taken_names():
  for name in ("regression", "label_overlap", ""):
    with pytest.raises(ValueError, match="reserved"):
      losses.register_similarity(name, _asymmetric)
  with pytest.raises(ValueError, match="already registered"):
    losses.register_similarity("test_asymmetric", lambda a, b: a @ b.T)
  losses.register_similarity("test_asymmetric", _asymmetric)  # The same function again: fine.


def test_a_registered_similarity_of_the_wrong_shape_is_refused():
  losses.register_similarity("test_wrong_shape", lambda a, b: a @ a.T, symmetric=True)
  z, item_ids, labels, labeled = make_batch("regression", 10, 4, 2, 2)
  with pytest.raises(ValueError, match=r"'test_wrong_shape' returned shape \(8, 8\).*\(8, 5\)"):
    losses.semisup_ntxent(z, item_ids, labels, labeled=labeled, chunk_size=5,
                          similarity=losses.make_similarity("test_wrong_shape"))
