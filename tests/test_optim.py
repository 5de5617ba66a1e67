"""ssc_jax/optim.py against float64 NumPy implementations written from the papers' formulas."""

import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import common
from configs import mtat
from ssc_jax import config_checks
from ssc_jax import optim

TOTAL, WARMUP = 10, 4
SHAPES = {"conv": {"kernel": (3, 2, 4), "bias": (4,)}, "bn": {"scale": (4,), "bias": (4,)},
          "dense": {"kernel": (4, 3)}}
DECAYED = {"conv/kernel", "dense/kernel"}  # Biases and BatchNorm leaves are never decayed.


def _config(name="adam", schedule="constant", lr_scaling="none", weight_decay=0.0,
            grad_clip_norm=0.0):
  c = common.base_config()
  c.data.batch_size, c.data.num_views = 64, 2  # 128 views = half the reference batch.
  c.train.total_steps = TOTAL
  o = c.optimizer
  o.name, o.schedule, o.lr_scaling = name, schedule, lr_scaling
  o.learning_rate, o.warmup_steps = 0.1, WARMUP
  o.weight_decay, o.grad_clip_norm = weight_decay, grad_clip_norm
  return c


def _flat(tree):
  return {f"{a}/{b}": np.asarray(v, np.float64) for a, sub in tree.items() for b, v in sub.items()}


def _random_trees(seed, count):
  rng = np.random.default_rng(seed)
  return [{a: {b: rng.standard_normal(s).astype(np.float32) for b, s in sub.items()}
           for a, sub in SHAPES.items()} for _ in range(count)]


def _reference_lr(schedule, peak, t):
  """Closed forms: warm-up from 0 over WARMUP updates, then cosine / linear to 0 at TOTAL."""
  if schedule == "constant":
    return peak
  if t < WARMUP:
    return peak * t / WARMUP
  frac = (t - WARMUP) / (TOTAL - WARMUP)
  return peak * (0.5 * (1 + math.cos(math.pi * frac)) if schedule == "warmup_cosine"
                 else 1 - frac)


def _reference_run(config, params, grads_seq):
  """Float64 NumPy optimiser: Adam/AdamW (Loshchilov & Hutter), LAMB (You et al. 2019, per-leaf
  trust ratio ||p||/||u||), LARS (You et al. 2017, as optax orders it: decay, trust ratio
  η·||p||/||u|| on decayed leaves, lr, then momentum)."""
  o = config.optimizer
  peak = optim.peak_learning_rate(config)
  p = _flat(params)
  m = {k: np.zeros_like(v) for k, v in p.items()}
  v2 = {k: np.zeros_like(v) for k, v in p.items()}
  for t, grads in enumerate(grads_seq):
    g = _flat(grads)
    if o.grad_clip_norm:
      norm = math.sqrt(sum(np.sum(x**2) for x in g.values()))
      g = {k: x * min(1.0, o.grad_clip_norm / norm) for k, x in g.items()}
    lr = _reference_lr(o.schedule, peak, t)
    for k in p:
      wd = o.weight_decay * p[k] if k in DECAYED else 0.0
      if o.name == "lars":
        u = g[k] + wd
        pn, un = np.linalg.norm(p[k]), np.linalg.norm(u)
        if k in DECAYED and pn > 0 and un > 0:
          u = u * o.trust_coefficient * pn / un
        m[k] = lr * u + o.momentum * m[k]
        p[k] = p[k] - m[k]
        continue
      m[k] = o.b1 * m[k] + (1 - o.b1) * g[k]
      v2[k] = o.b2 * v2[k] + (1 - o.b2) * g[k]**2
      u = (m[k] / (1 - o.b1**(t + 1))) / (np.sqrt(v2[k] / (1 - o.b2**(t + 1))) + o.eps) + wd
      if o.name == "lamb":
        pn, un = np.linalg.norm(p[k]), np.linalg.norm(u)
        u = u * (pn / un if pn > 0 and un > 0 else 1.0)
      p[k] = p[k] - lr * u
  return p


def _optax_run(config, params, grads_seq):
  tx = optim.make_optimizer(config)
  state = tx.init(params)
  update = jax.jit(tx.update)
  for grads in grads_seq:
    updates, state = update(grads, state, params)
    params = jax.tree.map(lambda p, u: p + u, params, updates)
  return _flat(params)


