"""How long the trainer waits after training before it can go on, with and without tf.data's
autotuner, same run.

When `train.train_and_evaluate` returns, its tf.data input iterator is deleted. With tf.data's
autotuner on, deleting it waits for the autotuner's thread, which sleeps in a timed wait that
deletion does not cut short (TensorFlow 2.21; its period grows towards a minute). The project
therefore turns the autotuner off in every dataset it iterates (`datasets.without_autotune`).

Each trial runs the demo's training (`configs/demo.py`, `--steps` steps, probes off) as a new
process and measures the time from the log line "Exported encoder" (the last thing training
does) to the process's exit, which is the iterator's deletion plus interpreter shutdown.
Trials alternate between the project as it is ("off") and the anchor ("on"), the same code
with `datasets.without_autotune` replaced by the identity before anything runs, so that load
from other processes hits both alike. Reported: every trial's wait, and per mode the median
and the largest.

Usage (from the repo root; the demo's dataset is prepared on first use):
  .venv/bin/python bench/teardown.py                    # 3 + 3 trials of 120 steps, ~9 min
  .venv/bin/python bench/teardown.py --trials 1 --steps 40   # quick look
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Starts the trainer; for the anchor, first puts tf.data's default (autotuner on) back.
LAUNCH = """
import sys
from data_pipelines import datasets
if sys.argv.pop(1) == "on":
  datasets.without_autotune = lambda ds: ds
from ssc_jax import main
main.run()
"""
EXPORTED = re.compile(r"Exported encoder")


def trial(autotune: str, steps: int, data_dir: str) -> float:
  """Runs one training; returns seconds from the export's log line to the process's exit."""
  with tempfile.TemporaryDirectory() as workdir:
    cmd = [sys.executable, "-c", LAUNCH, autotune, "--config=configs/demo.py",
           f"--workdir={workdir}/run", f"--config.train.total_steps={steps}",
           "--config.evaluate.probe=False", f"--config.data.data_dir={data_dir}"]
    proc = subprocess.Popen(cmd, cwd=REPO_ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "PYTHONPATH": REPO_ROOT})
    exported = None
    lines = []
    for line in proc.stdout:
      lines.append(line)
      if exported is None and EXPORTED.search(line):
        exported = time.perf_counter()
    proc.wait()
    if proc.returncode or exported is None:
      raise RuntimeError(f"training failed (exit {proc.returncode}):\n{''.join(lines[-30:])}")
    return time.perf_counter() - exported


def main() -> None:
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--trials", type=int, default=3, help="trials per mode")
  p.add_argument("--steps", type=int, default=120, help="training steps per trial")
  p.add_argument("--data-dir", default=os.path.join(tempfile.gettempdir(), "ssc_bench_teardown"),
                 help="TFDS data dir for the demo's dataset (prepared on first use)")
  args = p.parse_args()
  waits = {"off": [], "on": []}
  for i in range(args.trials):
    for mode in ("off", "on"):
      waits[mode].append(trial(mode, args.steps, args.data_dir))
      print(f"trial {i + 1} autotune {mode}: {waits[mode][-1]:.1f} s from export to exit",
            flush=True)
  for mode, label in (("off", "project (autotuner off)"), ("on", "anchor (autotuner on)")):
    w = waits[mode]
    print(f"{label}: median {statistics.median(w):.1f} s, largest {max(w):.1f} s over "
          f"{len(w)} trials of {args.steps} steps")


if __name__ == "__main__":
  main()
