"""Pretraining input: host batches of N adjacent views, labeled items first (spec §4.2, §4.5).

`make_pretrain_dataset(config.data, seed=..., start_step=..., process_index=...,
process_count=...)` returns an infinite tf.data.Dataset of HOST batches:

  'audio':       float32 [B_host, N, T]  int16 PCM / 32768, no amplitude normalisation;
  'labels':      float32 [B_host, K]     one-hot / multi-hot; all zero for unlabeled items;
  'labeled':     bool    [B_host]        True for the first B_l / P items;
  'track_index': int64   [B_host]        global index of the source track (see below);

with B = data.batch_size, P = process_count, B_host = B / P, N = data.num_views,
T = data.view_length.

Mixing (spec §4.5). Every GLOBAL batch holds exactly B_l = int(B·b_s) labeled items
(b_s = data.labeled_share, truncated as in the original), split evenly over the hosts, so
each host batch starts with B_l / P labeled items followed by (B − B_l) / P unlabeled ones.
B and B_l must be divisible by P (`ssc_jax.config_checks` refuses other configs before any
work; this module assumes a config that passed those checks). b_s = 0 leaves the labeled
source unused and b_s = 1 the unlabeled one (its name may then be ""). When no labeled
source is used, K = 1 (all zeros).
Labels must be class labels ('multiclass' or 'multilabel', see `datasets.label_info`), or
real-valued targets with `allow_regression_labels=True` (for a label-similarity loss).
`data.label_key` names one label feature, or several separated by commas
("instrument,register"): their one-/multi-hot vectors are concatenated in that order into one
K-wide vector, so label positives count shared labels over all of them (with threshold T, or
Dice-weighted).

Labeled fraction p_s (data.labeled_fraction) is applied exactly ONCE (spec §10.1, where the
original applies it twice): a subset of round(p_s·n) of the n tracks of the labeled split,
drawn with the run's `seed` only (the same on every host, at every start_step), keeps its
labels. The other labeled-split tracks:
  * join the unlabeled pool, without labels, when the labeled and unlabeled sources are the
    same dataset (same TFDS name/config/version), as in the original's same-task case;
  * are dropped when the sources are different datasets (the original's different-task case).
If both sources are the same split of the same dataset, the unlabeled pool is that split
minus the labeled subset.

Track index. Tracks of the labeled source's split get their example index in that split
(0 … n_L − 1); tracks of a different unlabeled split get n_L + their index (n_L = 0 when no
labeled source is used), so indices never collide and a track keeps its index whichever pool
it lands in. The example index is the position in the split's shard files read in order
(as TFDS slicing counts), recovered from `tfds_id` whatever order the files are read in.

Views (spec §4.2). For a clip of L samples: if L ≥ N·T, one window of N·T samples starts
uniformly in [0, L − N·T] (the original draws from [0, L − N·T), which fails when L = N·T)
and is cut into N consecutive, non-overlapping views. Else, if L ≥ T, the N views start
independently and uniformly in [0, L − T] (they may overlap). Clips shorter than T are
excluded before streaming; their count is logged as a warning (never zero-padded). Lengths
come from the builder's metadata when it has them, else from one read of the host's shard.

Sharding. Every split's examples [0, n) are cut into P contiguous ranges; host p streams only
the tracks of range p, so two hosts never see the same track. Each host stream is shuffled
(file order and a `data.shuffle_buffer`-item buffer of cropped items), repeated forever and
batched with drop_remainder, so shapes are static and every host yields the same (unbounded)
number of batches. A host whose range holds no usable track of a needed pool raises.

Randomness and resume. All randomness (file order, crop starts, pool mixing, shuffling) is
keyed on (seed, start_step, process_index, stream): crop starts come from stateless ops on
(stream key, element counter). The same arguments give the same batches. Training builds the
stream with start_step=0 and reads it through a `HostBatchIterator`, whose tf.data iterator
state (file positions, shuffle buffers, element counters, in-memory caches) is saved with
every checkpoint, one file set per host: a resumed run restores it and reads exactly the
continuation of the interrupted stream. Where no saved state fits (a checkpoint from another
process count, or none), the stream is rebuilt with start_step=s: fresh and deterministic,
not the continuation. The labeled subset never depends on start_step.

Validation (spec §2.6). `ValidationInput` streams the validation splits
(`train.eval_labeled_split` / `train.eval_unlabeled_split`) with the same mixing, host sharding
and crops, and yields the same first `train.eval_batches` host batches every time it is
iterated; see `plan_validation_input` for which tracks carry labels.

Throughput and memory. Reading, decoding and cropping run in parallel tf.data maps. A pool
part whose host share is small (≤ data.cache_megabytes, default 1024 MiB, estimated from the
split's size on disk) is cached in memory after its first pass, so a small labeled subset of
a large split is not re-read from disk every epoch. Larger parts stream from the TFDS files;
a p_s subset of such a part is filtered out of a full read of the host's range (reads grow as
1/p_s). The shuffle buffers hold cropped int16 items (N·T·2 bytes each, 238 KB at N=2).
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import math
import zlib
from collections.abc import Iterator
from typing import Any, Sequence

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from data_pipelines import conventions
from data_pipelines import datasets
from data_pipelines import decode

_DEFAULT_CACHE_MEGABYTES = 1024
_LOG = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class PoolPart:
  """The tracks of one dataset split that this host streams into one pool.

  Attributes:
    name: TFDS "name/config" of the dataset.
    split: base split name.
    builder: the prepared builder.
    offset: added to an example index to give its global track index.
    indices: int64 [m] sorted example indices of this host's usable tracks.
    with_labels: whether the items carry their labels (labeled pool) or zeros.
  """
  name: str
  split: str
  builder: Any
  offset: int
  indices: np.ndarray
  with_labels: bool


@dataclasses.dataclass(frozen=True)
class PretrainPlan:
  """What one host streams: sizes, label spec and the tracks of both pools.

  Attributes:
    labeled_per_host: labeled items per host batch (B_l / P).
    unlabeled_per_host: unlabeled items per host batch ((B − B_l) / P).
    num_labels: K, the width of 'labels' (the sum of `label_widths`).
    label_keys: the label features read from the labeled source, concatenated in this order
      (empty when no labeled source is used).
    label_widths: the number of classes of each of `label_keys` ((1,) when there is none).
    labeled_parts: parts of the labeled pool (zero or one).
    unlabeled_parts: parts of the unlabeled pool (zero, one or two).
    num_views: N.
    view_length: T.
    num_labeled_tracks: size of the labeled subset over all hosts (round(p_s·n)).
    excluded: number of this host's tracks excluded for being shorter than T, per pool.
  """
  labeled_per_host: int
  unlabeled_per_host: int
  num_labels: int
  label_keys: tuple[str, ...]
  label_widths: tuple[int, ...]
  labeled_parts: tuple[PoolPart, ...]
  unlabeled_parts: tuple[PoolPart, ...]
  num_views: int
  view_length: int
  num_labeled_tracks: int
  excluded: dict[str, int]


# ------------------------------------------------------------------------------------------------
# Planning: checks, pools, p_s subset, host shards, short-clip exclusion. NumPy only.
# ------------------------------------------------------------------------------------------------


def _batch_split(data_config: Any, process_index: int, process_count: int
                 ) -> tuple[int, int]:
  """(B_l, B_u) of the global batch. The config's rules (sizes in range, B and B_l divisible by
  the process count) are checked once, by `ssc_jax.config_checks.check_pretrain_config`."""
  if process_count < 1 or not 0 <= process_index < process_count:
    raise ValueError(f"process_index={process_index} must be in [0, process_count="
                     f"{process_count}).")
  batch_size = int(data_config.batch_size)
  num_labeled = int(batch_size * float(data_config.labeled_share))  # The original's int(B·b_s).
  return num_labeled, batch_size - num_labeled


def labeled_subset(num_tracks: int, fraction: float, seed: int) -> np.ndarray:
  """The p_s subset: round(fraction·n) example indices drawn with `seed`, sorted.

  Args:
    num_tracks: n, tracks in the labeled split.
    fraction: p_s in [0, 1].
    seed: the run's seed (the subset must not depend on host or step).

  Returns:
    int64 [round(p_s·n)] sorted distinct indices in [0, n).
  """
  count = int(math.floor(fraction * num_tracks + 0.5))
  rng = np.random.default_rng(np.random.SeedSequence([seed % 2**63, 0x705E]))
  return np.sort(rng.permutation(num_tracks)[:count]).astype(np.int64)


def _host_range(num: int, process_index: int, process_count: int) -> tuple[int, int]:
  return num * process_index // process_count, num * (process_index + 1) // process_count


def _open(name: str, split: str, data_dir: str, field: str):
  if not name:
    raise ValueError(f"data.{field} is empty but this configuration needs it "
                     f"(see data.labeled_share).")
  builder = datasets.get_builder(name, data_dir)
  datasets.split_num_examples(builder, split)  # Clear error for an unknown split.
  return builder


def _check_audio(builder, name: str, sample_rate: int) -> None:
  features = builder.info.features
  if "audio" not in features:
    raise ValueError(f"Dataset '{name}' has no 'audio' feature; features: {list(features)}.")
  feature = features["audio"]
  shape = tuple(feature.shape)
  if len(shape) != 1 or feature.np_dtype not in (np.int16, np.float32):
    raise ValueError(f"Dataset '{name}': feature 'audio' must be mono int16 or float32 [L], "
                     f"got shape {shape} dtype {feature.np_dtype}.")
  rate = (builder.info.metadata or {}).get("sample_rate")
  if rate is not None and int(rate) != int(sample_rate):
    raise ValueError(f"Dataset '{name}' stores audio at {rate} Hz but data.sample_rate is "
                     f"{sample_rate}.")


@dataclasses.dataclass(frozen=True)
class _Source:
  """Tracks of one split that go into one pool, before host sharding."""
  name: str
  builder: Any
  split: str
  offset: int
  indices: np.ndarray
  with_labels: bool
  pool: str


def split_label_keys(label_key: str) -> tuple[str, ...]:
  """The label features named by `data.label_key` ("tags" or "instrument,register")."""
  keys = tuple(k.strip() for k in str(label_key).split(","))
  if not all(keys) or len(set(keys)) != len(keys):
    raise ValueError(f"data.label_key {label_key!r}: give one label feature or several "
                     f"distinct ones separated by commas.")
  return keys


def label_features(data_config: Any) -> tuple[tuple[str, str, tuple[str, ...]], ...]:
  """(label key, kind, class names) of each `data.label_key` feature of the labeled source.

  Returns () when no batch holds labeled items (b_s = 0). Opens (and, for built-in generated
  datasets, prepares) the labeled source.
  """
  if not int(int(data_config.batch_size) * float(data_config.labeled_share)):
    return ()
  builder = _open(str(data_config.labeled), str(data_config.labeled_split),
                  datasets.resolve_data_dir(data_config.get("data_dir")), "labeled")
  features = []
  for key in split_label_keys(data_config.label_key):
    _, kind, names = datasets.label_info(builder, key)
    features.append((key, kind, tuple(names)))
  return tuple(features)


def _labeled_sources(data_config: Any, data_dir: str, seed: int, allow_regression_labels: bool
                     ) -> tuple[list[_Source], Any, tuple[int, ...], np.ndarray]:
  """The labeled pool (the p_s subset); returns (sources, builder, label widths, selected)."""
  name, split = str(data_config.labeled), str(data_config.labeled_split)
  fraction = float(data_config.labeled_fraction)
  builder = _open(name, split, data_dir, "labeled")
  _check_audio(builder, name, int(data_config.get("sample_rate", conventions.SAMPLE_RATE)))
  widths = []
  for label_key in split_label_keys(data_config.label_key):
    num_labels, kind, _ = datasets.label_info(builder, label_key)
    if kind == conventions.REGRESSION and not allow_regression_labels:
      raise ValueError(f"data.label_key '{label_key}' of '{name}' is a regression target; "
                       f"SemiSupCon label positives need class labels (or "
                       f"loss.similarity='regression').")
    widths.append(num_labels)
  n = datasets.split_num_examples(builder, split)
  selected = labeled_subset(n, fraction, seed)
  if not selected.size:
    raise ValueError(
        f"The labeled source '{name}' split '{split}' keeps no track: round("
        f"data.labeled_fraction * n) = round({fraction} * {n}) = 0, but data.labeled_share "
        f"asks for labeled items.")
  sources = [_Source(name, builder, split, 0, selected, True, "labeled")]
  return sources, builder, tuple(widths), selected


def _unlabeled_sources(data_config: Any, data_dir: str, lab_builder: Any,
                       selected: np.ndarray) -> list[_Source]:
  """The unlabeled pool: the unlabeled split, plus the labeled split's unselected tracks when
  both sources are the same dataset (see the module docstring)."""
  name, split = str(data_config.unlabeled), str(data_config.unlabeled_split)
  lab_split = str(data_config.labeled_split)
  builder = _open(name, split, data_dir, "unlabeled")
  _check_audio(builder, name, int(data_config.get("sample_rate", conventions.SAMPLE_RATE)))
  same = lab_builder is not None and builder.info.full_name == lab_builder.info.full_name
  n_lab = datasets.split_num_examples(lab_builder, lab_split) if lab_builder else 0
  rest = np.setdiff1d(np.arange(n_lab, dtype=np.int64), selected)
  if same and split == lab_split:
    sources = [_Source(name, builder, split, 0, rest, False, "unlabeled")]
  else:
    n = datasets.split_num_examples(builder, split)
    sources = [_Source(name, builder, split, n_lab, np.arange(n, dtype=np.int64), False,
                       "unlabeled")]
    if same and rest.size:
      sources.append(_Source(name, lab_builder, lab_split, 0, rest, False, "unlabeled"))
  if not sum(source.indices.size for source in sources):
    why = ("data.labeled_fraction labels all of them" if same and split == lab_split
           else "the split is empty")
    raise ValueError(f"The unlabeled pool is empty: '{name}' split '{split}' has no track "
                     f"left ({why}), but data.labeled_share asks for unlabeled items.")
  return sources


def _shard_for_host(sources: Sequence[_Source], process_index: int, process_count: int,
                    num_views: int, view_length: int
                    ) -> tuple[dict[str, list[PoolPart]], dict[str, int], dict[str, int]]:
  """Keeps this host's range of every split and drops clips shorter than one view.

  Returns:
    (parts by pool, excluded short clips by pool, clips using independent chunks by pool).
  """
  parts = {"labeled": [], "unlabeled": []}
  excluded = {"labeled": 0, "unlabeled": 0}
  chunked = {"labeled": 0, "unlabeled": 0}
  for src in sources:
    n = datasets.split_num_examples(src.builder, src.split)
    lo, hi = _host_range(n, process_index, process_count)
    mine = src.indices[(src.indices >= lo) & (src.indices < hi)]
    if not mine.size:
      continue
    start, stop = int(mine[0]), int(mine[-1]) + 1
    lengths, exact = datasets.audio_lengths(src.builder, src.split, start, stop,
                                            min_needed=view_length)
    lengths = lengths[mine - start]
    excluded[src.pool] += int((lengths < view_length).sum())
    if exact:  # Only for the log; a lower bound cannot tell.
      chunked[src.pool] += int(((lengths >= view_length) &
                                (lengths < num_views * view_length)).sum())
    mine = mine[lengths >= view_length]
    if mine.size:
      parts[src.pool].append(
          PoolPart(src.name, src.split, src.builder, src.offset, mine, src.with_labels))
  return parts, excluded, chunked


def plan_pretrain_input(data_config: Any, *, seed: int, process_index: int = 0,
                        process_count: int = 1,
                        allow_regression_labels: bool = False) -> PretrainPlan:
  """Decides which tracks this host streams into which pool (see the module docstring).

  Args:
    data_config: the `config.data` ConfigDict of a config that passed
      `ssc_jax.config_checks.check_pretrain_config`.
    seed: the run's seed.
    process_index: this host, in [0, process_count).
    process_count: number of hosts P.
    allow_regression_labels: accept real-valued label features (their values are the
      label vector) for a label-similarity loss; else only class labels.

  Returns:
    The plan. Opens (and, for built-in generated datasets, prepares) the sources.

  Raises:
    ValueError: missing or empty sources, bad label key, a host without usable tracks.
    datasets.DatasetNotPreparedError: a source is not prepared.
  """
  num_labeled, num_unlabeled = _batch_split(data_config, process_index, process_count)
  data_dir = datasets.resolve_data_dir(data_config.get("data_dir"))
  n_views, t = int(data_config.num_views), int(data_config.view_length)
  sources, lab_builder, label_widths, selected = [], None, (1,), np.zeros(0, np.int64)
  label_keys = ()
  if num_labeled:
    sources, lab_builder, label_widths, selected = _labeled_sources(
        data_config, data_dir, seed, allow_regression_labels)
    label_keys = split_label_keys(data_config.label_key)
  if num_unlabeled:
    sources += _unlabeled_sources(data_config, data_dir, lab_builder, selected)
  parts, excluded, chunked = _shard_for_host(sources, process_index, process_count, n_views, t)

  where = f"Pretraining input (process {process_index} of {process_count})"
  for pool in ("labeled", "unlabeled"):
    if excluded[pool]:
      _LOG.warning("%s: excluded %d %s track(s) shorter than one view (T=%d samples).",
                   where, excluded[pool], pool, t)
    if chunked[pool]:
      _LOG.info("%s: %d %s track(s) are shorter than N*T=%d samples and use %d independent "
                "random chunks.", where, chunked[pool], pool, n_views * t, n_views)
    needed = num_labeled if pool == "labeled" else num_unlabeled
    if needed and not parts[pool]:
      raise ValueError(
          f"{where} has no usable {pool} track: its shard of the {pool} pool is empty after "
          f"excluding {excluded[pool]} clip(s) shorter than T={t}; use fewer processes or more "
          f"data.")
  return PretrainPlan(
      labeled_per_host=num_labeled // process_count,
      unlabeled_per_host=num_unlabeled // process_count,
      num_labels=sum(label_widths), label_keys=label_keys, label_widths=label_widths,
      labeled_parts=tuple(parts["labeled"]), unlabeled_parts=tuple(parts["unlabeled"]),
      num_views=n_views, view_length=t,
      num_labeled_tracks=int(selected.size), excluded=excluded)


# ------------------------------------------------------------------------------------------------
# Streaming: read → keep the part's tracks → (cache) → repeat → crop views → shuffle.
# ------------------------------------------------------------------------------------------------


def _stream_seed(seed: int, start_step: int, process_index: int, stream: str) -> int:
  """A 63-bit seed keyed on (seed, start_step, process_index, stream name)."""
  words = np.random.SeedSequence(
      [seed % 2**63, start_step % 2**63, process_index, zlib.crc32(stream.encode())]
  ).generate_state(2, dtype=np.uint32)
  return int((int(words[0]) << 31) ^ int(words[1])) & (2**63 - 1)


def label_vector(feature: tfds.features.FeatureConnector, value: tf.Tensor,
                 num_labels: int) -> tf.Tensor:
  """A decoded label feature as float32 [K] (one-hot, multi-hot or the tensor itself)."""
  if isinstance(feature, tfds.features.ClassLabel):
    return tf.one_hot(value, num_labels, dtype=tf.float32)
  if isinstance(feature, tfds.features.Sequence):
    hot = tf.one_hot(value, num_labels, dtype=tf.float32)
    return tf.minimum(tf.reduce_sum(hot, axis=0), 1.0)
  return tf.reshape(tf.cast(value, tf.float32), [num_labels])


def crop_views(audio: tf.Tensor, seed: tf.Tensor, num_views: int, view_length: int
               ) -> tf.Tensor:
  """N views of one clip, spec §4.2 (see the module docstring).

  Args:
    audio: [L] int16 or float32, L >= T.
    seed: int64 [2] stateless seed.
    num_views: N.
    view_length: T.

  Returns:
    [N, T] of audio's dtype.
  """
  length = tf.shape(audio, out_type=tf.int64)[0]
  window = num_views * view_length
  tf.debugging.assert_greater_equal(
      length, tf.constant(view_length, tf.int64),
      message="a clip shorter than one view reached the crop (wrong length metadata?)")
  seeds = tf.random.experimental.stateless_split(seed, 2)
  window_start = tf.random.stateless_uniform(
      [], seeds[0], minval=0, maxval=tf.maximum(length - window, 0) + 1, dtype=tf.int64)
  chunk_starts = tf.random.stateless_uniform(
      [num_views], seeds[1], minval=0, maxval=length - view_length + 1, dtype=tf.int64)
  adjacent = window_start + view_length * tf.range(num_views, dtype=tf.int64)
  starts = tf.where(length >= window, adjacent, chunk_starts)
  views = tf.stack([audio[starts[i]:starts[i] + view_length] for i in range(num_views)])
  return tf.ensure_shape(views, [num_views, view_length])


def _part_stream(part: PoolPart, plan: PretrainPlan, seed: int, cache_bytes: int
                 ) -> tf.data.Dataset:
  """Infinite stream of cropped items of one pool part (unshuffled across items)."""
  builder, split = part.builder, part.split
  start, stop = int(part.indices[0]), int(part.indices[-1]) + 1
  keys = ("audio",) + (plan.label_keys if part.with_labels else ())
  ds = datasets.read_indexed(builder, split, start, stop, keys=keys,
                             shuffle_seed=seed % 2**31)
  member = np.zeros(stop - start, bool)
  member[part.indices - start] = True
  member = tf.constant(member)
  ds = ds.filter(lambda ex: tf.gather(member, ex["index"] - start))
  split_info = builder.info.splits[split]
  bytes_per_track = split_info.num_bytes / max(1, split_info.num_examples)
  if part.indices.size * bytes_per_track <= cache_bytes:
    ds = ds.cache()
  ds = ds.repeat().enumerate()

  features = [builder.info.features[k] for k in plan.label_keys] if part.with_labels else []
  base = tf.constant(seed, tf.int64)

  def make_item(counter, ex):
    views = crop_views(ex["audio"], tf.stack([base, counter]), plan.num_views,
                       plan.view_length)
    if features:
      labels = tf.concat([label_vector(f, ex[k], w) for f, k, w in
                          zip(features, plan.label_keys, plan.label_widths)], axis=0)
    else:
      labels = tf.zeros([plan.num_labels], tf.float32)
    return {
        "audio": views,  # Still int16 (half the memory in the shuffle buffer).
        "labels": labels,
        "labeled": tf.constant(part.with_labels),
        "track_index": ex["index"] + part.offset,
    }

  return ds.map(make_item, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)


def _pool_stream(parts: Sequence[PoolPart], plan: PretrainPlan, pool: str, batch: int,
                 data_config: Any, seed: int, start_step: int, process_index: int
                 ) -> tf.data.Dataset:
  """Shuffled, batched infinite stream of one pool on this host."""
  cache_bytes = int(data_config.get("cache_megabytes", _DEFAULT_CACHE_MEGABYTES)) * 2**20
  streams = []
  for i, part in enumerate(parts):
    name = f"{pool}/{i}/{part.name}/{part.split}"
    streams.append(_part_stream(
        part, plan, _stream_seed(seed, start_step, process_index, name), cache_bytes))
  if len(streams) == 1:
    ds = streams[0]
  else:  # Each track equally likely: weight the parts by their number of tracks.
    weights = [float(p.indices.size) for p in parts]
    ds = tf.data.Dataset.sample_from_datasets(
        streams, weights=[w / sum(weights) for w in weights],
        seed=_stream_seed(seed, start_step, process_index, pool + "/mix") % 2**31)
  ds = ds.shuffle(int(data_config.shuffle_buffer),
                  seed=_stream_seed(seed, start_step, process_index, pool + "/shuffle") % 2**31)
  ds = ds.batch(batch, drop_remainder=True)
  # All parts of a pool come from one dataset, so they share the audio dtype.
  is_int16 = parts[0].builder.info.features["audio"].np_dtype == np.int16
  scale = 1.0 / decode.INT16_SCALE if is_int16 else 1.0

  def to_float(b):
    return {**b, "audio": tf.cast(b["audio"], tf.float32) * scale}

  return ds.map(to_float, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)


def make_pretrain_dataset(data_config: Any, *, seed: int, start_step: int = 0,
                          process_index: int = 0, process_count: int = 1,
                          allow_regression_labels: bool = False) -> tf.data.Dataset:
  """Infinite dataset of this host's pretraining batches (see the module docstring).

  Args:
    data_config: the `config.data` ConfigDict. Optional field `cache_megabytes` (default
      1024): the largest host share of a pool kept in memory after its first pass.
    seed: the run's seed.
    start_step: the training step the stream starts at (0, or the resumed step).
    process_index: this host, in [0, process_count).
    process_count: number of hosts P.
    allow_regression_labels: see `plan_pretrain_input`.

  Returns:
    tf.data.Dataset of dicts 'audio' float32 [B/P, N, T], 'labels' float32 [B/P, K],
    'labeled' bool [B/P], 'track_index' int64 [B/P]; labeled items first.

  Raises:
    ValueError: see `plan_pretrain_input`.
  """
  plan = plan_pretrain_input(data_config, seed=seed, process_index=process_index,
                             process_count=process_count,
                             allow_regression_labels=allow_regression_labels)
  return _dataset_of_plan(plan, data_config, seed, start_step, process_index)


def _dataset_of_plan(plan: PretrainPlan, data_config: Any, seed: int, start_step: int,
                     process_index: int) -> tf.data.Dataset:
  """The infinite host-batch stream of `plan` (see `make_pretrain_dataset`)."""
  pools = []
  for pool, parts, batch in (("labeled", plan.labeled_parts, plan.labeled_per_host),
                             ("unlabeled", plan.unlabeled_parts, plan.unlabeled_per_host)):
    if batch:
      pools.append(_pool_stream(parts, plan, pool, batch, data_config, seed, start_step,
                                process_index))
  if len(pools) == 1:
    ds = pools[0]
  else:
    ds = tf.data.Dataset.zip(tuple(pools)).map(
        lambda a, b: {k: tf.concat([a[k], b[k]], axis=0) for k in a},
        num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
  options = tf.data.Options()
  options.deterministic = True
  options.experimental_optimization.inject_prefetch = False
  return datasets.without_autotune(ds.with_options(options).prefetch(tf.data.AUTOTUNE))


def plan_validation_input(data_config: Any, *, labeled_split: str, unlabeled_split: str,
                          seed: int, process_index: int = 0, process_count: int = 1,
                          allow_regression_labels: bool = False) -> PretrainPlan:
  """The plan of the held-out validation set: `data_config` with the validation splits.

  Every track of the labeled validation split keeps its labels (p_s is a budget of training
  labels, not applied to validation), except when both pools would read the same split of the
  same dataset: then round(b_s·n) of its tracks (drawn with `seed`) form the labeled pool and
  the rest the unlabeled pool, so no track is in both.

  Args:
    data_config: the `config.data` ConfigDict of the run.
    labeled_split: split of `data.labeled` to validate on.
    unlabeled_split: split of `data.unlabeled` to validate on.
    seed: the run's seed.
    process_index: this host, in [0, process_count).
    process_count: number of hosts P.
    allow_regression_labels: see `plan_pretrain_input`.

  Returns:
    The plan (see `plan_pretrain_input`, whose errors it raises).
  """
  val = data_config.copy_and_resolve_references()
  same = (val.labeled == val.unlabeled and labeled_split == unlabeled_split)
  val.labeled_split, val.unlabeled_split = labeled_split, unlabeled_split
  val.labeled_fraction = float(val.labeled_share) if same else 1.0
  return plan_pretrain_input(val, seed=seed, process_index=process_index,
                             process_count=process_count,
                             allow_regression_labels=allow_regression_labels)


class ValidationInput:
  """This host's share of a fixed validation set: the same `num_batches` host batches (same
  tracks, crops and order) every time it is iterated.

  Each iteration rebuilds the stream of the plan from its seeds (start_step 0) and takes its
  first `num_batches` batches, so nothing is held in memory between evaluations. Batches are
  laid out as the training input's (labeled items first, B / P items per host).

  Args:
    data_config: the `config.data` ConfigDict of the run.
    num_batches: host batches per pass (the same on every host).
    labeled_split, unlabeled_split, seed, process_index, process_count,
      allow_regression_labels: see `plan_validation_input`.
  """

  def __init__(self, data_config: Any, *, labeled_split: str, unlabeled_split: str,
               num_batches: int, seed: int, process_index: int = 0, process_count: int = 1,
               allow_regression_labels: bool = False):
    if num_batches < 1:
      raise ValueError(f"train.eval_batches must be >= 1, got {num_batches}.")
    self._plan = plan_validation_input(data_config, labeled_split=labeled_split,
                                       unlabeled_split=unlabeled_split, seed=seed,
                                       process_index=process_index,
                                       process_count=process_count,
                                       allow_regression_labels=allow_regression_labels)
    self._data_config, self._seed, self._process_index = data_config, seed, process_index
    self.num_batches = num_batches

  def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
    ds = _dataset_of_plan(self._plan, self._data_config, self._seed, 0, self._process_index)
    return ds.take(self.num_batches).as_numpy_iterator()


class HostBatchIterator:
  """This host's pretraining batches as NumPy dicts, with a saveable position.

  The position is the tf.data iterator state (`tf.train.Checkpoint`), so a restored iterator
  yields exactly the batches the saved one would have yielded next.

  Args:
    dataset: a dataset of `make_pretrain_dataset`.
  """

  def __init__(self, dataset: tf.data.Dataset):
    self._iterator = iter(dataset)
    self._checkpoint = tf.train.Checkpoint(iterator=self._iterator)

  def __iter__(self) -> "HostBatchIterator":
    return self

  def __next__(self) -> dict[str, np.ndarray]:
    return {k: v.numpy() for k, v in next(self._iterator).items()}

  def save(self, prefix: str) -> None:
    """Writes the iterator state to files `prefix.*` (any tf.io.gfile path, gs:// too)."""
    self._checkpoint.write(prefix)

  def restore(self, prefix: str) -> None:
    """Moves the iterator to the position saved at `prefix`.

    Raises:
      tf.errors.OpError / ValueError: no state at `prefix`, or one of a different pipeline.
    """
    self._checkpoint.read(prefix).assert_consumed()


def batch_digest(batch: dict[str, np.ndarray]) -> str:
  """sha256 over a host batch's keys, dtypes, shapes and bytes (to compare streams)."""
  h = hashlib.sha256()
  for k in sorted(batch):
    v = np.ascontiguousarray(batch[k])
    h.update(f"{k}:{v.dtype.str}:{v.shape}".encode())
    h.update(v.tobytes())
  return h.hexdigest()
