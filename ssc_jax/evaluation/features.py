"""Representations of whole dataset splits, computed once on the device mesh (spec §7.2).

`embed_split` reads a split with `probe_input.make_probe_eval_dataset` (every track cut into
consecutive chunks, at most `max_chunks`, each track read by exactly one host) and runs the
frozen encoder in inference mode on every chunk row, sharded over all devices. The outputs are
replicated, so every process ends up with every row, and reduces them per track:
  * the chunk-mean representation h̄ (what the probe head sees at test time);
  * the chunk-mean unit projection mean(ẑ) (what prototype scores need: the mean over chunks
    of cos(z_c, p) equals mean(ẑ_c) · p̂);
  * optionally every chunk's h (the training cache: crops embedded once).
It then checks that each track received exactly its planned number of chunks, so a test track
can be neither missing nor counted twice (the original sampled its test set with replacement,
spec §10.2).

`embed_crops` encodes freshly drawn random crops (one per clip) for the original's
"new crop every epoch" training.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

import jax
import numpy as np
from tqdm import auto as tqdm

from ssc_jax import models
from ssc_jax import parallel
from ssc_jax.inference import embedding as embed


@dataclasses.dataclass
class SplitFeatures:
  """Per-track representations of one split (every track exactly once, in split order).

  Attributes:
    split: the split name.
    track_h: [n, D] float32 chunk-mean representations.
    track_zhat: [n, P] float32 chunk-mean unit-norm projections.
    labels: [n, K] float32 targets.
    chunks_per_track: [n] int64 chunks averaged per track.
    chunk_h: [R, D] float32 every chunk's representation, or None if not kept.
    chunk_owner: [R] int64 track index of each chunk (sorted), or None.
  """
  split: str
  track_h: np.ndarray
  track_zhat: np.ndarray
  labels: np.ndarray
  chunks_per_track: np.ndarray
  chunk_h: np.ndarray | None = None
  chunk_owner: np.ndarray | None = None

  @property
  def num_tracks(self) -> int:
    return len(self.track_h)


def check_batch_size(batch_size: int, what: str = "config.data.batch_size") -> None:
  """Global batch sizes must split evenly over processes and devices."""
  n = jax.device_count()
  if batch_size < 1 or batch_size % n or batch_size % jax.process_count():
    raise ValueError(f"{what} = {batch_size} must be a positive multiple of the {n} devices "
                     f"(and of the {jax.process_count()} processes).")


def make_row_fn(model: models.SemiSupConModel, mesh: jax.sharding.Mesh):
  """Jitted fn(variables, batch of chunk rows) -> (h, ẑ, track_index, mask, labels), replicated."""
  forward = embed.make_embed_fn(model, project=True)

  def rows(variables, batch):
    h, zhat = forward(variables, batch["audio"])
    return h, zhat, batch["track_index"], batch["mask"], batch["labels"]

  return jax.jit(rows, in_shardings=(parallel.replicated(mesh), parallel.batch_sharding(mesh)),
                 out_shardings=parallel.replicated(mesh))


def embed_split(model: models.SemiSupConModel, variables: Any, mesh: jax.sharding.Mesh, *,
                dataset: str, split: str, data_dir: str, label_key: str, batch_size: int,
                view_length: int, max_chunks: int, keep_chunks: bool = False,
                row_fn: Any = None) -> SplitFeatures:
  """Embeds every track of a split once; see the module docstring.

  Args:
    model: the SemiSupCon model.
    variables: its variables, already replicated over `mesh` (see `embed.replicate`).
    mesh: the device mesh ('data' axis over all devices).
    dataset: TFDS "name/config".
    split: split name.
    data_dir: TFDS data dir.
    label_key: label feature.
    batch_size: chunk rows per GLOBAL batch (multiple of the device count).
    view_length: T, samples per chunk.
    max_chunks: chunks kept per track (the first ones).
    keep_chunks: also return every chunk's representation (the training cache).
    row_fn: a `make_row_fn(model, mesh)` to reuse (saves a compilation).

  Returns:
    SplitFeatures.

  Raises:
    RuntimeError: a track did not get exactly its planned chunks (never expected).
  """
  from data_pipelines import probe_input  # pylint: disable=g-import-not-at-top
  check_batch_size(batch_size)
  plan = probe_input.make_probe_eval_dataset(
      dataset, split, data_dir, label_key, batch_size=batch_size // jax.process_count(),
      view_length=view_length, max_chunks=max_chunks, process_index=jax.process_index(),
      process_count=jax.process_count())
  row_fn = row_fn or make_row_fn(model, mesh)
  n = plan.num_tracks
  sum_h = sum_z = labels = None
  counts = np.zeros(n, np.int64)
  chunk_h, chunk_owner = [], []
  batches = plan.dataset.as_numpy_iterator()
  for batch in tqdm.tqdm(batches, total=plan.num_batches, desc=f"embed {dataset}:{split}",
                         disable=jax.process_index() != 0, leave=False):
    h, zhat, index, mask, y = jax.device_get(
        row_fn(variables, parallel.host_batch_to_global(batch, mesh)))
    if sum_h is None:
      sum_h = np.zeros((n, h.shape[1]), np.float64)
      sum_z = np.zeros((n, zhat.shape[1]), np.float64)
      labels = np.zeros((n, y.shape[1]), np.float32)
    index, h = index[mask], h[mask]
    np.add.at(sum_h, index, h)
    np.add.at(sum_z, index, zhat[mask])
    np.add.at(counts, index, 1)
    labels[index] = y[mask]
    if keep_chunks:
      chunk_h.append(h.astype(np.float32))
      chunk_owner.append(index.astype(np.int64))
  if sum_h is None:
    raise RuntimeError(f"{dataset}:{split}: the evaluation input yielded no batch.")
  if not np.array_equal(counts, plan.chunks_per_track):
    bad = np.flatnonzero(counts != plan.chunks_per_track)
    raise RuntimeError(
        f"{dataset}:{split}: {len(bad)} tracks got a different number of chunks than planned "
        f"(first: track {bad[0]}, {counts[bad[0]]} vs {plan.chunks_per_track[bad[0]]}); the "
        "exactly-once evaluation is broken.")
  feats = SplitFeatures(split=split, track_h=(sum_h / counts[:, None]).astype(np.float32),
                        track_zhat=(sum_z / counts[:, None]).astype(np.float32), labels=labels,
                        chunks_per_track=counts)
  if keep_chunks:
    owner = np.concatenate(chunk_owner)
    order = np.argsort(owner, kind="stable")
    feats.chunk_h = np.concatenate(chunk_h)[order]
    feats.chunk_owner = owner[order]
  return feats


def make_crop_fn(model: models.SemiSupConModel, mesh: jax.sharding.Mesh):
  """Jitted fn(variables, {'audio', 'labels'}) -> (h, labels), replicated."""
  forward = embed.make_embed_fn(model)
  return jax.jit(lambda v, b: (forward(v, b["audio"]), b["labels"]),
                 in_shardings=(parallel.replicated(mesh), parallel.batch_sharding(mesh)),
                 out_shardings=parallel.replicated(mesh))


def embed_crops(crop_fn: Any, variables: Any, mesh: jax.sharding.Mesh,
                host_batches: Iterator[dict[str, np.ndarray]], num_batches: int
                ) -> tuple[np.ndarray, np.ndarray]:
  """Encodes `num_batches` batches of random training crops.

  Args:
    crop_fn: from `make_crop_fn`.
    variables: replicated model variables.
    mesh: the device mesh.
    host_batches: this host's share of each global batch ({'audio' [b, T], 'labels' [b, K]}).
    num_batches: batches to draw.

  Returns:
    (h [num_batches·B, D] float32, labels [num_batches·B, K] float32).
  """
  hs, ys = [], []
  for _ in range(num_batches):
    h, y = jax.device_get(crop_fn(variables, parallel.host_batch_to_global(next(host_batches),
                                                                            mesh)))
    hs.append(h)
    ys.append(y)
  return np.concatenate(hs).astype(np.float32), np.concatenate(ys).astype(np.float32)
