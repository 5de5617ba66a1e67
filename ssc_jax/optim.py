"""The optimiser of a pretraining config: optax transform, learning-rate schedule, decay mask.

`config.optimizer` selects (defaults in configs/common.py reproduce the paper: Adam, constant
1e-4, no decay, no clipping):

* `name`: "adam" (spec §6), "adamw", "lamb" or "lars" (the large-batch optimisers).
* `schedule`: "constant", "warmup_cosine" (linear warm-up from 0 over `warmup_steps`, then
  cosine decay to 0 at `train.total_steps`) or "warmup_linear" (linear warm-up, then linear
  decay to 0 at `train.total_steps`).
* `lr_scaling`: "none", "linear" or "sqrt": the peak learning rate is `learning_rate` times
  (V / reference_batch_size) or its square root, V = data.batch_size · data.num_views, the
  views of one GLOBAL batch.
* `weight_decay`: decoupled decay (adamw, lamb, lars) of kernels only; biases and BatchNorm
  scales/biases (every leaf of rank < 2) are never decayed, and LARS's trust ratio skips them.
* `grad_clip_norm`: > 0 clips the global gradient norm first.
"""

from __future__ import annotations

import math
from typing import Any

import jax
import ml_collections
import optax

OPTIMIZERS = ("adam", "adamw", "lamb", "lars")
SCHEDULES = ("constant", "warmup_cosine", "warmup_linear")
LR_SCALINGS = ("none", "linear", "sqrt")


def peak_learning_rate(config: ml_collections.ConfigDict) -> float:
  """`optimizer.learning_rate` scaled to the global batch by `optimizer.lr_scaling`."""
  o = config.optimizer
  ratio = config.data.batch_size * config.data.num_views / o.reference_batch_size
  factor = {"none": 1.0, "linear": ratio, "sqrt": math.sqrt(ratio)}[o.lr_scaling]
  return o.learning_rate * factor


def make_schedule(config: ml_collections.ConfigDict) -> optax.Schedule:
  """The learning rate as a function of the update count (0 for the first update)."""
  o, peak, total = config.optimizer, peak_learning_rate(config), config.train.total_steps
  if o.schedule == "constant":
    return optax.constant_schedule(peak)
  if o.schedule == "warmup_cosine":
    return optax.warmup_cosine_decay_schedule(0.0, peak, warmup_steps=o.warmup_steps,
                                              decay_steps=total, end_value=0.0)
  if o.schedule == "warmup_linear":
    return optax.join_schedules(
        [optax.linear_schedule(0.0, peak, o.warmup_steps),
         optax.linear_schedule(peak, 0.0, total - o.warmup_steps)], [o.warmup_steps])
  raise ValueError(f"optimizer.schedule={o.schedule!r}: use one of {SCHEDULES}.")


def decay_mask(params: Any) -> Any:
  """True for the leaves weight decay applies to: kernels (rank >= 2), not biases or BN."""
  return jax.tree.map(lambda p: p.ndim >= 2, params)


def make_optimizer(config: ml_collections.ConfigDict) -> optax.GradientTransformation:
  """The optax transform `config.optimizer` describes (see the module docstring)."""
  o = config.optimizer
  lr = make_schedule(config)
  if o.name == "adam":  # config_checks refuses weight_decay > 0 here.
    tx = optax.adam(lr, b1=o.b1, b2=o.b2, eps=o.eps)
  elif o.name == "adamw":
    tx = optax.adamw(lr, b1=o.b1, b2=o.b2, eps=o.eps, weight_decay=o.weight_decay,
                     mask=decay_mask)
  elif o.name == "lamb":
    tx = optax.lamb(lr, b1=o.b1, b2=o.b2, eps=o.eps, weight_decay=o.weight_decay,
                    mask=decay_mask)
  elif o.name == "lars":
    tx = optax.lars(lr, weight_decay=o.weight_decay, weight_decay_mask=decay_mask,
                    trust_coefficient=o.trust_coefficient, trust_ratio_mask=decay_mask,
                    momentum=o.momentum)
  else:
    raise ValueError(f"optimizer.name={o.name!r}: use one of {OPTIMIZERS}.")
  if o.grad_clip_norm > 0:
    tx = optax.chain(optax.clip_by_global_norm(o.grad_clip_norm), tx)
  return tx
