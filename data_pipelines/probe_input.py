"""tf.data input for the downstream probes (spec §4.3, §7.1-7.2): train crops, chunked eval.

Training (`make_probe_train_dataset`): each host reads its contiguous share of the split's
examples; every pass over that share takes one uniformly random T-sample crop per clip
(stateless RNG seeded by `seed`, the host and the draw's position, so a run is reproducible),
shuffles the crops and batches them. No augmentation. Infinite; the caller picks the steps.
  {'audio': [b, T] float32 (int16 / 32768), 'labels': [b, K] float32}

Evaluation (`make_probe_eval_dataset`): every track of the split is cut into consecutive,
non-overlapping T-sample chunks, at most `max_chunks` (64: 172.8 s), the last partial chunk
dropped; a track shorter than T gives one zero-padded chunk. The rows are chunks:
  {'audio': [b, T] float32, 'labels': [b, K] float32 (the track's label on every row),
   'track_index': [b] int32 (0..num_tracks-1, position in the split), 'mask': [b] bool}
Tracks are dealt to hosts in contiguous ranges balanced by chunk count, so each track is read
by exactly one host and all of its chunks are on that host; every host yields exactly
`num_batches` batches, the tail filled with rows whose mask is False (audio and labels zero,
track_index -1). A track's prediction is the head applied to the mean of the embeddings of
its masked-in rows: sum per track_index on each host, add across hosts, divide by
`chunks_per_track`. `ProbeEvalData` carries that plan.

Planning needs each track's length. Builders in data_pipelines/builders store them in
`info.metadata['num_samples']`; for other datasets (e.g. synthetic_music) one pass over the
split reads them (cheap for small sets). Reads use one file at a time (interleave 1), so the
order is the split's on-disk order that TFDS slicing (`split[a:b]`) also uses.
"""

from __future__ import annotations

import dataclasses
import logging
import math

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from data_pipelines import conventions
from data_pipelines import datasets
from data_pipelines import decode
from data_pipelines.builders import base

DEFAULT_VIEW_LENGTH = conventions.VIEW_LENGTH
DEFAULT_MAX_CHUNKS = 64


@dataclasses.dataclass(frozen=True)
class ProbeEvalData:
  """The eval input of one host and the plan every host shares.

  Attributes:
    dataset: batches {'audio' [b, T] float32, 'labels' [b, K] float32,
      'track_index' [b] int32, 'mask' [b] bool}; exactly `num_batches` of them.
    num_tracks: tracks in the split (over all hosts).
    num_batches: batches per host, the same on every host.
    track_range: [start, stop) track indices read by this host.
    chunks_per_track: [num_tracks] int64, chunk rows of each track.
  """
  dataset: tf.data.Dataset
  num_tracks: int
  num_batches: int
  track_range: tuple[int, int]
  chunks_per_track: np.ndarray


def _open(name: str, data_dir: str | None) -> tfds.core.DatasetBuilder:
  return datasets.get_builder(name, datasets.resolve_data_dir(data_dir))


def _label_fn(builder: tfds.core.DatasetBuilder, label_key: str):
  """Returns (K, fn: example -> [K] float32 labels)."""
  num, _, _ = datasets.label_info(builder, label_key)
  feature = builder.info.features[label_key]
  if isinstance(feature, tfds.features.ClassLabel):
    return num, lambda ex: tf.one_hot(ex[label_key], num, dtype=tf.float32)
  if isinstance(feature, tfds.features.Sequence):
    return num, lambda ex: tf.reshape(tf.minimum(tf.reduce_sum(
        tf.one_hot(ex[label_key], num, dtype=tf.float32), axis=0), 1.0), [num])
  return num, lambda ex: tf.reshape(tf.cast(ex[label_key], tf.float32), [num])


def _to_float(audio: tf.Tensor) -> tf.Tensor:
  return tf.cast(audio, tf.float32) / decode.INT16_SCALE


def _check_host(process_index: int, process_count: int) -> None:
  if process_count < 1 or not 0 <= process_index < process_count:
    raise ValueError(f"process_index {process_index} not in [0, process_count={process_count})")


