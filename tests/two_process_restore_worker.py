"""One of two local processes (1 device each) restoring a workdir's model variables.

Usage: python tests/two_process_restore_worker.py PROCESS_ID PORT WORKDIR OUT_DIR
Each process calls `checkpoint.restore_variables(WORKDIR)` (a checkpoint written by one
process on 8 devices) and writes what it got to `OUT_DIR/process_<id>.npz`.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402

jax.config.update("jax_num_cpu_devices", 1)

import numpy as np  # noqa: E402

from ssc_jax import checkpoint  # noqa: E402


def main() -> None:
  process_id, port, workdir, out = sys.argv[1:5]
  jax.distributed.initialize(coordinator_address=f"127.0.0.1:{port}", num_processes=2,
                             process_id=int(process_id), initialization_timeout=60)
  assert jax.process_count() == 2
  step, variables = checkpoint.restore_variables(workdir)
  leaves = jax.tree_util.tree_leaves_with_path(variables)
  np.savez(os.path.join(out, f"process_{process_id}.npz"), step=step,
           **{jax.tree_util.keystr(path): np.asarray(x) for path, x in leaves})
  jax.distributed.shutdown()


if __name__ == "__main__":
  main()
