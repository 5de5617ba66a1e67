"""Test set-up: 8 simulated CPU devices for every test, before anything starts JAX.

Compiled programs are cached on disk for the session (tests compile the same train step on the
same mesh several times, and compiling dominates their run time on 2 cores).
"""

import os
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", tempfile.mkdtemp(prefix="ssc_jax_test_xla_"))

import jax  # noqa: E402
import pytest  # noqa: E402

jax.config.update("jax_num_cpu_devices", 8)
jax.config.update("jax_compilation_cache_dir", os.environ["JAX_COMPILATION_CACHE_DIR"])
jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)


@pytest.fixture(scope="session")
def small_encoder():
  """A width-0.125 SampleCNN model with audio-calibrated variables, built once per session.

  Shared by the evaluation tests (each exports it where it needs it); calibrating costs a few
  seconds per build. Treat the arrays as read-only.

  Returns:
    (model config, model, variables): `config.model`, the unbound SemiSupConModel and
    host NumPy `{'params', 'batch_stats'}` from `test_inference.calibrated_variables`.
  """
  # pylint: disable=g-import-not-at-top,import-outside-toplevel
  from configs import common
  from ssc_jax import models
  from tests import test_inference
  config = common.base_config()
  config.model.width = 0.125
  model = models.build_model(config.model)
  return config.model, model, test_inference.calibrated_variables(model)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
  """Runs the `slow` tests first, so that the 2 workers of `pytest -n 2` share them instead of
  one worker finishing the longest ones alone at the end."""
  items.sort(key=lambda item: item.get_closest_marker("slow") is None)