def make_probe_train_dataset(name: str, split: str, data_dir: str | None, label_key: str, *,
                             batch_size: int, view_length: int = DEFAULT_VIEW_LENGTH,
                             seed: int = 0, process_index: int = 0, process_count: int = 1,
                             shuffle_buffer: int = 1024) -> tf.data.Dataset:
  """Infinite batches of random crops for probe training on this host.

  Args:
    name: TFDS "name/config", e.g. "mtat/top50".
    split: split name, e.g. "train".
    data_dir: TFDS data dir ("" or None: `datasets.resolve_data_dir`).
    label_key: label feature to train on.
    batch_size: crops per batch on this host.
    view_length: T, samples per crop.
    seed: seeds file order, crops and shuffling.
    process_index: this host's index.
    process_count: number of hosts; each reads a disjoint, contiguous share of the split.
    shuffle_buffer: crops held by the shuffle buffer.

  Returns:
    {'audio': [batch_size, T] float32, 'labels': [batch_size, K] float32}, repeated forever.
  """
  _check_host(process_index, process_count)
  builder = _open(name, data_dir)
  n = datasets.split_num_examples(builder, split)
  if n < process_count:
    raise ValueError(f"{name}:{split} has {n} examples, fewer than {process_count} hosts")
  host_split = tfds.even_splits(split, n=process_count)[process_index]
  _, labels_of = _label_fn(builder, label_key)
  read_config = tfds.ReadConfig(shuffle_seed=seed, shuffle_reshuffle_each_iteration=True)
  ds = builder.as_dataset(split=host_split, shuffle_files=True, read_config=read_config)
  ds = ds.repeat().enumerate()
  host_seed = tf.constant(seed * 1_000_003 + process_index, tf.int64)

  def crop(draw, ex):
    audio = ex["audio"]
    audio = tf.pad(audio, [[0, tf.maximum(view_length - tf.shape(audio)[0], 0)]])
    max_start = tf.shape(audio)[0] - view_length
    start = tf.random.stateless_uniform([], seed=tf.stack([host_seed, draw]), minval=0,
                                        maxval=max_start + 1, dtype=tf.int32)
    return {"audio": _to_float(audio[start:start + view_length]), "labels": labels_of(ex)}

  ds = ds.map(crop, num_parallel_calls=tf.data.AUTOTUNE)
  ds = ds.shuffle(shuffle_buffer, seed=seed + process_index)
  return datasets.without_autotune(
      ds.batch(batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE))


