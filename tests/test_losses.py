"""Tests of ssc_jax.losses against an independent float64 NumPy reference of spec §2.

The reference below is written from `reference/semisupcon_spec.md` §2.2–2.5 with plain
loops (literal exp/den, no log-sum-exp), so it shares no code or formulation tricks with
the implementation.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from ssc_jax import losses

# -------------------------------------------------------------------------------------
# Float64 NumPy reference (spec §2).
# -------------------------------------------------------------------------------------


def ref_target_matrix(item_ids, labels, pos_threshold, view_positives=True,
                      label_positives=True):
  """Spec §2.2–2.4 with loops; c_ij = Σ_k [l_ik = l_jk]·[l_ik = 1]."""
  num_rows, num_classes = labels.shape
  target = np.zeros((num_rows, num_rows))
  for i in range(num_rows):
    for j in range(num_rows):
      p_ssl = 1.0 if item_ids[i] == item_ids[j] else 0.0
      shared = sum(1 for k in range(num_classes)
                   if labels[i, k] == labels[j, k] and labels[i, k] == 1)
      if pos_threshold == "weighted":
        denominator = labels[i].sum() + labels[j].sum()
        if denominator == 0:
          denominator = 1.0
        p_sl = 2.0 * shared / denominator
        target[i, j] = min(view_positives * p_ssl + label_positives * p_sl, 1.0)
      else:
        p_sl = 1.0 if shared >= pos_threshold else 0.0
        target[i, j] = float(view_positives * p_ssl + label_positives * p_sl > 0)
  return target


def ref_cosine_logits(z, temperature):
  z = np.asarray(z, np.float64)
  norms = np.maximum(np.linalg.norm(z, axis=1), 1e-8)
  return (z @ z.T) / np.outer(norms, norms) / temperature


def ref_loss(z, target, temperature, parity):
  """Spec §2.5: SSNTXent with the all-contrast denominator; mean over all rows."""
  num_rows = z.shape[0]
  if num_rows == 0:
    return 0.0
  exp_logits = np.exp(ref_cosine_logits(z, temperature))
  total = 0.0
  for i in range(num_rows):
    denominator = sum(exp_logits[i, k] for k in range(num_rows) if k != i)
    weight_sum = sum(target[i, j] for j in range(num_rows) if j != i)
    if weight_sum == 0:
      weight_sum = 1.0
    row_loss = 0.0
    for j in range(num_rows):
      if j == i or target[i, j] == 0:
        continue
      probability = exp_logits[i, j] / denominator
      pair_loss = -np.log(probability + 1e-6) if parity else -np.log(probability)
      row_loss += target[i, j] * pair_loss
    total += row_loss / weight_sum
  return total / num_rows


def ref_semisup_loss(z, item_ids, labels, temperature, pos_threshold, parity,
                     view_positives=True, label_positives=True, row_mask=None):
  """The reference loss on the sub-batch of selected rows."""
  if row_mask is not None:
    keep = np.asarray(row_mask, bool)
    z, item_ids, labels = z[keep], item_ids[keep], labels[keep]
  target = ref_target_matrix(item_ids, labels, pos_threshold, view_positives,
                             label_positives)
  return ref_loss(z, target, temperature, parity)


def ref_probabilities(z, temperature):
  """[R, R] p_ij = E_ij / Σ_{k≠i} E_ik (diagonal meaningless)."""
  exp_logits = np.exp(ref_cosine_logits(z, temperature))
  np.fill_diagonal(exp_logits, 0.0)
  return exp_logits / exp_logits.sum(axis=1, keepdims=True)


# -------------------------------------------------------------------------------------
# Helpers.
# -------------------------------------------------------------------------------------


def make_batch(seed, num_items, num_views, num_labeled, num_classes=6, dim=8,
               label_kind="multi_hot"):
  """Item-major batch: labeled items first (as the original), then unlabeled ones."""
  rng = np.random.default_rng(seed)
  num_rows = num_items * num_views
  z = rng.normal(size=(num_rows, dim)).astype(np.float32)
  item_ids = (np.arange(num_rows) // num_views).astype(np.int32)
  item_labels = np.zeros((num_items, num_classes), np.float32)
  for b in range(num_labeled):
    if label_kind == "multi_hot":
      item_labels[b] = rng.random(num_classes) < 0.5
      item_labels[b, rng.integers(num_classes)] = 1.0  # At least one tag.
    else:
      item_labels[b, rng.integers(3)] = 1.0  # 3 classes in use: same-class pairs.
  labels = np.repeat(item_labels, num_views, axis=0)
  labeled = np.repeat(np.arange(num_items) < num_labeled, num_views)
  return z, item_ids, labels, labeled


# temperature is traced (not static) so that tests sweeping it share compilations.
STATIC_ARGS = ("pos_threshold", "parity", "chunk_size", "view_positives",
               "label_positives")
jit_loss = jax.jit(losses.semisup_ntxent, static_argnames=STATIC_ARGS)
jit_metrics = jax.jit(losses.loss_metrics,
                      static_argnames=("pos_threshold", "parity", "chunk_size"))


@functools.partial(jax.jit, static_argnames=STATIC_ARGS)
def jit_loss_and_grad(z, item_ids, labels, **kwargs):
  return jax.value_and_grad(losses.semisup_ntxent)(z, item_ids, labels, **kwargs)


THRESHOLDS = [1, 2, "weighted"]


# -------------------------------------------------------------------------------------
# Target matrix.
# -------------------------------------------------------------------------------------


@pytest.mark.parametrize("pos_threshold", THRESHOLDS)
def test_target_matrix_matches_reference(pos_threshold):
  for label_kind in ("multi_hot", "one_hot"):
    for num_views, num_items, num_labeled in ((2, 8, 5), (4, 4, 3), (2, 8, 0)):
      _, item_ids, labels, _ = make_batch(1, num_items, num_views, num_labeled,
                                          label_kind=label_kind)
      expected = ref_target_matrix(item_ids, labels, pos_threshold)
      got = np.asarray(losses.target_matrix(item_ids, labels, pos_threshold))
      assert got.dtype == np.float32 and got.shape == expected.shape
      np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-7)
  assert np.allclose(np.diag(got), 1.0)


@pytest.mark.parametrize("pos_threshold", THRESHOLDS)
def test_target_matrix_has_cross_item_label_positives(pos_threshold):
  # Guards the test data: the reference comparisons must see label positives.
  _, item_ids, labels, _ = make_batch(2, 8, 2, 6)
  target = np.asarray(losses.target_matrix(item_ids, labels, pos_threshold))
  same_item = item_ids[:, None] == item_ids[None, :]
  shared = labels @ labels.T
  assert target[~same_item].sum() > 0
  assert np.array_equal(target[same_item], np.ones(same_item.sum()))
  if pos_threshold == 2:  # Pairs sharing exactly one tag exist and are not positives.
    one_shared = (shared == 1) & ~same_item
    assert one_shared.any() and np.all(target[one_shared] == 0)
  if pos_threshold == "weighted":  # Fractional Dice weights exist.
    assert np.any((target > 0) & (target < 1))


@pytest.mark.parametrize("bad", [0, -1, "weight", "", 1.5, True, None])
def test_invalid_pos_threshold_raises(bad):
  _, item_ids, labels, _ = make_batch(0, 4, 2, 2)
  z = np.ones((8, 3), np.float32)
  with pytest.raises(ValueError, match="pos_threshold"):
    losses.target_matrix(item_ids, labels, bad)
  with pytest.raises(ValueError, match="pos_threshold"):
    losses.semisup_ntxent(z, item_ids, labels, pos_threshold=bad)
  with pytest.raises(ValueError, match="pos_threshold"):
    losses.loss_metrics(z, item_ids, labels, np.ones(8, bool), pos_threshold=bad)


# -------------------------------------------------------------------------------------
# Loss vs reference.
# -------------------------------------------------------------------------------------


@pytest.mark.parametrize("parity", [False, True])
@pytest.mark.parametrize("pos_threshold", THRESHOLDS)
def test_loss_matches_reference(pos_threshold, parity):
  # R = 16 for both N so that one compilation serves every case of this test.
  cases = []
  for label_kind in ("multi_hot", "one_hot"):
    for num_views, num_items in ((2, 8), (4, 4)):
      for num_labeled in (0, num_items // 2, num_items):
        cases.append((label_kind, num_views, num_items, num_labeled))
  for seed, (label_kind, num_views, num_items, num_labeled) in enumerate(cases):
    z, item_ids, labels, _ = make_batch(seed, num_items, num_views, num_labeled,
                                        label_kind=label_kind)
    for temperature in (0.1, 0.5):
      expected = ref_semisup_loss(z, item_ids, labels, temperature, pos_threshold,
                                  parity)
      got = jit_loss(z, item_ids, labels, temperature=temperature,
                     pos_threshold=pos_threshold, parity=parity)
      assert got.dtype == jnp.float32 and got.shape == ()
      np.testing.assert_allclose(float(got), expected, rtol=2e-5, err_msg=str(
          (label_kind, num_views, num_labeled, temperature)))


def test_loss_is_float32_for_bfloat16_input():
  z, item_ids, labels, _ = make_batch(3, 8, 2, 4)
  z_bf16 = jnp.asarray(z, jnp.bfloat16)
  got = losses.semisup_ntxent(z_bf16, item_ids, labels)
  assert got.dtype == jnp.float32
  expected = ref_semisup_loss(np.asarray(z_bf16.astype(jnp.float32)), item_ids, labels,
                              0.1, 1, False)
  np.testing.assert_allclose(float(got), expected, rtol=2e-5)


def test_zero_vector_rows_give_cosine_zero_and_finite_gradient():
  z, item_ids, labels, _ = make_batch(4, 8, 2, 3)
  z[3] = 0.0
  for parity, chunk_size in ((False, 0), (True, 5)):
    loss, grad = jit_loss_and_grad(z, item_ids, labels, parity=parity,
                                   chunk_size=chunk_size)
    expected = ref_semisup_loss(z, item_ids, labels, 0.1, 1, parity)
    np.testing.assert_allclose(float(loss), expected, rtol=2e-5)
    assert np.all(np.isfinite(np.asarray(grad)))


def test_row_without_positives_counts_as_zero_in_the_mean():
  # N = 1: unlabeled rows have no positive at all; they contribute 0 but count in R.
  z, item_ids, labels, _ = make_batch(5, 16, 1, 8, label_kind="one_hot")
  for parity, chunk_size in ((False, 3), (True, 0)):
    got = jit_loss(z, item_ids, labels, parity=parity, chunk_size=chunk_size)
    expected = ref_semisup_loss(z, item_ids, labels, 0.1, 1, parity)
    np.testing.assert_allclose(float(got), expected, rtol=2e-5)
  got_unlabeled = losses.semisup_ntxent(z, item_ids, np.zeros_like(labels))
  assert float(got_unlabeled) == 0.0


# -------------------------------------------------------------------------------------
# Stable vs parity.
# -------------------------------------------------------------------------------------


def test_stable_and_parity_agree_within_the_epsilon_bound():
  z, item_ids, labels, _ = make_batch(6, 8, 2, 4)
  temperature = 0.5
  target = ref_target_matrix(item_ids, labels, 1)
  np.fill_diagonal(target, 0.0)
  probabilities = ref_probabilities(z, temperature)
  min_positive_probability = probabilities[target > 0].min()
  assert min_positive_probability > 1e-3  # No tiny probability in this case.
  # −log(p + ε) differs from −log p by log(1 + ε/p) <= ε/p per pair, hence per mean.
  epsilon_bound = 1e-6 / min_positive_probability
  stable = float(losses.semisup_ntxent(z, item_ids, labels, temperature=temperature))
  parity = float(losses.semisup_ntxent(z, item_ids, labels, temperature=temperature,
                                       parity=True))
  assert stable >= parity  # ε only lowers each per-pair loss.
  assert abs(stable - parity) <= epsilon_bound + 2e-6 * abs(stable)


def test_stable_and_parity_differ_when_a_positive_probability_is_tiny():
  z, item_ids, labels, _ = make_batch(7, 8, 2, 0)
  z[1] = -z[0]  # The views of item 0 point in opposite directions.
  temperature = 0.05
  probabilities = ref_probabilities(z, temperature)
  assert probabilities[0, 1] < 1e-12
  for stable_chunk_size, parity_chunk_size in ((0, 5), (5, 0)):
    stable = float(jit_loss(z, item_ids, labels, temperature=temperature,
                            chunk_size=stable_chunk_size))
    parity = float(jit_loss(z, item_ids, labels, temperature=temperature, parity=True,
                            chunk_size=parity_chunk_size))
    np.testing.assert_allclose(
        stable, ref_semisup_loss(z, item_ids, labels, temperature, 1, False), rtol=2e-5)
    np.testing.assert_allclose(
        parity, ref_semisup_loss(z, item_ids, labels, temperature, 1, True), rtol=2e-5)
    # Rows 0 and 1 each lose ~(−log p01 − 13.8) / R from the parity cap.
    assert stable - parity > 1.0


# -------------------------------------------------------------------------------------
# Gradient vs float64 finite differences of the reference.
# -------------------------------------------------------------------------------------


@pytest.mark.parametrize("pos_threshold,parity,chunk_size",
                         [(1, False, 0), (1, True, 3), ("weighted", False, 3),
                          ("weighted", True, 0)])
def test_gradient_matches_reference_finite_differences(pos_threshold, parity,
                                                       chunk_size):
  z, item_ids, labels, _ = make_batch(8, 4, 2, 2, num_classes=4, dim=4)
  temperature = 0.5
  z64 = z.astype(np.float64)
  step = 1e-6
  expected = np.zeros_like(z64)
  for index in np.ndindex(*z64.shape):
    plus, minus = z64.copy(), z64.copy()
    plus[index] += step
    minus[index] -= step
    expected[index] = (
        ref_semisup_loss(plus, item_ids, labels, temperature, pos_threshold, parity)
        - ref_semisup_loss(minus, item_ids, labels, temperature, pos_threshold, parity)
    ) / (2 * step)
  _, got = jit_loss_and_grad(z, item_ids, labels, temperature=temperature,
                             pos_threshold=pos_threshold, parity=parity,
                             chunk_size=chunk_size)  # 3 does not divide R = 8.
  np.testing.assert_allclose(np.asarray(got), expected, rtol=1e-3,
                             atol=1e-4 * np.abs(expected).max())


@pytest.mark.parametrize("parity,chunk_size", [(False, 3), (True, 0)])
def test_temperature_gradient_matches_reference_finite_differences(parity, chunk_size):
  z, item_ids, labels, _ = make_batch(8, 4, 2, 2, num_classes=4, dim=4)
  temperature, step = 0.5, 1e-6
  expected = (ref_semisup_loss(z, item_ids, labels, temperature + step, 1, parity)
              - ref_semisup_loss(z, item_ids, labels, temperature - step, 1, parity)) / (2 * step)
  got = jax.grad(lambda t: losses.semisup_ntxent(z, item_ids, labels, temperature=t,
                                                 parity=parity, chunk_size=chunk_size))(
                                                     jnp.float32(temperature))
  assert abs(expected) > 0.1
  np.testing.assert_allclose(float(got), expected, rtol=1e-4)


# -------------------------------------------------------------------------------------
# Chunked == dense.
# -------------------------------------------------------------------------------------


@pytest.mark.parametrize("pos_threshold,parity", [(2, False), ("weighted", True)])
def test_chunked_equals_dense(pos_threshold, parity):
  z, item_ids, labels, _ = make_batch(9, 12, 2, 7)  # R = 24.
  dense_loss, dense_grad = jit_loss_and_grad(
      z, item_ids, labels, pos_threshold=pos_threshold, parity=parity)
  np.testing.assert_allclose(
      float(dense_loss),
      ref_semisup_loss(z, item_ids, labels, 0.1, pos_threshold, parity), rtol=2e-5)
  for chunk_size in (5, 8):  # 5 does not divide R = 24.
    loss, grad = jit_loss_and_grad(z, item_ids, labels, pos_threshold=pos_threshold,
                                   parity=parity, chunk_size=chunk_size)
    np.testing.assert_allclose(float(loss), float(dense_loss), rtol=1e-5)
    np.testing.assert_allclose(np.asarray(grad), np.asarray(dense_grad), rtol=1e-4,
                               atol=1e-5 * np.abs(dense_grad).max())


def _collect_avals(jaxpr):
  """All abstract values of a closed jaxpr, recursing into sub-jaxprs (scan, remat)."""
  avals = []

  def visit(inner):
    for var in list(inner.invars) + list(inner.constvars):
      avals.append(var.aval)
    for eqn in inner.eqns:
      avals.extend(var.aval for var in eqn.outvars)
      for param in eqn.params.values():
        for sub in (param if isinstance(param, (list, tuple)) else (param,)):
          if hasattr(sub, "eqns"):  # A Jaxpr.
            visit(sub)
          elif hasattr(getattr(sub, "jaxpr", None), "eqns"):  # A ClosedJaxpr.
            visit(sub.jaxpr)

  visit(jaxpr.jaxpr)
  return avals


@pytest.mark.parametrize("parity", [False, True])
def test_chunked_never_builds_a_rows_by_rows_array(parity):
  num_rows, chunk_size = 48, 8
  z, item_ids, labels, labeled = make_batch(10, num_rows // 2, 2, 10)

  def loss_and_metrics(z_):
    loss = losses.semisup_ntxent(z_, item_ids, labels, pos_threshold="weighted",
                                 parity=parity, chunk_size=chunk_size)
    metrics = losses.loss_metrics(z_, item_ids, labels, labeled, parity=parity,
                                  chunk_size=chunk_size)
    return loss + sum(metrics.values())

  def max_square_side(fn):
    sides = [0]
    for aval in _collect_avals(jax.make_jaxpr(fn)(z)):
      shape = getattr(aval, "shape", ())
      if len(shape) >= 2:
        sides.append(min(sorted(shape)[-2:]))
    return max(sides)

  assert max_square_side(jax.grad(loss_and_metrics)) < num_rows
  # The detector works: the dense form does build [R, R] arrays.
  dense = lambda z_: losses.semisup_ntxent(z_, item_ids, labels, parity=parity)
  assert max_square_side(jax.grad(dense)) == num_rows


def test_chunked_temp_memory_is_well_below_dense():
  num_rows, dim, chunk_size = 2048, 64, 256
  z = jax.ShapeDtypeStruct((num_rows, dim), jnp.float32)
  item_ids = jax.ShapeDtypeStruct((num_rows,), jnp.int32)
  labels = jax.ShapeDtypeStruct((num_rows, 16), jnp.float32)

  def temp_bytes(chunk):
    fn = jax.jit(jax.grad(functools.partial(losses.semisup_ntxent, chunk_size=chunk)))
    try:
      analysis = fn.lower(z, item_ids, labels).compile().memory_analysis()
    except NotImplementedError:
      analysis = None
    if analysis is None or not hasattr(analysis, "temp_size_in_bytes"):
      pytest.skip("memory_analysis() is not available on this backend.")
    return analysis.temp_size_in_bytes

  dense_bytes = temp_bytes(0)
  chunked_bytes = temp_bytes(chunk_size)
  assert dense_bytes >= num_rows * num_rows * 4  # At least one f32 [R, R] array.
  assert chunked_bytes < dense_bytes / 4, (chunked_bytes, dense_bytes)


# -------------------------------------------------------------------------------------
# 8-device mesh == 1 device.
# -------------------------------------------------------------------------------------


def _mesh():
  devices = jax.devices()
  if len(devices) < 8:
    pytest.skip("Needs 8 (simulated) devices; see tests/conftest.py.")
  return Mesh(np.array(devices[:8]), ("data",))


def _single_device(*arrays):
  device = jax.devices()[0]
  return [jax.device_put(a, device) for a in arrays]


@pytest.mark.parametrize("chunk_size,parity,pos_threshold",
                         [(0, False, 1), (0, True, "weighted"), (12, True, 2),
                          (8, False, "weighted")])
def test_sharded_loss_and_gradient_equal_single_device(chunk_size, parity,
                                                       pos_threshold):
  mesh = _mesh()
  z, item_ids, labels, _ = make_batch(11, 16, 2, 8)  # R = 32: 4 rows per device.
  row_sharding = NamedSharding(mesh, P("data"))
  sharded = [jax.device_put(z, NamedSharding(mesh, P("data", None))),
             jax.device_put(item_ids, row_sharding),
             jax.device_put(labels, NamedSharding(mesh, P("data", None)))]
  single = _single_device(z, item_ids, labels)
  expected_loss = ref_semisup_loss(z, item_ids, labels, 0.1, pos_threshold, parity)
  kwargs = dict(pos_threshold=pos_threshold, parity=parity, chunk_size=chunk_size)
  loss_1, grad_1 = jit_loss_and_grad(*single, **kwargs)
  loss_8, grad_8 = jit_loss_and_grad(*sharded, **kwargs)
  assert len(sharded[0].sharding.device_set) == 8
  np.testing.assert_allclose(float(loss_1), expected_loss, rtol=2e-5)
  np.testing.assert_allclose(float(loss_8), float(loss_1), rtol=1e-6)
  np.testing.assert_allclose(np.asarray(grad_8), np.asarray(grad_1), rtol=1e-5,
                             atol=1e-6 * np.abs(grad_1).max())


@functools.partial(jax.jit, static_argnames=("chunk_size", "parity"))
def _encoder_loss_and_grad(weights, inputs, item_ids, labels, chunk_size, parity):
  """A tiny linear "encoder" inside jit, as the trainer would have it."""

  def loss_fn(params):
    z = inputs @ params["kernel"] + params["bias"]
    return losses.semisup_ntxent(z, item_ids, labels, chunk_size=chunk_size,
                                 parity=parity)

  return jax.value_and_grad(loss_fn)(weights)


@pytest.mark.parametrize("chunk_size,parity", [(0, False), (12, True)])
def test_sharded_encoder_parameter_gradient_equals_single_device(chunk_size, parity):
  mesh = _mesh()
  rng = np.random.default_rng(12)
  _, item_ids, labels, _ = make_batch(12, 16, 2, 8)
  inputs = rng.normal(size=(32, 10)).astype(np.float32)
  params = {"kernel": rng.normal(size=(10, 6)).astype(np.float32),
            "bias": rng.normal(size=(6,)).astype(np.float32)}
  replicated = NamedSharding(mesh, P())
  sharded_params = jax.tree.map(lambda a: jax.device_put(a, replicated), params)
  sharded_data = [jax.device_put(inputs, NamedSharding(mesh, P("data", None))),
                  jax.device_put(item_ids, NamedSharding(mesh, P("data"))),
                  jax.device_put(labels, NamedSharding(mesh, P("data", None)))]
  single_params = jax.tree.map(lambda a: jax.device_put(a, jax.devices()[0]), params)
  single_data = _single_device(inputs, item_ids, labels)
  loss_1, grads_1 = _encoder_loss_and_grad(single_params, *single_data,
                                           chunk_size=chunk_size, parity=parity)
  loss_8, grads_8 = _encoder_loss_and_grad(sharded_params, *sharded_data,
                                           chunk_size=chunk_size, parity=parity)
  z_reference = inputs.astype(np.float64) @ params["kernel"] + params["bias"]
  np.testing.assert_allclose(
      float(loss_1), ref_semisup_loss(z_reference, item_ids, labels, 0.1, 1, parity),
      rtol=2e-5)
  np.testing.assert_allclose(float(loss_8), float(loss_1), rtol=1e-6)
  for name in params:
    # A ×8 (or ÷8) gradient-scale trap would fail here by a wide margin.
    np.testing.assert_allclose(np.asarray(grads_8[name]), np.asarray(grads_1[name]),
                               rtol=1e-5, atol=1e-6 * np.abs(grads_1[name]).max())
    assert np.abs(grads_1[name]).max() > 0


# -------------------------------------------------------------------------------------
# Invariances, row_mask and positive sources.
# -------------------------------------------------------------------------------------


def test_permuting_items_leaves_loss_unchanged():
  num_items, num_views = 10, 2
  z, item_ids, labels, _ = make_batch(13, num_items, num_views, 5)
  item_order = np.random.default_rng(13).permutation(num_items)
  rows = (item_order[:, None] * num_views + np.arange(num_views)[None, :]).reshape(-1)
  for pos_threshold, parity, chunk_size in ((1, False, 0), ("weighted", True, 7)):
    kwargs = dict(pos_threshold=pos_threshold, parity=parity, chunk_size=chunk_size)
    original = float(jit_loss(z, item_ids, labels, **kwargs))
    permuted = float(jit_loss(z[rows], item_ids[rows], labels[rows], **kwargs))
    np.testing.assert_allclose(permuted, original, rtol=2e-6)
  # Permuting the embeddings alone (not ids/labels) does change it: the test can fail.
  shuffled = float(jit_loss(z[rows], item_ids, labels, pos_threshold="weighted",
                            parity=True, chunk_size=7))
  assert abs(shuffled - original) > 1e-3


def test_row_mask_and_positive_sources_match_reference_on_sub_batch():
  z, item_ids, labels, labeled = make_batch(14, 8, 2, 4)  # R = 16.
  rng = np.random.default_rng(14)
  masks = [rng.random(16) < 0.6, labeled, ~labeled, np.ones(16, bool)]
  # (pos_threshold, parity, view_positives, label_positives): each value at least twice.
  # Dense and chunked (5 does not divide 16) alternate over the settings.
  settings = [(2, False, True, True, 0), (2, True, True, False, 5),
              (2, True, False, True, 0), ("weighted", False, False, True, 5),
              ("weighted", True, True, True, 5), ("weighted", False, True, False, 0),
              (1, True, False, True, 5)]
  for pos_threshold, parity, view_positives, label_positives, chunk_size in settings:
    for row_mask in masks:
      kwargs = dict(temperature=0.1, pos_threshold=pos_threshold, parity=parity,
                    view_positives=view_positives, label_positives=label_positives)
      got = jit_loss(z, item_ids, labels, row_mask=row_mask, chunk_size=chunk_size,
                     **kwargs)
      expected = ref_semisup_loss(z, item_ids, labels, row_mask=row_mask, **kwargs)
      np.testing.assert_allclose(float(got), expected, rtol=2e-5, err_msg=str(kwargs))
  # The masked loss really is a different problem from the full one.
  full = ref_semisup_loss(z, item_ids, labels, 0.1, 1, False)
  masked = ref_semisup_loss(z, item_ids, labels, 0.1, 1, False, row_mask=masks[0])
  assert abs(full - masked) > 1e-3


def test_empty_row_mask_gives_zero_loss_and_zero_gradient():
  z, item_ids, labels, _ = make_batch(15, 8, 2, 3)
  for parity, chunk_size in ((False, 0), (True, 5)):
    loss, grad = jit_loss_and_grad(z, item_ids, labels, parity=parity,
                                   chunk_size=chunk_size, row_mask=np.zeros(16, bool))
    assert float(loss) == 0.0
    assert np.all(np.asarray(grad) == 0.0)


def test_bad_shapes_and_settings_raise():
  z, item_ids, labels, _ = make_batch(0, 4, 2, 2)
  bad_calls = {
      "item_ids": dict(item_ids=item_ids[:-1]),
      "labels": dict(labels=labels[:-1]),
      "row_mask": dict(row_mask=np.ones(5, bool)),
      "chunk_size": dict(chunk_size=-1),
      "temperature": dict(temperature=0.0),
  }
  for field, override in bad_calls.items():
    kwargs = dict(z=z, item_ids=item_ids, labels=labels) | override
    with pytest.raises(ValueError, match=field):
      losses.semisup_ntxent(kwargs.pop("z"), kwargs.pop("item_ids"),
                            kwargs.pop("labels"), **kwargs)


def test_both_positive_sources_off_raises():
  z, item_ids, labels, _ = make_batch(0, 4, 2, 2)
  with pytest.raises(ValueError, match="view_positives"):
    losses.semisup_ntxent(z, item_ids, labels, view_positives=False,
                          label_positives=False)


# -------------------------------------------------------------------------------------
# loss_metrics.
# -------------------------------------------------------------------------------------


@pytest.mark.parametrize("pos_threshold,parity,chunk_size",
                         [(1, False, 0), ("weighted", True, 5)])
def test_loss_metrics_match_reference(pos_threshold, parity, chunk_size):
  for num_labeled in (0, 5, 8):
    z, item_ids, labels, labeled = make_batch(16 + num_labeled, 8, 2, num_labeled)
    target_sl = ref_target_matrix(item_ids, labels, pos_threshold,
                                  view_positives=False)
    target_joint = ref_target_matrix(item_ids, labels, pos_threshold)
    expected = {
        "ssl_loss": ref_semisup_loss(z, item_ids, labels, 0.1, pos_threshold, parity,
                                     label_positives=False, row_mask=~labeled),
        "sl_loss": ref_semisup_loss(z, item_ids, labels, 0.1, pos_threshold, parity,
                                    view_positives=False, row_mask=labeled),
        "sparsity_sl": target_sl.mean(),
        "sparsity_semisl": target_joint.mean(),
    }
    got = jit_metrics(z, item_ids, labels, labeled, pos_threshold=pos_threshold,
                      parity=parity, chunk_size=chunk_size)
    assert set(got) == set(expected)
    for name, value in expected.items():
      np.testing.assert_allclose(float(got[name]), value, rtol=2e-5, atol=1e-7,
                                 err_msg=f"{name} {num_labeled} {chunk_size}")
    if num_labeled == 0:
      assert float(got["sl_loss"]) == 0.0 and float(got["sparsity_sl"]) == 0.0
    if num_labeled == 8:
      assert float(got["ssl_loss"]) == 0.0
    else:
      assert float(got["ssl_loss"]) > 0.0
