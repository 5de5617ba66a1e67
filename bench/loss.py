"""The SemiSupCon loss alone at large batch: forward+backward time and memory.

Measures `losses.semisup_ntxent` (dense and column-chunked) for R views of d = 128 with
K = 50-way multi-hot labels on half the items (N = 2 views per item, threshold T = 1,
τ = 0.1), on this CPU. Beside it, in the same run, the official formulation (spec §2.3–2.5)
in PyTorch eager: cosine of broadcast [R, 1, d] × [1, R, d], label overlap
c_ij = Σ_k [l_ik = l_jk]·[l_ik = 1] built as [R, R, K] tensors, exp, den, −log(p + 1e-6).
Anchors printed with every row:

* the FLOP floor of the loss: 2·R²·d for z·zᵀ, twice that again for its backward, and 2·R²·K
  for L·Lᵀ (no gradient), divided by the rate of a 4096³ float32 matmul measured right after
  the row (the machine under the same load); "x floor" is seconds / that floor;
* JAX memory is the compiled executable's temp bytes (`memory_analysis()`); torch memory is
  the peak RSS growth of its worker process during the call.

The official formulation needs O(R²·(d + K)) memory; it is run while its predicted peak (the
last measured peak × 4, since memory grows as R²) stays under --official-max-gb, and is
marked "not run" with the prediction above that.

`--devices 64 --rows 65536` compiles only (no run) on 64 simulated CPU devices with the rows
sharded, as under training, and prints the per-device temp bytes.

  .venv/bin/python bench/loss.py                        # R = 1024 … 16384, ~3 min
  .venv/bin/python bench/loss.py --compile-only --devices 64 --rows 65536
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DIM, CLASSES, VIEWS, TEMPERATURE = 128, 50, 2, 0.1
MATMUL_N = 4096
DEFAULT_TORCH_VENV = "/tmp/ssc_bench_torch"


def make_inputs(rows: int, seed: int = 0):
  """z [R, d] float32, item_ids [R] int32, labels [R, K] float32 (first half labeled)."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(seed)
  items = rows // VIEWS
  z = rng.standard_normal((rows, DIM)).astype(np.float32)
  item_labels = (rng.random((items, CLASSES)) < 0.06).astype(np.float32)  # ~3 tags / item.
  item_labels[items // 2:] = 0.0
  labels = np.repeat(item_labels, VIEWS, axis=0)
  item_ids = (np.arange(rows) // VIEWS).astype(np.int32)
  return z, item_ids, labels


def loss_flops(rows: int) -> float:
  """z·zᵀ forward + its two backward matmuls + L·Lᵀ, at 2 FLOPs per multiply-add."""
  return 3 * 2.0 * rows * rows * DIM + 2.0 * rows * rows * CLASSES


# ----------------------------------------------------------------------------------------------
# Official formulation (PyTorch eager), run in a worker process of the throwaway venv.
# ----------------------------------------------------------------------------------------------


def official_worker() -> None:
  """Serves {"rows": R, "repeats": n} → {"seconds": [...], "peak_rss_growth": bytes, "loss"}."""
  import torch  # pylint: disable=g-import-not-at-top
  torch.set_num_threads(2)

  def official_loss(z, item_ids, labels, temperature=TEMPERATURE, pos_threshold=1):
    r = z.shape[0]
    p_ssl = (item_ids[:, None] == item_ids[None, :]).int()                      # §2.2
    l_i, l_j = labels[:, None, :], labels[None, :, :]                           # [R, R, K]
    shared = ((l_i == l_j) & (l_i == 1)).sum(-1)                                # §2.3
    p_sl = (shared >= pos_threshold).int()
    target = (p_ssl + p_sl > 0).int()                                           # §2.4
    not_self = 1 - torch.eye(r, dtype=torch.int)
    pos = target * not_self                                                     # §2.5.1
    w = pos.sum(1).float()
    w = torch.where(w == 0, torch.ones_like(w), w)                              # §2.5.2
    sim = torch.nn.CosineSimilarity(dim=2)(z[:, None, :], z[None, :, :]) / temperature
    e = torch.exp(sim)                                                          # §2.5.4
    den = (e * not_self).sum(1, keepdim=True)                                   # §2.5.5
    pair = -torch.log(e / den + 1e-6)                                           # §2.5.6
    return ((pos * pair).sum(1) / w).mean()                                     # §2.5.7–8

  def status_bytes(field: str) -> int:
    """A `/proc/self/status` memory field (`VmRSS`, `VmHWM`) in bytes."""
    with open("/proc/self/status") as f:
      for line in f:
        if line.startswith(field + ":"):
          return int(line.split()[1]) * 1024
    return 0

  def hwm_reset() -> None:
    with open("/proc/self/clear_refs", "w") as f:  # Resets VmHWM (peak RSS) to the current RSS.
      f.write("5")

  for line in sys.stdin:
    cmd = json.loads(line)
    z_np, ids_np, labels_np = make_inputs(cmd["rows"])
    z0 = torch.from_numpy(z_np)
    ids, labels = torch.from_numpy(ids_np), torch.from_numpy(labels_np)
    seconds, peak = [], 0
    loss = float("nan")
    for _ in range(cmd["repeats"]):
      z = z0.clone().requires_grad_(True)
      base = status_bytes("VmRSS")
      hwm_reset()
      start = time.perf_counter()
      out = official_loss(z, ids, labels)
      out.backward()
      seconds.append(time.perf_counter() - start)
      peak = max(peak, status_bytes("VmHWM") - base)
      loss = out.item()
      del out, z
    print(json.dumps({"seconds": seconds, "peak_rss_growth": peak, "loss": loss}), flush=True)


def torch_python(venv: str) -> str | None:
  """The venv's interpreter if it has torch (bench/train_step.py creates it), else None."""
  python = os.path.join(venv, "bin", "python")
  if os.path.exists(python) and subprocess.run(
      [python, "-c", "import torch, numpy"], capture_output=True).returncode == 0:
    return python
  return None


# ----------------------------------------------------------------------------------------------
# Ours (JAX).
# ----------------------------------------------------------------------------------------------


def jax_loss_and_grad(chunk_size: int):
  import jax  # pylint: disable=g-import-not-at-top
  from ssc_jax import losses  # pylint: disable=g-import-not-at-top

  def loss(z, item_ids, labels):
    return losses.semisup_ntxent(z, item_ids, labels, temperature=TEMPERATURE,
                                 pos_threshold=1, chunk_size=chunk_size)

  return jax.value_and_grad(loss)


def temp_bytes(compiled) -> int:
  return int(compiled.memory_analysis().temp_size_in_bytes)


def compile_only(args: argparse.Namespace) -> None:
  """Per-device temp bytes of the loss+gradient with R rows sharded over `--devices`."""
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  from ssc_jax import parallel  # pylint: disable=g-import-not-at-top
  mesh = parallel.make_mesh()
  rows_sharding = parallel.batch_sharding(mesh)
  for rows in args.rows:
    print(f"{jax.device_count()} devices, R = {rows} ({rows // jax.device_count()} rows per "
          f"device), d = {DIM}, K = {CLASSES}")
    arrays = (jax.ShapeDtypeStruct((rows, DIM), jnp.float32, sharding=rows_sharding),
              jax.ShapeDtypeStruct((rows,), jnp.int32, sharding=rows_sharding),
              jax.ShapeDtypeStruct((rows, CLASSES), jnp.float32, sharding=rows_sharding))
    _compile_report(arrays, args.chunk_sizes, mesh)


def _compile_report(arrays, chunk_sizes, mesh) -> None:
  import jax  # pylint: disable=g-import-not-at-top
  from ssc_jax import parallel  # pylint: disable=g-import-not-at-top
  rows_sharding = parallel.batch_sharding(mesh)
  for chunk in chunk_sizes:
    fn = jax.jit(jax_loss_and_grad(chunk), out_shardings=(parallel.replicated(mesh),
                                                          rows_sharding))
    start = time.perf_counter()
    compiled = fn.lower(*arrays).compile()
    mem = compiled.memory_analysis()
    name = "dense" if chunk == 0 else f"chunked C={chunk}"
    print(f"  {name:<18} temp {mem.temp_size_in_bytes / 2**20:8.1f} MiB per device, arguments "
          f"{mem.argument_size_in_bytes / 2**20:.1f} MiB, outputs "
          f"{mem.output_size_in_bytes / 2**20:.1f} MiB (compiled in "
          f"{time.perf_counter() - start:.0f} s)", flush=True)


def measure(args: argparse.Namespace) -> None:
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  from ssc_jax import losses  # pylint: disable=g-import-not-at-top
  a = jax.random.normal(jax.random.key(0), (MATMUL_N, MATMUL_N), jnp.float32)
  dot = jax.jit(jnp.dot)

  def matmul_rate() -> float:
    times = []
    for _ in range(3):
      start = time.perf_counter()
      dot(a, a).block_until_ready()
      times.append(time.perf_counter() - start)
    return 2 * MATMUL_N**3 / min(times)

  matmul_rate()
  python = None if args.no_official else torch_python(args.torch_venv)
  worker = None
  if python:
    worker = subprocess.Popen([python, os.path.abspath(__file__), "--official-worker"],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
  elif not args.no_official:
    print(f"[official] no torch in {args.torch_venv}: run bench/train_step.py once to create it")
  print(f"jax {jax.__version__}, {jax.device_count()} device(s); load average at start "
        f"{os.getloadavg()[0]:.1f}")
  header = (f"{'R':>6} | {'what':<18} | {'s (median)':>10} | {'memory':>10} | "
            f"{'x floor':>7} | loss")
  print(header)
  print("-" * len(header))
  official_peak = 0.0
  for rows in args.rows:
    z, item_ids, labels = (jnp.asarray(x) for x in make_inputs(rows))
    results = []
    for chunk in args.chunk_sizes:
      fn = jax.jit(jax_loss_and_grad(chunk))
      compiled = fn.lower(z, item_ids, labels).compile()
      out = compiled(z, item_ids, labels)
      jax.block_until_ready(out)
      seconds = []
      for _ in range(args.repeats):
        start = time.perf_counter()
        out = jax.block_until_ready(compiled(z, item_ids, labels))
        seconds.append(time.perf_counter() - start)
      name = "ours dense" if chunk == 0 else f"ours chunked {chunk}"
      results.append((name, statistics.median(seconds), temp_bytes(compiled), float(out[0])))
    if worker:
      predicted = official_peak * 4
      if predicted > args.official_max_gb * 1e9:
        official_peak = predicted
        results.append(("official (torch)", None, predicted, None))
      else:
        worker.stdin.write(json.dumps({"rows": rows, "repeats": args.official_repeats}) + "\n")
        worker.stdin.flush()
        reply = json.loads(worker.stdout.readline())
        official_peak = reply["peak_rss_growth"]
        results.append(("official (torch)", statistics.median(reply["seconds"]), official_peak,
                        reply["loss"]))
        # Same numbers: ours with the original's −log(p + 1e-6) per pair (parity=True).
        parity = float(losses.semisup_ntxent(z, item_ids, labels, temperature=TEMPERATURE,
                                             parity=True))
        print(f"{rows:>6} | check: ours with parity=True {parity:.6f}, official "
              f"{reply['loss']:.6f} (ours above: the stable default, no 1e-6)")
    floor = loss_flops(rows) / matmul_rate()
    for name, seconds, mem, loss in results:
      if seconds is None:
        print(f"{rows:>6} | {name:<18} | {'not run':>10} | {mem / 1e9:>7.1f} GB | {'':>7} | "
              f"(predicted > {args.official_max_gb} GB)")
        continue
      print(f"{rows:>6} | {name:<18} | {seconds:>10.3f} | {mem / 1e6:>7.0f} MB | "
            f"{seconds / floor:>7.1f} | {loss:.6f}", flush=True)
    print(f"{rows:>6} | FLOP floor {loss_flops(rows) / 1e9:.0f} GFLOP at the matmul's "
          f"{loss_flops(rows) / floor / 1e9:.0f} GFLOP/s = {floor:.3f} s; load "
          f"{os.getloadavg()[0]:.1f}", flush=True)
  if worker:
    worker.stdin.close()
    worker.wait()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--rows", type=int, nargs="+", default=[1024, 2048, 4096, 8192, 16384])
  p.add_argument("--chunk-sizes", type=int, nargs="+", default=[0, 1024],
                 help="0 = dense; C > 0 = column blocks of C")
  p.add_argument("--repeats", type=int, default=3)
  p.add_argument("--official-repeats", type=int, default=2)
  p.add_argument("--official-max-gb", type=float, default=6.0,
                 help="do not run the official formulation above this predicted peak")
  p.add_argument("--no-official", action="store_true")
  p.add_argument("--torch-venv", default=DEFAULT_TORCH_VENV)
  p.add_argument("--devices", type=int, default=0,
                 help="simulated CPU devices (with --compile-only)")
  p.add_argument("--compile-only", action="store_true")
  p.add_argument("--official-worker", action="store_true", help=argparse.SUPPRESS)
  return p.parse_args(argv)


def main() -> None:
  args = parse_args()
  if args.official_worker:
    official_worker()
    return
  sys.path.insert(0, REPO_ROOT)
  import jax  # pylint: disable=g-import-not-at-top
  if args.devices:
    jax.config.update("jax_num_cpu_devices", args.devices)
  if args.compile_only:
    compile_only(args)
  else:
    measure(args)


if __name__ == "__main__":
  main()
