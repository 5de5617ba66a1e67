"""Opening TFDS datasets by "name/config": data dir, auto-prepared built-ins, label specs.

Datasets are named as in TFDS, `"name/config"` (optionally `"name/config:1.0.0"`). Built-in
generated datasets (`synthetic_music`) are prepared automatically on first use. Real datasets
need the user's manual download and are prepared once with `python -m data_pipelines.prepare`;
opening one that is not prepared raises `DatasetNotPreparedError` with that exact command.

Auto-preparation writes into the data dir; with several processes sharing one data dir,
prepare once beforehand (e.g. on process 0, or with `data_pipelines.prepare`) so that they do
not race.
"""

from __future__ import annotations

import logging
import os
from typing import Sequence

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from data_pipelines import conventions

DATA_DIR_ENV = "TFDS_DATA_DIR"  # TFDS's own variable.
DEFAULT_DATA_DIR = "~/ssc_jax_data"
# Datasets that generate themselves (no manual download): prepared on first use.
GENERATED_DATASETS = frozenset({"synthetic_music"})
# Features that are never labels.
NON_LABEL_FEATURES = frozenset({"audio", "track_id"})
_LOG = logging.getLogger(__name__)


class DatasetNotPreparedError(ValueError):
  """A dataset that needs a manual download has not been prepared in the data dir."""


def resolve_data_dir(explicit: str | None = None) -> str:
  """The TFDS data dir, the one rule every reader and `prepare` follow.

  Args:
    explicit: a config's `data.data_dir` or a `--data_dir` flag; "" or None when not given.

  Returns:
    `explicit` if set, else $TFDS_DATA_DIR, else ~/ssc_jax_data; `~` expanded.
  """
  return os.path.expanduser(explicit or os.environ.get(DATA_DIR_ENV) or DEFAULT_DATA_DIR)


def dataset_name(name_and_config: str) -> str:
  """`"name/config:1.0.0"` -> `"name"`."""
  return name_and_config.split(":")[0].split("/")[0].strip()


def register_builders() -> None:
  """Imports the modules that register ssc_jax's TFDS builders.

  `data_pipelines.builders` (real datasets) is optional: its absence is not an error, but an
  import error inside it is raised.
  """
  # pylint: disable=g-import-not-at-top,import-outside-toplevel,unused-import
  from data_pipelines import synthetic_music  # noqa: F401
  try:
    import data_pipelines.builders  # noqa: F401
  except ModuleNotFoundError as e:
    if e.name != "data_pipelines.builders":
      raise


def prepare_command(name_and_config: str, data_dir: str) -> str:
  """The command that prepares a manual-download dataset."""
  return (f"python -m data_pipelines.prepare --dataset={name_and_config} "
          f"--manual_dir=<DIR> --data_dir={data_dir}")


def _not_prepared(name_and_config: str, data_dir: str) -> DatasetNotPreparedError:
  return DatasetNotPreparedError(
      f"Dataset '{name_and_config}' is not prepared in data dir '{data_dir}'. Download its "
      f"audio and annotations yourself, then prepare it once with:\n"
      f"  {prepare_command(name_and_config, data_dir)}\n"
      f"(<DIR> is the folder holding the download; see `python -m data_pipelines.prepare "
      f"--help` for the expected layout.)")


def get_builder(name_and_config: str, data_dir: str) -> tfds.core.DatasetBuilder:
  """Returns a prepared TFDS builder, preparing built-in generated datasets on first use.

  Args:
    name_and_config: TFDS `"name/config"`, e.g. `"synthetic_music/demo"`.
    data_dir: TFDS data dir.

  Returns:
    A builder whose `as_dataset` can be read.

  Raises:
    ValueError: the name is empty.
    DatasetNotPreparedError: the dataset is unknown, or needs a manual download and is not
      prepared in `data_dir`; the message holds the command that prepares it.
  """
  if not name_and_config or not dataset_name(name_and_config):
    raise ValueError("Empty dataset name; expected a TFDS 'name/config'.")
  register_builders()
  try:
    builder = tfds.builder(name_and_config, data_dir=data_dir)
  except tfds.core.DatasetNotFoundError as e:
    raise _not_prepared(name_and_config, data_dir) from e
  if builder.is_prepared():
    return builder
  if dataset_name(name_and_config) in GENERATED_DATASETS:
    _LOG.info("Generating %s in %s (first use).", name_and_config, data_dir)
    builder.download_and_prepare()
    return builder
  raise _not_prepared(name_and_config, data_dir)


def _metadata_labels(builder: tfds.core.DatasetBuilder) -> dict[str, dict]:
  metadata = builder.info.metadata or {}
  return dict(metadata.get("labels", {}) or {})


