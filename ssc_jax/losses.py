"""Target matrices and the semi-supervised NT-Xent loss of SemiSupCon.

Implements `reference/semisupcon_spec.md` §2 as pure functions of the GLOBAL batch:
no axis names, no collectives. Call them inside `jax.jit` with the embeddings sharded
on rows; XLA then computes a row block of the logit matrix on each device, and autodiff
of the global program gives the correct (not N-times-too-large) gradient.

Batch layout: R = B·N views in item-major order, row r = b·N + n.

* `item_ids: [R] int` says which item a view comes from (= r // N in training);
  views of the same item are positives (the SSL part, spec §2.2).
* `labels: [R, K] float32` multi-hot or one-hot, all zeros for unlabeled rows; views
  of items whose labels overlap enough are positives (the SL part, spec §2.3).

Positives, threshold mode (`pos_threshold` = T, an int >= 1):
  M_ij = [item_i = item_j] or [(L·Lᵀ)_ij >= T].
Positives, weighted mode (`pos_threshold="weighted"`):
  M_ij = min([item_i = item_j] + Dice_ij, 1), Dice_ij = 2·(L·Lᵀ)_ij / (n_i + n_j),
  n_i = Σ_k L_ik, a zero denominator replaced by 1.
Positives from a label-similarity source (`similarity=make_similarity(...)`, docs/similarity.md:
regression, key_distance, pitch_class_overlap or a registered function):
  M_ij = max([item_i = item_j], [labeled_i ∧ labeled_j]·w_ij), w_ij in [0, 1] computed per
  block of columns from the two blocks' label rows (no [R, R, K] tensor).

Loss (spec §2.5), with s_ij = cos(z_i, z_j) / τ and the anchor itself excluded from
both positives and denominator, positives kept in the denominator ("all contrast"):
  stable (default): ℓ_ij = −(s_ij − logsumexp_{k≠i} s_ik)
  parity:           ℓ_ij = −log(exp(s_ij) / Σ_{k≠i} exp(s_ik) + 1e-6)
  L_i = Σ_{j≠i} M_ij ℓ_ij / w_i, w_i = Σ_{j≠i} M_ij (1 where that is 0),
  loss = mean_i L_i.

Both forms are evaluated through a log-sum-exp with a running maximum, so neither
overflows at small τ; in parity mode exp(s_ij)/den_i is computed as exp(s_ij − lse_i),
which is the same number up to float32 rounding.

Gradient: a custom VJP (`_unit_loss_backward`). s = u·uᵀ/τ, the positive weights and the
pair set are symmetric, so ∂loss/∂u_i = (1/τ)·Σ_k (G_ik + G_ki)·u_k with G = ∂loss/∂s; G_ki
needs only row k's log-sum-exp and two other per-row scalars. The backward is one more pass
over the column blocks with ONE [R_local, C]×[C, D] matmul per block (autodiff of the forward
takes two, and builds a [R, D] cotangent of the gathered columns that is then reduced over
devices); nothing but per-row statistics is saved from the forward.

Memory: with `chunk_size=0` the [R, R] logits (a [R/devices, R] block per device
under jit) are built in each pass. With `chunk_size=C > 0` the columns are visited in
blocks of C inside a `lax.scan` carrying an online log-sum-exp (forward) or the row
gradients (backward), so the peak is O(R_local·C) plus the gathered [R, D] embeddings and
[R, K] labels. The parity form needs the full log-sum-exp before any per-pair term, so its
forward takes two passes over the columns. No [R, R] mask is ever built in chunked mode:
masks come from index comparisons and per-block label matmuls.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, NamedTuple, Sequence, TypeVar, Union

import jax
import jax.numpy as jnp
import numpy as np

from data_pipelines import conventions

PosThreshold = Union[int, str]
Carry = TypeVar("Carry")

# `torch.nn.CosineSimilarity` default eps: each norm is clamped at this value, so a
# zero vector has cosine 0 with everything (and a finite gradient).
COSINE_EPS = 1e-8
# The epsilon inside the log of the original's per-pair loss (spec §2.5 step 6).
PARITY_LOG_EPS = 1e-6
# Initial running maximum of the online log-sum-exp. Finite (not -inf) so that rows
# without any contrast column never produce inf - inf.
_RUNNING_MAX_INIT = -1e30
# Logits use full float32 matmul precision (TPU/GPU defaults may use bf16/tf32 passes,
# an error of ~0.04 in the logits at τ = 0.1; jax_notes §3.4).
_MATMUL_PRECISION = jax.lax.Precision.HIGHEST


# -------------------------------------------------------------------------------------
# Label-overlap threshold.
# -------------------------------------------------------------------------------------


def _validate_pos_threshold(pos_threshold: PosThreshold) -> PosThreshold:
  """Returns `pos_threshold` as an `int` >= 1 or the string "weighted".

  Raises:
    ValueError: for anything else (0, negative, non-integers, bools, other strings).
  """
  if isinstance(pos_threshold, str):
    if pos_threshold == "weighted":
      return pos_threshold
    raise ValueError(
        f"pos_threshold must be an int >= 1 or the string 'weighted'; got the string "
        f"{pos_threshold!r}.")
  if isinstance(pos_threshold, (bool, np.bool_)) or not isinstance(
      pos_threshold, (int, np.integer)):
    raise ValueError(
        f"pos_threshold must be an int >= 1 or the string 'weighted'; got "
        f"{pos_threshold!r} of type {type(pos_threshold).__name__}.")
  if pos_threshold < 1:
    raise ValueError(
        f"pos_threshold must be >= 1 (the number of shared positive labels that makes "
        f"two labeled views positives); got {pos_threshold}. A threshold of 0 would make "
        f"every pair a positive.")
  return int(pos_threshold)


# -------------------------------------------------------------------------------------
# Label-similarity sources (docs/similarity.md).
# -------------------------------------------------------------------------------------

# (row_labels [Rr, K], col_labels [C, K], **params) -> [Rr, C] weights in [0, 1].
SimilarityFn = Callable[..., jax.Array]


class Similarity(NamedTuple):
  """A label-similarity source of the label positives; hashable (a static loss setting).

  Build it with `make_similarity`, which checks the parameters.

  Attributes:
    name: "regression", "key_distance", "pitch_class_overlap" or a name given to
      `register_similarity`.
    params: sorted (keyword, value) pairs passed to the source's function.
  """
  name: str
  params: tuple[tuple[str, Any], ...] = ()


class _Source(NamedTuple):
  fn: SimilarityFn
  symmetric: bool  # fn(a, b) = fn(b, a)ᵀ: the backward reuses the anchor-row weights.
  zero_is_unlabeled: bool  # An all-zero label row gets weight 0 from `fn` itself.
  params: tuple[str, ...]  # Keyword parameters, all required but 'key_names'.


def regression_similarity(row_labels: jax.Array, col_labels: jax.Array, *,
                          sigma: float) -> jax.Array:
  """Gaussian kernel of real-valued targets: w_ij = exp(−‖y_i − y_j‖² / (2σ²)).

  ‖y_i − y_j‖² = ‖y_i‖² + ‖y_j‖² − 2·y_i·y_j (one matmul, no [Rr, C, K] difference), clamped
  at 0 against rounding; centred (e.g. z-scored) targets keep the cancellation small.

  Args:
    row_labels: [Rr, K] float32 targets.
    col_labels: [C, K] float32 targets.
    sigma: σ > 0, in the targets' units.

  Returns:
    [Rr, C] float32 in (0, 1].
  """
  cross = jnp.dot(row_labels, col_labels.T, precision=_MATMUL_PRECISION)
  squared_distance = (jnp.sum(row_labels * row_labels, axis=-1)[:, None]
                      + jnp.sum(col_labels * col_labels, axis=-1)[None, :] - 2.0 * cross)
  return jnp.exp(-jnp.maximum(squared_distance, 0.0) / (2.0 * sigma * sigma))


def parse_key(name: str) -> tuple[int, bool]:
  """'C major' -> (0, False), 'Eb minor' -> (3, True): (tonic pitch class, is minor).

  Raises:
    ValueError: `name` is not '<pitch class> major|minor' (`conventions.parse_key`).
  """
  tonic, mode = conventions.parse_key(name)
  return tonic, mode == "minor"


def key_distance(key_a: tuple[int, bool], key_b: tuple[int, bool]) -> int:
  """Steps between two keys on the circle of fifths with relative major/minor adjacent.

  Keys are nodes of two 12-cycles (majors and minors, a fifth apart along each) joined by
  rungs between relative keys (C major – A minor). A key's place on its cycle is that of its
  relative major, p = 7·(tonic + 3·[minor]) mod 12 fifths from C, so the distance is the
  cyclic distance between places plus 1 if the modes differ: 0 (same key), 1 (fifth up or
  down, or relative), 2, ..., 7 (e.g. C major – F# minor); parallel keys are 4 apart.

  Args:
    key_a: (tonic pitch class 0-11, is minor).
    key_b: the same.
  """
  def place(key):
    tonic, minor = key
    return 7 * (tonic + 3 * int(minor)) % 12
  steps = abs(place(key_a) - place(key_b))
  return min(steps, 12 - steps) + int(bool(key_a[1]) != bool(key_b[1]))


def key_similarity_table(weights: Sequence[float],
                         key_names: Sequence[str] | None = None) -> np.ndarray:
  """[K, K] float32 key similarities: weights[d] for keys d steps apart, 0 beyond the list.

  Args:
    weights: similarity by `key_distance` 0, 1, 2, ...
    key_names: the key label's class names in class order (see `parse_key`); None for the
      synthetic dataset's order, class k = tonic k mod 12, minor for k >= 12 (K = 24).
  """
  keys = ([parse_key(name) for name in key_names] if key_names is not None
          else [(k % 12, k >= 12) for k in range(24)])
  table = np.zeros((len(keys), len(keys)), np.float32)
  for a, key_a in enumerate(keys):
    for b, key_b in enumerate(keys):
      steps = key_distance(key_a, key_b)
      table[a, b] = weights[steps] if steps < len(weights) else 0.0
  return table


def key_distance_similarity(row_labels: jax.Array, col_labels: jax.Array, *,
                            weights: tuple[float, ...],
                            key_names: tuple[str, ...] | None = None) -> jax.Array:
  """Key similarity (L_r·S)·L_cᵀ of one-hot key labels, S = `key_similarity_table`.

  Args:
    row_labels: [Rr, K] float32 one-hot keys (zeros: unlabeled, weight 0).
    col_labels: [C, K] float32 one-hot keys.
    weights: similarity by key distance 0, 1, 2, ...
    key_names: class names in class order; None for the synthetic dataset's order.

  Returns:
    [Rr, C] float32: S[key_i, key_j] for one-hot rows.
  """
  table = jnp.asarray(key_similarity_table(weights, key_names))
  if table.shape[0] != row_labels.shape[-1]:
    raise ValueError(f"key_distance: labels have {row_labels.shape[-1]} classes but the key "
                     f"table has {table.shape[0]} keys.")
  row_similarity = jnp.dot(row_labels, table, precision=_MATMUL_PRECISION)
  return jnp.dot(row_similarity, col_labels.T, precision=_MATMUL_PRECISION)


PITCH_CLASS_MEASURES = ("jaccard", "dice")


def pitch_class_overlap_similarity(row_labels: jax.Array, col_labels: jax.Array, *,
                                   measure: str) -> jax.Array:
  """Overlap of pitch-class sets (0/1 multi-hot): Jaccard |A∩B|/|A∪B| or Dice 2|A∩B|/(|A|+|B|).

  |A∩B| = L_r·L_cᵀ and |A∪B| = |A| + |B| − |A∩B| (matmuls, no [Rr, C, K] tensor); two empty
  sets (unlabeled rows) get 0.

  Args:
    row_labels: [Rr, K] float32 multi-hot.
    col_labels: [C, K] float32 multi-hot.
    measure: "jaccard" or "dice".

  Returns:
    [Rr, C] float32 in [0, 1].
  """
  shared = jnp.dot(row_labels, col_labels.T, precision=_MATMUL_PRECISION)
  sizes = jnp.sum(row_labels, axis=-1)[:, None] + jnp.sum(col_labels, axis=-1)[None, :]
  numerator, denominator = ((2.0 * shared, sizes) if measure == "dice"
                            else (shared, sizes - shared))
  return jnp.where(denominator > 0, numerator / jnp.where(denominator > 0, denominator, 1.0),
                   0.0)


_SIMILARITIES: dict[str, _Source] = {
    "regression": _Source(regression_similarity, True, False, ("sigma",)),
    "key_distance": _Source(key_distance_similarity, True, True, ("weights", "key_names")),
    "pitch_class_overlap": _Source(pitch_class_overlap_similarity, True, True, ("measure",)),
}
BUILTIN_SIMILARITIES = tuple(_SIMILARITIES)
# The config name of the paper's shared-label positives (no `Similarity`; see pos_threshold).
LABEL_OVERLAP = "label_overlap"


def register_similarity(name: str, fn: Callable[[jax.Array, jax.Array], jax.Array], *,
                        symmetric: bool = False) -> None:
  """Registers a user label similarity, then usable as `make_similarity(name)` and
  `loss.similarity=<name>`.

  `fn(labels_i, labels_j)` gets a [Rr, K] and a [C, K] float32 block of label rows (rows of
  the anchors, a block of columns in chunked mode) and returns [Rr, C] weights. It is traced
  by JAX (use jnp), gets no gradient, and its weights are clipped to [0, 1] and used only for
  pairs of labeled rows (the loss needs `labeled`).

  Args:
    name: the source's name (not a built-in one or 'label_overlap').
    fn: the similarity function.
    symmetric: declare fn(a, b) = fn(b, a)ᵀ; the backward then reuses the forward's weights
      instead of calling fn once more per block. The gradient is exact either way.

  Raises:
    ValueError: a reserved or already registered name, or `fn` not callable.
  """
  if not callable(fn):
    raise ValueError(f"register_similarity({name!r}): fn must be callable; got {fn!r}.")
  if not isinstance(name, str) or not name or name in BUILTIN_SIMILARITIES + (LABEL_OVERLAP,):
    raise ValueError(f"register_similarity: name {name!r} is empty or reserved "
                     f"({(LABEL_OVERLAP,) + BUILTIN_SIMILARITIES}).")
  if name in _SIMILARITIES and _SIMILARITIES[name].fn is not fn:
    raise ValueError(f"register_similarity: {name!r} is already registered to "
                     f"{_SIMILARITIES[name].fn!r}.")
  _SIMILARITIES[name] = _Source(fn, bool(symmetric), False, ())


def similarity_names() -> tuple[str, ...]:
  """The built-in and registered similarity names."""
  return tuple(_SIMILARITIES)


def make_similarity(name: str, **params: Any) -> Similarity:
  """A checked `Similarity`.

  Args:
    name: a built-in or registered source.
    **params: regression: sigma > 0; key_distance: weights (by distance 0, 1, ..., each in
      [0, 1]) and optionally key_names (class names in class order); pitch_class_overlap:
      measure ("jaccard" or "dice"); registered sources take none.

  Raises:
    ValueError: unknown name, missing/unknown parameter or bad value, naming it.
  """
  if name not in _SIMILARITIES:
    raise ValueError(f"Unknown label similarity {name!r}; known: {similarity_names()} "
                     f"(register others with losses.register_similarity).")
  expected = _SIMILARITIES[name].params
  missing = [p for p in expected if p not in params and p != "key_names"]
  if set(params) - set(expected) or missing:
    raise ValueError(f"Similarity {name!r} takes parameters {expected}; got {sorted(params)}.")
  if name == "regression":
    params["sigma"] = float(params["sigma"])
    if not params["sigma"] > 0:
      raise ValueError(f"regression: sigma must be > 0; got {params['sigma']!r}.")
  if name == "key_distance":
    weights = tuple(float(w) for w in params["weights"])
    if not weights or not all(0.0 <= w <= 1.0 for w in weights):
      raise ValueError(f"key_distance: weights (by key distance 0, 1, ...) must be a "
                       f"non-empty list of values in [0, 1]; got {params['weights']!r}.")
    params["weights"] = weights
    if params.get("key_names") is not None:
      params["key_names"] = tuple(str(n) for n in params["key_names"])
      for key_name in params["key_names"]:
        parse_key(key_name)
  if name == "pitch_class_overlap" and params["measure"] not in PITCH_CLASS_MEASURES:
    raise ValueError(f"pitch_class_overlap: measure must be one of {PITCH_CLASS_MEASURES}; "
                     f"got {params['measure']!r}.")
  return Similarity(name, tuple(sorted(params.items())))


def _similarity_weights(similarity: Similarity, row_labels: jax.Array,
                        col_labels: jax.Array) -> jax.Array:
  """[Rr, C] float32 weights of `similarity` clipped to [0, 1] (labels get no gradient)."""
  if similarity.name not in _SIMILARITIES:
    raise ValueError(f"Label similarity {similarity.name!r} is not registered in this process.")
  row_labels = jax.lax.stop_gradient(row_labels)
  col_labels = jax.lax.stop_gradient(col_labels)
  weights = _SIMILARITIES[similarity.name].fn(row_labels, col_labels, **dict(similarity.params))
  expected = (row_labels.shape[0], col_labels.shape[0])
  if jnp.shape(weights) != expected:
    raise ValueError(f"Label similarity {similarity.name!r} returned shape "
                     f"{jnp.shape(weights)} for label blocks {row_labels.shape} and "
                     f"{col_labels.shape}; expected {expected}.")
  return jnp.clip(jnp.asarray(weights, jnp.float32), 0.0, 1.0)


def _is_symmetric(similarity: Similarity | None) -> bool:
  return similarity is None or _SIMILARITIES[similarity.name].symmetric


def _labeled_rows(similarity: Similarity | None, labels: jax.Array,
                  labeled: jax.Array | None) -> jax.Array:
  """[R] bool labeled rows: `labeled`, else rows with a non-zero label (refused for sources
  where an all-zero label is a valid target)."""
  if labeled is not None:
    return jnp.asarray(labeled, bool)
  if similarity is not None and not _SIMILARITIES[similarity.name].zero_is_unlabeled:
    raise ValueError(f"Label similarity {similarity.name!r} needs `labeled` ([R] bool): an "
                     f"all-zero label row is a valid target for it.")
  return jnp.any(labels != 0, axis=-1)


# -------------------------------------------------------------------------------------
# Target matrix.
# -------------------------------------------------------------------------------------


def _positive_weights(
    rows: dict[str, jax.Array],
    cols: dict[str, jax.Array],
    pos_threshold: PosThreshold,
    similarity: Similarity | None,
    view_positives: bool,
    label_positives: bool,
) -> jax.Array:
  """Target weights between a set of rows and a block of columns, diagonal included.

  Args:
    rows: 'item_ids' [Rr] int, 'labels' [Rr, K] float32 (zeros if unlabeled), 'labeled'
      [Rr] bool.
    cols: the same for a block of C columns.
    pos_threshold: validated int >= 1, or "weighted" (used when `similarity` is None).
    similarity: None for shared-label positives, else the label-similarity source.
    view_positives: whether views of the same item are positives (P_ssl).
    label_positives: whether labels make positives (P_sl).

  Returns:
    [Rr, C] float32: 0/1 in threshold mode, in [0, 1] in weighted mode and with a
    similarity (max of the same-item positives and the labeled pairs' similarity).
  """
  shape = (rows["item_ids"].shape[0], cols["item_ids"].shape[0])
  same_item = None
  if view_positives:
    same_item = rows["item_ids"][:, None] == cols["item_ids"][None, :]

  if similarity is not None:
    weights = jnp.zeros(shape, jnp.float32)
    if label_positives:
      both_labeled = rows["labeled"][:, None] & cols["labeled"][None, :]
      weights = jnp.where(both_labeled,
                          _similarity_weights(similarity, rows["labels"], cols["labels"]), 0.0)
    if same_item is not None:
      weights = jnp.maximum(weights, same_item.astype(jnp.float32))
    return weights

  row_labels, col_labels = rows["labels"], cols["labels"]
  shared_labels = None
  if label_positives:
    # c_ij = Σ_k L_ik L_jk: for 0/1 labels the number of shared positive classes.
    shared_labels = jnp.dot(row_labels, col_labels.T, precision=_MATMUL_PRECISION)

  if pos_threshold == "weighted":
    weights = jnp.zeros(shape, jnp.float32)
    if same_item is not None:
      weights = weights + same_item.astype(jnp.float32)
    if shared_labels is not None:
      label_counts_sum = (jnp.sum(row_labels, axis=-1)[:, None]
                          + jnp.sum(col_labels, axis=-1)[None, :])
      dice_denominator = jnp.where(label_counts_sum == 0, 1.0, label_counts_sum)
      weights = weights + 2.0 * shared_labels / dice_denominator
    return jnp.minimum(weights, 1.0)

  positives = jnp.zeros(shape, bool)
  if same_item is not None:
    positives = positives | same_item
  if shared_labels is not None:
    # Counts are exact small integers; the -0.5 only guards against rounding.
    positives = positives | (shared_labels > pos_threshold - 0.5)
  return positives.astype(jnp.float32)


def target_matrix(
    item_ids: jax.Array,
    labels: jax.Array,
    pos_threshold: PosThreshold = 1,
    *,
    similarity: Similarity | None = None,
    labeled: jax.Array | None = None,
) -> jax.Array:
  """The joint SemiSupCon target M = views ∨ labels (spec §2.2–2.4), diagonal included.

  Args:
    item_ids: [R] int32, item of each view (views of one item are positives).
    labels: [R, K] float32 multi-hot / one-hot labels (or a similarity source's label
      vectors), all zeros for unlabeled rows.
    pos_threshold: int T >= 1: M_ij = [item_i = item_j] ∨ [(L·Lᵀ)_ij >= T];
      "weighted": M_ij = min([item_i = item_j] + 2·(L·Lᵀ)_ij / (n_i + n_j), 1) with
      n_i = Σ_k L_ik and a zero denominator replaced by 1. Unused with a `similarity`.
    similarity: a label-similarity source (`make_similarity`): M_ij = max([item_i = item_j],
      [labeled_i ∧ labeled_j]·w_ij) with w its weights.
    labeled: [R] bool labeled rows; default: rows with a non-zero label (required by sources
      for which zeros are a valid label, e.g. regression).

  Returns:
    M: [R, R] float32, 0/1 in threshold mode, in [0, 1] otherwise. The diagonal is 1 (a
    view is in its own item); the loss removes it.

  Raises:
    ValueError: if `pos_threshold` is not an int >= 1 or "weighted", or on
      inconsistent shapes.
  """
  pos_threshold = _validate_pos_threshold(pos_threshold)
  item_ids = jnp.asarray(item_ids)
  labels = jnp.asarray(labels, jnp.float32)
  labeled = _labeled_rows(similarity, labels, labeled)
  _validate_batch(None, item_ids, labels, labeled, row_mask_name="labeled")
  side = {"item_ids": item_ids, "labels": labels, "labeled": labeled}
  return _positive_weights(side, side, pos_threshold, similarity,
                           view_positives=True, label_positives=True)


def _validate_batch(
    z: jax.Array | None,
    item_ids: jax.Array,
    labels: jax.Array,
    row_mask: jax.Array | None = None,
    chunk_size: int = 0,
    temperature: float | jax.Array = 1.0,
    row_mask_name: str = "row_mask",
) -> None:
  """Raises ValueError on inconsistent shapes or bad static settings."""
  num_rows = item_ids.shape[0] if z is None else z.shape[0]
  if z is not None and z.ndim != 2:
    raise ValueError(f"z must be [R, D]; got shape {z.shape}.")
  if item_ids.shape != (num_rows,):
    raise ValueError(f"item_ids must be [R] = [{num_rows}]; got shape {item_ids.shape}.")
  if labels.ndim != 2 or labels.shape[0] != num_rows:
    raise ValueError(f"labels must be [R, K] with R = {num_rows}; got shape "
                     f"{labels.shape}.")
  if row_mask is not None and row_mask.shape != (num_rows,):
    raise ValueError(f"{row_mask_name} must be [R] = [{num_rows}]; got shape "
                     f"{row_mask.shape}.")
  if not isinstance(chunk_size, (int, np.integer)) or chunk_size < 0:
    raise ValueError(f"chunk_size must be an int >= 0 (0 = dense); got {chunk_size!r}.")
  if isinstance(temperature, (int, float)) and not temperature > 0:
    raise ValueError(f"temperature must be > 0; got {temperature!r}.")


# -------------------------------------------------------------------------------------
# Column-block traversal (dense = one block; chunked = lax.scan over blocks).
# -------------------------------------------------------------------------------------


def _reduce_over_column_blocks(
    block_fn: Callable[[Carry, dict[str, jax.Array]], Carry],
    init: Carry,
    columns: dict[str, jax.Array],
    chunk_size: int,
) -> Carry:
  """Folds `block_fn` over column blocks of the batch.

  Args:
    block_fn: (carry, block) -> carry. `block` holds each entry of `columns` restricted
      to the block ([C, ...]), plus 'col_index' ([C] int32, global column index) and
      'col_valid' ([C] bool, False on padding columns).
    init: initial carry (per-row accumulators).
    columns: arrays with a leading axis of length R.
    chunk_size: 0 for a single block of all R columns, else the block size C. R need
      not be a multiple of C: the last block is padded and 'col_valid' masks it.

  Returns:
    The final carry.
  """
  num_rows = next(iter(columns.values())).shape[0]
  if chunk_size <= 0 or chunk_size >= num_rows:
    block = dict(columns)
    block["col_index"] = jnp.arange(num_rows, dtype=jnp.int32)
    block["col_valid"] = jnp.ones((num_rows,), bool)
    return block_fn(init, block)

  num_blocks = -(-num_rows // chunk_size)
  padding = num_blocks * chunk_size - num_rows

  def to_blocks(array: jax.Array) -> jax.Array:
    pad_widths = [(0, padding)] + [(0, 0)] * (array.ndim - 1)
    padded = jnp.pad(array, pad_widths)
    return padded.reshape((num_blocks, chunk_size) + array.shape[1:])

  blocks = {name: to_blocks(array) for name, array in columns.items()}
  col_index = jnp.arange(num_blocks * chunk_size, dtype=jnp.int32)
  blocks["col_index"] = col_index.reshape(num_blocks, chunk_size)
  blocks["col_valid"] = (col_index < num_rows).reshape(num_blocks, chunk_size)

  def scan_body(carry: Carry, block: dict[str, jax.Array]) -> tuple[Carry, None]:
    return block_fn(carry, block), None

  carry, _ = jax.lax.scan(scan_body, init, blocks)
  return carry


# -------------------------------------------------------------------------------------
# Loss.
# -------------------------------------------------------------------------------------


def _normalize(z: jax.Array) -> jax.Array:
  """z / max(||z||, 1e-8) row-wise in float32 (PyTorch CosineSimilarity convention).

  Args:
    z: [R, D] any float dtype.

  Returns:
    [R, D] float32 with rows of norm 1 (or 0 for zero rows); the gradient is finite
    for zero rows.
  """
  z = jnp.asarray(z, jnp.float32)
  squared_norm = jnp.sum(z * z, axis=-1, keepdims=True)
  return z / jnp.sqrt(jnp.maximum(squared_norm, COSINE_EPS**2))


def _block_logits_and_positives(
    rows: dict[str, jax.Array],
    block: dict[str, jax.Array],
    temperature: float,
    settings: _LossSettings,
) -> tuple[jax.Array, jax.Array, jax.Array]:
  """Logits, contrast mask and positive weights of all rows against one column block.

  Args:
    rows: 'z' [R, D] normalised float32, 'item_ids' [R], 'labels' [R, K], 'labeled' [R]
      bool, 'row_index' [R] int32.
    block: 'z' [C, D], 'item_ids' [C], 'labels' [C, K], 'labeled' [C], 'in_contrast' [C]
      bool (column selected by row_mask), 'col_index' [C] int32, 'col_valid' [C] bool.
    temperature: τ.
    settings: the static loss settings (positive sources, threshold, similarity).

  Returns:
    logits: [R, C] float32, cos/τ.
    in_contrast: [R, C] bool, column is in row's denominator (valid, selected, ≠ self).
    positive_weights: [R, C] float32, M restricted to `in_contrast`.
  """
  logits = jnp.dot(rows["z"], block["z"].T, precision=_MATMUL_PRECISION) / temperature
  in_contrast = ((block["col_valid"] & block["in_contrast"])[None, :]
                 & (rows["row_index"][:, None] != block["col_index"][None, :]))
  weights = _settings_positive_weights(rows, block, settings)
  return logits, in_contrast, jnp.where(in_contrast, weights, 0.0)


def _settings_positive_weights(rows: dict[str, jax.Array], cols: dict[str, jax.Array],
                               settings: _LossSettings) -> jax.Array:
  """`_positive_weights` with the loss settings' sources."""
  return _positive_weights(rows, cols, settings.pos_threshold, settings.similarity,
                           settings.view_positives, settings.label_positives)


def _online_logsumexp_update(
    running_max: jax.Array,
    running_sum: jax.Array,
    logits: jax.Array,
    in_contrast: jax.Array,
) -> tuple[jax.Array, jax.Array]:
  """One step of a masked online log-sum-exp over a column block.

  Args:
    running_max: [R] float32, current shift (treated as a constant by autodiff, which
      is exact: lse = m + log Σ exp(s − m) does not depend on m).
    running_sum: [R] float32, Σ exp(s − running_max) over the columns seen so far.
    logits: [R, C] float32.
    in_contrast: [R, C] bool.

  Returns:
    The updated (running_max, running_sum).
  """
  block_max = jnp.max(jnp.where(in_contrast, logits, -jnp.inf), axis=1)
  new_max = jax.lax.stop_gradient(jnp.maximum(running_max, block_max))
  shifted = jnp.where(in_contrast, logits, new_max[:, None]) - new_max[:, None]
  block_sum = jnp.sum(jnp.where(in_contrast, jnp.exp(shifted), 0.0), axis=1)
  new_sum = running_sum * jnp.exp(running_max - new_max) + block_sum
  return new_max, new_sum


def _finish_logsumexp(running_max: jax.Array, running_sum: jax.Array) -> jax.Array:
  """[R] log-sum-exp; rows without any contrast column get a finite dummy value."""
  return running_max + jnp.log(jnp.where(running_sum > 0, running_sum, 1.0))


def semisup_ntxent(
    z: jax.Array,
    item_ids: jax.Array,
    labels: jax.Array,
    *,
    temperature: float = 0.1,
    pos_threshold: PosThreshold = 1,
    parity: bool = False,
    chunk_size: int = 0,
    view_positives: bool = True,
    label_positives: bool = True,
    row_mask: jax.Array | None = None,
    similarity: Similarity | None = None,
    labeled: jax.Array | None = None,
) -> jax.Array:
  """Semi-supervised NT-Xent over the global batch (SSNTXent, spec §2.5).

  Args:
    z: [R, D] embeddings (projection-head outputs), any float dtype; computed in
      float32. Need not be normalised: the cosine normalises (eps 1e-8, zero rows safe).
    item_ids: [R] int32, item of each view (r // N in training).
    labels: [R, K] float32 multi-hot / one-hot, all zeros for unlabeled rows.
    temperature: τ of the logits cos/τ.
    pos_threshold: int T >= 1 (label overlap >= T makes a positive) or "weighted"
      (Dice-weighted positives); see `target_matrix`.
    parity: if True, ℓ_ij = −log(p_ij + 1e-6) exactly as the original; if False, the
      stable ℓ_ij = −log p_ij = −(s_ij − logsumexp_{k≠i} s_ik).
    chunk_size: 0 for the dense computation; C > 0 to visit the columns in blocks of
      C (same loss and gradient, O(R_local·C) peak memory). Any C works for any R.
    view_positives: count views of the same item as positives (the SSL source).
    label_positives: count label-overlap pairs as positives (the SL source).
    row_mask: optional [R] bool. Restricts the whole problem to the selected rows, as
      if the batch held only them: only they are anchors, and only they are in the
      contrast set. The mean is over selected rows; 0.0 if none is selected.
    similarity: None for shared-label positives (`pos_threshold`); else a label-similarity
      source (`make_similarity`) whose weights make the label positives of labeled pairs
      (see `target_matrix`).
    labeled: optional [R] bool, labeled rows (only pairs of labeled rows get a similarity
      weight); default: rows with a non-zero label, refused for sources where zeros are a
      valid label (regression, registered functions). Unused without a `similarity`.

  Returns:
    [] float32 loss: mean over (selected) anchors of the positive-weighted mean of
    ℓ_ij; anchors with zero positive weight contribute 0 (their weight is set to 1).

  Raises:
    ValueError: on an invalid `pos_threshold`, `chunk_size` or `temperature`, on
      inconsistent shapes, or if both positive sources are off.
  """
  pos_threshold = _validate_pos_threshold(pos_threshold)
  if not (view_positives or label_positives):
    raise ValueError("At least one of view_positives and label_positives must be True.")
  z = jnp.asarray(z)
  item_ids = jnp.asarray(item_ids)
  labels = jnp.asarray(labels, jnp.float32)
  if row_mask is not None:
    row_mask = jnp.asarray(row_mask, bool)
  _validate_batch(z, item_ids, labels, row_mask, chunk_size, temperature)
  labeled = _labeled_rows(similarity, labels, labeled)
  _validate_batch(z, item_ids, labels, labeled, row_mask_name="labeled")
  settings = _LossSettings(pos_threshold, parity, chunk_size, view_positives, label_positives,
                           similarity)
  selected = jnp.ones((z.shape[0],), bool) if row_mask is None else row_mask
  return _unit_loss(settings, _normalize(z), jnp.asarray(temperature, jnp.float32), item_ids,
                    labels, labeled, selected)


class _LossSettings(NamedTuple):
  """The static (hashable) settings of `semisup_ntxent`; see its Args."""
  pos_threshold: PosThreshold
  parity: bool
  chunk_size: int
  view_positives: bool
  label_positives: bool
  similarity: Similarity | None


def _rows_and_columns(u: jax.Array, item_ids: jax.Array, labels: jax.Array,
                      labeled: jax.Array, selected: jax.Array, **per_view: jax.Array
                      ) -> tuple[dict[str, jax.Array], dict[str, jax.Array]]:
  """The row set (all views) and the column arrays traversed in blocks.

  `per_view` arrays ([R]) are added to both, so a block sees them for its columns too.
  """
  rows = {"z": u, "item_ids": item_ids, "labels": labels, "labeled": labeled,
          "selected": selected, "row_index": jnp.arange(u.shape[0], dtype=jnp.int32),
          **per_view}
  columns = {"z": u, "item_ids": item_ids, "labels": labels, "labeled": labeled,
             "in_contrast": selected, **per_view}
  return rows, columns


def _unit_loss_forward(
    settings: _LossSettings,
    u: jax.Array,
    temperature: jax.Array,
    item_ids: jax.Array,
    labels: jax.Array,
    labeled: jax.Array,
    selected: jax.Array,
) -> tuple[jax.Array, tuple[jax.Array, jax.Array, jax.Array]]:
  """The loss of unit embeddings and the per-row statistics its gradient needs.

  Args:
    settings: static settings.
    u: [R, D] float32 unit (or zero) rows.
    temperature: [] float32 τ.
    item_ids: [R] int.
    labels: [R, K] float32.
    labeled: [R] bool.
    selected: [R] bool, rows in the problem (anchors and contrast set).

  Returns:
    loss: [] float32.
    (lse, coef, q): each [R] float32. lse_i = logsumexp over row i's contrast columns;
    coef_i = ∂loss/∂(row i's summed pair loss) = [selected, w_i > 0] / (w_i · #selected);
    q_i = Σ_j M_ij r_ij with r_ij = 1 (stable) or p_ij / (p_ij + 1e-6) (parity).
  """
  num_rows = u.shape[0]
  rows, columns = _rows_and_columns(u, item_ids, labels, labeled, selected)

  def block_terms(block):
    return _block_logits_and_positives(rows, block, temperature, settings)

  zeros = jnp.zeros((num_rows,), jnp.float32)
  max_init = jnp.full((num_rows,), _RUNNING_MAX_INIT, jnp.float32)

  if not settings.parity:
    # One pass: Σ_j M_ij ℓ_ij = w_i·lse_i − Σ_j M_ij s_ij.
    def stable_block(carry, block):
      running_max, running_sum, weight_sum, weighted_logit_sum = carry
      logits, in_contrast, weights = block_terms(block)
      running_max, running_sum = _online_logsumexp_update(
          running_max, running_sum, logits, in_contrast)
      weight_sum = weight_sum + jnp.sum(weights, axis=1)
      weighted_logit_sum = weighted_logit_sum + jnp.sum(weights * logits, axis=1)
      return running_max, running_sum, weight_sum, weighted_logit_sum

    running_max, running_sum, weight_sum, weighted_logit_sum = (
        _reduce_over_column_blocks(stable_block, (max_init, zeros, zeros, zeros),
                                   columns, settings.chunk_size))
    logsumexp = _finish_logsumexp(running_max, running_sum)
    weighted_loss_sum = weight_sum * logsumexp - weighted_logit_sum
    q = weight_sum
  else:
    # Pass 1: lse_i. Pass 2: Σ_j M_ij·(−log(exp(s_ij − lse_i) + 1e-6)) and q_i.
    def logsumexp_block(carry, block):
      logits, in_contrast, _ = block_terms(block)
      return _online_logsumexp_update(*carry, logits, in_contrast)

    logsumexp = _finish_logsumexp(*_reduce_over_column_blocks(
        logsumexp_block, (max_init, zeros), columns, settings.chunk_size))

    def parity_block(carry, block):
      weight_sum, weighted_loss_sum, q = carry
      logits, _, weights = block_terms(block)
      is_positive = weights > 0
      ratio = jnp.exp(jnp.where(is_positive, logits - logsumexp[:, None], 0.0))
      pair_loss = -jnp.log(ratio + PARITY_LOG_EPS)
      weight_sum = weight_sum + jnp.sum(weights, axis=1)
      weighted_loss_sum = weighted_loss_sum + jnp.sum(
          jnp.where(is_positive, weights * pair_loss, 0.0), axis=1)
      q = q + jnp.sum(jnp.where(is_positive, weights * ratio / (ratio + PARITY_LOG_EPS), 0.0),
                      axis=1)
      return weight_sum, weighted_loss_sum, q

    weight_sum, weighted_loss_sum, q = _reduce_over_column_blocks(
        parity_block, (zeros, zeros, zeros), columns, settings.chunk_size)

  has_positives = weight_sum > 0
  safe_weight_sum = jnp.where(has_positives, weight_sum, 1.0)
  row_loss = jnp.where(has_positives, weighted_loss_sum / safe_weight_sum, 0.0)
  num_selected = jnp.maximum(jnp.sum(selected.astype(jnp.float32)), 1.0)
  loss = jnp.sum(jnp.where(selected, row_loss, 0.0)) / num_selected
  coef = jnp.where(selected & has_positives, 1.0 / (safe_weight_sum * num_selected), 0.0)
  return loss, (logsumexp, coef, q)


def _logit_gradient(
    logits: jax.Array,
    weights: jax.Array,
    mask: jax.Array,
    logsumexp: jax.Array,
    coef: jax.Array,
    q: jax.Array,
    parity: bool,
) -> jax.Array:
  """∂loss/∂s for the pairs of one block, from the point of view of the anchor rows.

  With p = exp(s − lse) over the anchor's contrast columns:
  ∂loss/∂s_ik = coef_i · (p_ik · q_i − M_ik · r_ik), r = 1 (stable) or p / (p + 1e-6) (parity).
  The per-anchor statistics broadcast against [Rr, C] (anchor = row: [Rr, 1]; anchor =
  column: [1, C]).
  """
  p = jnp.exp(jnp.where(mask, logits - logsumexp, -jnp.inf))
  positive_part = weights
  if parity:
    positive_part = jnp.where(weights > 0, weights * p / (p + PARITY_LOG_EPS), 0.0)
  return coef * (p * q - positive_part)


def _unit_loss_backward(
    settings: _LossSettings,
    residuals: tuple[jax.Array, ...],
    cotangent: jax.Array,
) -> tuple[jax.Array | None, ...]:
  """Gradient of `_unit_loss` for u and τ, one pass over the column blocks.

  s = u·uᵀ/τ is symmetric, and so is the pair set (two selected, distinct rows). So
  ∂loss/∂u_i = (1/τ) Σ_k (G_ik + G_ki) u_k, where G_ik = ∂loss/∂s_ik is computed with row i
  as the anchor and G_ki with column k as the anchor (its lse, coef and q are [R] vectors,
  cheap to gather). G_ki needs M_ki: the forward's M_ik where M is symmetric (every built-in
  source), else the weights recomputed with the column as anchor (a registered similarity not
  declared symmetric). The gradient of every row is thus summed on the device that holds the
  row: no [R, D] cotangent of the gathered columns is built or reduced. Labels, item ids and
  the row selections get no gradient (they are data).
  """
  u, temperature, item_ids, labels, labeled, selected, logsumexp, coef, q = residuals
  stats = {"logsumexp": logsumexp, "coef": coef, "q": q}
  rows, columns = _rows_and_columns(u, item_ids, labels, labeled, selected, **stats)
  # Under jit with sharded rows, XLA gathers the columns once per pass, and would gather this
  # pass's columns while the forward's are still live (twice the [R, D] + [R, K] memory).
  # Making them depend on a forward result (0 · Σ lse, an exact no-op: lse is finite)
  # orders the gathers.
  after_forward = 0.0 * jnp.sum(logsumexp)
  columns["z"] = columns["z"] + after_forward
  columns["labels"] = columns["labels"] + after_forward

  def grad_block(carry, block):
    grad_u, grad_temperature = carry
    logits, in_contrast, weights = _block_logits_and_positives(rows, block, temperature,
                                                               settings)
    mask = in_contrast & rows["selected"][:, None]
    weights = jnp.where(mask, weights, 0.0)
    column_anchor_weights = weights
    if not _is_symmetric(settings.similarity):
      column_anchor_weights = jnp.where(
          mask, _settings_positive_weights(block, rows, settings).T, 0.0)
    as_row = _logit_gradient(logits, weights, mask, *(rows[k][:, None] for k in stats),
                             parity=settings.parity)
    as_column = _logit_gradient(logits, column_anchor_weights, mask,
                                *(block[k][None, :] for k in stats), parity=settings.parity)
    grad_u = grad_u + jnp.dot(as_row + as_column, block["z"],
                              precision=_MATMUL_PRECISION) / temperature
    grad_temperature = grad_temperature - jnp.sum(as_row * logits) / temperature
    return grad_u, grad_temperature

  grad_u, grad_temperature = _reduce_over_column_blocks(
      grad_block, (jnp.zeros_like(u), jnp.zeros((), jnp.float32)), columns,
      settings.chunk_size)
  return cotangent * grad_u, cotangent * grad_temperature, None, None, None, None


def _unit_loss_fwd(settings, u, temperature, item_ids, labels, labeled, selected):
  loss, stats = _unit_loss_forward(settings, u, temperature, item_ids, labels, labeled,
                                   selected)
  return loss, (u, temperature, item_ids, labels, labeled, selected, *stats)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _unit_loss(settings: _LossSettings, u: jax.Array, temperature: jax.Array,
               item_ids: jax.Array, labels: jax.Array, labeled: jax.Array,
               selected: jax.Array) -> jax.Array:
  """The SemiSupCon loss of unit embeddings `u` [R, D]; a custom gradient (see backward)."""
  return _unit_loss_forward(settings, u, temperature, item_ids, labels, labeled, selected)[0]


_unit_loss.defvjp(_unit_loss_fwd, _unit_loss_backward)


# -------------------------------------------------------------------------------------
# Logged components (spec §2.6).
# -------------------------------------------------------------------------------------


def _target_densities(
    item_ids: jax.Array,
    labels: jax.Array,
    labeled: jax.Array,
    pos_threshold: PosThreshold,
    similarity: Similarity | None,
    chunk_size: int,
) -> tuple[jax.Array, jax.Array]:
  """Means over all R² entries of P_sl and of M (diagonal included).

  Args:
    item_ids: [R] int.
    labels: [R, K] float32.
    labeled: [R] bool.
    pos_threshold: validated threshold.
    similarity: the label-similarity source, or None.
    chunk_size: 0 for dense, else the column block size.

  Returns:
    (mean of P_sl, mean of M), each [] float32.
  """
  num_rows = item_ids.shape[0]
  columns = {"item_ids": item_ids, "labels": labels, "labeled": labeled}

  def density_block(carry, block):
    label_sum, joint_sum = carry
    valid = block["col_valid"][None, :]
    label_weights = _positive_weights(columns, block, pos_threshold, similarity,
                                      view_positives=False, label_positives=True)
    joint_weights = _positive_weights(columns, block, pos_threshold, similarity,
                                      view_positives=True, label_positives=True)
    label_sum = label_sum + jnp.sum(jnp.where(valid, label_weights, 0.0))
    joint_sum = joint_sum + jnp.sum(jnp.where(valid, joint_weights, 0.0))
    return label_sum, joint_sum

  zero = jnp.zeros((), jnp.float32)
  label_sum, joint_sum = _reduce_over_column_blocks(
      density_block, (zero, zero), columns, chunk_size)
  num_entries = float(num_rows) ** 2
  return label_sum / num_entries, joint_sum / num_entries


def loss_metrics(
    z: jax.Array,
    item_ids: jax.Array,
    labels: jax.Array,
    labeled: jax.Array,
    *,
    temperature: float = 0.1,
    pos_threshold: PosThreshold = 1,
    parity: bool = False,
    chunk_size: int = 0,
    similarity: Similarity | None = None,
) -> dict[str, jax.Array]:
  """Component losses and target densities logged by the original (spec §2.6).

  Gradients are stopped: these values are for logging only. The training loss itself
  ('semisl_loss' in the original) is `semisup_ntxent` and is not recomputed here.

  Args:
    z: [R, D] embeddings, any float dtype.
    item_ids: [R] int32, item of each view.
    labels: [R, K] float32 multi-hot / one-hot, zeros for unlabeled rows.
    labeled: [R] bool, row belongs to a labeled item.
    temperature: τ.
    pos_threshold: int >= 1 or "weighted".
    parity: use the original's −log(p + 1e-6) per-pair loss.
    chunk_size: 0 for dense, else the column block size (no R×R arrays).
    similarity: None for shared-label positives, else the label-similarity source (P_sl
      is then its weights on labeled pairs).

  Returns:
    A dict of [] float32:
      'ssl_loss': the loss over the unlabeled rows only (anchors and contrast set),
        with view positives only; 0.0 if there is no unlabeled row.
      'sl_loss': the loss over the labeled rows only, with label positives only;
        0.0 if there is no labeled row.
      'sparsity_sl': mean of P_sl over all R² entries, diagonal included (the fraction
        of label-positive pairs in threshold mode, the mean Dice or similarity weight
        otherwise).
      'sparsity_semisl': mean of the joint target M over all R² entries, diagonal
        included (so at least N/R, from the view blocks).
    Despite the names (kept from the original), the 'sparsity' values are densities.

  Raises:
    ValueError: on an invalid `pos_threshold`, `chunk_size` or `temperature`, or on
      inconsistent shapes.
  """
  pos_threshold = _validate_pos_threshold(pos_threshold)
  z = jax.lax.stop_gradient(jnp.asarray(z))
  item_ids = jnp.asarray(item_ids)
  labels = jnp.asarray(labels, jnp.float32)
  labeled = jnp.asarray(labeled, bool)
  _validate_batch(z, item_ids, labels, labeled, chunk_size, temperature, "labeled")
  common = dict(temperature=temperature, pos_threshold=pos_threshold, parity=parity,
                chunk_size=chunk_size, similarity=similarity, labeled=labeled)
  ssl_loss = semisup_ntxent(z, item_ids, labels, view_positives=True,
                            label_positives=False, row_mask=~labeled, **common)
  sl_loss = semisup_ntxent(z, item_ids, labels, view_positives=False,
                           label_positives=True, row_mask=labeled, **common)
  sparsity_sl, sparsity_semisl = _target_densities(item_ids, labels, labeled, pos_threshold,
                                                   similarity, chunk_size)
  return {"ssl_loss": ssl_loss, "sl_loss": sl_loss, "sparsity_sl": sparsity_sl,
          "sparsity_semisl": sparsity_semisl}
