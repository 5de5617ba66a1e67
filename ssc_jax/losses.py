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
from typing import Callable, NamedTuple, TypeVar, Union

import jax
import jax.numpy as jnp
import numpy as np

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
# Target matrix.
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


def _positive_weights(
    row_item_ids: jax.Array,
    row_labels: jax.Array,
    col_item_ids: jax.Array,
    col_labels: jax.Array,
    pos_threshold: PosThreshold,
    view_positives: bool,
    label_positives: bool,
) -> jax.Array:
  """Target weights between a set of rows and a block of columns, diagonal included.

  Args:
    row_item_ids: [Rr] int, item of each row view.
    row_labels: [Rr, K] float32 multi-hot labels of the rows (zeros if unlabeled).
    col_item_ids: [C] int, item of each column view.
    col_labels: [C, K] float32 multi-hot labels of the columns.
    pos_threshold: validated int >= 1, or "weighted".
    view_positives: whether views of the same item are positives (P_ssl).
    label_positives: whether label overlap makes positives (P_sl).

  Returns:
    [Rr, C] float32: 0/1 in threshold mode, in [0, 1] in weighted mode.
  """
  shape = (row_item_ids.shape[0], col_item_ids.shape[0])
  same_item = None
  shared_labels = None
  if view_positives:
    same_item = row_item_ids[:, None] == col_item_ids[None, :]
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
) -> jax.Array:
  """The joint SemiSupCon target M = views ∨ labels (spec §2.2–2.4), diagonal included.

  Args:
    item_ids: [R] int32, item of each view (views of one item are positives).
    labels: [R, K] float32 multi-hot / one-hot labels, all zeros for unlabeled rows.
    pos_threshold: int T >= 1: M_ij = [item_i = item_j] ∨ [(L·Lᵀ)_ij >= T];
      "weighted": M_ij = min([item_i = item_j] + 2·(L·Lᵀ)_ij / (n_i + n_j), 1) with
      n_i = Σ_k L_ik and a zero denominator replaced by 1.

  Returns:
    M: [R, R] float32, 0/1 in threshold mode, in [0, 1] in weighted mode. The diagonal
    is 1 (a view is in its own item); the loss removes it.

  Raises:
    ValueError: if `pos_threshold` is not an int >= 1 or "weighted", or on
      inconsistent shapes.
  """
  pos_threshold = _validate_pos_threshold(pos_threshold)
  item_ids = jnp.asarray(item_ids)
  labels = jnp.asarray(labels, jnp.float32)
  _validate_batch(None, item_ids, labels)
  return _positive_weights(item_ids, labels, item_ids, labels, pos_threshold,
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
    pos_threshold: PosThreshold,
    view_positives: bool,
    label_positives: bool,
) -> tuple[jax.Array, jax.Array, jax.Array]:
  """Logits, contrast mask and positive weights of all rows against one column block.

  Args:
    rows: 'z' [R, D] normalised float32, 'item_ids' [R], 'labels' [R, K],
      'row_index' [R] int32.
    block: 'z' [C, D], 'item_ids' [C], 'labels' [C, K], 'in_contrast' [C] bool (column
      selected by row_mask), 'col_index' [C] int32, 'col_valid' [C] bool.
    temperature: τ.
    pos_threshold: validated threshold.
    view_positives: include same-item positives.
    label_positives: include label-overlap positives.

  Returns:
    logits: [R, C] float32, cos/τ.
    in_contrast: [R, C] bool, column is in row's denominator (valid, selected, ≠ self).
    positive_weights: [R, C] float32, M restricted to `in_contrast`.
  """
  logits = jnp.dot(rows["z"], block["z"].T, precision=_MATMUL_PRECISION) / temperature
  in_contrast = ((block["col_valid"] & block["in_contrast"])[None, :]
                 & (rows["row_index"][:, None] != block["col_index"][None, :]))
  weights = _positive_weights(rows["item_ids"], rows["labels"], block["item_ids"],
                              block["labels"], pos_threshold, view_positives,
                              label_positives)
  return logits, in_contrast, jnp.where(in_contrast, weights, 0.0)


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
  settings = _LossSettings(pos_threshold, parity, chunk_size, view_positives, label_positives)
  selected = jnp.ones((z.shape[0],), bool) if row_mask is None else row_mask
  return _unit_loss(settings, _normalize(z), jnp.asarray(temperature, jnp.float32), item_ids,
                    labels, selected)


