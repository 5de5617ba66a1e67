"""Interruption is a non-event: SIGTERM saves and exits 0, SIGKILL loses at most one checkpoint
interval, and a resumed run continues the exact host-batch stream (1 and 2 processes).

Each run is a subprocess (tests/two_process_resume_worker.py, the `:smoke` config on one CPU
device per process, 8 steps, checkpoints every 4). The reference is the same command run
straight through (parameters, compared by the exported encoder) and the input stream built
uninterrupted in this process (host batches, compared by content hash).
"""

import collections
import json
import os
import re
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from data_pipelines import pretrain_input
from ssc_jax import checkpoint
from ssc_jax import preemption
from ssc_jax import train
from tests import two_process_resume_worker as worker
from tests.processes import free_port

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORKER = os.path.join(REPO, "tests", "two_process_resume_worker.py")
TOTAL = 8


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
  path = str(tmp_path_factory.mktemp("data"))
  # Generate the tiny dataset once, before two processes could race to build it.
  pretrain_input.plan_pretrain_input(worker.smoke_config(path, TOTAL).data, seed=0)
  return path


def _run(workdir, data_dir, kill_at=0, sig="KILL", processes=1, total=TOTAL):
  """Runs the worker (in `processes` processes); returns their exit codes and stderr."""
  base = [sys.executable, WORKER, str(workdir), data_dir, str(total), str(kill_at), sig]
  env = {**os.environ, "PYTHONPATH": REPO}
  env.pop("JAX_NUM_CPU_DEVICES", None)
  if processes == 1:
    cmds = [base]
  else:
    port = free_port()
    cmds = [base + [str(p), str(port)] for p in range(processes)]
  procs = [subprocess.Popen(c, cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True) for c in cmds]
  outs = [p.communicate(timeout=600) for p in procs]
  return [p.returncode for p in procs], [err for _, err in outs]


def _hashes(workdir, process=0):
  """{step: [hash of every time that step's host batch was read, in order]}."""
  rows = collections.defaultdict(list)
  with open(os.path.join(workdir, f"batch_hashes.{process}.jsonl")) as f:
    for line in f:
      r = json.loads(line)
      rows[r["step"]].append(r["sha256"])
  return rows


def _params(workdir):
  return checkpoint.read_export(os.path.join(workdir, "encoder.msgpack")).variables


def _stream_hashes(data_dir, process, processes):
  """Hashes of the first TOTAL host batches of an uninterrupted stream, built in this process."""
  config = worker.smoke_config(data_dir, TOTAL)
  it = pretrain_input.HostBatchIterator(pretrain_input.make_pretrain_dataset(
      config.data, seed=config.seed, process_index=process, process_count=processes))
  return [pretrain_input.batch_digest(next(it)) for _ in range(TOTAL)]


def _assert_same_stream(workdir, data_dir, processes=1):
  for p in range(processes):
    got, want = _hashes(workdir, p), _stream_hashes(data_dir, p, processes)
    assert len(set(want)) == TOTAL  # The batches do differ from step to step.
    assert sorted(got) == list(range(1, TOTAL + 1))
    for step in got:  # Every read of a step's batch, before or after the fault, is the same.
      assert set(got[step]) == {want[step - 1]}, f"process {p} step {step}"


def _assert_same_params(workdir, reference):
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6),
               _params(workdir), _params(reference))


@pytest.fixture(scope="module")
def reference(tmp_path_factory, data_dir):
  workdir = tmp_path_factory.mktemp("reference")
  codes, errs = _run(workdir, data_dir)
  assert codes == [0], errs[0][-3000:]
  return str(workdir)


def test_sigkill_then_rerun_continues_the_exact_stream(tmp_path, data_dir, reference):
  codes, _ = _run(tmp_path, data_dir, kill_at=6, sig="KILL")
  assert codes == [-signal.SIGKILL]
  assert max(_hashes(tmp_path)) == 6 and not os.path.exists(tmp_path / "encoder.msgpack")
  codes, errs = _run(tmp_path, data_dir)
  assert codes == [0], errs[0][-3000:]
  assert "Resumed from step 4" in errs[0] and "continues its saved stream" in errs[0]
  # Steps 5 and 6 were read twice (lost work ≤ one interval), identically.
  assert [len(_hashes(tmp_path)[s]) for s in range(1, TOTAL + 1)] == [1, 1, 1, 1, 2, 2, 1, 1]
  _assert_same_stream(tmp_path, data_dir)
  _assert_same_params(tmp_path, reference)


