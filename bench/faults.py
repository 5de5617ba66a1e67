"""Fault injection: kill the `:smoke` pretraining run again and again; it must not notice.

  python bench/faults.py [--out=/tmp/ssc_faults] [--seed=0] [--total_steps=100]
      [--checkpoint_every=5] [--sigkill=10] [--sigterm=5]    # about 15 min on 2 cores

Runs `python -m ssc_jax.main --config=configs/demo.py:smoke` (one CPU device, batch hashes
recorded) once straight through as the reference. Then runs the same command in a second
workdir and interrupts it `--sigkill` times with SIGKILL and `--sigterm` times with SIGTERM, in
a seeded random order, at seeded random moments (each a few steps after the attempt resumed,
so that the run is still going at the last fault):

  compile   the first batch of the attempt was read (the train step is compiling);
  mid-step  the batch of step resumed + 2..5 was read (that step is dispatched or running);
  mid-save  the run logged "Saving step S" for its first or second save (the save is running);
  export    the last step committed (the run is exporting the encoder): the last SIGKILL.

After each fault the command is simply run again (as a user would); a final run completes it.
Checks: the final step equals the reference's; the exported parameters equal the reference's
to float32 tolerance; every host batch read for every step, before or after any fault, has the
reference's content hash for that step (so no batch was skipped or replaced); each SIGTERM run
exited 0 having lost no step; each SIGKILL lost at most one checkpoint interval of steps, plus
the steps run while a save was still committing (a save counts once committed). Work lost =
the last step whose batch the interrupted attempt read minus the newest committed step, where
the next attempt resumes. Prints one row per fault and exits 1 if any check fails.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from ssc_jax import checkpoint  # noqa: E402  pylint: disable=g-import-not-at-top


def _command(workdir: str, data_dir: str, args: argparse.Namespace) -> list[str]:
  return [sys.executable, "-m", "ssc_jax.main", "--config=configs/demo.py:smoke",
          f"--workdir={workdir}", f"--config.data.data_dir={data_dir}",
          f"--config.train.total_steps={args.total_steps}",
          f"--config.train.checkpoint_every_steps={args.checkpoint_every}",
          f"--config.train.log_every_steps={args.checkpoint_every}",
          "--config.train.record_batch_hashes=True", "--config.evaluate.probe=False"]


class Attempt:
  """One run of the command, its stderr collected line by line in a thread."""

  def __init__(self, cmd: list[str], log_path: str):
    env = {**os.environ, "JAX_NUM_CPU_DEVICES": "1", "PYTHONPATH": REPO}
    self.proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                                 stderr=subprocess.PIPE, text=True)
    self.lines: list[str] = []
    self._log = open(log_path, "w")  # pylint: disable=consider-using-with
    self._thread = threading.Thread(target=self._read, daemon=True)
    self._thread.start()

  def _read(self) -> None:
    for line in self.proc.stderr:
      self.lines.append(line)
      self._log.write(line)
    self._log.close()

  def seen(self, pattern: str) -> bool:
    return any(re.search(pattern, line) for line in list(self.lines))

  def wait(self) -> int:
    code = self.proc.wait()
    self._thread.join()
    return code

  def resumed_at(self) -> int:
    for line in self.lines:
      m = re.search(r"Resumed from step (\d+)", line)
      if m:
        return int(m.group(1))
    return 0


def _hash_rows(workdir: str) -> list[tuple[int, str]]:
  path = os.path.join(workdir, "batch_hashes.0.jsonl")
  if not os.path.exists(path):
    return []
  with open(path) as f:
    rows = [json.loads(line) for line in f if line.endswith("\n")]
  return [(r["step"], r["sha256"]) for r in rows]


def _wait_for(cond, proc, timeout=600.0) -> bool:
  """Polls `cond()` until true (True) or the process ended or timed out (False)."""
  deadline = time.monotonic() + timeout
  while time.monotonic() < deadline:
    if cond():
      return True
    if proc.poll() is not None:
      return False
    time.sleep(0.02)
  return False


def _trigger(moment: str, attempt: Attempt, workdir: str, rng: random.Random,
             args: argparse.Namespace, start_rows: int, resumed_at: int):
  """Waits for `moment` in `attempt`; returns a description, or None if the run got past it."""
  def rows_after():
    return _hash_rows(workdir)[start_rows:]

  if moment == "compile":
    ok = _wait_for(lambda: len(rows_after()) >= 1, attempt.proc)
    time.sleep(rng.uniform(0.0, 1.0))
    return f"after reading step {resumed_at + 1}" if ok else None
  if moment == "mid-step":
    target = min(resumed_at + rng.randint(2, 5), args.total_steps - 1)
    ok = _wait_for(lambda: any(s == target for s, _ in rows_after()), attempt.proc)
    time.sleep(rng.uniform(0.0, 0.3))
    return f"step {target}" if ok else None
  if moment == "mid-save":  # The first or second save of the attempt.
    every = args.checkpoint_every
    target = (resumed_at // every + rng.randint(1, 2)) * every
    if target >= args.total_steps:
      return None
    ok = _wait_for(lambda: attempt.seen(rf"Saving step {target}\.$"), attempt.proc)
    time.sleep(rng.uniform(0.0, 0.05))
    return f"save of step {target}" if ok else None
  if moment == "export":
    final = os.path.join(workdir, "checkpoints", str(args.total_steps))
    ok = _wait_for(lambda: os.path.isdir(final), attempt.proc)
    return "after the last commit" if ok else None
  raise ValueError(moment)


def main() -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--out", default=os.path.join(tempfile.gettempdir(), "ssc_faults"))
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--total_steps", type=int, default=100)
  parser.add_argument("--checkpoint_every", type=int, default=5)
  parser.add_argument("--sigkill", type=int, default=10)
  parser.add_argument("--sigterm", type=int, default=5)
  args = parser.parse_args()
  rng = random.Random(args.seed)
  shutil.rmtree(args.out, ignore_errors=True)
  data_dir, ref_dir, run_dir, logs = (os.path.join(args.out, d)
                                      for d in ("data", "reference", "faulted", "logs"))
  os.makedirs(logs)
  t0 = time.monotonic()

  ref = Attempt(_command(ref_dir, data_dir, args), os.path.join(logs, "reference.log"))
  if ref.wait() != 0:
    print(f"reference run failed; see {logs}/reference.log")
    return 1
  reference = dict(_hash_rows(ref_dir))
  print(f"reference: {len(reference)} steps in {time.monotonic() - t0:.0f} s")

  # Each attempt advances a few steps at most, so that the run is still going at the last fault;
  # the export moment (after the last commit) can only be the last fault.
  faults = [("SIGKILL", rng.choice(["compile", "mid-step", "mid-save"]))
            for _ in range(args.sigkill - 1)]
  faults += [("SIGTERM", rng.choice(["compile", "mid-step", "mid-save"]))
             for _ in range(args.sigterm)]
  rng.shuffle(faults)
  faults.append(("SIGKILL", "export"))
  rows, failures, attempt_no = [], [], 0
  for fault, moment in faults:
    done_rows = len(_hash_rows(run_dir))
    attempt_no += 1
    attempt = Attempt(_command(run_dir, data_dir, args),
                      os.path.join(logs, f"attempt{attempt_no:02d}.log"))
    # Where the attempt resumed: the step before the first batch it reads (read before the
    # train step compiles).
    _wait_for(lambda: len(_hash_rows(run_dir)) > done_rows, attempt.proc)
    first = _hash_rows(run_dir)[done_rows:done_rows + 1]
    resumed_at = first[0][0] - 1 if first else attempt.resumed_at()
    where = _trigger(moment, attempt, run_dir, rng, args, done_rows, resumed_at)
    if where is None or attempt.proc.poll() is not None:
      attempt.proc.kill()
      attempt.wait()
      rows.append((fault, moment, "not reached", resumed_at, "-", "-", "-"))
      continue
    attempt.proc.send_signal(signal.SIGKILL if fault == "SIGKILL" else signal.SIGTERM)
    code = attempt.wait()
    read = [s for s, _ in _hash_rows(run_dir)[done_rows:]]
    last_read = max(read, default=resumed_at)
    latest = checkpoint.Checkpointer(run_dir).latest_step() or 0
    lost = last_read - latest
    started = [int(m) for m in re.findall(r"Saving step (\d+)\.$", "".join(attempt.lines),
                                          re.M) if int(m) > latest]
    committing = last_read - min(started) if started else 0  # Steps run while it committed.
    bound = 0 if fault == "SIGTERM" else args.checkpoint_every + committing
    ok_exit = code == 0 if fault == "SIGTERM" else code == -signal.SIGKILL
    rows.append((fault, moment, where, resumed_at, latest, lost, f"exit {code}"))
    if lost > bound or not ok_exit:
      failures.append(f"{fault} at {moment} ({where}): lost {lost} step(s) (bound {bound}), "
                      f"exit code {code}")

  final = Attempt(_command(run_dir, data_dir, args), os.path.join(logs, "final.log"))
  if final.wait() != 0:
    failures.append(f"the final run failed; see {logs}/final.log")

  # ------------------------------------------------------------------------- comparison ---
  seen = collections.defaultdict(set)
  for step, digest in _hash_rows(run_dir):
    seen[step].add(digest)
  batches_equal = sorted(seen) == sorted(reference) and all(
      seen[s] == {reference[s]} for s in reference)
  if not batches_equal:
    bad = [s for s in reference if seen.get(s) != {reference[s]}]
    failures.append(f"host batches differ from the reference at steps {bad[:10]}")
  final_step = checkpoint.Checkpointer(run_dir).latest_step()
  if final_step != args.total_steps:
    failures.append(f"final step {final_step} != {args.total_steps}")
  params_equal = False
  try:
    got = checkpoint.read_export(os.path.join(run_dir, "encoder.msgpack")).variables
    want = checkpoint.read_export(os.path.join(ref_dir, "encoder.msgpack")).variables
    diffs = [float(np.max(np.abs(a - b))) for a, b in
             zip(_leaves(got), _leaves(want))]
    params_equal = all(np.allclose(a, b, rtol=1e-5, atol=1e-6) for a, b in
                       zip(_leaves(got), _leaves(want)))
    print(f"largest parameter difference to the reference: {max(diffs):.3g}")
  except (OSError, ValueError) as e:
    failures.append(f"cannot compare exports: {e}")
  if not params_equal:
    failures.append("final parameters differ from the reference")

  print()
  print("| # | fault | moment | where | resumed at step | checkpoint after | work lost (steps) "
        "| exit | equal to reference |")
  print("|---|---|---|---|---|---|---|---|---|")
  equal = "yes" if batches_equal and params_equal and final_step == args.total_steps else "no"
  for i, (fault, moment, where, resumed, latest, lost, code) in enumerate(rows, 1):
    print(f"| {i} | {fault} | {moment} | {where} | {resumed} | {latest} | {lost} | {code} | "
          f"{equal} |")
  print()
  print(f"final step {final_step}/{args.total_steps}; batches equal: {batches_equal}; "
        f"parameters equal: {params_equal}; {time.monotonic() - t0:.0f} s in all.")
  for f in failures:
    print("FAIL:", f)
  print("every injected fault survived" if not failures else f"{len(failures)} failure(s)")
  return 1 if failures else 0


def _leaves(tree) -> list[np.ndarray]:
  if isinstance(tree, dict):
    return [leaf for k in sorted(tree) for leaf in _leaves(tree[k])]
  return [np.asarray(tree)]


if __name__ == "__main__":
  sys.exit(main())
