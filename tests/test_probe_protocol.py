"""The probe protocol's pieces against NumPy: BatchNorm recalibration (per-channel statistics of
every layer's input, float64 forward written from the SampleCNN definition), feature
standardisation (training-split statistics), and the head's convergence record."""

import jax
import numpy as np
import pytest

from configs import common
from ssc_jax import models
from ssc_jax import parallel
from ssc_jax.evaluation import batchnorm
from ssc_jax.evaluation import head_training
from ssc_jax.evaluation import metrics
from ssc_jax.models import samplecnn

T = 59049  # 3^10: the shortest SampleCNN view (output length 1).


def _numpy_batch_stats(params, audio):
  """float64 SampleCNN in train mode: per block, the batch mean and unbiased batch variance of
  the BatchNorm input per channel (what recalibration must average)."""
  y = audio.astype(np.float64)[:, :, None]  # [B, T, 1]
  stats = {}
  for i in range(len(samplecnn.CHANNELS)):
    conv, bn = params[f"conv{i}"], params[f"bn{i}"]
    kernel, bias = np.asarray(conv["kernel"], np.float64), np.asarray(conv["bias"], np.float64)
    stride, pad = (3, 0) if i == 0 else (1, 1)
    y = np.pad(y, ((0, 0), (pad, pad), (0, 0)))
    out_len = (y.shape[1] - 3) // stride + 1
    taps = [y[:, k:k + stride * (out_len - 1) + 1:stride] for k in range(3)]
    y = sum(t @ kernel[k] for k, t in enumerate(taps)) + bias  # [B, L, C]
    n = y.shape[0] * y.shape[1]
    mean = y.mean(axis=(0, 1))
    var = y.var(axis=(0, 1))
    stats[f"bn{i}"] = {"mean": mean, "var": var * n / (n - 1)}
    y = (y - mean) / np.sqrt(var + 1e-5) * np.asarray(bn["scale"]) + np.asarray(bn["bias"])
    y = np.maximum(y, 0.0)
    if i in samplecnn.POOLED:
      y = y[:, :y.shape[1] // 3 * 3].reshape(y.shape[0], -1, 3, y.shape[2]).max(axis=2)
  return stats


def _model_at_init():
  """A 1/16-width SampleCNN (8 to 32 channels) and its variables at init."""
  config = common.base_config()
  config.model.width = 0.0625
  model = models.build_model(config.model)
  return model, jax.device_get(models.init_variables(model, jax.random.key(1), T))


def test_batchnorm_recalibration_averages_each_layers_input_statistics():
  model, variables = _model_at_init()
  rng = np.random.default_rng(0)
  t = np.arange(T) / 22050.0
  batches = [(0.3 * np.sin(2 * np.pi * rng.uniform(80, 800, (8, 1)) * t)
              + 0.05 * rng.standard_normal((8, T))).astype(np.float32) for _ in range(2)]
  mesh = parallel.make_mesh()
  got = batchnorm.recalibrate(model, variables, mesh, iter(batches), num_batches=2)

  encoder_params = variables["params"]["encoder"]
  per_batch = [_numpy_batch_stats(encoder_params, b) for b in batches]
  for layer, stats in got["batch_stats"]["encoder"].items():
    for name in ("mean", "var"):
      want = (per_batch[0][layer][name] + per_batch[1][layer][name]) / 2
      np.testing.assert_allclose(stats[name], want, rtol=2e-3, atol=1e-6 * np.abs(want).max(),
                                 err_msg=f"{layer}/{name}")
  # Parameters untouched; the statistics really moved away from the init-time (0, 1): the
  # deepest layer's input varies far less than 1 (PyTorch-default init shrinks activations).
  jax.tree.map(np.testing.assert_array_equal, got["params"], variables["params"])
  assert np.all(got["batch_stats"]["encoder"]["bn10"]["var"] < 0.5)
  # Not enough audio is an error, not a silent partial average.
  with pytest.raises(ValueError, match="ended after 2 of 3"):
    batchnorm.recalibrate(model, variables, mesh, iter(batches), num_batches=3)


def test_recalibrated_random_init_embeddings_differ_between_clips():
  model, variables = _model_at_init()
  rng = np.random.default_rng(1)
  audio = (0.3 * rng.standard_normal((8, T))).astype(np.float32)
  audio[:, :T // 2] *= np.array([0.1, 1.0, 3.0, 0.5] * 2, np.float32)[:, None]
  embed = lambda v: np.asarray(model.apply(v, audio, train=False, method=model.embed))

  def spread(h):  # Largest between-clip difference relative to the embedding size.
    return np.abs(h[:, None] - h[None]).max() / np.abs(h).max()

  at_init = spread(embed(variables))
  mesh = parallel.make_mesh()
  recal = batchnorm.recalibrate(model, variables, mesh, iter([audio]), num_batches=1)
  assert at_init < 1e-3  # Nearly degenerate (1e-7 at the demo width): clips look alike.
  assert spread(embed(recal)) > 1e-1


def test_standardizer_uses_training_statistics_only():
  rng = np.random.default_rng(0)
  train = rng.normal([1.0, -2.0, 5.0], [0.1, 3.0, 1e-3], (50, 3)).astype(np.float32)
  train = np.concatenate([train, np.full((50, 1), 7.0, np.float32)], 1)  # A constant dimension.
  test = rng.normal(0.0, 1.0, (5, 4)).astype(np.float32)
  std = head_training.Standardizer.fit(train)
  x64 = train.astype(np.float64)
  mean, sd = x64.mean(0), x64.std(0)
  sd[3] = 1.0  # Zero spread: centred, not divided by zero.
  np.testing.assert_allclose(std.mean, mean, rtol=1e-6)
  np.testing.assert_allclose(std.std, sd, rtol=1e-5)
  np.testing.assert_allclose(std(test), (test - mean) / sd, rtol=1e-5, atol=1e-5)
  z = std(train)
  np.testing.assert_allclose(z[:, :3].mean(0), 0.0, atol=1e-3)
  np.testing.assert_allclose(z[:, :3].std(0), 1.0, rtol=1e-3)
  np.testing.assert_array_equal(z[:, 3], 0.0)
  again = head_training.Standardizer.from_dict(std.to_dict())
  np.testing.assert_array_equal(again(test), std(test))


def test_head_records_convergence_and_standardisation_rescues_tiny_features():
  # Separable classes on features of size ~1e-6: unscaled, a linear head barely moves (the
  # loss stays at log 3); standardised, the same head and optimiser learn them.
  rng = np.random.default_rng(0)
  y = rng.integers(0, 3, 300)
  x = (1e-6 * (np.eye(3)[y] + 0.1 * rng.standard_normal((300, 3)))).astype(np.float32)
  x = np.concatenate([x, np.zeros((300, 2), np.float32)], 1) + 1e-5  # Offset, 2 constant dims.
  targets = np.eye(3, dtype=np.float32)[y]
  cfg = head_training.HeadConfig(kind=metrics.MULTICLASS, num_outputs=3, hidden=0,
                                 learning_rate=1e-2, batch_size=32, max_epochs=20, patience=20)
  sampler = head_training.array_sampler(x[:200], targets[:200])
  plain = head_training.train_head(cfg, sampler, x[200:], targets[200:])
  std = head_training.Standardizer.fit(x[:200])
  scaled = head_training.train_head(cfg, sampler, x[200:], targets[200:], standardizer=std)

  for head in (plain, scaled):
    c = head.convergence()
    assert c["epochs_run"] == 20 and c["best_epoch"] == head.best_epoch
    assert c["train_loss_final"] == head.history[-1]["train_loss"]
    assert c["train_loss_drop"] == pytest.approx(c["train_loss_initial"] - c["train_loss_final"])
  # The initial loss is the loss of the untrained head: near log 3 for both.
  assert plain.convergence()["train_loss_initial"] == pytest.approx(np.log(3), abs=0.1)
  assert plain.convergence()["relative_drop"] < 0.05 and plain.convergence()["barely_trained"]
  assert scaled.convergence()["relative_drop"] > 0.3 and not scaled.convergence()["barely_trained"]
  assert np.mean(np.argmax(scaled.predict(x[200:]), 1) == y[200:]) > 0.9
  # predict() applies the stored statistics: the same as the raw head on standardised input.
  np.testing.assert_allclose(scaled.predict(x[200:]),
                             head_training.predict(cfg, scaled.params, std(x[200:])), rtol=1e-6)