def _is_label_feature(feature: tfds.features.FeatureConnector) -> bool:
  if isinstance(feature, tfds.features.ClassLabel):
    return True
  if isinstance(feature, tfds.features.Sequence):
    return isinstance(feature.feature, tfds.features.ClassLabel)
  if isinstance(feature, tfds.features.Tensor) and not isinstance(feature, tfds.features.Text):
    shape = tuple(feature.shape)
    numeric = np.dtype(feature.np_dtype).kind in "biuf"
    return numeric and len(shape) <= 1 and all(d is not None for d in shape)
  return False


def label_keys(builder: tfds.core.DatasetBuilder) -> list[str]:
  """The label features of a builder: ClassLabel, Sequence(ClassLabel), Tensor [] or [K]."""
  features = builder.info.features
  return sorted(k for k, f in features.items()
                if k not in NON_LABEL_FEATURES and _is_label_feature(f))


def label_info(builder: tfds.core.DatasetBuilder, label_key: str
               ) -> tuple[int, str, list[str]]:
  """Describes one label feature of a dataset.

  Kinds: a ClassLabel is 'multiclass'; a Sequence(ClassLabel) is 'multilabel'; a float Tensor
  [K] is 'multilabel' and a scalar Tensor is 'regression' (K = 1), unless the builder's
  `info.metadata['labels'][label_key]['kind']` says otherwise (e.g. 2-D regression targets).
  Names come from the ClassLabel, else from `info.metadata['labels'][label_key]['names']`,
  else `"<label_key>_<i>"`.

  Args:
    builder: a TFDS builder.
    label_key: the label feature's name.

  Returns:
    (K, kind, names): number of classes (or regression outputs), one of
    `conventions.LABEL_KINDS`, K names.

  Raises:
    ValueError: `label_key` is not a label feature (the message lists those the dataset has),
      or the builder's metadata contradicts the feature.
  """
  keys = label_keys(builder)
  if label_key not in keys:
    raise ValueError(
        f"label_key '{label_key}' is not a label feature of dataset "
        f"'{builder.info.full_name}'; its label features are: {keys or 'none'}.")
  feature = builder.info.features[label_key]
  meta = _metadata_labels(builder).get(label_key, {}) or {}
  if isinstance(feature, tfds.features.ClassLabel):
    num, kind, names = feature.num_classes, conventions.MULTICLASS, list(feature.names)
  elif isinstance(feature, tfds.features.Sequence):
    num, kind = feature.feature.num_classes, conventions.MULTILABEL
    names = list(feature.feature.names)
  else:
    shape = tuple(feature.shape)
    num = int(shape[0]) if shape else 1
    kind = conventions.REGRESSION if not shape else conventions.MULTILABEL
    names = list(meta.get("names") or [f"{label_key}_{i}" for i in range(num)])
  kind = meta.get("kind") or kind
  if kind not in conventions.LABEL_KINDS:
    raise ValueError(f"Dataset '{builder.info.full_name}': metadata labels['{label_key}'] has "
                     f"kind '{kind}'; expected one of {conventions.LABEL_KINDS}.")
  if len(names) != num:
    raise ValueError(f"Dataset '{builder.info.full_name}': label '{label_key}' has {num} "
                     f"classes but {len(names)} names in its metadata.")
  return num, kind, names


def split_num_examples(builder: tfds.core.DatasetBuilder, split: str) -> int:
  """Number of examples of a base split, with a clear error for unknown split names."""
  splits = builder.info.splits
  if split not in splits.keys():
    raise ValueError(f"Dataset '{builder.info.full_name}' has no split '{split}'; its splits "
                     f"are: {sorted(splits.keys())}.")
  return int(splits[split].num_examples)


# ------------------------------------------------------------------------------------------------
# Reading examples together with their index in the split.
#
# The "index" of an example is its position in the split's shard files read one after the
# other (shard 0 first); it is the order that TFDS slicing (`split[a:b]`) uses. It does not
# depend on file shuffling or interleaving: it is recovered from TFDS's `tfds_id`
# ("<shard file>__<record>").
# ------------------------------------------------------------------------------------------------


def _shard_offset_table(builder: tfds.core.DatasetBuilder, split: str):
  split_info = builder.info.splits[split]
  lengths = np.asarray(split_info.shard_lengths, np.int64)
  offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
  names = [os.path.basename(f) for f in split_info.filenames]
  init = tf.lookup.KeyValueTensorInitializer(tf.constant(names), tf.constant(offsets))
  return tf.lookup.StaticHashTable(init, default_value=-1)


def without_autotune(ds: tf.data.Dataset) -> tf.data.Dataset:
  """`ds` with tf.data's autotuner off: every dataset the project iterates ends with this.

  The autotuner's thread sleeps between optimisations in a timed wait whose period grows
  towards a minute, and deleting the iterator does not always wake it (TensorFlow 2.21): the
  deletion then blocks the caller until the wait ends, e.g. 23 and 41 s after the demo's
  training. Without the autotuner there is no such thread, and `tf.data.AUTOTUNE`
  parallelism is TF's fixed default; the pretraining input delivered the same views/s on 2
  cores (bench/README.md, "Input teardown").
  """
  options = tf.data.Options()
  options.autotune.enabled = False
  return ds.with_options(options)


