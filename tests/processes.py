"""Running test workers as separate processes (jax.distributed on 127.0.0.1)."""

import os
import socket
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def free_port() -> int:
  """A TCP port on 127.0.0.1 that was free a moment ago (for the coordinator)."""
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def run_workers(worker: str, args_of_process: list[list[str]], timeout: int = 600) -> None:
  """Runs `python tests/<worker> *args` once per entry of `args_of_process`, concurrently.

  The workers get the environment without XLA_FLAGS (each sets its own device count).

  Raises:
    AssertionError: with the tail of every worker's output if any exits non-zero.
  """
  env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
  env["TF_CPP_MIN_LOG_LEVEL"] = "3"
  path = os.path.join(REPO, "tests", worker)
  procs = [subprocess.Popen([sys.executable, path, *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, cwd=REPO) for args in args_of_process]
  logs = []
  try:
    for p in procs:
      logs.append(p.communicate(timeout=timeout)[0].decode(errors="replace"))
  finally:
    for p in procs:
      p.kill()
  assert all(p.returncode == 0 for p in procs), "\n".join(log[-3000:] for log in logs)
