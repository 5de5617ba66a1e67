"""Training-step and inference throughput of ssc_jax against a PyTorch eager anchor, same run.

What is timed (both sides do the same work):
* the full SemiSupCon training step at the paper's setup: SampleCNN (width 1.0), projection
  head 512→512→128 without bias, the semi-supervised NT-Xent (τ = 0.1, threshold positives
  T_pos = 1, half of the items labeled with K = 50 multi-hot labels), Adam 1e-4; 2 views of
  59,535 samples per item, B = 8 and 16 items (16 and 32 views). Augmentation is OFF on both
  sides (JAX: identity `augment_fn`), so only model + loss + optimiser are compared;
* encoder inference (eval-mode BatchNorm, no gradient), batch 16, embeddings/s;
* a large float32 matmul (4096³), GFLOP/s: in JAX and PyTorch at the start (best of 5), and in
  JAX once after every timed step pair. The median of the latter is the "matmul peak under the
  same load" against which the step's analytic FLOP rate is compared (on the shared 2-core
  machine other processes take a varying share of the cores; the best-of-5 figure is printed
  too).

The JAX side is the project's real step: `ssc_jax.train.make_train_step` on a
`parallel.make_mesh()` mesh with `configs/common.py:base_config()`. The PyTorch side is a small
eager implementation written for this benchmark from the spec (§2.5, §3.1, §3.2, §6) with
PyTorch defaults; it runs in a subprocess of a throwaway venv (default /tmp/ssc_bench_torch),
created on first use with `python3 -m venv` + `pip install torch==2.13.0 numpy` (a local CPU
wheel on the project machine; pass --torch-python to use another interpreter, or --no-torch).

Usage (from the repo root):
  .venv/bin/python bench/train_step.py                # full run, ~5 min on 2 cores
  .venv/bin/python bench/train_step.py --steps 3 --batch-sizes 8   # quick look

The two sides run in separate processes (torch in a persistent worker), and their timed calls
alternate one step at a time, so that load from other processes hits both alike.
Reported: median seconds per step over --steps timed steps after --warmup untimed ones (the
first JAX call compiles), views/s, the JAX/torch ratio, and GFLOP/s as a share of the matmul
peak. FLOPs are counted analytically (`samplecnn_flops`) and checked against XLA's own cost
analysis of the compiled step.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO_ROOT)

from data_pipelines import conventions  # noqa: E402

DEFAULT_TORCH_VENV = "/tmp/ssc_bench_torch"
TORCH_REQUIREMENT = "torch==2.13.0"

# SampleCNN (spec §3.1): output channels of conv0..conv10; conv0 has stride 3 and no padding,
# conv1..conv10 stride 1 and padding 1, followed by MaxPool(3, 3) for conv1..conv9.
CHANNELS = (128, 128, 128, 256, 256, 256, 256, 256, 256, 512, 512)
VIEW_LENGTH = conventions.VIEW_LENGTH
NUM_VIEWS = 2
NUM_LABELS = 50
MATMUL_N = 4096


# ----------------------------------------------------------------------------------------------
# Analytic FLOP count.
# ----------------------------------------------------------------------------------------------


def samplecnn_flops(num_samples: int = VIEW_LENGTH) -> dict[str, float]:
  """Multiply-add FLOPs (2 per MAC) of SampleCNN + head for ONE view.

  Only convolutions and dense layers are counted (BN, ReLU, pooling, the loss and Adam are
  O(activations) or O(params), well under 1% here). Backward = weight gradient (same MACs as
  the forward) + input gradient (same MACs, except conv0 whose input is the audio).

  Args:
    num_samples: T, samples per view.

  Returns:
    {'forward': F, 'train': forward + backward} in FLOPs.
  """
  length, in_ch = num_samples, 1
  forward = input_grad = 0.0
  for i, out_ch in enumerate(CHANNELS):
    length = (length - 3) // 3 + 1 if i == 0 else length  # conv0: k=3, s=3, p=0; others keep L.
    macs = length * out_ch * 3 * in_ch
    forward += 2 * macs
    input_grad += 2 * macs if i > 0 else 0
    if 1 <= i <= 9:
      length //= 3
    in_ch = out_ch
  head = 2 * (512 * 512 + 512 * 128)
  forward += head
  input_grad += head
  return {"forward": forward, "train": 2 * forward + input_grad}


# ----------------------------------------------------------------------------------------------
# Shared helpers.
# ----------------------------------------------------------------------------------------------


def make_batch(batch_size: int, seed: int = 0) -> dict[str, np.ndarray]:
  """Random audio [B, 2, T], multi-hot labels [B, K] on the first half of the items."""
  rng = np.random.default_rng(seed)
  audio = rng.uniform(-1, 1, (batch_size, NUM_VIEWS, VIEW_LENGTH)).astype(np.float32)
  labeled = np.arange(batch_size) < batch_size // 2
  labels = (rng.random((batch_size, NUM_LABELS)) < 0.1).astype(np.float32) * labeled[:, None]
  return {"audio": audio, "labels": labels, "labeled": labeled}


def time_calls(fn: Callable[[], Any], warmup: int, steps: int) -> list[float]:
  """Runs `fn` warmup + steps times; returns the wall times of the timed calls (s)."""
  for _ in range(warmup):
    fn()
  times = []
  for _ in range(steps):
    start = time.perf_counter()
    fn()
    times.append(time.perf_counter() - start)
  return times


def summary(times: list[float]) -> dict[str, float]:
  return {"median_s": statistics.median(times), "min_s": min(times), "max_s": max(times)}


# ----------------------------------------------------------------------------------------------
# PyTorch anchor (runs in the throwaway venv; imports torch only here).
# ----------------------------------------------------------------------------------------------


def torch_worker(args: argparse.Namespace) -> None:
  """Serves timing commands for the PyTorch eager implementation (one JSON line each way).

  Commands: {"op": "setup"} → versions and matmul GFLOP/s; {"op": "train" | "infer",
  "batch": B, "warmup": w, "steps": n} → a list of n wall times (s).
  """
  import torch  # pylint: disable=g-import-not-at-top
  from torch import nn  # pylint: disable=g-import-not-at-top

  torch.set_num_threads(args.torch_threads)
  torch.manual_seed(0)
  device = torch.device(args.torch_device)

  def sync() -> None:
    if device.type == "cuda":
      torch.cuda.synchronize()

  class SampleCNN(nn.Module):
    """Spec §3.1 in NCL layout with PyTorch defaults (bias, BN eps/momentum, init)."""

    def __init__(self):
      super().__init__()
      blocks, in_ch = [], 1
      for i, out_ch in enumerate(CHANNELS):
        layers = [nn.Conv1d(in_ch, out_ch, 3, stride=3 if i == 0 else 1,
                            padding=0 if i == 0 else 1),
                  nn.BatchNorm1d(out_ch), nn.ReLU()]
        if 1 <= i <= 9:
          layers.append(nn.MaxPool1d(3, 3))
        blocks.append(nn.Sequential(*layers))
        in_ch = out_ch
      self.blocks = nn.Sequential(*blocks)

    def forward(self, x):  # x: [R, T]
      return self.blocks(x[:, None, :]).flatten(1)

  class Model(nn.Module):

    def __init__(self):
      super().__init__()
      self.encoder = SampleCNN()
      self.head = nn.Sequential(nn.Linear(512, 512, bias=False), nn.ReLU(),
                                nn.Linear(512, 128, bias=False))

    def forward(self, x):
      return self.head(self.encoder(x))

  def ssntxent(z, item_ids, labels, temperature=0.1, pos_threshold=1):
    """Spec §2.5 with the §2.4 threshold target; label overlap as a matmul L·Lᵀ."""
    r = z.shape[0]
    positives = (item_ids[:, None] == item_ids[None, :]) | (labels @ labels.T >= pos_threshold)
    not_self = 1.0 - torch.eye(r, device=z.device)
    pos = positives.float() * not_self
    weights = pos.sum(1).clamp_min(1.0)  # w_i = 0 → 1 (exact for 0/1 masks).
    norms = z.norm(dim=1).clamp_min(1e-8)
    sim = (z @ z.T) / (norms[:, None] * norms[None, :]) / temperature
    e = torch.exp(sim)
    den = (e * not_self).sum(1, keepdim=True)
    pair_loss = -torch.log(e / den + 1e-6)
    return ((pos * pair_loss).sum(1) / weights).mean()

  model = Model().to(device)
  opt = torch.optim.Adam(model.parameters(), lr=1e-4)
  item_ids_cache: dict[int, Any] = {}

  def setup() -> dict[str, Any]:
    a = torch.randn(MATMUL_N, MATMUL_N, device=device)
    b = torch.randn(MATMUL_N, MATMUL_N, device=device)
    mm = time_calls(lambda: (torch.mm(a, b), sync()), 1, 5)
    return {"torch_version": torch.__version__, "threads": torch.get_num_threads(),
            "mkldnn": torch.backends.mkldnn.is_available(),
            "matmul_gflops": 2 * MATMUL_N**3 / min(mm) / 1e9}

  def train_fn(batch_size: int) -> Callable[[], Any]:
    host = make_batch(batch_size)
    audio = torch.from_numpy(host["audio"].reshape(-1, VIEW_LENGTH)).to(device)
    labels = torch.from_numpy(np.repeat(host["labels"], NUM_VIEWS, axis=0)).to(device)
    item_ids = (torch.arange(batch_size * NUM_VIEWS) // NUM_VIEWS).to(device)

    def step():
      model.train()
      opt.zero_grad(set_to_none=True)
      loss = ssntxent(model(audio), item_ids, labels)
      loss.backward()
      opt.step()
      sync()
      return loss

    return step

  def infer_fn(batch_size: int) -> Callable[[], Any]:
    x = torch.from_numpy(inference_audio(batch_size)).to(device)

    def infer():
      model.eval()
      with torch.inference_mode():
        out = model.encoder(x)
      sync()
      return out

    return infer

  # Line protocol on stdin/stdout: one JSON command in, one JSON reply out.
  fns: dict[str, Callable[[], Any]] = {}
  for line in sys.stdin:
    cmd = json.loads(line)
    if cmd["op"] == "setup":
      reply: Any = setup()
    else:
      key = f"{cmd['op']}{cmd['batch']}"
      if key not in fns:
        fns[key] = (train_fn if cmd["op"] == "train" else infer_fn)(cmd["batch"])
      reply = time_calls(fns[key], cmd["warmup"], cmd["steps"])
    print(json.dumps(reply), flush=True)


def torch_python(args: argparse.Namespace) -> str:
  """Path of the torch interpreter; creates the throwaway venv when it is missing."""
  if args.torch_python:
    return args.torch_python
  python = os.path.join(args.torch_venv, "bin", "python")
  probe = [python, "-c", "import torch, numpy"]
  if os.path.exists(python) and subprocess.run(probe, capture_output=True).returncode == 0:
    return python
  print(f"[setup] creating throwaway venv {args.torch_venv} with {TORCH_REQUIREMENT} ...",
        flush=True)
  subprocess.run([sys.executable, "-m", "venv", args.torch_venv], check=True)
  subprocess.run([python, "-m", "pip", "install", "-q", TORCH_REQUIREMENT, "numpy"], check=True)
  return python


class TorchWorker:
  """The PyTorch anchor in a subprocess of the throwaway venv, driven one command at a time."""

  def __init__(self, args: argparse.Namespace):
    cmd = [torch_python(args), os.path.abspath(__file__), "--torch-worker",
           "--torch-threads", str(args.torch_threads), "--torch-device", args.torch_device]
    self._proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

  def call(self, **cmd: Any) -> Any:
    """Sends one command, returns the worker's JSON reply."""
    assert self._proc.stdin and self._proc.stdout
    self._proc.stdin.write(json.dumps(cmd) + "\n")
    self._proc.stdin.flush()
    line = self._proc.stdout.readline()
    if not line:
      raise RuntimeError("the torch worker died (see its stderr above)")
    return json.loads(line)

  def close(self) -> None:
    assert self._proc.stdin
    self._proc.stdin.close()
    self._proc.wait()


