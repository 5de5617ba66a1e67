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
Gated-off views come back bit-exactly (a select or a skipped branch, never a multiply).

Execution (chosen at trace time by `batched`; all jit-able with static shapes):
* accelerators: vmap over all B N views; every transform runs on every view and a select
  keeps the gated-off ones. A batch sharded over a mesh axis stays sharded.
* CPU: `lax.map` over groups of ~8 views (on several devices, one item from each block of
  the batch viewed as [B / g, g], so the loop runs over an unsharded axis and a sharded
  batch needs no communication; on one device, contiguous items). Within a group,
  transforms run vmapped, except the expensive ones (`Transform.skippable`: the phase
  vocoders) which, on a single device, loop over the group's views under `lax.cond`, so
  that gated-off views cost nothing, as in the original's per-item workers. Small groups
  also keep the STFT intermediates in cache.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import jax
import jax.numpy as jnp

_CPU_VIEWS_PER_GROUP = 8

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
    skippable: worth a real branch per view on CPU (cost >> a select).
  """
  name: str
  p: float
  sample: Callable[[jax.Array, Any], Any]
  apply: Callable[[jax.Array, Any], jax.Array]
  sample_item: Callable[[jax.Array], Any] | None = None
  skippable: bool = False


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
         gates: list[jax.Array], branch: bool) -> jax.Array:
  """Applies the transforms to flat views [V, T] with per-view params and gates [V]."""
  for t, prm, g in zip(transforms, params, gates):
    if branch and t.skippable:
      views = jax.lax.map(lambda a, t=t: jax.lax.cond(a[2], t.apply, _unchanged, a[0], a[1]),
                          (views, prm, g))
    else:
      views = jnp.where(g[:, None], jax.vmap(t.apply)(views, prm), views)
  return views


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
      "branch" (groups, plus per-view branches for skippable transforms); None = "vmap" on
      accelerators, "branch" on a single CPU device, "groups" on several.
  """
  def augment(key: jax.Array, audio: jax.Array) -> jax.Array:
    if audio.ndim != 3:
      raise ValueError(f"audio must be [B, N, T], got shape {audio.shape}.")
    batch, n_views, length = audio.shape
    how = strategy or ("vmap" if jax.default_backend() != "cpu" else
                       "branch" if jax.device_count() == 1 else "groups")
    if how not in ("vmap", "groups", "branch"):
      raise ValueError(f"unknown strategy {how!r}; use 'vmap', 'groups' or 'branch'.")
    keys = jax.random.split(key, batch)
    x = audio.astype(jnp.float32)

    def run_items(item_keys: jax.Array, items: jax.Array) -> jax.Array:  # [b], [b, N, T]
      params, gates = jax.vmap(lambda k: _draw(transforms, compose_p, k, n_views))(item_keys)
      out = _run(transforms, items.reshape(-1, length), _flat(params), _flat(gates),
                 branch=how == "branch")
      return out.reshape(items.shape)

    if how == "vmap":
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