def chunk_counts(lengths: np.ndarray, view_length: int, max_chunks: int) -> np.ndarray:
  """[n] lengths -> [n] chunk rows: clip(L // T, 1, max_chunks)."""
  return np.clip(np.asarray(lengths, np.int64) // view_length, 1, max_chunks)


def host_ranges(chunks: np.ndarray, process_count: int) -> list[tuple[int, int]]:
  """Contiguous track ranges, one per host, balanced by chunk rows.

  Track i goes to host floor(P · m_i / S): m_i = rows before the middle of track i,
  S = all rows. So each host holds about S / P rows (within half a track).
  """
  chunks = np.asarray(chunks, np.int64)
  total = int(chunks.sum())
  starts = np.cumsum(chunks) - chunks
  owner = ((2 * starts + chunks) * process_count) // max(2 * total, 1)
  bounds = np.searchsorted(owner, np.arange(process_count + 1), side="left")
  return [(int(bounds[h]), int(bounds[h + 1])) for h in range(process_count)]


def _track_lengths(builder: tfds.core.DatasetBuilder, split: str, num_tracks: int) -> np.ndarray:
  stored = ((builder.info.metadata or {}).get("num_samples") or {}).get(split)
  if stored is not None and len(stored) == num_tracks:
    return np.asarray(stored, np.int64)
  logging.info("No stored lengths for %s:%s; reading the split once to plan the chunks.",
               builder.info.full_name, split)
  return np.asarray(base.split_lengths(builder, split), np.int64)


def split_labels(name: str, split: str, data_dir: str | None, label_key: str) -> np.ndarray:
  """Targets [n, K] float32 of every track of a split, in split order (as the evaluation
  dataset's `track_index` counts), encoded as the probe encodes them; audio is not decoded."""
  builder = _open(name, data_dir)
  num_classes, labels_of = _label_fn(builder, label_key)
  n = datasets.split_num_examples(builder, split)
  out = np.zeros((n, num_classes), np.float32)
  if n:
    ds = builder.as_dataset(split=split, shuffle_files=False,
                            read_config=tfds.ReadConfig(interleave_cycle_length=1),
                            decoders=tfds.decode.PartialDecoding({label_key: True}))
    for i, y in enumerate(datasets.without_autotune(ds.map(labels_of)).as_numpy_iterator()):
      out[i] = y
  return out


def make_probe_eval_dataset(name: str, split: str, data_dir: str | None, label_key: str, *,
                            batch_size: int, view_length: int = DEFAULT_VIEW_LENGTH,
                            max_chunks: int = DEFAULT_MAX_CHUNKS, process_index: int = 0,
                            process_count: int = 1) -> ProbeEvalData:
  """Chunk rows of every track of a split, each track on exactly one host.

  Args:
    name: TFDS "name/config".
    split: split to evaluate, e.g. "test".
    data_dir: TFDS data dir ("" or None: `datasets.resolve_data_dir`).
    label_key: label feature.
    batch_size: chunk rows per batch on this host.
    view_length: T, samples per chunk.
    max_chunks: chunks kept per track (the first ones).
    process_index: this host's index.
    process_count: number of hosts.

  Returns:
    ProbeEvalData (see its docstring and the module docstring).
  """
  _check_host(process_index, process_count)
  if batch_size < 1 or view_length < 1 or max_chunks < 1:
    raise ValueError("batch_size, view_length and max_chunks must be >= 1")
  builder = _open(name, data_dir)
  num_tracks = datasets.split_num_examples(builder, split)
  lengths = _track_lengths(builder, split, num_tracks)
  chunks = chunk_counts(lengths, view_length, max_chunks)
  ranges = host_ranges(chunks, process_count)
  rows = [int(chunks[a:b].sum()) for a, b in ranges]
  num_batches = max(1, max(math.ceil(r / batch_size) for r in rows))
  start, stop = ranges[process_index]
  num_classes, labels_of = _label_fn(builder, label_key)

  pad_row = {"audio": tf.zeros([view_length], tf.float32),
             "labels": tf.zeros([num_classes], tf.float32),
             "track_index": tf.constant(-1, tf.int32), "mask": tf.constant(False)}
  padding = tf.data.Dataset.from_tensors(pad_row).repeat(
      num_batches * batch_size - rows[process_index])
  if stop > start:
    host_lengths = tf.constant(lengths[start:stop], tf.int64)
    host_chunks = tf.constant(chunks[start:stop], tf.int32)
    ds = builder.as_dataset(split=f"{split}[{start}:{stop}]", shuffle_files=False,
                            read_config=tfds.ReadConfig(interleave_cycle_length=1))

    def to_rows(local, ex):
      audio = ex["audio"]
      check = tf.debugging.assert_equal(
          tf.cast(tf.shape(audio)[0], tf.int64), host_lengths[local],
          message=f"{name}:{split}: a track's length differs from the stored plan; the "
                  "dataset changed after preparation. Re-prepare it.")
      with tf.control_dependencies([check]):
        count = host_chunks[local]
      need = count * view_length
      audio = tf.pad(audio, [[0, tf.maximum(need - tf.shape(audio)[0], 0)]])[:need]
      n = tf.cast(count, tf.int32)
      return tf.data.Dataset.from_tensor_slices({
          "audio": tf.reshape(_to_float(audio), [n, view_length]),
          "labels": tf.tile(labels_of(ex)[None], [n, 1]),
          "track_index": tf.fill([n], tf.cast(local, tf.int32) + start),
          "mask": tf.ones([n], tf.bool)})

    ds = ds.enumerate().flat_map(to_rows).concatenate(padding)
  else:
    ds = padding
  ds = datasets.without_autotune(
      ds.batch(batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE))
  return ProbeEvalData(dataset=ds, num_tracks=num_tracks, num_batches=num_batches,
                       track_range=(start, stop), chunks_per_track=chunks)
