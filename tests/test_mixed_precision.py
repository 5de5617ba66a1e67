"""model.dtype = "bfloat16": bf16 compute, float32 state, a loss close to the float32 step."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from ssc_jax import checkpoint
from ssc_jax import config_checks
from ssc_jax import models
from ssc_jax import parallel
from ssc_jax import train
from ssc_jax.inference import pretrained
from tests import train_step_fixture as fx


def _bf16_config():
  c = fx.tiny_config()
  c.model.dtype = "bfloat16"
  return c


@pytest.fixture(scope="module")
def one_device_mesh():
  return parallel.make_mesh(jax.devices()[:1])


def test_bf16_step_matches_float32_and_keeps_float32_state(one_device_mesh):
  batch = fx.fixed_batch()
  g32, _, m32 = fx.run_one_step(one_device_mesh, batch)
  g16, s16, m16 = fx.run_one_step(one_device_mesh, batch, config=_bf16_config())
  # Same parameters (same init key), same batch: bf16 rounding of activations only.
  assert abs(float(m16["loss"]) - float(m32["loss"])) < 2e-2, (m16["loss"], m32["loss"])
  for tree in (s16.params, s16.batch_stats):
    assert all(x.dtype == np.float32 for x in jax.tree.leaves(tree))
  assert all(np.isfinite(x).all() for x in jax.tree.leaves(g16))
  # The bf16 gradient points where the float32 one does. Rounding every activation to bf16
  # through 11 conv + BN layers at init leaves a cosine of ~0.66-0.95 per kernel (measured);
  # a wrong graph or sign gives ~0.
  a = np.concatenate([x.ravel() for x in jax.tree.leaves(g16)])
  b = np.concatenate([x.ravel() for x in jax.tree.leaves(g32)])
  cosine = a @ b / (np.linalg.norm(a) * np.linalg.norm(b))
  assert cosine > 0.6, cosine


def test_bf16_convolutions_compute_in_bf16_and_output_float32():
  c = _bf16_config()
  model = models.build_model(c.model)
  audio = jnp.zeros((2, fx.LENGTH), jnp.float32)
  variables = jax.eval_shape(lambda: model.init(jax.random.key(0), audio, train=False))
  jaxpr = str(jax.make_jaxpr(lambda v, x: model.apply(v, x, train=False))(variables, audio))
  assert "conv_general_dilated" in jaxpr and "bf16[2," in jaxpr
  h, z = jax.eval_shape(lambda v, x: model.apply(v, x, train=False), variables, audio)
  assert h.dtype == z.dtype == jnp.float32
  assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(variables))


def test_bf16_steps_lower_the_loss_and_keep_adam_state_float32(one_device_mesh):
  """Three Adam steps on one fixed batch (no augmentation) lower the bf16 loss."""
  config = _bf16_config()
  model = models.build_model(config.model)
  tx = optax.adam(1e-3)
  init_rng, aug_rng = jax.random.split(jax.random.key(0))
  state = train.create_train_state(config, model, tx, one_device_mesh, init_rng)
  step = train.make_train_step(config, model, tx, lambda key, x: x, one_device_mesh)
  batch = parallel.host_batch_to_global(fx.fixed_batch(), one_device_mesh)
  losses = []
  for _ in range(3):
    state, metrics = step(state, batch, aug_rng)
    losses.append(float(metrics["loss"]))
  assert losses[-1] < losses[0] - 1e-3, losses
  assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(state.opt_state)
             if jnp.issubdtype(x.dtype, jnp.floating))


def test_unknown_dtype_is_refused():
  c = fx.tiny_config()
  c.model.dtype = "float16"
  with pytest.raises(config_checks.ConfigError, match="model.dtype"):
    config_checks.check_pretrain_config(c, device_count=1, process_count=1)


def test_export_keeps_the_run_dtype_and_inference_can_override_it(tmp_path, small_encoder):
  model_config, _, variables = small_encoder
  bf16_config = model_config.copy_and_resolve_references()
  bf16_config.dtype = "bfloat16"
  path = str(tmp_path / "encoder.msgpack")
  checkpoint.export_variables(path, variables, bf16_config, sample_rate=22050,
                              view_length=fx.LENGTH)
  run = pretrained.load_pretrained(path)
  assert run.card["dtype"] == "bfloat16"
  full = pretrained.load_pretrained(path, "float32")
  assert run.model.encoder.dtype == jnp.bfloat16 and full.model.encoder.dtype == jnp.float32
  audio = np.random.default_rng(0).uniform(-0.5, 0.5, (2, fx.LENGTH)).astype(np.float32)
  embed = lambda enc: np.asarray(enc.model.apply(enc.variables, audio,
                                                 method=models.SemiSupConModel.embed))
  h16, h32 = embed(run), embed(full)
  assert h16.dtype == np.float32
  np.testing.assert_allclose(h16, h32, rtol=0.1, atol=0.05 * np.abs(h32).max())
  assert not np.array_equal(h16, h32)  # The override really changed the compute dtype.
  with pytest.raises(ValueError, match="dtype"):
    pretrained.load_pretrained(path, "float16")


def test_eight_devices_equal_one_device_for_a_bf16_lamb_step(one_device_mesh):
  """One bf16 + LAMB step: global BatchNorm and one global loss on 8 devices as on 1.

  LAMB moves every leaf by exactly lr·||p|| (trust ratio), whatever the gradient's scale, so a
  ×N gradient would not show in the parameters; the loss, the gradient norm and the BatchNorm
  statistics show it. The update directions agree up to bf16 rounding: Adam's first step is
  ≈ sign(g), and entries whose gradient is below the bf16 noise flip sign between the runs
  (measured: update cosine ≈ 0.85 over all parameters).
  """
  config = _bf16_config()
  config.optimizer.name, config.optimizer.learning_rate = "lamb", 1e-2
  config.optimizer.weight_decay = 1e-2
  batch = fx.fixed_batch()
  runs = [fx.run_one_step(mesh, batch, config=config, tx=train.make_optimizer(config))
          for mesh in (one_device_mesh, parallel.make_mesh())]
  (d1, s1, m1), (d8, s8, m8) = runs
  assert abs(float(m8["loss"]) - float(m1["loss"])) < 2e-2
  np.testing.assert_allclose(m8["grad_norm"], m1["grad_norm"], rtol=0.1)
  jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, rtol=2e-2, atol=1e-3),
               s8.batch_stats, s1.batch_stats)
  p1, p8 = fx.flatten(s1.params), fx.flatten(s8.params)
  for key, update in fx.flatten(d1).items():
    before = np.linalg.norm(p1[key] + update)  # d = params before - params after.
    if before > 0:  # LAMB's per-leaf step length lr·||p||, on both meshes.
      for d in (update, fx.flatten(d8)[key]):
        np.testing.assert_allclose(np.linalg.norm(d), 1e-2 * before, rtol=1e-3, err_msg=key)
    np.testing.assert_allclose(p8[key], p1[key], atol=2.5e-2 * max(before, 1.0), err_msg=key)
  a = np.concatenate([x.ravel() for x in jax.tree.leaves(d1)])
  b = np.concatenate([x.ravel() for x in jax.tree.leaves(d8)])
  cosine = a @ b / (np.linalg.norm(a) * np.linalg.norm(b))
  assert cosine > 0.75, cosine
