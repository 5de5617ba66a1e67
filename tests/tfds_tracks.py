"""Test reference reader: whole tracks and their labels in memory, straight from TFDS.

`load_tracks("synthetic_music/demo", "test", data_dir, ["key", "pitch_classes"])` returns the
split's tracks in index order (the order of the split's shard files, as TFDS slicing counts)
as NumPy arrays. The evaluation tests compare the probe's input path (chunking, sharding,
exactly-once reduction) with plain model calls on these tracks. Small sets only.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from data_pipelines import conventions
from data_pipelines import datasets

_INT16_SCALE = 32768.0


def _label_array(feature: tfds.features.FeatureConnector, values: list, num: int,
                 kind: str) -> np.ndarray:
  if isinstance(feature, tfds.features.ClassLabel):
    return np.asarray(values, np.int64).reshape(len(values))
  if isinstance(feature, tfds.features.Sequence):
    hot = np.zeros((len(values), num), np.float32)
    for row, ids in enumerate(values):
      hot[row, np.asarray(ids, np.int64)] = 1.0
    return hot
  out = np.asarray(values, np.float32)
  if kind == conventions.REGRESSION and out.ndim == 1:
    return out
  return out.reshape(len(values), num)


def load_tracks(name_and_config: str, split: str, data_dir: str, label_keys: Sequence[str],
                max_tracks: int | None = None) -> dict:
  """Loads a split's tracks (audio and labels) into memory.

  Args:
    name_and_config: TFDS "name/config" (built-in generated datasets are prepared on first
      use; others must be prepared, see `datasets.get_builder`).
    split: base split name.
    data_dir: TFDS data dir.
    label_keys: label features to return (see `datasets.label_info`).
    max_tracks: keep only the first this many tracks (None: all).

  Returns:
    dict with
      'audio':    list of n float32 [L_i] arrays (int16 PCM / 32768, unnormalised);
      'lengths':  int64 [n], L_i;
      'track_id': str [n] (object array);
      'index':    int64 [n], the example index in the split;
      one entry per label key: int64 [n] class ids for a ClassLabel, float32 [n, K] for a
      multi-hot (Tensor or Sequence(ClassLabel)) label, float32 [n] or [n, K] for regression.

  Raises:
    ValueError: unknown split or label key, or max_tracks < 1.
    datasets.DatasetNotPreparedError: the dataset is not prepared.
  """
  if max_tracks is not None and max_tracks < 1:
    raise ValueError(f"max_tracks must be >= 1 or None, got {max_tracks}.")
  builder = datasets.get_builder(name_and_config, data_dir)
  n = datasets.split_num_examples(builder, split)
  if max_tracks is not None:
    n = min(n, int(max_tracks))
  specs = {key: datasets.label_info(builder, key) for key in label_keys}
  features = builder.info.features
  if "audio" not in features or len(tuple(features["audio"].shape)) != 1:
    raise ValueError(f"Dataset '{name_and_config}' has no mono 'audio' feature.")
  has_id = "track_id" in features
  keys = ("audio",) + (("track_id",) if has_id else ()) + tuple(label_keys)
  scale = 1.0 / _INT16_SCALE if features["audio"].np_dtype == np.int16 else 1.0

  out = {"audio": [None] * n, "track_id": [None] * n}
  values = {key: [None] * n for key in label_keys}
  if n:
    ds = datasets.read_indexed(builder, split, 0, n, keys=keys)
    for ex in ds.prefetch(tf.data.AUTOTUNE).as_numpy_iterator():
      i = int(ex["index"])
      out["audio"][i] = ex["audio"].astype(np.float32) * np.float32(scale)
      track_id = ex["track_id"] if has_id else f"{name_and_config}/{split}/{i}"
      out["track_id"][i] = track_id.decode() if isinstance(track_id, bytes) else track_id
      for key in label_keys:
        values[key][i] = ex[key]
  result = {
      "audio": out["audio"],
      "lengths": np.asarray([len(a) for a in out["audio"]], np.int64),
      "track_id": np.asarray(out["track_id"], dtype=object),
      "index": np.arange(n, dtype=np.int64),
  }
  for key in label_keys:
    num, kind, _ = specs[key]
    result[key] = _label_array(features[key], values[key], num, kind)
  return result
