"""Benchmark: the jitted on-device augmentation chain vs the original's per-item CPU chain.

Measures, in one run and interleaved round by round (the machine may be shared):
  * ours: `augment.make_augment_fn` at severity 2 (the spec's 6-transform chain) on
    [B, 2, 59535] float32 batches of 2.7 s views, jitted, on this CPU;
  * the peer: torch-audiomentations' Compose with the same transforms, parameters and
    probabilities (plus the original's custom Delay, written here from the spec), one item
    ([2, 1, T]) per call as the original's data-loader workers do, torch on one thread,
    in a separate process started from a throwaway venv;
  * optionally the cost of one jitted SampleCNN forward+backward (what the chain shares a
    train step with).
Both sides are timed with CPU time (process_time: all threads of the process), so
views per CPU-second is the per-core throughput, robust to other jobs on the machine; wall
times are printed as well. The result line gives the per-core speed-up.

Peer set-up (throwaway venv, nothing installed into the project's):
  python3 -m venv /tmp/ssc_bench_aug
  /tmp/ssc_bench_aug/bin/pip install torch==2.13.0 torch-audiomentations numpy
  # The PyPI torchaudio wheel pulled in is a CUDA build whose extension cannot load on a
  # CPU-only torch; the pure-PyTorch parts used here (resample, phase vocoder) need none:
  mkdir -p /tmp/ssc_bench_aug/disabled
  mv /tmp/ssc_bench_aug/lib/python3*/site-packages/torchaudio/lib/*.so /tmp/ssc_bench_aug/disabled/

Run:
  .venv/bin/python bench/augment.py [--batch=16] [--rounds=5] [--peer_items=16]
      [--peer_python=/tmp/ssc_bench_aug/bin/python] [--model] [--breakdown]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import textwrap
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from configs import augment as augment_defaults  # noqa: E402
from data_pipelines import conventions  # noqa: E402
from ssc_jax import augment  # noqa: E402

SR = conventions.SAMPLE_RATE
T = conventions.VIEW_LENGTH  # 2.7 s.
VIEWS = 2

# The peer: the spec's chain at severity_modifier 2 (s = 1), one item per call.
PEER_SCRIPT = textwrap.dedent("""
    import json, random, sys, time
    import torch, torch_audiomentations as ta
    torch.set_num_threads(1)
    SR, T, s = %(sr)d, %(t)d, 1.0

    class Delay(torch.nn.Module):  # The original's custom echo, written from the spec.
      def __init__(self, p):
        super().__init__()
        self.p = p
      def forward(self, x):
        out = x.clone()
        for i in range(x.shape[0]):
          if random.random() >= self.p:
            continue
          d = random.randint(int(100 / s * SR / 1000), int(500 * SR / 1000))
          v = random.choice([0.5 * s - 0.2, 0.5 * s + 0.2])
          r = random.choice([int(2 * s) - 1, int(2 * s) + 1])
          a = random.choice([min(1, 0.5 * s) - 0.2, min(1, 0.5 * s) + 0.2])
          echo = torch.zeros_like(x[i])
          for k in range(r):
            if k * d < T:
              echo[..., k * d:] += a ** k * x[i, ..., :T - k * d]
          out[i] = (x[i] + v * echo) / 2
        return out

    kw = dict(sample_rate=SR, output_type="tensor")
    chain = ta.Compose([
        ta.Gain(min_gain_in_db=-15 * s, max_gain_in_db=5 * s, p=min(0.7, 0.4 * s), **kw),
        ta.PolarityInversion(p=min(0.8, 0.6 * s), **kw),
        ta.AddColoredNoise(min_snr_in_db=3 / s, max_snr_in_db=30 / s, min_f_decay=-2 * s,
                           max_f_decay=2 * s, p=min(0.8, 0.6 * s), **kw),
        ta.OneOf([
            ta.BandPassFilter(min_bandwidth_fraction=0.5 * s, p=min(0.6, 0.3 * s), **kw),
            ta.BandStopFilter(min_bandwidth_fraction=0.5 * s, p=min(0.6, 0.3 * s), **kw),
            ta.HighPassFilter(min_cutoff_freq=200 * s, max_cutoff_freq=min(SR / 2, 2400 * s),
                              p=min(0.6, 0.3 * s), **kw),
            ta.LowPassFilter(min_cutoff_freq=max(75, 150 / s), max_cutoff_freq=7500 / max(1, s),
                             p=min(0.6, 0.3 * s), **kw)], output_type="tensor"),
        ta.PitchShift(min_transpose_semitones=-4 * s, max_transpose_semitones=4 * s,
                      p=min(0.75, 0.6 * s), **kw),
    ], p=1.0, output_type="tensor")
    delay = Delay(min(0.6, 0.6 * s))

    def item(x):  # Compose gate per item (p = min(1, 0.8 s)), delay last as in the original.
      if random.random() < min(1.0, 0.8 * s):
        return delay(chain(x, sample_rate=SR))
      return x

    random.seed(0); torch.manual_seed(0)
    x = torch.randn(%(views)d, 1, T) * 0.1
    for _ in range(3):
      item(x)
    print("ready", flush=True)
    for line in sys.stdin:
      n = int(line)
      c0, w0 = time.process_time(), time.perf_counter()
      for _ in range(n):
        item(x)
      c1, w1 = time.process_time(), time.perf_counter()
      print(json.dumps({"views": n * %(views)d, "cpu": c1 - c0, "wall": w1 - w0}), flush=True)
