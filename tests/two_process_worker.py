"""One of two local processes doing one train step, then validation, over a 2×2-device mesh
(jax.distributed).

Usage: python tests/two_process_worker.py PROCESS_ID PORT OUT_NPZ
Process p feeds rows [p·B/2, (p+1)·B/2) of the fixed global batch, then of the two fixed
validation batches (`fixed_batch(0)`, `fixed_batch(1)`) to validate the audio-calibrated tiny
model (`test_inference.calibrated_variables`: at init every embedding is alike); process
0 writes the resulting gradient, batch statistics and metrics, and the validation losses
('val/<name>'), to OUT_NPZ.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402

jax.config.update("jax_num_cpu_devices", 2)

import numpy as np  # noqa: E402

from ssc_jax import models  # noqa: E402
from ssc_jax import parallel  # noqa: E402
from tests import test_inference  # noqa: E402
from tests import train_step_fixture as fx  # noqa: E402


def main() -> None:
  process_id, port, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
  jax.distributed.initialize(coordinator_address=f"127.0.0.1:{port}", num_processes=2,
                             process_id=process_id, initialization_timeout=60)
  mesh = parallel.make_mesh()
  assert jax.device_count() == 4 and jax.process_count() == 2
  batch = fx.fixed_batch()
  half = fx.BATCH // 2

  def share(global_batch):
    return {k: v[process_id * half:(process_id + 1) * half] for k, v in global_batch.items()}
  grads, state, metrics = fx.run_one_step(mesh, share(batch))
  calibrated = test_inference.calibrated_variables(models.build_model(fx.tiny_config().model))
  val = fx.validate(mesh, calibrated, [share(fx.fixed_batch(s)) for s in (0, 1)])
  if process_id == 0:
    np.savez(out, **fx.flatten((grads, state.batch_stats, metrics)),
             **{f"val/{k}": v for k, v in val.items()})
  jax.distributed.shutdown()


if __name__ == "__main__":
  main()
