"""bench/accelerator.sh --dry-run: its CPU path runs end to end (tests, then the train step)."""

import os
import re
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.slow
def test_accelerator_script_cpu_dry_run(tmp_path):
  env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
  env.update(PYTHON=sys.executable, OUT_DIR=str(tmp_path), TF_CPP_MIN_LOG_LEVEL="3")
  proc = subprocess.run(["bash", os.path.join(REPO, "bench", "accelerator.sh"), "--dry-run"],
                        env=env, cwd=REPO, capture_output=True, text=True, timeout=900)
  out = proc.stdout + proc.stderr
  assert proc.returncode == 0, out[-4000:]
  assert "platform=cpu" in out and "dry_run=1" in out
  passed = re.search(r"(\d+) passed", out)
  assert passed and int(passed.group(1)) > 0 and " failed" not in out, out[-4000:]
  assert "augmentation: ON in JAX" in out
  # One global batch of 1 item per device on the single CPU device: views/s is measured.
  rates = re.findall(r"train views/s B=1 \(R=2\)\s+([\d.]+)/s", out)
  assert rates and float(rates[0]) > 0, out[-4000:]
  assert (tmp_path / "train_step_float32_augment.txt").is_file()
