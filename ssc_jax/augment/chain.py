"""Gates and composition with the original's semantics, batched with vmap.

* A leaf transform acts on one item's [N, T] views: each view draws its own Bernoulli(p)
  gate and its own parameters (torch-audiomentations' per_example mode).
* `filtering` is a OneOf: one filter kind per item (uniform), then per-view gates and
  cutoffs as a leaf.
* `compose` applies the leaves in order under one per-item Bernoulli(compose_p) gate.
* `batched` maps an item function over the batch with one key per item.
Gated-off views and items are returned bit-exactly (a select, not a multiply). Everything is
computed for every view and selected afterwards: static shapes, no data-dependent control
flow, the same program on every device.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import jax
import jax.numpy as jnp

_CPU_VIEWS_PER_STEP = 4  # Views per device per loop step on CPU (working set ~ 20 MB).

ItemFn = Callable[[jax.Array, jax.Array], jax.Array]  # (key, views [N, T]) -> [N, T].
BatchFn = Callable[[jax.Array, jax.Array], jax.Array]  # (key, audio [B, N, T]) -> same.


@dataclasses.dataclass(frozen=True)
class Transform:
  """A named per-item transform with its per-view application probability."""
  name: str
  p: float
  item_fn: ItemFn


def gate(key: jax.Array, p: float, shape: tuple[int, ...]) -> jax.Array:
  """Bernoulli(p) booleans of `shape`; p is static, so p in {0, 1} costs nothing."""
  if p >= 1.0:
    return jnp.ones(shape, bool)
  if p <= 0.0:
    return jnp.zeros(shape, bool)
  return jax.random.uniform(key, shape) < p


def select_views(apply: jax.Array, new: jax.Array, old: jax.Array) -> jax.Array:
  """Per-view select: apply [N] bool, new/old [N, T] -> [N, T]."""
  return jnp.where(apply[:, None], new, old)


def per_view(name: str, p: float, sample: Callable[[jax.Array], Any],
             apply: Callable[[jax.Array, Any], jax.Array]) -> Transform:
  """A leaf: per-view gate with probability p and per-view parameters.

  Args:
    name: transform name.
    p: per-view probability.
    sample: key -> parameters of one view (a pytree of arrays).
    apply: (view [T], parameters) -> view [T].
  """
  def item_fn(key: jax.Array, views: jax.Array) -> jax.Array:
    k_gate, k_params = jax.random.split(key)
    n = views.shape[0]
    params = jax.vmap(sample)(jax.random.split(k_params, n))
    return select_views(gate(k_gate, p, (n,)), jax.vmap(apply)(views, params), views)
  return Transform(name, p, item_fn)


def one_of(name: str, p: float, n_choices: int, sample: Callable[[jax.Array, jax.Array], Any],
           apply: Callable[[jax.Array, Any], jax.Array]) -> Transform:
  """A OneOf whose members share `apply` and differ by parameters (the four filters).

  Args:
    name: transform name.
    p: per-view probability of the chosen member.
    n_choices: number of members.
    sample: (key, member index) -> parameters of one view.
    apply: (view [T], parameters) -> view [T].
  """
  def item_fn(key: jax.Array, views: jax.Array) -> jax.Array:
    k_choice, k_gate, k_params = jax.random.split(key, 3)
    n = views.shape[0]
    choice = jax.random.randint(k_choice, (), 0, n_choices)
    params = jax.vmap(lambda k: sample(k, choice))(jax.random.split(k_params, n))
    return select_views(gate(k_gate, p, (n,)), jax.vmap(apply)(views, params), views)
  return Transform(name, p, item_fn)


def compose(transforms: list[Transform], p: float) -> ItemFn:
  """Applies `transforms` in order to an item, all under one Bernoulli(p) item gate."""
  def item_fn(key: jax.Array, views: jax.Array) -> jax.Array:
    k_gate, *keys = jax.random.split(key, len(transforms) + 1)
    out = views
    for transform, k in zip(transforms, keys):
      out = transform.item_fn(k, out)
    return jnp.where(gate(k_gate, p, ()), out, views)
  return item_fn


def _items_per_step(batch: int, views_per_item: int) -> int:
  """Items each device processes per step of the CPU loop: ~4 views, dividing the batch."""
  want = max(1, _CPU_VIEWS_PER_STEP // views_per_item) * jax.local_device_count()
  return max(d for d in range(1, min(want, batch) + 1) if batch % d == 0)


def batched(item_fn: ItemFn) -> BatchFn:
  """Maps `item_fn` over the leading (item) axis with independent keys.

  The returned function takes (key, audio [B, N, T]) and returns the same shape and dtype;
  computation is float32; item b always gets key split(key, B)[b].

  On accelerators this is one vmap over the batch: a batch sharded over a mesh axis stays
  sharded (no gather of the audio across devices). On CPU, streaming [B N, frames, bins]
  STFT intermediates through memory costs more than the arithmetic, so the batch is
  processed in a `lax.map` over groups of ~4 views per device: the batch is viewed as
  [B / g, g] and the loop runs over the unsharded g axis, each step taking one item from
  every block of g, so a sharded batch still needs no communication. Results are identical.
  """
  def augment(key: jax.Array, audio: jax.Array) -> jax.Array:
    if audio.ndim != 3:
      raise ValueError(f"audio must be [B, N, T], got shape {audio.shape}.")
    batch = audio.shape[0]
    keys = jax.random.split(key, batch)
    x = audio.astype(jnp.float32)
    if jax.default_backend() != "cpu":
      return jax.vmap(item_fn)(keys, x).astype(audio.dtype)
    per_step = _items_per_step(batch, audio.shape[1])
    steps = batch // per_step
    group = lambda a: jnp.swapaxes(a.reshape((per_step, steps) + a.shape[1:]), 0, 1)
    out = jax.lax.map(lambda kx: jax.vmap(item_fn)(*kx), (group(keys), group(x)))
    return jnp.swapaxes(out, 0, 1).reshape(audio.shape).astype(audio.dtype)
  return augment