@pytest.mark.parametrize("name,schedule,lr_scaling", [
    (n, s, l) for (n, s), l in zip(itertools.product(optim.OPTIMIZERS, optim.SCHEDULES),
                                   itertools.cycle(optim.LR_SCALINGS))])
def test_optimizer_matches_reference(name, schedule, lr_scaling):
  """Three updates from count 0 (so warm-up schedules start at lr 0), with decay and clipping."""
  wd = 0.0 if name == "adam" else 0.05
  config = _config(name, schedule, lr_scaling, weight_decay=wd, grad_clip_norm=3.0)
  params, *grads_seq = _random_trees(0, 4)
  got = _optax_run(config, params, grads_seq)
  expected = _reference_run(config, params, grads_seq)
  for k in expected:
    np.testing.assert_allclose(got[k], expected[k], rtol=2e-5, atol=1e-6, err_msg=k)
  moved = {k for k in expected if not np.allclose(expected[k], _flat(params)[k])}
  assert moved == set(expected)  # Every leaf is updated; the check is not vacuous.


@pytest.mark.parametrize("name", ["adamw", "lamb", "lars"])
def test_decay_mask_leaves_biases_and_batchnorm_alone(name):
  """Zero gradients: only the weight decay moves parameters, and only the kernels."""
  config = _config(name, weight_decay=0.1)
  params = _random_trees(1, 1)[0]
  zeros = jax.tree.map(np.zeros_like, params)
  before, after = _flat(params), _optax_run(config, params, [zeros])
  assert optim.decay_mask(params) == {
      "conv": {"kernel": True, "bias": False}, "bn": {"scale": False, "bias": False},
      "dense": {"kernel": True}}
  for k in before:
    if k in DECAYED:
      assert np.all(np.abs(after[k]) < np.abs(before[k])), k  # Shrunk towards 0.
    else:
      np.testing.assert_array_equal(after[k], before[k], err_msg=k)


@pytest.mark.parametrize("schedule", optim.SCHEDULES)
@pytest.mark.parametrize("lr_scaling,factor", [("none", 1.0), ("linear", 0.5),
                                               ("sqrt", math.sqrt(0.5))])
def test_schedule_at_start_warmup_end_and_last_step(schedule, lr_scaling, factor):
  config = _config(schedule=schedule, lr_scaling=lr_scaling)
  peak = 0.1 * factor  # 128 views against the reference 256.
  assert optim.peak_learning_rate(config) == pytest.approx(peak)
  lr = optim.make_schedule(config)
  last = TOTAL - 1  # The update count of the last step.
  expected = {"constant": (peak, peak, peak),
              "warmup_cosine": (0.0, peak, peak * 0.5 * (1 + math.cos(math.pi * 5 / 6))),
              "warmup_linear": (0.0, peak, peak / 6)}[schedule]
  np.testing.assert_allclose([float(lr(0)), float(lr(WARMUP)), float(lr(last))], expected,
                             rtol=1e-6, atol=1e-12)
  assert float(lr(jnp.asarray(WARMUP // 2))) == pytest.approx(
      peak if schedule == "constant" else peak / 2)


def test_paper_config_is_adam_constant_1e4_float32():
  c = mtat.get_config()
  o = c.optimizer
  assert (o.name, o.schedule, o.lr_scaling, o.learning_rate) == ("adam", "constant", "none", 1e-4)
  assert (o.weight_decay, o.grad_clip_norm, c.model.dtype) == (0.0, 0.0, "float32")
  assert optim.peak_learning_rate(c) == 1e-4


@pytest.mark.parametrize("field,value,message", [
    ("name", "sgd", "optimizer.name"),
    ("schedule", "cosine", "optimizer.schedule"),
    ("lr_scaling", "square", "optimizer.lr_scaling"),
    ("warmup_steps", TOTAL, "optimizer.warmup_steps"),
    ("weight_decay", 0.1, "needs optimizer.name"),
    ("grad_clip_norm", -1.0, "grad_clip_norm"),
    ("reference_batch_size", 0, "reference_batch_size"),
])
def test_impossible_optimizer_configs_are_refused(field, value, message):
  c = _config(schedule="warmup_cosine")
  c.optimizer[field] = value
  with pytest.raises(config_checks.ConfigError, match=message):
    config_checks.check_pretrain_config(c, device_count=1, process_count=1)
