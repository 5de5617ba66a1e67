"""The jitted train step: 8 devices = 1 device = 2 processes, and the step's own semantics."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from ssc_jax import augment
from ssc_jax import models
from ssc_jax import parallel
from ssc_jax import train
from tests import processes
from tests import test_losses
from tests import test_losses_similarity
from tests import train_step_fixture as fx


@pytest.fixture(scope="module")
def one_device_result():
  return fx.run_one_step(parallel.make_mesh(jax.devices()[:1]), fx.fixed_batch())


def test_eight_devices_equal_one_device(one_device_result):
  """Global BatchNorm, global negatives and unscaled gradients: the ×N trap would show here."""
  assert jax.device_count() == 8
  fx.assert_same_step(fx.run_one_step(parallel.make_mesh(), fx.fixed_batch()),
                      one_device_result)


def test_step_changes_params_and_counts(one_device_result):
  _, state, metrics = one_device_result
  assert int(state.step) == 1
  assert np.isfinite(metrics["loss"]) and metrics["grad_norm"] > 0
  assert 0 < metrics["sparsity_semisl"] <= 1 and 0 <= metrics["sparsity_sl"] <= 1
  # Views of the same item are positives for every row: the semisl target has at least
  # R·N ones (diagonal blocks) out of R².
  rows = fx.BATCH * fx.VIEWS
  assert metrics["sparsity_semisl"] >= rows * fx.VIEWS / rows**2 - 1e-7


@pytest.mark.slow
def test_two_processes_equal_one_process(tmp_path, one_device_result, small_encoder):
  """Two local processes (jax.distributed on 127.0.0.1, 2 devices each) do the same step, and
  validate the audio-calibrated model (conftest) like one device, each host feeding its share
  of the batches."""
  port, out = processes.free_port(), str(tmp_path / "two_process.npz")
  processes.run_workers("two_process_worker.py", [[str(i), str(port), out] for i in range(2)],
                        timeout=300)
  got = dict(np.load(out))
  val = {k.removeprefix("val/"): float(got.pop(k)) for k in list(got) if k.startswith("val/")}
  grads, state, metrics = one_device_result
  expected = fx.flatten((grads, state.batch_stats, metrics))
  assert got.keys() == expected.keys()
  fx.assert_same_step(_unflatten_like(got, one_device_result), one_device_result)
  model_config, _, calibrated = small_encoder
  assert model_config.to_dict() == fx.tiny_config().model.to_dict()
  expected_val = fx.validate(parallel.make_mesh(jax.devices()[:1]), calibrated,
                             [fx.fixed_batch(0), fx.fixed_batch(1)])
  assert val.keys() == expected_val.keys() == {"val_loss", "val_ssl_loss", "val_sl_loss"}
  for k, v in expected_val.items():
    np.testing.assert_allclose(val[k], v, rtol=2e-5, err_msg=k)


def _unflatten_like(flat: dict[str, np.ndarray], like):
  """Inverse of fx.flatten for the (gradient, batch_stats, metrics) layout of `like`."""
  grads, state, metrics = like
  treedef = jax.tree.structure((grads, state.batch_stats, metrics))
  keys = list(fx.flatten((grads, state.batch_stats, metrics)))
  g, bs, m = jax.tree.unflatten(treedef, [flat[k] for k in keys])
  return g, state.replace(batch_stats=bs), m


def test_step_loss_is_the_float64_reference_loss_of_its_own_embeddings():
  """Two steps with a random augmentation chain: each step's loss equals the float64
  reference loss (tests/test_losses.py) of the embeddings of its batch augmented with
  fold_in(rng, step), rows item-major (views of an item adjacent, labels repeated per view).
  A tiled label layout or another step's key gives a different loss."""
  config = fx.tiny_config()
  config.augment.severity = 2
  config.augment.chain = ("gain", "polarity_inversion", "colored_noise")
  mesh = parallel.make_mesh(jax.devices()[:1])
  model = models.build_model(config.model)
  tx = optax.sgd(1.0)
  init_rng, aug_rng = jax.random.split(jax.random.key(config.seed))
  augment_fn = augment.make_augment_fn(config.augment, config.data.sample_rate)
  state = train.create_train_state(config, model, tx, mesh, init_rng)
  step_fn = train.make_train_step(config, model, tx, augment_fn, mesh)
  host = fx.fixed_batch()
  rows = fx.BATCH * fx.VIEWS
  item_ids = np.arange(rows) // fx.VIEWS
  repeated = np.repeat(host["labels"], fx.VIEWS, axis=0)

  def reference(variables, key, labels=repeated):
    views = augment_fn(key, jnp.asarray(host["audio"])).reshape(rows, fx.LENGTH)
    (_, z), _ = model.apply(variables, views, train=True, mutable=["batch_stats"])
    return test_losses.ref_semisup_loss(np.asarray(z, np.float64), item_ids, labels,
                                        config.loss.temperature, config.loss.pos_threshold,
                                        parity=False)

  for step in range(2):
    variables = jax.device_get(state.variables)  # The step donates the state.
    state, metrics = step_fn(state, parallel.host_batch_to_global(host, mesh), aug_rng)
    loss = float(metrics["loss"])
    np.testing.assert_allclose(loss, reference(variables, jax.random.fold_in(aug_rng, step)),
                               rtol=1e-4)
    assert abs(reference(variables, jax.random.fold_in(aug_rng, 1 - step)) - loss) > 1e-3
  tiled = np.tile(host["labels"], (fx.VIEWS, 1))
  assert abs(reference(variables, jax.random.fold_in(aug_rng, 1), tiled) - loss) > 1e-3


def test_step_with_a_label_similarity_pairs_only_labeled_rows():
  """loss.similarity='regression' on the fixed batch: the step's loss is the float64 reference
  loss of its embeddings with the Gaussian-kernel target on labeled pairs. The unlabeled rows'
  all-zero targets would pair up with each other if the step did not pass its labeled rows."""
  config = fx.tiny_config()
  config.loss.similarity = "regression"
  config.loss.regression_sigma = 1.5
  mesh = parallel.make_mesh(jax.devices()[:1])
  model = models.build_model(config.model)
  tx = optax.sgd(1.0)
  init_rng, aug_rng = jax.random.split(jax.random.key(config.seed))
  state = train.create_train_state(config, model, tx, mesh, init_rng)
  variables = jax.device_get(state.variables)
  step_fn = train.make_train_step(config, model, tx, lambda key, x: x, mesh)
  host = fx.fixed_batch()
  _, metrics = step_fn(state, parallel.host_batch_to_global(host, mesh), aug_rng)
  rows = fx.BATCH * fx.VIEWS
  (_, z), _ = model.apply(variables, jnp.asarray(host["audio"]).reshape(rows, fx.LENGTH),
                          train=True, mutable=["batch_stats"])
  item_ids = np.arange(rows) // fx.VIEWS
  labels = np.repeat(host["labels"], fx.VIEWS, axis=0)

  def reference(labeled):
    kernel = lambda a, b: np.exp(-np.sum((a - b) ** 2) / (2 * 1.5**2))
    target = test_losses_similarity.ref_target(item_ids, labels, labeled, kernel)
    return test_losses.ref_loss(np.asarray(z, np.float64), target, config.loss.temperature,
                                parity=False)

  loss = float(metrics["loss"])
  np.testing.assert_allclose(loss, reference(np.repeat(host["labeled"], fx.VIEWS)), rtol=1e-4)
  assert abs(reference(np.ones(rows, bool)) - loss) > 1e-3
