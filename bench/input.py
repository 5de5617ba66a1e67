"""Pretraining input throughput against what the training step consumes, same run.

What is measured (one process, in this order):
* **Input alone**: views/s that `data_pipelines.pretrain_input.make_pretrain_dataset` delivers
  as the trainer reads it (`as_numpy_iterator()`: float32 host batches [B, N, T]), timed over
  `--batches` batches after a warm-up that fills the shuffle buffers, at the paper's batch
  size B = 96 (`--input-batch-size`). Also its CPU time per view (all threads of the process).
* **Consumption**: views/s of the project's jitted training step at the paper's default model
  (SampleCNN width 1.0, projection head, SemiSupCon loss, Adam, the default augmentation chain
  at severity 2; N = 2 views of T = 59,535 samples) on a pre-built device batch, B =
  `--batch-size` items (default 16: B = 96 takes 35-50 s per step on 2 cores; views/s hardly
  depends on B on a CPU).
* **Together**: the same step fed by the real pipeline through `parallel.prefetch_to_mesh`, in
  the loop of `ssc_jax/train.py` (the next batch is fetched while the previous step runs, the
  metrics are read one step late), so tf.data threads and XLA share the cores. Pre-built and
  fed blocks of 2 steps alternate, `--steps` steps of each in all. If the step is not
  input-bound, the fed step takes as long as the pre-built one and the time spent waiting in
  `next()` is near zero.

The config is `configs/mtat.py` (the paper's main setup: B = 96, b_s = 0.5, p_s = 1, shuffle
buffer 1024 per pool) with its two sources replaced by the prepared folders below, and
`data.cache_megabytes = 0`: MTAT and FMA-medium take tens of GB as int16 at 22050 Hz, far
more than the in-memory cache, so the real pipeline streams from the TFRecord files every
epoch. (The files of this small dataset do sit in the OS page cache, so disk speed is not part
of the figure.)

Data. On first use the script writes `--clips` mono WAVs of `--seconds` s at 22050 Hz (a
random tone plus noise), half with one of 50 class labels listed in a `labels.csv`
(`audio_folder/labeled`, all in 'train'), half without (`audio_folder/unlabeled`, 90 % in
'train'), and prepares both with the project's builders (int16 PCM, as every real dataset is
stored) under `--data-dir` (default /tmp/ssc_bench_input). At the defaults, 400 clips of 30 s:
about 510 MB of WAV plus 510 MB of TFRecords, prepared in about 30 s on 2 cores. Later runs
reuse it.

Usage (from the repo root):
  .venv/bin/python bench/input.py                              # ~2 min on 2 cores
  .venv/bin/python bench/input.py --batches 5 --steps 2        # quick look
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO_ROOT)

from data_pipelines import conventions  # noqa: E402

SAMPLE_RATE = conventions.SAMPLE_RATE
NUM_CLASSES = 50  # K of MTAT top-50 (here one class per clip, one-hot).
LABELED, UNLABELED = "audio_folder/labeled", "audio_folder/unlabeled"
GOAL = 3.0  # Input views/s ≥ GOAL × consumption (issue 4).
BLOCK = 2  # Training steps per block; pre-built and fed blocks alternate.


# ----------------------------------------------------------------------------------------------
# Data: synthesised WAVs → audio_folder/{labeled,unlabeled}, prepared once.
# ----------------------------------------------------------------------------------------------


def write_clips(manual_dir: str, first: int, count: int, seconds: float,
                labeled: bool) -> None:
  """Writes `count` mono 16-bit WAVs of a random tone plus noise (and labels.csv if labeled).

  Args:
    manual_dir: folder to write into (created).
    first: number of the first clip (also seeds its content).
    count: number of clips.
    seconds: length of each clip.
    labeled: also write `labels.csv` (`path,label,split`, all 'train', NUM_CLASSES classes).
  """
  import soundfile  # pylint: disable=g-import-not-at-top
  os.makedirs(manual_dir, exist_ok=True)
  t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
  rows = ["path,label,split"]
  for i in range(first, first + count):
    rng = np.random.default_rng(i)
    audio = 0.2 * np.sin(2 * np.pi * rng.uniform(80, 2000) * t)
    audio += 0.05 * rng.standard_normal(t.size)
    name = f"clip_{i:05d}.wav"
    soundfile.write(os.path.join(manual_dir, name), audio.astype(np.float32), SAMPLE_RATE,
                    subtype="PCM_16")
    rows.append(f"{name},tag{i % NUM_CLASSES:02d},train")
  if labeled:
    with open(os.path.join(manual_dir, "labels.csv"), "w") as f:
      f.write("\n".join(rows) + "\n")


def prepare(data_dir: str, clips: int, seconds: float) -> str:
  """Prepares (once) the labeled and unlabeled folders of `clips` clips in all.

  Returns:
    The TFDS data dir holding both datasets.
  """
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  from data_pipelines import builders  # pylint: disable=g-import-not-at-top,unused-import
  root = os.path.join(data_dir, f"{clips}x{seconds:g}s")
  tfds_dir = os.path.join(root, "tfds")
  tfds.disable_progress_bar()
  num_labeled = clips // 2
  for name, first, count in ((LABELED, 0, num_labeled),
                             (UNLABELED, num_labeled, clips - num_labeled)):
    builder = tfds.builder(name, data_dir=tfds_dir, progress=False)
    if builder.is_prepared():
      continue
    manual_dir = os.path.join(root, "wav", name.split("/")[1])
    start = time.perf_counter()
    print(f"[data] writing {count} clips of {seconds:g} s to {manual_dir} ...", flush=True)
    write_clips(manual_dir, first, count, seconds, labeled=name == LABELED)
    print(f"[data] preparing {name} in {tfds_dir} ...", flush=True)
    builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(manual_dir=manual_dir))
    print(f"[data]   done in {time.perf_counter() - start:.0f} s", flush=True)
  return tfds_dir


def make_config(tfds_dir: str, batch_size: int) -> Any:
  """configs/mtat.py with its sources replaced by the prepared folders, B = batch_size."""
  from configs import mtat  # pylint: disable=g-import-not-at-top
  config = mtat.get_config()
  config.data.update(dict(data_dir=tfds_dir, labeled=LABELED, labeled_split="train",
                          label_key="label", unlabeled=UNLABELED, unlabeled_split="train",
                          batch_size=batch_size))
  config.data.cache_megabytes = 0  # Stream every epoch, as at MTAT / FMA scale.
  return config


# ----------------------------------------------------------------------------------------------
# Measurements.
# ----------------------------------------------------------------------------------------------


def input_rate(config: Any, batches: int, warmup: int) -> dict[str, float]:
  """Views/s of the pretraining input alone, read as numpy batches like the trainer does."""
  from data_pipelines import pretrain_input  # pylint: disable=g-import-not-at-top
  start = time.perf_counter()
  it = pretrain_input.make_pretrain_dataset(config.data, seed=0).as_numpy_iterator()
  first = next(it)  # Fills both shuffle buffers.
  first_s = time.perf_counter() - start
  assert first["labeled"].sum() == int(config.data.batch_size * config.data.labeled_share)
  for _ in range(warmup):
    next(it)
  start_wall, start_cpu = time.perf_counter(), time.process_time()
  views = 0
  for _ in range(batches):
    views += int(np.prod(next(it)["audio"].shape[:2]))
  wall, cpu = time.perf_counter() - start_wall, time.process_time() - start_cpu
  return {"views_per_s": views / wall, "cpu_s_per_view": cpu / views, "views": views,
          "wall_s": wall, "first_batch_s": first_s, "num_labels": first["labels"].shape[1]}


def train_loop(step: Callable[..., Any], state: Any, next_batch: Callable[[], Any],
               rng: Any, steps: int) -> tuple[Any, list[float], list[float]]:
  """Runs `steps` steps in the pattern of train.py's loop.

  The step is dispatched asynchronously; the next batch is fetched while it runs, and the
  metrics of step k are waited for after step k + 1 is dispatched.

  Returns:
    (state, seconds between successive step completions, seconds spent in `next_batch`).
  """
  import jax  # pylint: disable=g-import-not-at-top
  waits, done = [], []
  pending = None
  start = time.perf_counter()
  for _ in range(steps):
    t0 = time.perf_counter()
    batch = next_batch()
    waits.append(time.perf_counter() - t0)
    state, metrics = step(state, batch, rng)
    if pending is not None:
      jax.block_until_ready(pending)
      done.append(time.perf_counter())
    pending = metrics
  jax.block_until_ready(pending)
  done.append(time.perf_counter())
  return state, list(np.diff([start] + done)), waits


def step_rates(config: Any, steps: int) -> dict[str, Any]:
  """Seconds per training step on a pre-built batch and fed by the real pipeline.

  Returns:
    {'prebuilt': [s], 'fed': [s], 'fed_wait': [s], 'compile_s': s}.
  """
  import jax  # pylint: disable=g-import-not-at-top
  from data_pipelines import pretrain_input  # pylint: disable=g-import-not-at-top
  from ssc_jax import augment, models, parallel, train  # pylint: disable=g-import-not-at-top

  mesh = parallel.make_mesh()
  model = models.build_model(config.model)
  tx = train.make_optimizer(config)
  state = train.create_train_state(config, model, tx, mesh, jax.random.key(0))
  augment_fn = augment.make_augment_fn(config.augment, config.data.sample_rate)
  step = train.make_train_step(config, model, tx, augment_fn, mesh)
  host = pretrain_input.make_pretrain_dataset(config.data, seed=1).as_numpy_iterator()
  fed = parallel.prefetch_to_mesh(host, mesh)
  fixed = next(fed)  # A real batch; also fills the shuffle buffers before timing.
  rng = jax.random.key(1)

  start = time.perf_counter()
  state, _, _ = train_loop(step, state, lambda: fixed, rng, 1)  # Compiles.
  out: dict[str, Any] = {"compile_s": time.perf_counter() - start, "prebuilt": [], "fed": [],
                         "fed_wait": []}
  for first in range(0, steps, BLOCK):  # Alternating blocks: load changes hit both alike.
    n = min(BLOCK, steps - first)
    for mode, next_batch in (("prebuilt", lambda: fixed), ("fed", lambda: next(fed))):
      state, times, waits = train_loop(step, state, next_batch, rng, n)
      out[mode] += times
      if mode == "fed":
        out["fed_wait"] += waits
  return out


# ----------------------------------------------------------------------------------------------
# Report.
# ----------------------------------------------------------------------------------------------


def load() -> str:
  return " ".join(f"{x:.2f}" for x in os.getloadavg())


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--data-dir", default="/tmp/ssc_bench_input",
                 help="where the WAVs and the prepared datasets are kept")
  p.add_argument("--clips", type=int, default=400, help="clips in all, half of them labeled")
  p.add_argument("--seconds", type=float, default=30.0, help="length of each clip")
  p.add_argument("--input-batch-size", type=int, default=96,
                 help="B for the input-alone measurement (the paper's)")
  p.add_argument("--batches", type=int, default=100, help="timed input batches")
  p.add_argument("--warmup-batches", type=int, default=10,
                 help="untimed input batches after the first")
  p.add_argument("--batch-size", type=int, default=16, help="B of the training step")
  p.add_argument("--steps", type=int, default=4,
                 help="timed training steps per mode (pre-built, fed)")
  return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
  args = parse_args(argv)
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
  print(f"load at start: {load()}  cpus: {os.cpu_count()}", flush=True)
  tfds_dir = prepare(args.data_dir, args.clips, args.seconds)

  config = make_config(tfds_dir, args.input_batch_size)
  feed = input_rate(config, args.batches, args.warmup_batches)
  print(f"[input] {feed['views_per_s']:.1f} views/s over {feed['views']} views "
        f"({feed['wall_s']:.1f} s); first batch after {feed['first_batch_s']:.1f} s", flush=True)

  config = make_config(tfds_dir, args.batch_size)
  steps = step_rates(config, args.steps)
  import jax  # pylint: disable=g-import-not-at-top

  views = args.batch_size * config.data.num_views
  pre_s, fed_s = statistics.median(steps["prebuilt"]), statistics.median(steps["fed"])
  consume = views / pre_s
  ratio = feed["views_per_s"] / consume
  busy = consume * feed["cpu_s_per_view"]  # Cores the input needs at the consumption rate.
  print(f"\nload at end: {load()}  jax {jax.__version__}  devices {jax.devices()}")
  print(f"data: {args.clips} clips of {args.seconds:g} s (audio_folder labeled + unlabeled, "
        f"int16, streamed), K = {feed['num_labels']}, N = {config.data.num_views}, "
        f"T = {config.data.view_length}, b_s = {config.data.labeled_share}, "
        f"shuffle buffer {config.data.shuffle_buffer} per pool")
  print(f"model: SampleCNN width {config.model.width}, augmentation severity "
        f"{config.augment.severity}; step compiled in {steps['compile_s']:.0f} s\n")
  print(f"  input alone, B = {args.input_batch_size}:        {feed['views_per_s']:8.1f} views/s"
        f"   ({feed['cpu_s_per_view'] * 1e3:.1f} CPU-ms per view)")
  print(f"  train step, pre-built batch, B = {args.batch_size}: {consume:8.2f} views/s"
        f"   ({pre_s:.2f} s/step; min {min(steps['prebuilt']):.2f}, "
        f"max {max(steps['prebuilt']):.2f})")
  print(f"  train step, fed by the pipeline:   {views / fed_s:8.2f} views/s"
        f"   ({fed_s:.2f} s/step; min {min(steps['fed']):.2f}, max {max(steps['fed']):.2f})")
  print(f"  waiting for input, fed steps:      {statistics.median(steps['fed_wait']):8.3f} s"
        f" median, {max(steps['fed_wait']):.3f} s max per step")
  print(f"\n  input / consumption: {ratio:.1f}x  (goal >= {GOAL:g}x: "
        f"{'met' if ratio >= GOAL else 'NOT met'})")
  print(f"  fed / pre-built step time: {fed_s / pre_s:.3f}  (1.0 = not input-bound)")
  print(f"  input CPU at the consumption rate: {busy:.3f} cores "
        f"({100 * busy / (os.cpu_count() or 1):.1f}% of the machine)")


if __name__ == "__main__":
  main()