def inference_audio(batch_size: int) -> np.ndarray:
  """[batch_size, T] float32 views for the inference measurement."""
  return make_batch((batch_size + 1) // NUM_VIEWS)["audio"].reshape(-1, VIEW_LENGTH)[:batch_size]


# ----------------------------------------------------------------------------------------------
# JAX side (the project's own step) and the interleaved driver.
# ----------------------------------------------------------------------------------------------


def run(args: argparse.Namespace) -> tuple[dict[str, Any], dict[str, Any] | None]:
  """Measures both sides, interleaving their timed calls so that load changes hit both alike.

  Returns:
    (jax_results, torch_results or None), each {'train': {B: summary}, 'inference': summary,
    'matmul_gflops': ..., version info}.
  """
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  from configs.common import base_config  # pylint: disable=g-import-not-at-top
  from ssc_jax import augment, models, parallel, train  # pylint: disable=g-import-not-at-top

  worker = None if args.no_torch else TorchWorker(args)
  th = None
  if worker:
    th = {**worker.call(op="setup"), "train": {}}
  jx: dict[str, Any] = {
      "jax_version": jax.__version__, "devices": [str(d) for d in jax.devices()],
      "xla_flags": os.environ.get("XLA_FLAGS", ""), "train": {}}
  a = jax.random.normal(jax.random.key(0), (MATMUL_N, MATMUL_N), jnp.float32)
  b = jax.random.normal(jax.random.key(1), (MATMUL_N, MATMUL_N), jnp.float32)
  dot = jax.jit(jnp.dot)
  matmul = lambda: dot(a, b).block_until_ready()
  mm = time_calls(matmul, 1, 5)
  jx["matmul_gflops"] = 2 * MATMUL_N**3 / min(mm) / 1e9
  matmul_times: list[float] = []  # One matmul after every timed step pair: peak under load.

  def interleave(jax_fn: Callable[[], Any], op: str,
                 batch: int) -> tuple[list[float], list[float]]:
    time_calls(jax_fn, args.warmup, 0)  # Compiles.
    if worker:
      worker.call(op=op, batch=batch, warmup=args.warmup, steps=0)
    jax_times, torch_times = [], []
    for _ in range(args.steps):
      jax_times += time_calls(jax_fn, 0, 1)
      if worker:
        torch_times += worker.call(op=op, batch=batch, warmup=0, steps=1)
      matmul_times.extend(time_calls(matmul, 0, 1))
    return jax_times, torch_times

  config = base_config()
  if args.dtype != "float32":
    if "dtype" not in config.model:
      raise SystemExit(f"--dtype {args.dtype}: this checkout's config has no model.dtype.")
    config.model.dtype = args.dtype
  jx["dtype"] = args.dtype
  mesh = parallel.make_mesh()
  model = models.build_model(config.model)
  tx = train.make_optimizer(config)
  if args.augment:  # The default chain, on device inside the step (torch has none).
    augment_fn = augment.make_augment_fn(config.augment, config.data.sample_rate)
  else:  # Augmentation OFF: same work as the torch anchor.
    augment_fn = lambda key, x: x
  rng = jax.random.key(1)
  for batch_size in args.batch_sizes:
    config.data.batch_size = batch_size
    state = train.create_train_state(config, model, tx, mesh, jax.random.key(0))
    train_step = train.make_train_step(config, model, tx, augment_fn, mesh)
    batch = parallel.host_batch_to_global(make_batch(batch_size), mesh)
    if "xla_flops_per_view" not in jx:
      cost = train_step.lower(state, batch, rng).compile().cost_analysis()
      cost = cost[0] if isinstance(cost, (list, tuple)) else cost
      jx["xla_flops_per_view"] = float(cost.get("flops", float("nan"))) / (
          batch_size * NUM_VIEWS)
    holder = [state]

    def step():
      holder[0], metrics = train_step(holder[0], batch, rng)
      jax.block_until_ready((holder[0], metrics))

    jax_times, torch_times = interleave(step, "train", batch_size)
    jx["train"][str(batch_size)] = summary(jax_times)
    if th:
      th["train"][str(batch_size)] = summary(torch_times)
    del holder, state

  variables = models.init_variables(model, jax.random.key(0), VIEW_LENGTH)
  embed = jax.jit(lambda v, x: model.apply(v, x, method=models.SemiSupConModel.embed))
  x = jnp.asarray(inference_audio(args.inference_batch))
  jax_times, torch_times = interleave(lambda: embed(variables, x).block_until_ready(), "infer",
                                      args.inference_batch)
  jx["inference"] = summary(jax_times)
  stats = jax.local_devices()[0].memory_stats() or {}
  jx["peak_device_bytes"] = stats.get("peak_bytes_in_use")
  jx["matmul_gflops_under_load"] = 2 * MATMUL_N**3 / statistics.median(matmul_times) / 1e9
  jx["matmul_gflops"] = max(jx["matmul_gflops"], 2 * MATMUL_N**3 / min(matmul_times) / 1e9)
  if th and worker:
    th["inference"] = summary(torch_times)
    worker.close()
  return jx, th


# ----------------------------------------------------------------------------------------------
# Report.
# ----------------------------------------------------------------------------------------------


def report(args: argparse.Namespace, jx: dict[str, Any], th: dict[str, Any] | None) -> None:
  """Prints the comparison table."""
  flops = samplecnn_flops()
  best = max(jx["matmul_gflops"], th["matmul_gflops"] if th else 0.0)
  peak = jx["matmul_gflops_under_load"]
  print(f"uptime load: {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} "
        f"{os.getloadavg()[2]:.2f}  cpus: {os.cpu_count()}")
  print(f"JAX {jx['jax_version']} on {jx['devices']}, default XLA CPU threading "
        f"(XLA_FLAGS={jx['xla_flags']!r})")
  if th:
    print(f"PyTorch {th['torch_version']} eager, torch.set_num_threads({th['threads']}), "
          f"mkldnn={th['mkldnn']}")
  print("augmentation: " + ("ON in JAX (default chain), none in torch" if args.augment else
                            "OFF on both sides (JAX augment_fn = identity)")
        + f"; JAX dtype {jx['dtype']}")
  if jx["peak_device_bytes"] is not None:
    print(f"peak device memory (JAX, device 0): {jx['peak_device_bytes'] / 2**30:.2f} GiB")
  if args.peak_tflops:
    for key, res in jx["train"].items():
      rate = int(key) * NUM_VIEWS * flops["train"] / res["median_s"]
      print(f"MFU B={key}: {rate / 1e12:.2f} TFLOP/s analytic = "
            f"{100 * rate / (args.peak_tflops * 1e12 * len(jx['devices'])):.1f}% of "
            f"{args.peak_tflops} TFLOP/s x {len(jx['devices'])} device(s)")
  print(f"float32 matmul {MATMUL_N}^3: JAX {jx['matmul_gflops']:.1f} GFLOP/s"
        + (f", torch {th['matmul_gflops']:.1f} GFLOP/s" if th else "")
        + f" (best of all calls); JAX median between the timed steps {peak:.1f} GFLOP/s")
  print(f"%peak below is against the matmul rate under the same load ({peak:.1f} GFLOP/s); "
        f"against the best matmul ({best:.1f}) multiply by {peak / best:.2f}")
  print(f"analytic FLOPs/view: forward {flops['forward'] / 1e9:.3f} G, forward+backward "
        f"{flops['train'] / 1e9:.3f} G; XLA cost analysis of the step: "
        f"{jx['xla_flops_per_view'] / 1e9:.3f} G/view")
  print()
  header = f"{'what':<26}{'JAX':>14}{'torch':>14}{'ratio':>8}{'JAX %peak':>11}{'torch %peak':>12}"
  print(header)
  print("-" * len(header))

  def row(name: str, jax_s: float, torch_s: float | None, items: int, flop_per_item: float):
    j_rate = items / jax_s
    j_pct = 100 * j_rate * flop_per_item / 1e9 / peak
    if torch_s is None:
      print(f"{name:<26}{j_rate:>12.2f}/s{'-':>14}{'-':>8}{j_pct:>10.1f}%{'-':>12}")
      return
    t_rate = items / torch_s
    t_pct = 100 * t_rate * flop_per_item / 1e9 / peak
    print(f"{name:<26}{j_rate:>12.2f}/s{t_rate:>12.2f}/s{j_rate / t_rate:>7.2f}x"
          f"{j_pct:>10.1f}%{t_pct:>11.1f}%")

  for batch_size in args.batch_sizes:
    key = str(batch_size)
    row(f"train views/s B={batch_size} (R={batch_size * NUM_VIEWS})",
        jx["train"][key]["median_s"], th["train"][key]["median_s"] if th else None,
        batch_size * NUM_VIEWS, flops["train"])
  row(f"inference emb/s B={args.inference_batch}", jx["inference"]["median_s"],
      th["inference"]["median_s"] if th else None, args.inference_batch,
      flops["forward"] - 2 * (512 * 512 + 512 * 128))
  print()
  print(f"median of {args.steps} timed steps after {args.warmup} warm-up; per-step seconds "
        "(median/min/max):")
  for side, res in (("JAX", jx), ("torch", th)):
    if res:
      parts = [f"B={k}: {v['median_s']:.3f}/{v['min_s']:.3f}/{v['max_s']:.3f}"
               for k, v in res["train"].items()]
      inf = res["inference"]
      parts.append(f"infer: {inf['median_s']:.3f}/{inf['min_s']:.3f}/{inf['max_s']:.3f}")
      print(f"  {side:<6}" + "  ".join(parts))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--batch-sizes", type=int, nargs="+", default=[8, 16])
  p.add_argument("--steps", type=int, default=5, help="timed steps per measurement")
  p.add_argument("--warmup", type=int, default=2, help="untimed steps (JAX: incl. compile)")
  p.add_argument("--inference-batch", type=int, default=16)
  p.add_argument("--torch-threads", type=int, default=2)
  p.add_argument("--torch-venv", default=DEFAULT_TORCH_VENV)
  p.add_argument("--torch-python", default="", help="use this interpreter instead of the venv")
  p.add_argument("--no-torch", action="store_true", help="JAX side only (no ratio)")
  p.add_argument("--torch-device", default="cpu", help="torch device, e.g. cuda")
  p.add_argument("--dtype", default="float32", help="JAX model dtype (config.model.dtype)")
  p.add_argument("--augment", action="store_true", help="JAX step with the default augmentation")
  p.add_argument("--peak-tflops", type=float, default=0.0,
                 help="published per-device peak for the MFU line (0 = no MFU line)")
  p.add_argument("--torch-worker", action="store_true", help=argparse.SUPPRESS)
  return p.parse_args(argv)


def main() -> None:
  args = parse_args()
  if args.torch_worker:
    torch_worker(args)
    return
  jx, th = run(args)
  report(args, jx, th)


if __name__ == "__main__":
  main()
