"""A tiny model, config and fixed batch shared by the train-step tests and their subprocesses."""

import jax
import numpy as np
import optax

from configs import common
from ssc_jax import augment
from ssc_jax import models
from ssc_jax import parallel
from ssc_jax import train

BATCH, VIEWS, LENGTH, CLASSES = 8, 2, 59049, 6


def tiny_config():
  c = common.base_config()
  c.model.width = 0.125
  c.data.batch_size = BATCH
  c.data.view_length = LENGTH
  c.augment.severity = 0
  return c


def fixed_batch(seed: int = 0) -> dict[str, np.ndarray]:
  """Global batch: half labeled (multi-hot over CLASSES), half unlabeled (zero labels)."""
  rng = np.random.default_rng(seed)
  t = np.arange(LENGTH) / 22050.0
  freqs = rng.uniform(100, 2000, size=(BATCH, VIEWS, 1))
  audio = 0.5 * np.sin(2 * np.pi * freqs * t) + 0.05 * rng.standard_normal((BATCH, VIEWS, LENGTH))
  labels = (rng.random((BATCH, CLASSES)) < 0.4).astype(np.float32)
  labeled = np.arange(BATCH) < BATCH // 2
  labels[~labeled] = 0.0
  return {"audio": audio.astype(np.float32), "labels": labels, "labeled": labeled}


def run_one_step(mesh, host_batch, config=None, tx=None):
  """Initialises the tiny model on `mesh` and applies one SGD(lr=1) train step to `host_batch`.

  SGD with lr 1 makes the update exactly minus the gradient, so comparing updates compares
  gradients. (Adam's first step is ±lr·sign(g): it would hide a ×N gradient scale.)

  Args:
    mesh: the device mesh.
    host_batch: `fixed_batch()`.
    config: defaults to `tiny_config()`.
    tx: defaults to SGD(lr=1); the returned "gradient" is then params before - after.

  Returns:
    (params before - params after, state, metrics) fetched to host numpy.
  """
  config = config or tiny_config()
  model = models.build_model(config.model)
  tx = tx or optax.sgd(1.0)
  init_rng, aug_rng = jax.random.split(jax.random.key(config.seed))
  state = train.create_train_state(config, model, tx, mesh, init_rng)
  params0 = jax.device_get(state.params)
  step = train.make_train_step(config, model, tx, lambda key, x: x, mesh)
  state, metrics = step(state, parallel.host_batch_to_global(host_batch, mesh), aug_rng)
  state = jax.device_get(state)
  grads = jax.tree.map(lambda p0, p1: p0 - p1, params0, state.params)
  return grads, state, jax.device_get(metrics)


VALIDATION_KEY = 7


def validation_config():
  """`tiny_config()` with a gain + polarity chain at severity 2, so that the validation's
  per-batch augmentation keys matter."""
  c = tiny_config()
  c.augment.severity = 2
  c.augment.chain = ("gain", "polarity_inversion")
  return c


def validate(mesh, variables, host_batches) -> dict[str, float]:
  """`train.evaluate_validation` of the tiny model with `variables` on `host_batches`, with
  `validation_config()`'s augmentation and key VALIDATION_KEY.

  Args:
    mesh: the device mesh.
    variables: host {'params', 'batch_stats'} of the tiny model.
    host_batches: this host's share of each global batch (`fixed_batch` rows).

  Returns:
    {'val_loss', 'val_ssl_loss', 'val_sl_loss'}.
  """
  config = validation_config()
  model = models.build_model(config.model)
  augment_fn = augment.make_augment_fn(config.augment, config.data.sample_rate)
  eval_step = train.make_eval_step(config, model, augment_fn, mesh)
  replicated = jax.device_put(variables, parallel.replicated(mesh))
  return train.evaluate_validation(eval_step, replicated, host_batches, mesh,
                                   jax.random.key(VALIDATION_KEY),
                                   {"loss", "ssl_loss", "sl_loss"})


def flatten(tree) -> dict[str, np.ndarray]:
  """{'path/to/leaf': array} for a nested tree (for saving and comparing)."""
  return {jax.tree_util.keystr(path): np.asarray(x)
          for path, x in jax.tree_util.tree_flatten_with_path(tree)[0]}


def assert_same_step(got, expected) -> None:
  """Asserts two (gradient, state, metrics) results are the same step up to float32 noise.

  Float32 sums over ~10^5-term reductions in another order differ by ~1e-5 relative, more in
  the first convolutions (large cancelling sums) and in the conv biases that feed BatchNorm,
  whose exact gradient is 0. A ×N gradient or per-device BatchNorm is off by factors.
  """
  (g_got, s_got, m_got), (g_exp, s_exp, m_exp) = got, expected
  for key in ("loss", "ssl_loss", "sl_loss"):
    np.testing.assert_allclose(m_got[key], m_exp[key], rtol=2e-5, err_msg=key)
  np.testing.assert_allclose(m_got["grad_norm"], m_exp["grad_norm"], rtol=5e-4)
  total = float(m_exp["grad_norm"])
  got_flat, exp_flat = flatten(g_got), flatten(g_exp)
  assert got_flat.keys() == exp_flat.keys()
  for key, g in exp_flat.items():
    err = np.linalg.norm(got_flat[key] - g)
    assert err <= 2e-3 * np.linalg.norm(g) + 1e-5 * total, (key, err, np.linalg.norm(g))
  jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, rtol=1e-4, atol=1e-6),
               s_got.batch_stats, s_exp.batch_stats)