class _LossSettings(NamedTuple):
  """The static (hashable) settings of `semisup_ntxent`; see its Args."""
  pos_threshold: PosThreshold
  parity: bool
  chunk_size: int
  view_positives: bool
  label_positives: bool


def _rows_and_columns(u: jax.Array, item_ids: jax.Array, labels: jax.Array,
                      selected: jax.Array, **per_view: jax.Array
                      ) -> tuple[dict[str, jax.Array], dict[str, jax.Array]]:
  """The row set (all views) and the column arrays traversed in blocks.

  `per_view` arrays ([R]) are added to both, so a block sees them for its columns too.
  """
  rows = {"z": u, "item_ids": item_ids, "labels": labels, "selected": selected,
          "row_index": jnp.arange(u.shape[0], dtype=jnp.int32), **per_view}
  columns = {"z": u, "item_ids": item_ids, "labels": labels, "in_contrast": selected,
             **per_view}
  return rows, columns


def _unit_loss_forward(
    settings: _LossSettings,
    u: jax.Array,
    temperature: jax.Array,
    item_ids: jax.Array,
    labels: jax.Array,
    selected: jax.Array,
) -> tuple[jax.Array, tuple[jax.Array, jax.Array, jax.Array]]:
  """The loss of unit embeddings and the per-row statistics its gradient needs.

  Args:
    settings: static settings.
    u: [R, D] float32 unit (or zero) rows.
    temperature: [] float32 τ.
    item_ids: [R] int.
    labels: [R, K] float32.
    selected: [R] bool, rows in the problem (anchors and contrast set).

  Returns:
    loss: [] float32.
    (lse, coef, q): each [R] float32. lse_i = logsumexp over row i's contrast columns;
    coef_i = ∂loss/∂(row i's summed pair loss) = [selected, w_i > 0] / (w_i · #selected);
    q_i = Σ_j M_ij r_ij with r_ij = 1 (stable) or p_ij / (p_ij + 1e-6) (parity).
  """
  num_rows = u.shape[0]
  rows, columns = _rows_and_columns(u, item_ids, labels, selected)

  def block_terms(block):
    return _block_logits_and_positives(rows, block, temperature, settings.pos_threshold,
                                       settings.view_positives, settings.label_positives)

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

  s = u·uᵀ/τ is symmetric, and so are the positive weights M and the pair set (two selected,
  distinct rows). So ∂loss/∂u_i = (1/τ) Σ_k (G_ik + G_ki) u_k, where G_ik = ∂loss/∂s_ik is
  computed with row i as the anchor and G_ki with column k as the anchor (its lse, coef and q
  are [R] vectors, cheap to gather). The gradient of every row is thus summed on the device
  that holds the row: no [R, D] cotangent of the gathered columns is built or reduced.
  Labels, item ids and the row selection get no gradient (they are data).
  """
  u, temperature, item_ids, labels, selected, logsumexp, coef, q = residuals
  stats = {"logsumexp": logsumexp, "coef": coef, "q": q}
  rows, columns = _rows_and_columns(u, item_ids, labels, selected, **stats)
  # Under jit with sharded rows, XLA gathers the columns once per pass, and would gather this
  # pass's columns while the forward's are still live (twice the [R, D] + [R, K] memory).
  # Making them depend on a forward result (0 · Σ lse, an exact no-op: lse is finite)
  # orders the gathers.
  after_forward = 0.0 * jnp.sum(logsumexp)
  columns["z"] = columns["z"] + after_forward
  columns["labels"] = columns["labels"] + after_forward

  def grad_block(carry, block):
    grad_u, grad_temperature = carry
    logits, in_contrast, weights = _block_logits_and_positives(
        rows, block, temperature, settings.pos_threshold, settings.view_positives,
        settings.label_positives)
    mask = in_contrast & rows["selected"][:, None]
    weights = jnp.where(mask, weights, 0.0)
    as_row = _logit_gradient(logits, weights, mask, *(rows[k][:, None] for k in stats),
                             parity=settings.parity)
    as_column = _logit_gradient(logits, weights, mask, *(block[k][None, :] for k in stats),
                                parity=settings.parity)
    grad_u = grad_u + jnp.dot(as_row + as_column, block["z"],
                              precision=_MATMUL_PRECISION) / temperature
    grad_temperature = grad_temperature - jnp.sum(as_row * logits) / temperature
    return grad_u, grad_temperature

  grad_u, grad_temperature = _reduce_over_column_blocks(
      grad_block, (jnp.zeros_like(u), jnp.zeros((), jnp.float32)), columns,
      settings.chunk_size)
  return cotangent * grad_u, cotangent * grad_temperature, None, None, None


def _unit_loss_fwd(settings, u, temperature, item_ids, labels, selected):
  loss, stats = _unit_loss_forward(settings, u, temperature, item_ids, labels, selected)
  return loss, (u, temperature, item_ids, labels, selected, *stats)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _unit_loss(settings: _LossSettings, u: jax.Array, temperature: jax.Array,
               item_ids: jax.Array, labels: jax.Array, selected: jax.Array) -> jax.Array:
  """The SemiSupCon loss of unit embeddings `u` [R, D]; a custom gradient (see backward)."""
  return _unit_loss_forward(settings, u, temperature, item_ids, labels, selected)[0]


_unit_loss.defvjp(_unit_loss_fwd, _unit_loss_backward)


# -------------------------------------------------------------------------------------
# Logged components (spec §2.6).
# -------------------------------------------------------------------------------------


def _target_densities(
    item_ids: jax.Array,
    labels: jax.Array,
    pos_threshold: PosThreshold,
    chunk_size: int,
) -> tuple[jax.Array, jax.Array]:
  """Means over all R² entries of P_sl and of M (diagonal included).

  Args:
    item_ids: [R] int.
    labels: [R, K] float32.
    pos_threshold: validated threshold.
    chunk_size: 0 for dense, else the column block size.

  Returns:
    (mean of P_sl, mean of M), each [] float32.
  """
  num_rows = item_ids.shape[0]
  columns = {"item_ids": item_ids, "labels": labels}

  def density_block(carry, block):
    label_sum, joint_sum = carry
    valid = block["col_valid"][None, :]
    label_weights = _positive_weights(item_ids, labels, block["item_ids"],
                                      block["labels"], pos_threshold,
                                      view_positives=False, label_positives=True)
    joint_weights = _positive_weights(item_ids, labels, block["item_ids"],
                                      block["labels"], pos_threshold,
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

  Returns:
    A dict of [] float32:
      'ssl_loss': the loss over the unlabeled rows only (anchors and contrast set),
        with view positives only; 0.0 if there is no unlabeled row.
      'sl_loss': the loss over the labeled rows only, with label positives only;
        0.0 if there is no labeled row.
      'sparsity_sl': mean of P_sl over all R² entries, diagonal included (the fraction
        of label-positive pairs in threshold mode, the mean Dice weight in weighted mode).
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
                chunk_size=chunk_size)
  ssl_loss = semisup_ntxent(z, item_ids, labels, view_positives=True,
                            label_positives=False, row_mask=~labeled, **common)
  sl_loss = semisup_ntxent(z, item_ids, labels, view_positives=False,
                           label_positives=True, row_mask=labeled, **common)
  sparsity_sl, sparsity_semisl = _target_densities(item_ids, labels, pos_threshold,
                                                   chunk_size)
  return {"ssl_loss": ssl_loss, "sl_loss": sl_loss, "sparsity_sl": sparsity_sl,
          "sparsity_semisl": sparsity_semisl}
