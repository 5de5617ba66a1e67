"""Runs the `:smoke` pretraining config in its own process; may signal itself at a chosen step.

Usage: python tests/two_process_resume_worker.py WORKDIR DATA_DIR TOTAL_STEPS KILL_AT SIGNAL
           [PROCESS_ID PORT]

One CPU device per process. With PROCESS_ID and PORT it is one of two local processes
(jax.distributed on 127.0.0.1, as tests/two_process_worker.py), each streaming its own host
batches. Every run records its host-batch hashes (`train.record_batch_hashes`) and saves every
4 steps. KILL_AT > 0: when the input is asked for the batch of step KILL_AT + 1 (step KILL_AT
has been dispatched), the process sends itself SIGNAL ("KILL" or "TERM"; with two processes
SIGTERM goes to process 0 only, as a preemption notice to one host); 0 runs to the end.
"""

import os
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import logging  # noqa: E402
import jax  # noqa: E402

from configs import demo  # noqa: E402
from data_pipelines import pretrain_input  # noqa: E402
from ssc_jax import train  # noqa: E402

CHECKPOINT_EVERY = 4


def smoke_config(data_dir: str, total_steps: int):
  c = demo.get_config("smoke")
  c.data.data_dir = data_dir
  c.train.total_steps = total_steps
  c.train.checkpoint_every_steps = CHECKPOINT_EVERY
  c.train.log_every_steps = CHECKPOINT_EVERY
  c.train.record_batch_hashes = True
  c.evaluate.probe = False
  return c


def _signal_at(workdir: str, kill_at: int, signum: int) -> None:
  """Makes the host input send `signum` to this process before yielding batch kill_at + 1,
  once the last checkpoint before it has committed (so the test knows where it resumes)."""
  original = pretrain_input.HostBatchIterator.__next__
  seen = {"n": 0}
  committed = os.path.join(workdir, "checkpoints", str(kill_at // CHECKPOINT_EVERY *
                                                      CHECKPOINT_EVERY))

  def patched(self):
    seen["n"] += 1
    if seen["n"] == kill_at + 1:
      deadline = time.monotonic() + 120
      while kill_at >= CHECKPOINT_EVERY and not os.path.isdir(committed):
        assert time.monotonic() < deadline, f"{committed} never committed"
        time.sleep(0.05)
      os.kill(os.getpid(), signum)
    return original(self)

  pretrain_input.HostBatchIterator.__next__ = patched


def main() -> None:
  # Here, not at import: tests/test_preemption.py imports this module into the test process,
  # whose 8 simulated devices must stay.
  jax.config.update("jax_num_cpu_devices", 1)
  logging.use_absl_handler()
  logging.set_verbosity(logging.INFO)
  workdir, data_dir = sys.argv[1], sys.argv[2]
  total, kill_at, sig = int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
  if len(sys.argv) > 6:
    process_id, port = int(sys.argv[6]), int(sys.argv[7])
    jax.distributed.initialize(coordinator_address=f"127.0.0.1:{port}", num_processes=2,
                               process_id=process_id, initialization_timeout=60)
  if kill_at and (sig != "TERM" or jax.process_index() == 0):  # One host gets a SIGTERM.
    _signal_at(workdir, kill_at, {"KILL": signal.SIGKILL, "TERM": signal.SIGTERM}[sig])
  train.train_and_evaluate(smoke_config(data_dir, total), workdir)
  if jax.process_count() > 1:
    jax.distributed.shutdown()


if __name__ == "__main__":
  main()