def test_sigterm_saves_the_step_reached_exits_0_and_resumes(tmp_path, data_dir, reference):
  codes, errs = _run(tmp_path, data_dir, kill_at=5, sig="TERM")
  assert codes == [0], errs[0][-3000:]
  assert "SIGTERM received" in errs[0] and "Stopped at step 6/8" in errs[0]
  ckpt = checkpoint.Checkpointer(str(tmp_path))
  assert ckpt.all_steps() == [4, 6]
  ckpt.close()
  codes, errs = _run(tmp_path, data_dir)
  assert codes == [0], errs[0][-3000:]
  assert "Resumed from step 6" in errs[0]
  # Nothing trained twice: every step's batch was read exactly once.
  assert all(len(v) == 1 for v in _hashes(tmp_path).values())
  _assert_same_stream(tmp_path, data_dir)
  _assert_same_params(tmp_path, reference)


@pytest.mark.slow
def test_two_processes_each_host_resumes_its_own_stream(tmp_path, data_dir):
  codes, _ = _run(tmp_path, data_dir, kill_at=6, sig="KILL", processes=2)
  assert codes == [-signal.SIGKILL] * 2
  codes, errs = _run(tmp_path, data_dir, processes=2)
  assert codes == [0, 0], errs[0][-3000:] + errs[1][-3000:]
  assert all("Resumed from step 4" in e and "continues its saved stream" in e for e in errs)
  assert _hashes(tmp_path, 0)[1] != _hashes(tmp_path, 1)[1]  # Two different host streams.
  _assert_same_stream(tmp_path, data_dir, processes=2)


def test_two_processes_sigterm_to_one_host_stops_both_at_one_step(tmp_path, data_dir):
  # Process 0 alone gets SIGTERM; the JAX preemption notifier turns it into a sync point that
  # both processes reach at the same step (Checkpointer.reached_preemption). A long budget
  # leaves the notice time to arrive on a loaded machine.
  total = 40
  codes, errs = _run(tmp_path, data_dir, kill_at=5, sig="TERM", processes=2, total=total)
  assert codes == [0, 0], errs[0][-3000:] + errs[1][-3000:]
  stops = [re.findall(rf"Stopped at step (\d+)/{total} on a preemption notice", e)
           for e in errs]
  assert stops[0] == stops[1] and len(stops[0]) == 1, (stops, errs[0][-3000:])
  step = int(stops[0][0])
  assert 6 <= step < total
  ckpt = checkpoint.Checkpointer(str(tmp_path))
  assert ckpt.latest_step() == step
  ckpt.close()


def test_stop_request_sets_a_flag_ignores_repeats_and_restores_handlers():
  before = signal.getsignal(signal.SIGTERM)
  with preemption.StopRequest(listen=True) as stop:
    assert not stop.requested
    os.kill(os.getpid(), signal.SIGTERM)
    assert stop.requested and stop.signal_name == "SIGTERM"
    os.kill(os.getpid(), signal.SIGINT)  # A second signal neither raises nor changes the flag.
    assert stop.signal_name == "SIGTERM"
  assert signal.getsignal(signal.SIGTERM) is before
  with preemption.StopRequest(listen=False) as stop:  # Multi-process runs: no local handlers.
    assert signal.getsignal(signal.SIGTERM) is before


def test_checkpoint_every_minutes():
  # pylint: disable=protected-access
  config = worker.smoke_config("", TOTAL)
  config.train.checkpoint_every_minutes = 1.0
  assert train._minutes_elapsed(config, time.monotonic() - 61)
  assert not train._minutes_elapsed(config, time.monotonic() - 50)
  config.train.checkpoint_every_minutes = 0
  assert not train._minutes_elapsed(config, time.monotonic() - 1e6)


def test_host_batch_iterator_restores_the_exact_continuation(tmp_path, data_dir):
  config = worker.smoke_config(data_dir, TOTAL)

  def stream():
    return pretrain_input.HostBatchIterator(
        pretrain_input.make_pretrain_dataset(config.data, seed=config.seed))

  straight = stream()
  want = [pretrain_input.batch_digest(next(straight)) for _ in range(6)]
  interrupted = stream()
  for _ in range(3):
    next(interrupted)
  interrupted.save(str(tmp_path / "input"))
  resumed = stream()
  resumed.restore(str(tmp_path / "input"))
  assert [pretrain_input.batch_digest(next(resumed)) for _ in range(3)] == want[3:]
  with pytest.raises(Exception):  # No saved state there: refused, not silently fresh.
    stream().restore(str(tmp_path / "nothing"))
