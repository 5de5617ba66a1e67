"""Robustness sweep (spec §7.4): the trained probe on corrupted test audio, level by level.

The ladder is `ssc_jax.augment.robustness_levels()`: the pretraining chain at severities 0-4
(0 = clean), then tiers 5-10 (severity 2 plus cumulative extra corruptions). Single-corruption
("only_<name>") and chain-plus-one ("tier2_<name>") levels can be named too.

As in the original, every chunk of a test track is corrupted independently (its own
parameters) while the chain's Compose gate is drawn once per track: the corruption function
gets one track per item and the track's chunks as its views, [tracks, chunks, T]. The
corrupted chunks go through the frozen encoder (inference mode), their representations are
averaged per track (padding chunks masked out), and the trained head gives the track's
prediction; each test track is scored exactly once per level. Keys are derived from the
config seed, the level's position and the batch number, so a sweep is reproducible.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from tqdm import auto as tqdm

from ssc_jax import augment
from ssc_jax import models
from ssc_jax import parallel

# corrupt(key, audio [B, N, T]) -> [B, N, T]: one track per item, its chunks as views.
CorruptFn = Callable[[jax.Array, jax.Array], jax.Array]


@dataclasses.dataclass(frozen=True)
class Level:
  """One rung of the sweep: a name, its position on the plot, and its corruption."""
  name: str
  index: int
  corrupt: CorruptFn


def all_levels() -> dict[str, Any]:
  """Every named corruption setting the augmentation library offers, by name."""
  levels = (augment.robustness_levels() + augment.single_corruption_levels()
            + augment.tier2_levels())
  return {level.name: level for level in levels}


def build_levels(names: Sequence[str], sample_rate: int) -> list[Level]:
  """Levels by name (empty: the 11-level ladder severity_0..4, tier_5..10).

  Raises:
    ValueError: an unknown level name (the message lists the valid ones).
  """
  known = all_levels()
  names = list(names) or [level.name for level in augment.robustness_levels()]
  unknown = [n for n in names if n not in known]
  if unknown:
    raise ValueError(f"config.robustness.levels: unknown level(s) {unknown}; valid: "
                     f"{sorted(known)}.")
  return [Level(n, i, augment.make_level_fn(known[n], sample_rate)) for i, n in enumerate(names)]


def iter_track_batches(rows: Iterator[dict[str, np.ndarray]], track_range: tuple[int, int],
                       chunks_per_track: np.ndarray, tracks_per_batch: int, num_batches: int,
                       max_chunks: int) -> Iterator[dict[str, np.ndarray]]:
  """Regroups this host's chunk rows into batches of whole tracks.

  Args:
    rows: batches of chunk rows from `probe_input.make_probe_eval_dataset` (a track's rows
      are consecutive and all on this host).
    track_range: [start, stop) tracks of this host.
    chunks_per_track: [num_tracks] planned chunks per track.
    tracks_per_batch: tracks per host batch.
    num_batches: batches to yield (the same on every host; the tail is padding).
    max_chunks: C, the chunk axis length (>= every track's chunk count).

  Yields:
    {'audio': [tracks_per_batch, C, T] float32, 'chunk_mask': [tracks_per_batch, C] bool,
     'track_index': [tracks_per_batch] int32 (-1 for padding)}.
  """
  start, stop = track_range
  view_length = None
  pending: list[tuple[int, np.ndarray]] = []  # complete tracks: (index, [c, T])
  current: list[np.ndarray] = []
  current_index = -1
  emitted = 0

  def make_batch(tracks):
    audio = np.zeros((tracks_per_batch, max_chunks, view_length), np.float32)
    mask = np.zeros((tracks_per_batch, max_chunks), bool)
    index = np.full(tracks_per_batch, -1, np.int32)
    for slot, (i, chunks) in enumerate(tracks):
      audio[slot, :len(chunks)] = chunks
      mask[slot, :len(chunks)] = True
      index[slot] = i
    return {"audio": audio, "chunk_mask": mask, "track_index": index}

  for batch in rows:
    view_length = batch["audio"].shape[1]
    for audio, index, valid in zip(batch["audio"], batch["track_index"], batch["mask"]):
      if not valid:
        continue
      if index != current_index:
        if current:
          raise RuntimeError(f"track {current_index} ended with {len(current)} of "
                             f"{chunks_per_track[current_index]} chunks.")
        current_index = int(index)
        if not start <= current_index < stop:
          raise RuntimeError(f"track {current_index} is outside this host's [{start}, {stop}).")
      current.append(audio)
      if len(current) == chunks_per_track[current_index]:
        pending.append((current_index, np.stack(current)))
        current, current_index = [], -1
    while len(pending) >= tracks_per_batch:
      if emitted == num_batches:
        raise RuntimeError(f"more tracks in [{start}, {stop}) than {num_batches} batches of "
                           f"{tracks_per_batch} hold; the batch plan is wrong.")
      yield make_batch(pending[:tracks_per_batch])
      del pending[:tracks_per_batch]
      emitted += 1
  if current:
    raise RuntimeError(f"track {current_index} ended with {len(current)} of "
                       f"{chunks_per_track[current_index]} chunks.")
  if view_length is None:
    raise RuntimeError("the evaluation input yielded no batch.")
  while emitted < num_batches:
    yield make_batch(pending[:tracks_per_batch])
    del pending[:tracks_per_batch]
    emitted += 1
  if pending:
    raise RuntimeError(f"{len(pending)} tracks of [{start}, {stop}) left after {num_batches} "
                       "batches; the batch plan is wrong.")


def make_track_fn(model: models.SemiSupConModel, corrupt: CorruptFn,
                  mesh: jax.sharding.Mesh):
  """Jitted fn(variables, key, batch) -> (track-mean h [B, D], track_index [B]), replicated."""

  def track_means(variables, key, batch):
    audio = corrupt(key, batch["audio"])
    b, c, t = audio.shape
    h = model.apply(variables, audio.reshape(b * c, t), train=False, method=model.embed)
    h = h.reshape(b, c, -1).astype(jnp.float32)
    weight = batch["chunk_mask"].astype(jnp.float32)[..., None]
    mean = jnp.sum(h * weight, axis=1) / jnp.maximum(jnp.sum(weight, axis=1), 1.0)
    return mean, batch["track_index"]

  repl = parallel.replicated(mesh)
  return jax.jit(track_means, in_shardings=(repl, repl, parallel.batch_sharding(mesh)),
                 out_shardings=repl)


def corrupted_track_features(model: models.SemiSupConModel, variables: Any,
                             mesh: jax.sharding.Mesh, level: Level, key: jax.Array, *,
                             dataset: str, split: str, data_dir: str, label_key: str,
                             tracks_per_batch: int, view_length: int, max_chunks: int,
                             row_batch_size: int = 64) -> np.ndarray:
  """Chunk-mean representations [n, D] of every track of a split under one corruption level.

  Args:
    model, variables, mesh: the frozen encoder (variables replicated over `mesh`).
    level: the corruption level.
    key: the level's PRNG key.
    dataset, split, data_dir, label_key: the test data.
    tracks_per_batch: tracks per GLOBAL batch (a multiple of the device count).
    view_length: T.
    max_chunks: chunks kept per track.
    row_batch_size: chunk rows per host read from the input pipeline.

  Returns:
    [n, D] float32, rows in split order, every track once.
  """
  from data_pipelines import probe_input  # pylint: disable=g-import-not-at-top
  pc, pi = jax.process_count(), jax.process_index()
  if tracks_per_batch % jax.device_count() or tracks_per_batch % pc:
    raise ValueError(f"config.robustness.tracks_per_batch = {tracks_per_batch} must be a "
                     f"multiple of the {jax.device_count()} devices.")
  plan = probe_input.make_probe_eval_dataset(
      dataset, split, data_dir, label_key, batch_size=row_batch_size, view_length=view_length,
      max_chunks=max_chunks, process_index=pi, process_count=pc)
  local = tracks_per_batch // pc
  ranges = probe_input.host_ranges(plan.chunks_per_track, pc)
  num_batches = max(1, max(math.ceil((b - a) / local) for a, b in ranges))
  width = int(plan.chunks_per_track.max())
  fn = make_track_fn(model, level.corrupt, mesh)
  out = np.full((plan.num_tracks, 0), np.nan, np.float32)
  seen = np.zeros(plan.num_tracks, np.int64)
  batches = iter_track_batches(plan.dataset.as_numpy_iterator(), plan.track_range,
                               plan.chunks_per_track, local, num_batches, width)
  for i, batch in enumerate(tqdm.tqdm(batches, total=num_batches, desc=level.name,
                                      disable=pi != 0, leave=False)):
    h, index = jax.device_get(fn(variables, jax.random.fold_in(key, i),
                                 parallel.host_batch_to_global(batch, mesh)))
    if out.shape[1] == 0:
      out = np.full((plan.num_tracks, h.shape[1]), np.nan, np.float32)
    valid = index >= 0
    out[index[valid]] = h[valid]
    np.add.at(seen, index[valid], 1)
  if not (seen == 1).all():
    raise RuntimeError(f"robustness level {level.name}: {int((seen != 1).sum())} tracks were "
                       "not scored exactly once.")
  return out