def read_indexed(builder: tfds.core.DatasetBuilder, split: str, start: int, stop: int, *,
                 keys: Sequence[str], skip_decoding: Sequence[str] = (),
                 shuffle_seed: int | None = None):
  """Reads examples [start, stop) of a split as a tf.data.Dataset with their index.

  Args:
    builder: a prepared builder.
    split: a base split name (no slicing).
    start: first example index; stop: one past the last (0 <= start < stop <= n).
    keys: the features to decode (others are not decoded).
    skip_decoding: features among `keys` returned in their serialized form (e.g. audio bytes).
    shuffle_seed: None reads the shard files in order; an int shuffles them with this seed
      (the index stays the example's index in the split).

  Returns:
    Dataset of dicts {key: tensor for each of `keys`, 'index': int64 scalar}.
  """
  n = split_num_examples(builder, split)
  if not 0 <= start < stop <= n:
    raise ValueError(f"Dataset '{builder.info.full_name}' split '{split}' has {n} examples; "
                     f"cannot read [{start}, {stop}).")
  table = _shard_offset_table(builder, split)
  decoders = tfds.decode.PartialDecoding(
      {k: True for k in keys},
      decoders={k: tfds.decode.SkipDecoding() for k in skip_decoding} or None)
  read_config = tfds.ReadConfig(add_tfds_id=True, try_autocache=False,
                                shuffle_seed=shuffle_seed)
  ds = builder.as_dataset(split=f"{split}[{start}:{stop}]", decoders=decoders,
                          shuffle_files=shuffle_seed is not None, read_config=read_config)
  def add_index(example):
    tfds_id = example.pop("tfds_id")
    shard = tf.strings.regex_replace(tfds_id, r"__[0-9]+$", "")
    record = tf.strings.to_number(tf.strings.regex_replace(tfds_id, r"^.*__", ""), tf.int64)
    offset = table.lookup(shard)
    tf.debugging.assert_non_negative(
        offset, message=f"unknown shard file in tfds_id of {builder.info.full_name}/{split}")
    example["index"] = offset + record
    return example
  return ds.map(add_index, num_parallel_calls=tf.data.AUTOTUNE)


def encoded_num_samples(audio: tf.Tensor) -> tf.Tensor:
  """Samples in an audio feature read with SkipDecoding: raw int16 bytes (2 per sample) or a
  number list; int64 scalar."""
  if audio.dtype == tf.string:
    return tf.cast(tf.strings.length(audio), tf.int64) // 2
  return tf.shape(audio, out_type=tf.int64)[0]


def audio_lengths(builder: tfds.core.DatasetBuilder, split: str, start: int, stop: int,
                  min_needed: int = 0) -> tuple[np.ndarray, bool]:
  """Lengths in samples of the audio of examples [start, stop) of a split, by index.

  Uses the builder's metadata when it settles the question without reading audio:
  `metadata['num_samples'][split]` (a list) for a single-shard split, or a minimum
  (`metadata['min_samples']` or the list's minimum) that already reaches `min_needed`, in which
  case the lengths returned are that lower bound. Otherwise it reads the split once (audio
  bytes are not decoded).

  Args:
    builder: a prepared builder whose audio feature is 'audio'.
    split: base split name.
    start: first example index; stop: one past the last.
    min_needed: the caller only needs to know which lengths are below this.

  Returns:
    (lengths, exact): int64 [stop - start] lengths, and whether they are exact (False: each is
    the lower bound described above, which is >= min_needed).
  """
  n = split_num_examples(builder, split)
  metadata = builder.info.metadata or {}
  listed = (metadata.get("num_samples") or {}).get(split)
  if listed is not None and len(listed) != n:
    listed = None  # Stale or foreign metadata: do not trust it.
  lower = metadata.get("min_samples")
  if listed is not None:
    lower = int(min(listed)) if listed else lower
    if builder.info.splits[split].num_shards == 1:
      return np.asarray(listed[start:stop], np.int64), True
  if lower is not None and int(lower) >= min_needed:
    return np.full(stop - start, int(lower), np.int64), False
  lengths = np.full(stop - start, -1, np.int64)
  ds = read_indexed(builder, split, start, stop, keys=("audio",), skip_decoding=("audio",))
  ds = ds.map(lambda ex: (ex["index"], encoded_num_samples(ex["audio"])))
  for index, length in without_autotune(ds).as_numpy_iterator():
    lengths[index - start] = length
  if (lengths < 0).any():
    raise ValueError(f"Dataset '{builder.info.full_name}' split '{split}': could not read "
                     f"{int((lengths < 0).sum())} of the examples [{start}, {stop}).")
  return lengths, True
