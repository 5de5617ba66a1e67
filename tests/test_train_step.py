"""The jitted train step: 8 devices = 1 device = 2 processes, and the step's own semantics."""

import jax
import numpy as np
import pytest

from ssc_jax import parallel
from tests import processes
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


def test_two_processes_equal_one_process(tmp_path, one_device_result):
  """Two local processes (jax.distributed on 127.0.0.1, 2 devices each) do the same step."""
  port, out = processes.free_port(), str(tmp_path / "two_process.npz")
  processes.run_workers("two_process_worker.py", [[str(i), str(port), out] for i in range(2)],
                        timeout=300)
  got = dict(np.load(out))
  grads, state, metrics = one_device_result
  expected = fx.flatten((grads, state.batch_stats, metrics))
  assert got.keys() == expected.keys()
  fx.assert_same_step(_unflatten_like(got, one_device_result), one_device_result)


def _unflatten_like(flat: dict[str, np.ndarray], like):
  """Inverse of fx.flatten for the (gradient, batch_stats, metrics) layout of `like`."""
  grads, state, metrics = like
  treedef = jax.tree.structure((grads, state.batch_stats, metrics))
  keys = list(fx.flatten((grads, state.batch_stats, metrics)))
  g, bs, m = jax.tree.unflatten(treedef, [flat[k] for k in keys])
  return g, state.replace(batch_stats=bs), m