""")


class Peer:
  """The peer chain in a child process; `run(n)` times n items there."""

  def __init__(self, python: str):
    script = PEER_SCRIPT % {"sr": SR, "t": T, "views": VIEWS}
    self.proc = subprocess.Popen([python, "-W", "ignore", "-c", script], stdin=subprocess.PIPE,
                                 stdout=subprocess.PIPE, text=True)
    line = self.proc.stdout.readline()
    if line.strip() != "ready":
      raise RuntimeError(f"peer failed to start (got {line!r}); see the set-up in the docstring")

  def run(self, items: int) -> dict:
    self.proc.stdin.write(f"{items}\n")
    self.proc.stdin.flush()
    return json.loads(self.proc.stdout.readline())

  def close(self):
    self.proc.stdin.close()
    self.proc.wait(timeout=60)


def _augment_runner(batch: int, cfg):
  fn = jax.jit(augment.make_augment_fn(cfg, SR))
  x = jnp.asarray(np.random.default_rng(0).normal(size=(batch, VIEWS, T)).astype(np.float32)
                  * 0.1)
  jax.block_until_ready(fn(jax.random.key(0), x))  # Compile.
  calls = [0]

  def run(repeats: int) -> dict:
    c0, w0 = time.process_time(), time.perf_counter()
    for _ in range(repeats):
      calls[0] += 1
      out = fn(jax.random.key(calls[0]), x)
    jax.block_until_ready(out)
    return {"views": repeats * batch * VIEWS, "cpu": time.process_time() - c0,
            "wall": time.perf_counter() - w0}
  return run


def _model_runner(views: int):
  """CPU seconds per view of a jitted SampleCNN (+ head) forward+backward."""
  from configs import common
  from ssc_jax import models
  cfg = common.base_config().model
  model = models.build_model(cfg)
  variables = models.init_variables(model, jax.random.key(0), num_samples=T)
  x = jnp.asarray(np.random.default_rng(1).normal(size=(views, T)).astype(np.float32) * 0.1)

  @jax.jit
  def step(params, batch_stats, audio):
    def loss(p):
      (_, z), updates = model.apply({"params": p, "batch_stats": batch_stats}, audio,
                                    train=True, mutable=["batch_stats"])
      return jnp.mean(jnp.square(z)), updates
    return jax.grad(loss, has_aux=True)(params)

  jax.block_until_ready(step(variables["params"], variables["batch_stats"], x))

  def run(repeats: int) -> dict:
    c0, w0 = time.process_time(), time.perf_counter()
    for _ in range(repeats):
      out = step(variables["params"], variables["batch_stats"], x)
    jax.block_until_ready(out)
    return {"views": repeats * views, "cpu": time.process_time() - c0,
            "wall": time.perf_counter() - w0}
  return run


def _best(samples: list[dict]) -> dict:
  """The least-disturbed round: lowest CPU seconds per view."""
  per = [(s["cpu"] / s["views"], s["wall"] / s["views"]) for s in samples]
  cpu, wall = min(per)
  return {"cpu_ms_per_view": 1e3 * cpu, "wall_ms_per_view": 1e3 * wall,
          "views_per_cpu_s": 1.0 / cpu, "median_cpu_ms_per_view":
          1e3 * float(np.median([p[0] for p in per]))}


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--batch", type=int, default=16, help="Items per call (x2 views).")
  parser.add_argument("--rounds", type=int, default=5)
  parser.add_argument("--repeats", type=int, default=4, help="Our calls per round.")
  parser.add_argument("--peer_items", type=int, default=16, help="Peer items per round.")
  parser.add_argument("--peer_python", default="/tmp/ssc_bench_aug/bin/python")
  parser.add_argument("--model", action="store_true", help="Also time SampleCNN fwd+bwd.")
  parser.add_argument("--breakdown", action="store_true", help="Time each transform alone.")
  parser.add_argument("--json", default="", help="Write the results here.")
  args = parser.parse_args()

  print(f"jax {jax.__version__}, backend {jax.default_backend()}, {os.cpu_count()} CPUs; "
        f"views of {T} samples at {SR} Hz, batch {args.batch} x {VIEWS} views")
  runners = {"ours (default, pitch overlap 2)": _augment_runner(args.batch,
                                                                augment_defaults.defaults())}
  fine = augment_defaults.defaults()
  fine.pitch_shift.overlap = 4
  runners["ours (pitch overlap 4)"] = _augment_runner(args.batch, fine)
  if args.breakdown:
    for name in augment_defaults.BASE_CHAIN:
      cfg = augment_defaults.defaults()
      cfg.chain, cfg.compose_p = (name,), 1.0
      runners[f"  {name} alone"] = _augment_runner(args.batch, cfg)
  if args.model:
    runners["SampleCNN fwd+bwd"] = _model_runner(4)
  peer = None
  if os.path.exists(args.peer_python):
    peer = Peer(args.peer_python)
  else:
    print(f"peer skipped: {args.peer_python} not found (see the set-up in the docstring)")
  samples: dict[str, list[dict]] = {k: [] for k in runners}
  samples["peer: torch-audiomentations, per item"] = []
  for _ in range(args.rounds):  # Interleaved, so both sides see the same machine load.
    for name, run in runners.items():
      samples[name].append(run(1 if name.startswith("SampleCNN") else args.repeats))
    if peer:
      samples["peer: torch-audiomentations, per item"].append(peer.run(args.peer_items))
  if peer:
    peer.close()
  results = {k: _best(v) for k, v in samples.items() if v}
  print(f"\n{'':40s} {'CPU ms/view':>12s} {'views/CPU-s':>12s} {'wall ms/view':>13s}")
  for name, r in results.items():
    print(f"{name:40s} {r['cpu_ms_per_view']:12.2f} {r['views_per_cpu_s']:12.1f} "
          f"{r['wall_ms_per_view']:13.2f}")
  peer_r = results.get("peer: torch-audiomentations, per item")
  for name in [k for k in results if k.startswith("ours")]:
    if peer_r:
      ratio = results[name]["views_per_cpu_s"] / peer_r["views_per_cpu_s"]
      print(f"per-core speed-up, {name}: {ratio:.1f}x")
    if "SampleCNN fwd+bwd" in results:
      a, m = results[name]["cpu_ms_per_view"], results["SampleCNN fwd+bwd"]["cpu_ms_per_view"]
      print(f"share of a train step (chain + SampleCNN fwd+bwd), {name}: {100 * a / (a + m):.1f}%")
  if args.json:
    with open(args.json, "w") as f:
      json.dump(results, f, indent=1)


if __name__ == "__main__":
  main()
