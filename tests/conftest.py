"""Test set-up: 8 simulated CPU devices for every test, before anything starts JAX.

Compiled programs are cached on disk for the session (tests compile the same train step on the
same mesh several times, and compiling dominates their run time on 2 cores).
"""

import os
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", tempfile.mkdtemp(prefix="ssc_jax_test_xla_"))

import jax  # noqa: E402

jax.config.update("jax_num_cpu_devices", 8)
jax.config.update("jax_compilation_cache_dir", os.environ["JAX_COMPILATION_CACHE_DIR"])
jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)
