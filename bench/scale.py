"""Compile-only projections of the real training step on TPU pods and large CPU meshes.

Lowers and compiles `train.make_train_step` (paper SampleCNN, projection head, SemiSupCon
loss, the default augmentation chain, the config's optimizer) ahead of time, executing
nothing, and prints per chip: argument / output / temp / total bytes from
`memory_analysis()`, FLOPs from `cost_analysis()`, and the collectives in the compiled HLO.

* TPU topologies: deviceless AOT with `jax.experimental.topologies` and libtpu, in a
  throwaway venv (`jax[tpu]` of the lock's jax version; see bench/README.md):
    /work/tpuvenv/bin/python bench/scale.py --topologies v5e:2x2 v5e:4x4 --out tpu.jsonl
  A step that does not fit HBM fails to compile; the "Used X of Y hbm" of the error is kept.
* Simulated CPU meshes (one process per device count):
    .venv/bin/python bench/scale.py --cpu-devices 64 --out cpu64.jsonl
* `--table a.jsonl b.jsonl ...` prints the markdown tables of bench/README.md from saved rows:
  the per-chip batch that fits each chip's HBM (linear in the batch between the two largest
  compiled batches that fit, or between a fitting one and an out-of-memory one), and the
  PROJECTED step time = FLOPs per chip / (50% of the chip's bf16 peak). Nothing here is
  measured on a TPU.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import re
import sys
import time
from typing import Any

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Published figures per JAX device: HBM (GiB) and dense bf16 peak (TFLOP/s). A v5e or v5p
# chip is one device. libtpu's deviceless v4 topologies have one device per TensorCore
# (v4:2x2x2 = 8 chips, 16 devices), so a v4 device is half a chip: 16 of its 32 GiB and
# half of its 275 TFLOP/s.
CHIPS = {"v5e": (16, 197.0), "v4": (16, 137.5), "v5p": (95, 459.0)}
PROJECTION_MFU = 0.5
COLLECTIVES = ("all-gather", "all-reduce", "reduce-scatter", "all-to-all", "collective-permute")
_DTYPE_BYTES = {"f32": 4, "bf16": 2, "f16": 2, "s32": 4, "u32": 4, "pred": 1, "s8": 1, "u8": 1,
                "f64": 8, "s64": 8, "u64": 8}
_COLLECTIVE_RE = re.compile(
    r"=\s*(.*?)\s(" + "|".join(COLLECTIVES) + r")(?:-start)?\(")
_SHAPE_RE = re.compile(r"\b(" + "|".join(_DTYPE_BYTES) + r")\[([\d,]*)\]")
# The two forms of libtpu's out-of-memory error.
_HBM_RES = (re.compile(r"Used ([\d.]+)([KMGT]?) of ([\d.]+)([KMGT]?) hbm"),
            re.compile(r"HLO temporaries \(([\d.]+)([KMGT]?)\) exceeds available HBM "
                       r"\(([\d.]+)([KMGT]?)\)"))


def collectives(hlo_text: str) -> dict[str, dict[str, Any]]:
  """{op: {'count': n, 'bytes': result bytes summed, 'shapes': distinct result shapes}}."""
  found: dict[str, dict[str, Any]] = collections.defaultdict(
      lambda: {"count": 0, "bytes": 0, "shapes": set()})
  for line in hlo_text.splitlines():
    match = _COLLECTIVE_RE.search(line)
    if not match:
      continue
    shape_text, op = match.groups()
    entry = found[op]
    entry["count"] += 1
    for dtype, dims in _SHAPE_RE.findall(shape_text):
      size = _DTYPE_BYTES[dtype]
      for d in filter(None, dims.split(",")):
        size *= int(d)
      entry["bytes"] += size
      if size >= 2**20:  # Lists only the large ones (>= 1 MiB).
        entry["shapes"].add(f"{dtype}[{dims}]")
  return {op: {**v, "shapes": sorted(v["shapes"])} for op, v in found.items()}


def _gib(value: str, unit: str) -> float:
  return float(value) * {"": 2**-30, "K": 2**-20, "M": 2**-10, "G": 1.0, "T": 2**10}[unit]


def compile_case(mesh, per_chip: int, dtype: str, chunk_size: int,
                 preset: str = "common") -> dict[str, Any]:
  """Compiles one step of `preset` ("common": configs/common.py, "pod": configs/pod.py)."""
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  from configs import common, pod  # pylint: disable=g-import-not-at-top
  from ssc_jax import augment, models, parallel, train  # pylint: disable=g-import-not-at-top

  config = pod.get_config() if preset == "pod" else common.base_config()
  chips = mesh.devices.size
  config.data.batch_size = per_chip * chips
  config.loss.chunk_size = chunk_size
  if "dtype" in config.model:
    config.model.dtype = dtype
  elif dtype != "float32":
    raise SystemExit(f"--dtypes {dtype}: this checkout's config has no model.dtype field.")
  model = models.build_model(config.model)
  tx = train.make_optimizer(config)
  # On a TPU the chain runs as one vmap over the views; a CPU host would trace its CPU form.
  strategy = "vmap" if mesh.devices.flat[0].platform == "tpu" else None
  augment_fn = augment.make_augment_fn(config.augment, config.data.sample_rate, strategy)
  step = train.make_train_step(config, model, tx, augment_fn, mesh)
  state = train.abstract_initial_state(config, model, tx, mesh)
  batch_sharding = parallel.batch_sharding(mesh)
  b, n, t = config.data.batch_size, config.data.num_views, config.data.view_length
  num_classes = 50
  batch = {"audio": jax.ShapeDtypeStruct((b, n, t), jnp.float32, sharding=batch_sharding),
           "labels": jax.ShapeDtypeStruct((b, num_classes), jnp.float32,
                                          sharding=batch_sharding),
           "labeled": jax.ShapeDtypeStruct((b,), jnp.bool_, sharding=batch_sharding)}
  rng = jax.ShapeDtypeStruct((), jax.random.key(0).dtype,
                             sharding=parallel.replicated(mesh))
  row: dict[str, Any] = {"platform": mesh.devices.flat[0].platform, "chips": chips,
                         "per_chip": per_chip, "dtype": dtype, "chunk_size": chunk_size,
                         "optimizer": config.optimizer.name,
                         "augment": strategy or "default", "preset": preset}
  start = time.perf_counter()
  lowered = step.lower(state, batch, rng)
  try:
    compiled = lowered.compile()
  except Exception as e:  # pylint: disable=broad-except
    hbm = next(filter(None, (r.search(str(e)) for r in _HBM_RES)), None)
    if not hbm:
      raise
    row.update(fits=False, used_gib=_gib(*hbm.groups()[:2]),
               capacity_gib=_gib(*hbm.groups()[2:]))
    row["compile_s"] = time.perf_counter() - start
    return row
  row["compile_s"] = time.perf_counter() - start
  mem = compiled.memory_analysis()
  cost = compiled.cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  row.update(
      fits=True, argument_bytes=mem.argument_size_in_bytes,
      output_bytes=mem.output_size_in_bytes, alias_bytes=mem.alias_size_in_bytes,
      temp_bytes=mem.temp_size_in_bytes,
      total_bytes=(mem.argument_size_in_bytes + mem.output_size_in_bytes
                   - mem.alias_size_in_bytes + mem.temp_size_in_bytes),
      flops=float(cost.get("flops", float("nan"))),
      collectives=collectives(compiled.as_text()))
  return row


def run(args: argparse.Namespace) -> None:
  import jax  # pylint: disable=g-import-not-at-top
  from ssc_jax import parallel  # pylint: disable=g-import-not-at-top
  meshes = []
  if args.topologies:
    from jax.experimental import topologies  # pylint: disable=g-import-not-at-top
    for name in args.topologies:
      try:
        topology = topologies.get_topology_desc(platform="tpu", topology_name=name)
      except Exception as e:  # pylint: disable=broad-except
        print(f"[scale] topology {name} is not available in this libtpu: {e}", flush=True)
        continue
      meshes.append((name, parallel.make_mesh(topology.devices)))
  else:
    meshes.append((f"cpu:{jax.device_count()}", parallel.make_mesh()))
  with open(args.out, "a") as out:
    for name, mesh in meshes:
      for chunk_size in args.chunk_sizes:
        for dtype in args.dtypes:
          for per_chip in args.per_chip:
            row = {"topology": name,
                   **compile_case(mesh, per_chip, dtype, chunk_size, args.preset),
                   "load": os.getloadavg()[0]}
            out.write(json.dumps(row) + "\n")
            out.flush()
            print(json.dumps(row), flush=True)


# ----------------------------------------------------------------------------------------------
# Tables.
# ----------------------------------------------------------------------------------------------


def _largest_fitting_batch(rows: list[dict[str, Any]], nominal_gib: float) -> str:
  """Per-chip batch whose total bytes reach the HBM, linear between two compiles.

  Uses the largest batch that fits and the smallest that does not when both were compiled,
  else the two largest; the capacity is the compiler's (from an out-of-memory error) when
  one was seen, else the published HBM.
  """
  fits = sorted((r["per_chip"], r["total_bytes"] / 2**30) for r in rows if r["fits"])
  ooms = sorted((r["per_chip"], r["used_gib"]) for r in rows if not r["fits"])
  capacity = min((r["capacity_gib"] for r in rows if not r["fits"]), default=nominal_gib)
  if fits and ooms:
    (b0, m0), (b1, m1) = fits[-1], ooms[0]
  elif len(fits) >= 2:
    (b0, m0), (b1, m1) = fits[-2:]
  else:
    b, m = (fits or ooms)[0]
    return f"{'fits' if fits else 'does not fit'} at {b}: {m:.1f} GiB (one compile)"
  estimate = int(b0 + (capacity - m0) / ((m1 - m0) / (b1 - b0)))
  how = "interpolated" if b0 <= estimate <= b1 else "extrapolated"
  return (f"≈{estimate} of {capacity:.2f} GiB ({how} from {b0}: {m0:.1f} GiB and {b1}: "
          f"{m1:.1f} GiB{' (OOM)' if ooms and b1 == ooms[0][0] else ''})")


def table(paths: list[str]) -> None:
  rows = [json.loads(line) for path in paths for line in open(path) if line.strip()]
  print("| topology | chips | dtype | loss | per chip | args GiB | temp GiB | total GiB | "
        "fits | TFLOP/chip | projected s/step @50% MFU | collectives (count) |")
  print("|---|---|---|---|---|---|---|---|---|---|---|---|")
  for r in rows:
    loss = "dense" if r["chunk_size"] == 0 else f"chunked {r['chunk_size']}"
    if r.get("preset", "common") != "common":
      loss += f", {r['preset']} preset ({r['optimizer']})"
    head = (f"| {r['topology']} | {r['chips']} | {r['dtype']} | {loss} | {r['per_chip']} | ")
    if not r["fits"]:
      print(head + f"– | – | {r['used_gib']:.1f} (OOM) | no: {r['used_gib']:.1f} of "
            f"{r['capacity_gib']:.1f} GiB | – | – | – |")
      continue
    chip = r["topology"].split(":")[0]
    projected = "–"
    if chip in CHIPS:
      projected = f"{r['flops'] / (CHIPS[chip][1] * 1e12 * PROJECTION_MFU):.3f}"
    coll = ", ".join(f"{op} ({v['count']})" for op, v in sorted(r["collectives"].items()))
    print(head + f"{r['argument_bytes'] / 2**30:.2f} | {r['temp_bytes'] / 2**30:.2f} | "
          f"{r['total_bytes'] / 2**30:.2f} | yes | {r['flops'] / 1e12:.2f} | {projected} | "
          f"{coll} |")
  print()
  print("| topology | dtype | loss | largest per-chip batch that fits (linear in the batch) |")
  print("|---|---|---|---|")
  groups = collections.defaultdict(list)
  for r in rows:
    groups[(r["topology"], r["dtype"], r["chunk_size"], r.get("preset", "common"))].append(r)
  for (topology, dtype, chunk_size, preset), group in groups.items():
    chip = topology.split(":")[0]
    if chip not in CHIPS:
      continue
    loss = "dense" if chunk_size == 0 else f"chunked {chunk_size}"
    if preset != "common":
      loss += f", {preset} preset"
    print(f"| {topology} | {dtype} | {loss} | {_largest_fitting_batch(group, CHIPS[chip][0])} |")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--topologies", nargs="*", default=[],
                 help="TPU topology names, e.g. v5e:4x4 (needs libtpu)")
  p.add_argument("--cpu-devices", type=int, default=8, help="simulated CPU devices")
  p.add_argument("--per-chip", type=int, nargs="+", default=[64, 256], help="items per chip")
  p.add_argument("--dtypes", nargs="+", default=["float32"])
  p.add_argument("--chunk-sizes", type=int, nargs="+", default=[1024])
  p.add_argument("--preset", choices=("common", "pod"), default="common",
                 help="configs/common.py (Adam) or configs/pod.py (LAMB); --dtypes and "
                      "--chunk-sizes override either")
  p.add_argument("--out", default="scale.jsonl")
  p.add_argument("--table", nargs="*", help="print the tables of these saved rows and exit")
  return p.parse_args(argv)


def main() -> None:
  args = parse_args()
  if args.table:
    table(args.table)
    return
  sys.path.insert(0, REPO_ROOT)
  import jax  # pylint: disable=g-import-not-at-top
  if not args.topologies:
    jax.config.update("jax_platforms", "cpu")
    jax.config.update("jax_num_cpu_devices", args.cpu_devices)
  run(args)


if __name__ == "__main__":
  main()
