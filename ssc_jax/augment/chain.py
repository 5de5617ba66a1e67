"""Gates and composition with the original's semantics, batched over items and views.

Semantics (torch-audiomentations + the original's Compose/OneOf):
* Compose: one Bernoulli(compose_p) gate per item; if it fails, all N views pass unchanged.
* Leaf transform: per view, its own Bernoulli(p) gate and its own parameters.
* OneOf (`filtering`): one member drawn per item (`sample_item`), then per-view gates and
  parameters like a leaf.
Randomness: item b uses k_b = split(key, B)[b]; k_gate, k_1..k_L = split(k_b, L + 1) for the
Compose gate and the L transforms; transform l splits k_l into (item draw, view gates,
view parameters), the latter split once more per view. Every execution strategy below
therefore draws exactly the same gates and parameters.

The Compose gate is folded into every view gate (an item that fails it has every transform
gated off), so a batch is one list of B N views with one gate per (transform, view).
Gated-off views come back bit-exactly (a select, a skipped branch, or a multiply by 1).

Execution (chosen at trace time by `batched`; all jit-able with static shapes):
* accelerators ("vmap"): vmap over all B N views; every transform runs on every view and a
  select keeps the gated-off ones. A batch sharded over a mesh axis stays sharded.
* single CPU device ("branch"): the B N views in one pass. Cheap transforms run vectorised
  with a select; consecutive scaling transforms (gain, polarity) are one multiply. The
  expensive ones (`Transform.skippable`) touch only their gated-on views, as the original's
  per-item workers do: a while loop over the gated-on views (indices from a stable sort of
  the gates), `branch_views` at a time (1 for the phase vocoders, whose STFTs are batched
  over frames already; 4 for the long-FFT noise and filters, which XLA:CPU computes ~2x
  faster per view in a batch), each block read from and written back into the batch in
  place.
* several CPU devices ("groups", simulated meshes): `lax.map` over groups of ~8 views, one
  item from each block of the batch viewed as [B / g, g], so the loop runs over an
  unsharded axis and a sharded batch needs no communication; vmapped within a group.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import jax
import jax.numpy as jnp

_CPU_VIEWS_PER_GROUP = 8
STRATEGIES = ("vmap", "groups", "branch")  # See the module docstring.

BatchFn = Callable[[jax.Array, jax.Array], jax.Array]  # (key, audio [B, N, T]) -> same.


@dataclasses.dataclass(frozen=True)
class Transform:
  """A named transform applied per view with probability p.

  Attributes:
    name: transform name.
    p: per-view probability.
    sample: (key, item_state) -> parameters of one view (a pytree of arrays).
    apply: (view [T] float32, parameters) -> view [T].
    sample_item: optional key -> item_state drawn once per item (a OneOf's member).
    skippable: worth skipping gated-off views on a single CPU device (cost >> a select).
    branch_views: for skippable transforms, how many (gated-on) views each CPU branch
      processes together, vmapped: 1 for per-view work, more where batching pays (large
      FFTs, which XLA:CPU runs ~2x faster per view when batched).
    scale: optional parameters -> [] factor such that apply(x, params) == x * factor
      (gain, polarity): consecutive such transforms run as one multiply.
  """
  name: str
  p: float
  sample: Callable[[jax.Array, Any], Any]
  apply: Callable[[jax.Array, Any], jax.Array]
  sample_item: Callable[[jax.Array], Any] | None = None
  skippable: bool = False
  branch_views: int = 1
  scale: Callable[[Any], jax.Array] | None = None


def gate(key: jax.Array, p: float, shape: tuple[int, ...]) -> jax.Array:
  """Bernoulli(p) booleans of `shape`; p is static, so p in {0, 1} costs nothing."""
  if p >= 1.0:
    return jnp.ones(shape, bool)
  if p <= 0.0:
    return jnp.zeros(shape, bool)
  return jax.random.uniform(key, shape) < p


def _draw(transforms: list[Transform], compose_p: float, item_key: jax.Array,
          n_views: int) -> tuple[list[Any], list[jax.Array]]:
  """Per-view parameters and gates ([N] bool, Compose gate folded in) of one item."""
  k_compose, *keys = jax.random.split(item_key, len(transforms) + 1)
  applied = gate(k_compose, compose_p, ())
  params, gates = [], []
  for t, k in zip(transforms, keys):
    k_item, k_gate, k_params = jax.random.split(k, 3)
    state = t.sample_item(k_item) if t.sample_item else None
    params.append(jax.vmap(lambda kv: t.sample(kv, state))(jax.random.split(k_params, n_views)))
    gates.append(gate(k_gate, t.p, (n_views,)) & applied)
  return params, gates


def _unchanged(x: jax.Array, params: Any) -> jax.Array:
  del params
  return x


def _run(transforms: list[Transform], views: jax.Array, params: list[Any],
         gates: list[jax.Array], branch: bool = False) -> jax.Array:
  """Applies the transforms to flat views [V, T] with per-view params and gates [V].

  Vectorised with a select per transform, or, with `branch`, skippable transforms only on
  the gated-on views (`_branched`). A run of consecutive scaling transforms is one multiply
  by the product of their gated factors (1 where gated off: bit-exact).
  """
  scales = [t.scale is not None and not (branch and t.skippable) for t in transforms]
  factor = None
  for i, (t, prm, g) in enumerate(zip(transforms, params, gates)):
    if scales[i]:
      f = jnp.where(g, jax.vmap(t.scale, axis_size=g.shape[0])(prm), 1.0).astype(jnp.float32)
      factor = f if factor is None else factor * f
      if i + 1 < len(transforms) and scales[i + 1]:
        continue
      views, factor = views * factor[:, None], None
    elif branch and t.skippable:
      views = _branched(t, views, prm, g)
    else:
      views = jnp.where(g[:, None], jax.vmap(t.apply)(views, prm), views)
  return views


def _branched(t: Transform, views: jax.Array, params: Any, g: jax.Array) -> jax.Array:
  """Applies `t` to the gated-on views only, c = t.branch_views of them at a time.

  A while loop over blocks of c gated-on views (their indices come first in a stable sort
  of the gates): each step gathers its c views, applies `t` (vmapped if c > 1) and writes
  them back in place, so gated-off views are neither computed nor copied. With c > 1 the
  last block may hold gated-off views (written back unchanged) or, past the end, repeats
  of the last view (written with identical values).
  """
  n, c = views.shape[0], max(1, t.branch_views)
  order = jnp.argsort(~g, stable=True).astype(jnp.int32)  # Gated-on views first.
  count = jnp.sum(g, dtype=jnp.int32)

  def step(state: tuple[jax.Array, jax.Array]) -> tuple[jax.Array, jax.Array]:
    i, out = state
    if c == 1:  # Not vmapped: a transform may branch inside (`dsp.staged`).
      j = order[i]
      y = t.apply(out[j], jax.tree.map(lambda a: a[j], params))
      return i + 1, jax.lax.dynamic_update_index_in_dim(out, y, j, 0)
    idx = order[jnp.minimum(i * c + jnp.arange(c, dtype=jnp.int32), n - 1)]
    xs = out[idx]
    ys = jax.vmap(t.apply)(xs, jax.tree.map(lambda a: a[idx], params))
    return i + 1, out.at[idx].set(jnp.where(g[idx][:, None], ys, xs))

  blocks = (count + c - 1) // c
  return jax.lax.while_loop(lambda st: st[0] < blocks, step, (jnp.int32(0), views))[1]


def _flat(tree: Any) -> Any:
  """[B, N, ...] leaves -> [B N, ...]."""
  return jax.tree.map(lambda a: a.reshape((-1,) + a.shape[2:]), tree)


def _groups(batch: int, views_per_item: int) -> int:
  """Number g of CPU loop steps: the largest divisor of B giving >= ~8 views per step."""
  per_step = max(1, _CPU_VIEWS_PER_GROUP // views_per_item) * jax.local_device_count()
  per_step = max(d for d in range(1, min(per_step, batch) + 1) if batch % d == 0)
  return batch // per_step


def batched(transforms: list[Transform], compose_p: float,
            strategy: str | None = None) -> BatchFn:
  """The batch function: (key, audio [B, N, T]) -> [B, N, T], same dtype, float32 inside.

  Args:
    transforms: applied in order to each item's views.
    compose_p: per-item Compose probability.
    strategy: "vmap" (one vectorised pass), "groups" (CPU loop over groups, vmapped inside),
      "branch" (all views at once; skippable transforms only on their gated-on views, in
      branches); None = "vmap" on accelerators, "branch" on a single CPU device, "groups"
      on several.
  """
  def augment(key: jax.Array, audio: jax.Array) -> jax.Array:
    if audio.ndim != 3:
      raise ValueError(f"audio must be [B, N, T], got shape {audio.shape}.")
    batch, n_views, length = audio.shape
    how = strategy or ("vmap" if jax.default_backend() != "cpu" else
                       "branch" if jax.device_count() == 1 else "groups")
    if how not in STRATEGIES:
      raise ValueError(f"unknown strategy {how!r}; use 'vmap', 'groups' or 'branch'.")
    keys = jax.random.split(key, batch)
    x = audio.astype(jnp.float32)

    def run_items(item_keys: jax.Array, items: jax.Array) -> jax.Array:  # [b], [b, N, T]
      params, gates = jax.vmap(lambda k: _draw(transforms, compose_p, k, n_views))(item_keys)
      out = _run(transforms, items.reshape(-1, length), _flat(params), _flat(gates),
                 branch=how == "branch")
      return out.reshape(items.shape)

    if how in ("vmap", "branch"):
      return run_items(keys, x).astype(audio.dtype)
    steps = _groups(batch, n_views)
    if jax.device_count() == 1:  # Contiguous groups: a free reshape, no transposed copies.
      group = lambda a: a.reshape((steps, batch // steps) + a.shape[1:])
      ungroup = lambda a: a.reshape(audio.shape)
    else:  # One item from each block: the loop axis is not the sharded one.
      group = lambda a: a.reshape((batch // steps, steps) + a.shape[1:]).swapaxes(0, 1)
      ungroup = lambda a: a.swapaxes(0, 1).reshape(audio.shape)
    out = jax.lax.map(lambda kx: run_items(*kx), (group(keys), group(x)))
    return ungroup(out).astype(audio.dtype)
  return augment
