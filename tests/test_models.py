"""Tests for ssc_jax.models against float64 NumPy references and closed-form counts (spec §3)."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from configs.common import base_config
from ssc_jax import models
from ssc_jax.models import layers
from ssc_jax.models.heads import ProjectionHead
from ssc_jax.models.samplecnn import SampleCNN
from ssc_jax.models.tune import TunePlus

EPS = 1e-5  # PyTorch BatchNorm1d eps.


def _count(tree) -> int:
  return sum(int(np.prod(a.shape)) for a in jax.tree.leaves(tree))


def _to_np(tree):
  return jax.tree.map(lambda a: np.asarray(a, np.float64), tree)


def _init(module, num_samples):
  return models.init_variables(module, jax.random.key(0), num_samples)


# ------------------------------------------------------------------------------------------------
# Float64 NumPy reference ops (written independently of the library: im2col, strided maxima).
# ------------------------------------------------------------------------------------------------


def np_conv1d(x, kernel, bias, stride, padding):
  """x: [B, L, C]; kernel: [k, C, O] (= PyTorch weight[o, c, j] at [j, c, o]) → [B, L', O]."""
  k, c, o = kernel.shape
  xp = np.pad(x, ((0, 0), (padding, padding), (0, 0)))
  out_len = (xp.shape[1] - k) // stride + 1
  cols = np.stack([xp[:, j:j + stride * (out_len - 1) + 1:stride] for j in range(k)], axis=2)
  return cols.reshape(x.shape[0], out_len, k * c) @ kernel.reshape(k * c, o) + bias


def np_conv_transpose_k3s3(x, kernel, bias):
  """PyTorch ConvTranspose1d(k=3, s=3, p=0): out[3i + j] = x[i] @ kernel[j] + bias."""
  b, length, _ = x.shape
  out = np.zeros((b, 3 * length, kernel.shape[2]))
  for j in range(3):
    out[:, j::3] = x @ kernel[j] + bias
  return out


def np_maxpool3(x):
  n = x.shape[1] // 3
  return np.maximum(np.maximum(x[:, 0:3 * n:3], x[:, 1:3 * n:3]), x[:, 2:3 * n:3])


def np_avgpool3(x):
  n = x.shape[1] // 3
  return (x[:, 0:3 * n:3] + x[:, 1:3 * n:3] + x[:, 2:3 * n:3]) / 3.0


def np_bn(x, scale, bias, stats, train):
  """Returns (y, batch_mean, unbiased_batch_var); stats = (mean, var) used in eval mode."""
  flat = x.reshape(-1, x.shape[-1])
  n = flat.shape[0]
  mean = flat.sum(0) / n
  var_biased = ((flat - mean) ** 2).sum(0) / n
  if train:
    m, v = mean, var_biased
  else:
    m, v = stats
  y = (x - m) / np.sqrt(v + EPS) * scale + bias
  return y, mean, var_biased * n / (n - 1)


def np_samplecnn(p, s, x, train):
  """Float64 SampleCNN forward. p/s: the encoder's params / batch_stats. Returns (h, stats)."""
  y = x[:, :, None]
  new_stats = {}
  for i in range(11):
    conv, bn = p[f"conv{i}"], p[f"bn{i}"]
    y = np_conv1d(y, conv["kernel"], conv["bias"], 3 if i == 0 else 1, 0 if i == 0 else 1)
    run = (s[f"bn{i}"]["mean"], s[f"bn{i}"]["var"])
    y, m, v = np_bn(y, bn["scale"], bn["bias"], run, train)
    new_stats[f"bn{i}"] = {"mean": 0.9 * run[0] + 0.1 * m, "var": 0.9 * run[1] + 0.1 * v}
    y = np.maximum(y, 0.0)
    if 1 <= i <= 9:
      y = np_maxpool3(y)
  assert y.shape[1] == 1
  return y[:, 0], new_stats


def np_tuneplus(p, s, x, train):
  """Float64 TUNe+ forward following the spec §3.3 table. Returns h."""

  def cb(i, y):
    blk = p[f"block{i}"]
    y = np_conv1d(y, blk["conv"]["kernel"], blk["conv"]["bias"], 1, 1)
    run = (s[f"block{i}"]["bn"]["mean"], s[f"block{i}"]["bn"]["var"])
    y, _, _ = np_bn(y, blk["bn"]["scale"], blk["bn"]["bias"], run, train)
    return np.maximum(y, 0.0)

  def up(i, y):
    return np_conv_transpose_k3s3(y, p[f"up{i}"]["kernel"], p[f"up{i}"]["bias"])

  cat = lambda a, b: np.concatenate([a, b], axis=-1)
  c1 = cb(1, x[:, :, None])
  c2 = cb(2, np_maxpool3(c1))
  c3 = cb(3, np_maxpool3(c2))
  c4 = cb(4, np_maxpool3(c3))
  c5 = cb(5, np_maxpool3(c4))
  c6 = cb(6, cat(up(6, c5), c4))
  c7 = cb(7, cat(up(7, c6), c3))
  c8 = cb(8, cat(up(8, c7), c2))
  c9 = cb(9, cat(up(9, c8), c1))
  y = cb(10, cat(np_maxpool3(c9), c8))
  y = cb(11, cat(np_maxpool3(y), c7))
  y = cb(12, cat(np_maxpool3(y), c6))
  y = cb(13, cat(np_maxpool3(y), c5))
  for i in range(14, 19):
    y = cb(i, np_maxpool3(y))
  y = np_avgpool3(y)
  assert y.shape[1] == 1
  return y[:, 0]


def _randomise_bn(params, stats, rng):
  """Non-trivial BN scale/bias (and running stats) so the reference checks their use."""
  def walk(p, s):
    for k in p:
      if k.startswith("bn") or k == "bn":
        c = p[k]["scale"].shape
        p[k]["scale"] = rng.uniform(0.5, 1.5, c)
        p[k]["bias"] = rng.uniform(-0.2, 0.2, c)
        s[k]["mean"] = rng.normal(0.0, 0.05, c)
        s[k]["var"] = rng.uniform(0.5, 2.0, c)
      elif isinstance(p[k], dict) and k in s:
        walk(p[k], s[k])
  walk(params, stats)


def _f32(tree):
  return jax.tree.map(lambda a: jnp.asarray(a, jnp.float32), tree)


# ------------------------------------------------------------------------------------------------
# Shapes and view-length validation.
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("width,dim", [(1.0, 512), (0.25, 128), (0.125, 64)])
@pytest.mark.parametrize("num_samples", [59535, 59049, 118097])
def test_samplecnn_output_shape(width, dim, num_samples):
  model = SampleCNN(width=width)
  x = jax.ShapeDtypeStruct((3, num_samples), jnp.float32)
  variables = jax.eval_shape(lambda x: model.init(jax.random.key(0), x, train=False), x)
  h = jax.eval_shape(lambda v, x: model.apply(v, x, train=False), variables, x)
  assert h.shape == (3, dim) and h.dtype == jnp.float32
  assert model.output_dim == dim


@pytest.mark.parametrize("num_samples", [59048, 118098, 177146, 3**9])
def test_samplecnn_rejects_bad_view_length(num_samples):
  # floor(T / 3**10) is the output length; it is 1 only for T in [59049, 118097].
  model = SampleCNN(width=0.125)
  x = jax.ShapeDtypeStruct((2, num_samples), jnp.float32)
  with pytest.raises(ValueError, match=r"data\.view_length.*59049.*118097"):
    jax.eval_shape(lambda x: model.init(jax.random.key(0), x, train=False), x)


@pytest.mark.parametrize("num_samples,ok", [
    (59049, True), (59535, True), (118017, True), (59130, True),
    (59050, False), (58968, False), (118098, False)])
def test_tuneplus_view_length(num_samples, ok):
  model = TunePlus(width=0.1)
  x = jax.ShapeDtypeStruct((2, num_samples), jnp.float32)
  init = lambda x: model.init(jax.random.key(0), x, train=False)
  if ok:
    variables = jax.eval_shape(init, x)
    h = jax.eval_shape(lambda v, x: model.apply(v, x, train=False), variables, x)
    assert h.shape == (2, round(512 * 0.1)) == (2, model.output_dim)
  else:
    with pytest.raises(ValueError, match=r"data\.view_length.*multiple of 81"):
      jax.eval_shape(init, x)


# ------------------------------------------------------------------------------------------------
# Parameter counts.
# ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def samplecnn_full():
  return _init(SampleCNN(), 59049)


@pytest.fixture(scope="module")
def tuneplus_full():
  return _init(TunePlus(), 59049)


@pytest.fixture(scope="module")
def samplecnn_small():
  return _to_np(_init(SampleCNN(width=0.125), 59535))


@pytest.fixture(scope="module")
def tuneplus_small():
  return _to_np(_init(TunePlus(width=0.2), 59049))


def test_samplecnn_param_count(samplecnn_full):
  assert _count(samplecnn_full["params"]) == 2_368_512  # Spec §3.1, without the unused fc.
  # Running stats are separate: mean + var for every BN channel.
  bn_channels = 128 * 3 + 256 * 6 + 512 * 2
  assert _count(samplecnn_full["batch_stats"]) == 2 * bn_channels
  assert sorted(samplecnn_full["params"]) == sorted(
      [f"conv{i}" for i in range(11)] + [f"bn{i}" for i in range(11)])


def test_projection_head_param_count():
  v = jax.eval_shape(
      lambda: ProjectionHead().init(jax.random.key(0), jnp.zeros((2, 512), jnp.float32)))
  assert _count(v["params"]) == 327_680  # 512·512 + 512·128, no biases.


def test_tuneplus_param_count(tuneplus_full):
  # Derived from the spec §3.3 table: (in, out) of the 18 ConvBlocks and the 4 ConvTransposes.
  blocks = [(1, 11), (11, 22), (22, 44), (44, 88), (88, 176), (176, 88), (88, 44), (44, 22),
            (22, 11), (33, 22), (66, 44), (132, 88), (264, 176), (176, 352), (352, 352),
            (352, 352), (352, 352), (352, 512)]
  transposes = [(176, 88), (88, 44), (44, 22), (22, 11)]
  conv_block = sum(i * 3 * o + o + 2 * o for i, o in blocks)  # weight, bias, BN γ and β.
  conv_t = sum(i * o * 3 + o for i, o in transposes)
  expected = conv_block + conv_t
  assert abs(expected - 2.22e6) < 0.01e6  # "about 2.22 M"
  assert _count(tuneplus_full["params"]) == expected
  assert _count(tuneplus_full["batch_stats"]) == 2 * sum(o for _, o in blocks)


# ------------------------------------------------------------------------------------------------
# Initialisation.
# ------------------------------------------------------------------------------------------------


def _check_uniform(w, bound):
  """w must lie in [-bound, bound] and look like U(-bound, bound)."""
  w = np.asarray(w, np.float64).ravel()
  n = w.size
  assert np.all(np.abs(w) <= bound * (1 + 1e-6)), (np.abs(w).max(), bound)
  # P(max|w| < bound·(1 - 20/n)) = (1 - 20/n)^n ≈ e^-20 for a true uniform.
  assert np.abs(w).max() >= bound * (1 - 20 / n)
  if n >= 300:
    # std of U(-b, b) is b/√3; the relative std error of a sample std is about √(0.2/n).
    rel = np.std(w) / (bound / math.sqrt(3)) - 1
    assert abs(rel) < 6 * math.sqrt(0.2 / n) + 1e-3, rel
    assert abs(np.mean(w)) < 6 * bound / math.sqrt(3 * n)


def test_samplecnn_init_is_pytorch_default(samplecnn_full):
  p = samplecnn_full["params"]
  for i in range(11):
    k, c_in, _ = p[f"conv{i}"]["kernel"].shape
    bound = 1 / math.sqrt(c_in * k)
    _check_uniform(p[f"conv{i}"]["kernel"], bound)
    _check_uniform(p[f"conv{i}"]["bias"], bound)
    np.testing.assert_array_equal(p[f"bn{i}"]["scale"], 1.0)
    np.testing.assert_array_equal(p[f"bn{i}"]["bias"], 0.0)
    np.testing.assert_array_equal(samplecnn_full["batch_stats"][f"bn{i}"]["mean"], 0.0)
    np.testing.assert_array_equal(samplecnn_full["batch_stats"][f"bn{i}"]["var"], 1.0)


def test_projection_head_init():
  v = ProjectionHead().init(jax.random.key(1), jnp.zeros((2, 512), jnp.float32))["params"]
  assert set(v["dense0"]) == {"kernel"} and set(v["dense1"]) == {"kernel"}
  assert v["dense0"]["kernel"].shape == (512, 512) and v["dense1"]["kernel"].shape == (512, 128)
  _check_uniform(v["dense0"]["kernel"], 1 / math.sqrt(512))
  _check_uniform(v["dense1"]["kernel"], 1 / math.sqrt(512))


def test_tuneplus_init(tuneplus_full):
  p = tuneplus_full["params"]
  for i in range(1, 19):
    k, c_in, _ = p[f"block{i}"]["conv"]["kernel"].shape
    _check_uniform(p[f"block{i}"]["conv"]["kernel"], math.sqrt(6 / (c_in * k)))  # ReLU gain.
    _check_uniform(p[f"block{i}"]["conv"]["bias"], 1 / math.sqrt(c_in * k))
  for i, c_out in zip(range(6, 10), (88, 44, 22, 11)):
    assert p[f"up{i}"]["kernel"].shape == (3, 2 * c_out, c_out)
    bound = 1 / math.sqrt(c_out * 3)  # PyTorch fan_in of a transposed conv: out·k.
    _check_uniform(p[f"up{i}"]["kernel"], bound)
    _check_uniform(p[f"up{i}"]["bias"], bound)


# ------------------------------------------------------------------------------------------------
# BatchNorm semantics.
# ------------------------------------------------------------------------------------------------


def _bn_case(seed=0, shape=(2, 3, 5)):
  rng = np.random.default_rng(seed)
  c = shape[-1]
  # Per-channel std from 0.003 to 3 around a mean of 3: eps = 1e-5 matters on the narrow
  # channels (and the variance must be cancellation-free there), the n/(n-1) running-var
  # correction (1.2 for n = 6) on the wide ones.
  std = np.resize([0.003, 0.01, 0.1, 1.0, 3.0], c)
  x = 3.0 + rng.normal(0.0, 1.0, shape) * std
  variables = {
      "params": {"scale": rng.uniform(0.5, 1.5, c), "bias": rng.normal(0, 0.3, c)},
      "batch_stats": {"mean": rng.normal(0, 1, c), "var": rng.uniform(0.5, 2.0, c)},
  }
  return x, variables


def _np_bn_expected(x, variables):
  n = x.size // x.shape[-1]
  flat = x.reshape(n, -1)
  mean = flat.mean(0)
  var = ((flat - mean) ** 2).mean(0)
  g, b = variables["params"]["scale"], variables["params"]["bias"]
  y = (x - mean) / np.sqrt(var + EPS) * g + b
  m0, v0 = variables["batch_stats"]["mean"], variables["batch_stats"]["var"]
  return y, 0.9 * m0 + 0.1 * mean, 0.9 * v0 + 0.1 * var * n / (n - 1)


def test_batchnorm_train_mode_matches_pytorch_formula():
  x, variables = _bn_case()
  bn = layers.TorchBatchNorm()
  y, upd = bn.apply(_f32(variables), jnp.asarray(x, jnp.float32), use_running_average=False,
                    mutable=["batch_stats"])
  y_ref, mean_ref, var_ref = _np_bn_expected(x, variables)
  np.testing.assert_allclose(y, y_ref, rtol=1e-3, atol=2e-3)
  np.testing.assert_allclose(upd["batch_stats"]["mean"], mean_ref, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(upd["batch_stats"]["var"], var_ref, rtol=1e-5, atol=1e-7)


def test_batchnorm_eval_mode_uses_running_stats():
  x, variables = _bn_case(seed=1)
  bn = layers.TorchBatchNorm()
  y, upd = bn.apply(_f32(variables), jnp.asarray(x, jnp.float32), use_running_average=True,
                    mutable=["batch_stats"])
  s, p = variables["batch_stats"], variables["params"]
  y_ref = (x - s["mean"]) / np.sqrt(s["var"] + EPS) * p["scale"] + p["bias"]
  np.testing.assert_allclose(y, y_ref, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(upd["batch_stats"]["mean"], s["mean"], rtol=1e-7)
  np.testing.assert_allclose(upd["batch_stats"]["var"], s["var"], rtol=1e-7)


def test_batchnorm_init_and_single_value_error():
  bn = layers.TorchBatchNorm()
  v = bn.init(jax.random.key(0), jnp.full((2, 3, 4), 5.0), use_running_average=False)
  np.testing.assert_array_equal(v["params"]["scale"], np.ones(4))
  np.testing.assert_array_equal(v["params"]["bias"], np.zeros(4))
  np.testing.assert_array_equal(v["batch_stats"]["mean"], np.zeros(4))  # init does not update.
  np.testing.assert_array_equal(v["batch_stats"]["var"], np.ones(4))
  with pytest.raises(ValueError, match="more than 1 value"):
    bn.apply(v, jnp.ones((1, 1, 4)), use_running_average=False, mutable=["batch_stats"])


def test_batchnorm_statistics_are_global_on_a_sharded_batch():
  devices = np.array(jax.devices())
  assert devices.size == 8
  mesh = Mesh(devices, ("data",))
  x, variables = _bn_case(seed=2, shape=(8, 3, 4))
  # Make per-device statistics differ from the global ones.
  x = x + np.arange(8)[:, None, None] * 0.05
  xs = jax.device_put(jnp.asarray(x, jnp.float32), NamedSharding(mesh, P("data")))
  bn = layers.TorchBatchNorm()
  step = jax.jit(lambda v, x: bn.apply(v, x, use_running_average=False, mutable=["batch_stats"]))
  y, upd = step(_f32(variables), xs)
  y_ref, mean_ref, var_ref = _np_bn_expected(x, variables)
  np.testing.assert_allclose(y, y_ref, rtol=1e-3, atol=2e-3)
  np.testing.assert_allclose(upd["batch_stats"]["mean"], mean_ref, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(upd["batch_stats"]["var"], var_ref, rtol=1e-5, atol=1e-7)


# ------------------------------------------------------------------------------------------------
# Whole-encoder forwards against the float64 references.
# ------------------------------------------------------------------------------------------------


def _assert_close_to_ref(h, ref):
  h = np.asarray(h, np.float64)
  assert h.shape == ref.shape
  scale = np.abs(ref).max()
  assert scale > 0.1 and np.mean(ref > 0) > 0.2  # The reference is not degenerate.
  np.testing.assert_allclose(h, ref, rtol=2e-3, atol=2e-3 * scale)


@pytest.mark.parametrize("train", [True, False])
def test_samplecnn_forward_matches_numpy(train, samplecnn_small):
  model = SampleCNN(width=0.125)
  rng = np.random.default_rng(10)
  x = rng.normal(0, 0.3, (3, 59535))
  variables = jax.tree.map(np.copy, samplecnn_small)
  _randomise_bn(variables["params"], variables["batch_stats"], rng)
  (h, upd) = jax.jit(
      lambda v, x: model.apply(v, x, train=train, mutable=["batch_stats"]))(
          _f32(variables), jnp.asarray(x, jnp.float32))
  ref, ref_stats = np_samplecnn(variables["params"], variables["batch_stats"], x, train)
  _assert_close_to_ref(h, ref)
  for name, st in upd["batch_stats"].items():
    want = ref_stats[name] if train else variables["batch_stats"][name]
    np.testing.assert_allclose(st["mean"], want["mean"], rtol=2e-3, atol=1e-4, err_msg=name)
    np.testing.assert_allclose(st["var"], want["var"], rtol=2e-3, atol=1e-4, err_msg=name)


@pytest.mark.parametrize("train", [True, False])
def test_tuneplus_forward_matches_numpy(train, tuneplus_small):
  model = TunePlus(width=0.2)  # c = 2, output 102 channels.
  rng = np.random.default_rng(11)
  x = rng.normal(0, 0.3, (2, 59049))
  variables = jax.tree.map(np.copy, tuneplus_small)
  _randomise_bn(variables["params"], variables["batch_stats"], rng)
  h = jax.jit(lambda v, x: model.apply(v, x, train=train, mutable=["batch_stats"])[0])(
      _f32(variables), jnp.asarray(x, jnp.float32))
  ref = np_tuneplus(variables["params"], variables["batch_stats"], x, train)
  _assert_close_to_ref(h, ref)


# ------------------------------------------------------------------------------------------------
# Building by name, the full model and embed.
# ------------------------------------------------------------------------------------------------


def test_build_encoder_by_name():
  enc = models.build_encoder("samplecnn", width=0.5)
  assert isinstance(enc, SampleCNN) and enc.width == 0.5 and enc.output_dim == 256
  enc = models.build_encoder("tuneplus", width=1.0, channels=11)
  assert isinstance(enc, TunePlus) and enc.output_dim == 512
  with pytest.raises(ValueError, match="samplecnn.*tuneplus"):
    models.build_encoder("resnet")


def test_build_model_embed_and_head():
  cfg = base_config().model
  cfg.width = 0.125
  cfg.projection_hidden = 48
  cfg.projection_dim = 16
  model = models.build_model(cfg)
  assert models.encoder_output_dim(cfg) == 64
  x = jnp.asarray(np.random.default_rng(3).normal(0, 0.3, (3, 59049)), jnp.float32)
  variables = models.init_variables(model, jax.random.key(0), 59049)
  assert set(variables) == {"params", "batch_stats"}
  assert set(variables["params"]) == {"encoder", "head"}
  assert set(variables["batch_stats"]) == {"encoder"}
  assert _count(variables["params"]["head"]) == 64 * 48 + 48 * 16

  fwd = jax.jit(lambda v, x: model.apply(v, x, train=False))
  embed = jax.jit(lambda v, x: model.apply(v, x, method=models.SemiSupConModel.embed))
  h, z = fwd(variables, x)
  assert h.shape == (3, 64) and z.shape == (3, 16)
  np.testing.assert_array_equal(embed(variables, x), h)
  head = _to_np(variables["params"]["head"])
  z_ref = np.maximum(np.asarray(h, np.float64) @ head["dense0"]["kernel"], 0) @ (
      head["dense1"]["kernel"])
  np.testing.assert_allclose(z, z_ref, rtol=1e-4, atol=1e-5 * np.abs(z_ref).max())

  # Train mode: embed gives the same h and the same running-stat updates as __call__.
  (h_t, _), upd = jax.jit(
      lambda v, x: model.apply(v, x, train=True, mutable=["batch_stats"]))(variables, x)
  h_e, upd_e = jax.jit(lambda v, x: model.apply(
      v, x, train=True, method=models.SemiSupConModel.embed, mutable=["batch_stats"]))(
          variables, x)
  np.testing.assert_allclose(h_e, h_t, rtol=1e-6, atol=1e-6)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7), upd, upd_e)
  assert not np.allclose(h_t, h)  # Train mode really uses batch statistics.


def test_build_model_tuneplus_and_bfloat16():
  cfg = base_config().model
  cfg.encoder = "tuneplus"
  model = models.build_model(cfg)
  x = jax.ShapeDtypeStruct((2, 59535), jnp.float32)
  variables = jax.eval_shape(lambda x: model.init(jax.random.key(0), x, train=False), x)
  h, z = jax.eval_shape(lambda v, x: model.apply(v, x, train=False), variables, x)
  assert h.shape == (2, 512) and z.shape == (2, 128)

  model16 = models.build_encoder("samplecnn", width=0.25, dtype=jnp.bfloat16)
  v16 = jax.eval_shape(lambda x: model16.init(jax.random.key(0), x, train=False), x)
  assert all(a.dtype == jnp.float32 for a in jax.tree.leaves(v16))
  h16 = jax.eval_shape(lambda v, x: model16.apply(v, x, train=False), v16, x)
  assert h16.shape == (2, 128) and h16.dtype == jnp.float32
