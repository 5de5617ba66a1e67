"""Probe-head training: losses, the coupled-L2 Adam, early stopping, samplers, separability."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from ssc_jax.evaluation import head_training as ht
from ssc_jax.evaluation import metrics


def _blobs(rng, n, centers, noise=1.0):
  """Gaussian blobs around `centers` [K, D]; returns x [n, D], one-hot y [n, K], ids [n]."""
  ids = rng.integers(0, len(centers), n)
  x = centers[ids] + noise * rng.standard_normal((n, centers.shape[1]))
  return x.astype(np.float32), np.eye(len(centers), dtype=np.float32)[ids], ids


def test_losses_match_numpy_formulas():
  rng = np.random.default_rng(0)
  out = rng.standard_normal((5, 3)).astype(np.float32)
  hot = np.eye(3, dtype=np.float32)[[0, 2, 1, 1, 0]]
  multi = (rng.random((5, 3)) < 0.5).astype(np.float32)
  sig = 1 / (1 + np.exp(-out.astype(np.float64)))
  bce = -(multi * np.log(sig) + (1 - multi) * np.log(1 - sig)).mean(1)
  logp = out - np.log(np.exp(out.astype(np.float64)).sum(1, keepdims=True))
  np.testing.assert_allclose(ht.per_example_loss("multilabel", out, multi), bce, rtol=1e-5)
  np.testing.assert_allclose(ht.per_example_loss("multiclass", out, hot),
                             -(hot * logp).sum(1), rtol=1e-5)
  np.testing.assert_allclose(ht.per_example_loss("regression", out, multi),
                             ((out - multi) ** 2).mean(1), rtol=1e-6)


def test_optimizer_is_adam_with_coupled_l2_like_pytorch():
  lr, wd, eps = 0.1, 0.5, 1e-8
  p0 = np.array([1.0, -2.0, 0.5])
  grads = [np.array([0.3, 0.1, -0.2]), np.array([-0.1, 0.4, 0.05])]
  # PyTorch Adam(weight_decay): g <- g + wd * p, then the usual bias-corrected Adam step.
  p, m, v = p0.copy(), np.zeros(3), np.zeros(3)
  for t, g in enumerate(grads, start=1):
    g = g + wd * p
    m = 0.9 * m + 0.1 * g
    v = 0.999 * v + 0.001 * g * g
    p = p - lr * (m / (1 - 0.9**t)) / (np.sqrt(v / (1 - 0.999**t)) + eps)
  tx = ht.make_optimizer(lr, wd)
  params = jnp.asarray(p0, jnp.float32)
  state = tx.init(params)
  for g in grads:
    updates, state = tx.update(jnp.asarray(g, jnp.float32), state, params)
    params = optax.apply_updates(params, updates)
  np.testing.assert_allclose(params, p, rtol=1e-5)
  # Decoupled decay (AdamW) would give a different result: the test can tell them apart.
  adamw = optax.adamw(lr, weight_decay=wd)
  q = jnp.asarray(p0, jnp.float32)
  s = adamw.init(q)
  for g in grads:
    u, s = adamw.update(jnp.asarray(g, jnp.float32), s, q)
    q = optax.apply_updates(q, u)
  assert np.abs(np.asarray(q) - p).max() > 1e-3


def _config(**kw):
  base = dict(kind="multiclass", num_outputs=3, hidden=0, learning_rate=1e-2, batch_size=32,
              max_epochs=40, patience=5, seed=0)
  base.update(kw)
  return ht.HeadConfig(**base)


def test_linear_probe_separates_separable_data_and_is_at_chance_on_shuffled_labels():
  rng = np.random.default_rng(0)
  centers = 4.0 * rng.standard_normal((3, 16))
  x_tr, y_tr, _ = _blobs(rng, 300, centers)
  x_va, y_va, _ = _blobs(rng, 100, centers)
  x_te, y_te, _ = _blobs(rng, 600, centers)
  cfg = _config()
  head = ht.train_head(cfg, ht.array_sampler(x_tr, y_tr), x_va, y_va)
  acc = metrics.accuracy(ht.predict(cfg, head.params, x_te), y_te)
  assert acc >= 0.95

  # Shuffled training (and validation) labels carry no information about the test labels.
  shuffled = ht.train_head(cfg, ht.array_sampler(x_tr, y_tr[rng.permutation(300)]), x_va,
                           y_va[rng.permutation(100)])
  chance = metrics.accuracy(ht.predict(cfg, shuffled.params, x_te), y_te)
  assert abs(chance - 1 / 3) < 0.1


def test_mlp_multilabel_probe_learns_separable_tags():
  rng = np.random.default_rng(1)
  w = rng.standard_normal((16, 4))
  def data(n):
    x = rng.standard_normal((n, 16)).astype(np.float32)
    return x, (x @ w > 0).astype(np.float32)
  (x_tr, y_tr), (x_va, y_va), (x_te, y_te) = data(400), data(100), data(300)
  cfg = _config(kind="multilabel", num_outputs=4, hidden=64, max_epochs=30)
  head = ht.train_head(cfg, ht.array_sampler(x_tr, y_tr), x_va, y_va)
  assert metrics.macro_auc(ht.predict(cfg, head.params, x_te), y_te)["roc_auc"] > 0.95


def test_early_stopping_restores_the_best_validation_head():
  rng = np.random.default_rng(2)
  # Random labels on few clips with a large lr: the head memorises them and the validation
  # loss (independent random labels) rises after the first epochs.
  x_tr = rng.standard_normal((24, 64)).astype(np.float32)
  y_tr = np.eye(3, dtype=np.float32)[rng.integers(0, 3, 24)]
  x_va = rng.standard_normal((50, 64)).astype(np.float32)
  y_va = np.eye(3, dtype=np.float32)[rng.integers(0, 3, 50)]
  cfg = _config(learning_rate=0.05, batch_size=8, max_epochs=100, patience=4)
  seen = []
  head = ht.train_head(cfg, ht.array_sampler(x_tr, y_tr), x_va, y_va, on_epoch=seen.append)
  val = [r["val_loss"] for r in head.history]
  assert seen == head.history
  assert head.stopped_early and head.epochs_run == head.best_epoch + cfg.patience
  assert head.best_epoch == int(np.argmin(val)) + 1 and head.best_val_loss == min(val)
  assert val[-1] > head.best_val_loss
  restored = ht.mean_loss(cfg, ht.predict(cfg, head.params, x_va), y_va)
  assert restored == pytest.approx(head.best_val_loss, rel=1e-5)


def test_cached_crop_sampler_draws_one_chunk_per_clip_per_epoch():
  owner = np.array([0, 0, 0, 1, 2, 2])  # clip 0: 3 chunks, clip 1: 1, clip 2: 2.
  chunk_x = np.arange(6, dtype=np.float32)[:, None]
  targets = np.eye(3, dtype=np.float32)
  sampler = ht.cached_crop_sampler(chunk_x, owner, targets)
  rng = np.random.default_rng(0)
  drawn = set()
  for epoch in range(60):
    x, y, rows = sampler(epoch, rng)
    assert len(rows) == 3 and list(owner[rows]) == [0, 1, 2]
    np.testing.assert_array_equal(np.asarray(y)[rows], targets)
    drawn.update(rows.tolist())
  assert drawn == set(range(6))
  with pytest.raises(ValueError, match="no cached chunk"):
    ht.cached_crop_sampler(chunk_x[:3], owner[:3], targets)


def test_epoch_plan_visits_every_row_once():
  rows = np.arange(10, 21)
  idx, mask = ht._epoch_plan(rows, 4, np.random.default_rng(0))  # pylint: disable=protected-access
  assert idx.shape == (3, 4) and mask.sum() == 11
  assert sorted(idx[mask].tolist()) == rows.tolist()


def test_bad_settings_are_refused():
  x = np.zeros((4, 2), np.float32)
  with pytest.raises(ValueError, match="patience"):
    ht.train_head(_config(patience=0), ht.array_sampler(x, np.eye(3)[[0, 1, 2, 0]]), x,
                  np.eye(3)[[0, 1, 2, 0]])
  with pytest.raises(ValueError, match="validation split is empty"):
    ht.train_head(_config(), ht.array_sampler(x, np.eye(3)[[0, 1, 2, 0]]), x[:0],
                  np.zeros((0, 3)))
  assert jax.tree.leaves(ht.init_params(_config(hidden=8, use_bias=True), 5))


class _Writer:
  def __init__(self):
    self.scalars = {}

  def write_scalars(self, step, scalars):
    for k, v in scalars.items():
      self.scalars.setdefault(k, []).append((step, v))


def test_learning_rate_grid_keeps_the_head_with_the_best_validation_metric():
  from configs import probe as probe_config  # pylint: disable=g-import-not-at-top
  from ssc_jax.evaluation import features  # pylint: disable=g-import-not-at-top
  from ssc_jax.evaluation import probe  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(3)
  centers = 4.0 * rng.standard_normal((3, 16))
  x_tr, y_tr, _ = _blobs(rng, 200, centers)
  x_va, y_va, _ = _blobs(rng, 100, centers)
  config = probe_config.get_config("smoke,marble")
  config.probe.learning_rates = (1e-7, 1e-2)
  config.probe.max_epochs = config.probe.patience = 8
  val = features.SplitFeatures("validation", x_va, x_va[:, :2], y_va, np.ones(100, int))
  writer = _Writer()
  task = probe.Task(name="blobs", dataset="", label_key="y", train_split="train",
                    validation_split="validation", test_split="test", data_dir="",
                    kind="multiclass", num_outputs=3, names=tuple("abc"), key_names=False,
                    num_tracks={}, sample_rate=None)
  head, info = probe.fit_head(config, task, ht.array_sampler(x_tr, y_tr), val, writer)
  search = {r["learning_rate"]: r["val_metric"] for r in info["lr_search"]}
  # The convergence record tells the two apart: lr 1e-7 barely moved the head.
  drops = {r["learning_rate"]: r["relative_drop"] for r in info["lr_search"]}
  assert drops[1e-7] < ht.BARELY_TRAINED_DROP < drops[1e-2]
  assert not info["convergence"]["barely_trained"] and not info["standardized"]
  assert search[1e-2] > 0.95 > search[1e-7]
  assert info["learning_rate"] == head.config.learning_rate == 1e-2
  assert info["val_metric"] == search[1e-2] and info["total_epochs"] == 16
  assert head.config.use_bias and head.config.dropout == 0.2 and head.config.hidden == 512
  assert len(writer.scalars["probe_lr1e-07/val_loss"]) == 8
