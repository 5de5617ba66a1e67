"""configs/pod.py: passes the checks for a 64-chip pod and trains at a tiny width on 8 devices."""

import math

import jax
import numpy as np
import pytest

from configs import demo
from configs import mtat
from configs import pod
from ssc_jax import config_checks
from ssc_jax import models
from ssc_jax import parallel
from ssc_jax import train
from tests import train_step_fixture as fx


@pytest.mark.parametrize("arg", ["", "lars"])
def test_pod_preset_passes_the_checks_for_64_chips(arg):
  c = pod.get_config(arg)
  for processes in (16, 8):  # v5e-64 (4 chips per host), 8 hosts of 8 GPUs.
    config_checks.check_pretrain_config(c, device_count=64, process_count=processes)
  assert (c.data.batch_size, c.data.num_views, c.model.dtype) == (4096, 2, "bfloat16")
  assert c.optimizer.name == (arg or "lamb") and c.optimizer.schedule == "warmup_cosine"
  assert c.loss.chunk_size > 0
  with pytest.raises(config_checks.ConfigError, match="multiple of the device count"):
    config_checks.check_pretrain_config(c, device_count=48, process_count=12)


def test_pod_preset_runs_two_steps_at_tiny_width_on_8_devices():
  c = pod.get_config()
  c.model.width = 0.125
  c.data.batch_size, c.data.view_length = fx.BATCH, fx.LENGTH
  c.loss.chunk_size = 8  # 16 rows: two column blocks.
  c.train.total_steps, c.optimizer.warmup_steps = 2, 1
  mesh = parallel.make_mesh()
  config_checks.check_pretrain_config(c, device_count=8, process_count=1)
  model = models.build_model(c.model)
  tx = train.make_optimizer(c)
  init_rng, aug_rng = jax.random.split(jax.random.key(0))
  state = train.create_train_state(c, model, tx, mesh, init_rng)
  step = train.make_train_step(c, model, tx, lambda key, x: x, mesh)
  batch = parallel.host_batch_to_global(fx.fixed_batch(), mesh)
  params0 = jax.device_get(state.params)
  state, m0 = step(state, batch, aug_rng)
  params1 = jax.device_get(state.params)
  state, m1 = step(state, batch, aug_rng)
  params2 = jax.device_get(state.params)
  peak = 1e-3 * math.sqrt(fx.BATCH * 2 / 256)  # LAMB's 1e-3 at 256 views, √-scaled.
  # Warm-up starts at 0: the first update changes nothing; the second uses the peak.
  np.testing.assert_allclose([float(m0["learning_rate"]), float(m1["learning_rate"])],
                             [0.0, peak], rtol=1e-6)
  jax.tree.map(np.testing.assert_array_equal, params1, params0)
  moved = jax.tree.map(lambda a, b: np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-12),
                       params2, params1)
  assert all(0 < r <= 1.01 * peak or np.linalg.norm(b) == 0
             for r, b in zip(jax.tree.leaves(moved), jax.tree.leaves(params1)))
  assert np.isfinite(float(m0["loss"])) and np.isfinite(float(m1["loss"]))
  assert int(state.step) == 2


def test_cpu_only_warning_names_the_batch_and_the_install_section():
  message = config_checks.cpu_only_warning(pod.get_config(), "cpu")
  assert "8192 views" in message and "bfloat16" in message and "GPU and TPU" in message
  assert config_checks.cpu_only_warning(pod.get_config(), "tpu") is None
  assert config_checks.cpu_only_warning(pod.get_config(), "gpu") is None
  # The paper's batch (192 views, float32) and the demo are one device's worth.
  assert config_checks.cpu_only_warning(mtat.get_config(), "cpu") is None
  assert config_checks.cpu_only_warning(demo.get_config(), "cpu") is None
