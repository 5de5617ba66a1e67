"""What every real-dataset builder shares: schema, decoding loop, skip reports, metadata.

A dataset builder subclasses `ManualAudioBuilder` and implements two hooks:
  * `_label_features()`: the label features by name (the "label keys"), fixed at `_info()`
    time; a `ClassLabel()` without names gets its names from `_collect`;
  * `_collect(manual_dir)`: parse the user's manual download and return the examples of
    each split (`Collection`). Layout problems raise `ManualDirError` (listing the expected
    files), annotation problems raise `AnnotationError` (file, line, field).

Every prepared dataset has the same schema:
  'audio':    Tensor [n] int16, mono PCM at 22050 Hz (raw bytes on disk), n >= min_samples;
  'track_id': Text, stable id (usually the path relative to the manual dir);
  label keys: ClassLabel (multi-class), Tensor [K] float32 (multi-hot or regression).
and in `builder.info.metadata`:
  'sample_rate': 22050, 'min_samples': int,
  'labels':      {label_key: {'kind': 'multiclass'|'multilabel'|'regression', 'names': [...]}},
  'skipped':     {split: number of skipped files},
  'num_samples': {split: [n_0, n_1, ...]} audio lengths in the split's on-disk order (what
                 `probe_input` uses to plan chunked evaluation without reading the audio).
Next to the data, `skipped-<split>.tsv` lists each skipped file with the reason.
"""

from __future__ import annotations

import collections
import concurrent.futures
import csv
import dataclasses
import hashlib
import os
import pathlib
from typing import Any, Iterable, Iterator, Mapping, Sequence

import numpy as np
import tensorflow_datasets as tfds
import tqdm

from data_pipelines import conventions
from data_pipelines import datasets
from data_pipelines import decode


SAMPLE_RATE = decode.SAMPLE_RATE
SKIP_REPORT_PATTERN = "skipped-{split}.tsv"


def audio_feature() -> tfds.features.Tensor:
  """[n] int16 PCM, stored as raw bytes (2 bytes/sample; the default encoding takes ~6)."""
  return tfds.features.Tensor(shape=(None,), dtype=np.int16,
                              encoding=tfds.features.Encoding.BYTES)


def multi_hot_feature(num_classes: int) -> tfds.features.Tensor:
  """[K] float32 multi-hot vector."""
  return tfds.features.Tensor(shape=(num_classes,), dtype=np.float32)


class ManualDirError(FileNotFoundError):
  """The manual download is missing or laid out differently than expected."""


class MinSamplesMismatchError(ValueError):
  """A prepared dataset was built with another min_samples than the one asked for."""


class AnnotationError(ValueError):
  """An annotation file has a bad line or field."""

  def __init__(self, path: os.PathLike | str, line: int | None, message: str):
    where = f"{path}:{line}" if line is not None else f"{path}"
    super().__init__(f"{where}: {message}")


@dataclasses.dataclass(frozen=True)
class AudioItem:
  """One example to build: its audio file, id and label values (by label key)."""
  track_id: str
  path: pathlib.Path
  labels: Mapping[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class Collection:
  """What `_collect` returns.

  Attributes:
    splits: split name -> items, in a deterministic order.
    label_names: label key -> class names, for labels whose names come from the data.
    metadata: extra JSON-serialisable entries for `info.metadata`.
  """
  splits: dict[str, list[AudioItem]]
  label_names: dict[str, list[str]] = dataclasses.field(default_factory=dict)
  metadata: dict[str, Any] = dataclasses.field(default_factory=dict)


def stable_fraction(text: str, salt: str = "") -> float:
  """A deterministic pseudo-random number in [0, 1) from sha1(salt + text)."""
  digest = hashlib.sha1((salt + text).encode("utf-8")).hexdigest()
  return int(digest[:15], 16) / float(16**15)


def first_existing(candidates: Iterable[pathlib.Path]) -> pathlib.Path | None:
  """The first path of `candidates` that exists, else None."""
  for path in candidates:
    if path.exists():
      return path
  return None


def read_lines(path: pathlib.Path) -> list[str]:
  """Non-empty stripped lines of a text file."""
  with open(path, encoding="utf-8") as f:
    return [line.strip() for line in f if line.strip()]


def read_csv_rows(path: pathlib.Path, required: Sequence[str], delimiter: str = ","
                  ) -> list[tuple[int, dict[str, str]]]:
  """Rows of a CSV with a header, as (line number, {column: stripped value}).

  Raises:
    AnnotationError: a required column is missing (names the file and the columns found).
  """
  with open(path, encoding="utf-8", newline="") as f:
    reader = csv.DictReader(f, delimiter=delimiter)
    header = [h.strip() for h in (reader.fieldnames or [])]
    reader.fieldnames = header
    missing = [c for c in required if c not in header]
    if missing:
      raise AnnotationError(path, 1, f"missing column(s) {missing}; found {header}")
    rows = []
    for row in reader:
      clean = {k: (v or "").strip() for k, v in row.items() if k is not None}
      rows.append((reader.line_num, clean))
  return rows


class ManualAudioBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
  """Base class: decodes the files listed by `_collect` and writes the common schema.

  Constructor keywords (besides TFDS's data_dir/config/version):
    min_samples: shortest accepted file, in samples at 22050 Hz. It is part of the prepared
      dataset (`info.metadata['min_samples']`): None reads a prepared dataset as it is and
      prepares a new one with one view, 59535; a value that differs from the prepared one
      raises `MinSamplesMismatchError` instead of reusing the data.
    num_workers: decoding threads (default min(8, cpu count)).
    progress: show a tqdm bar per split.
  """

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "First release."}
  DESCRIPTION = ""
  HOMEPAGE = ""

  def __init__(self, *, min_samples: int | None = None,
               num_workers: int | None = None, progress: bool = True, **kwargs):
    if min_samples is not None and min_samples < 1:
      raise ValueError(f"min_samples must be >= 1, got {min_samples}")
    self._num_workers = int(num_workers or min(8, os.cpu_count() or 1))
    self._progress = progress
    self._skips: dict[str, list[tuple[str, str]]] = {}
    self._manual_root: pathlib.Path | None = None
    super().__init__(**kwargs)  # Reads info.metadata from disk if the dataset is prepared.
    prepared = (self.info.metadata or {}).get("min_samples") if self.is_prepared() else None
    if None not in (min_samples, prepared) and int(prepared) != min_samples:
      raise MinSamplesMismatchError(
          f"{self.info.full_name} in {self.data_path} was prepared with "
          f"min_samples={prepared}, not {min_samples}. Delete that folder to prepare it again "
          f"with min_samples={min_samples}, or ask for min_samples={prepared} to use it.")
    self._min_samples = int(prepared or min_samples or decode.DEFAULT_MIN_SAMPLES)

  # ----- hooks -------------------------------------------------------------------------
  def _label_features(self) -> dict[str, tfds.features.FeatureConnector]:
    """Label features by label key (none for unlabeled datasets)."""
    return {}

  def _label_kinds(self) -> dict[str, str]:
    """Label key -> one of `conventions.LABEL_KINDS`."""
    kinds = {}
    for key, feature in self._label_features().items():
      is_class = isinstance(feature, tfds.features.ClassLabel)
      kinds[key] = conventions.MULTICLASS if is_class else conventions.MULTILABEL
    return kinds

  def _fixed_label_names(self) -> dict[str, list[str]]:
    """Names of labels that are not ClassLabels but are known up front (e.g. regression)."""
    return {}

  def _collect(self, manual_dir: pathlib.Path) -> Collection:
    raise NotImplementedError

  # ----- TFDS plumbing -----------------------------------------------------------------
  def _info(self) -> tfds.core.DatasetInfo:
    features = {"audio": audio_feature(), "track_id": tfds.features.Text(),
                **self._label_features()}
    metadata = tfds.core.MetadataDict(sample_rate=SAMPLE_RATE)
    return tfds.core.DatasetInfo(
        builder=self, description=self.DESCRIPTION or (self.__doc__ or "").strip(),
        features=tfds.features.FeaturesDict(features), metadata=metadata,
        homepage=self.HOMEPAGE or None)

  def _split_generators(self, dl_manager):
    manual_dir = pathlib.Path(os.fspath(dl_manager.manual_dir))
    self._manual_root = manual_dir
    collection = self._collect(manual_dir)
    splits = {name: items for name, items in collection.splits.items() if items}
    if not splits:
      raise ManualDirError(
          f"{manual_dir}: no examples found for {self.name}. Expected layout:\n"
          f"{self.MANUAL_DOWNLOAD_INSTRUCTIONS}")
    all_items = [item for items in splits.values() for item in items]
    if not any(item.path.is_file() for item in all_items):
      raise ManualDirError(
          f"{manual_dir}: none of the {len(all_items)} audio files listed by the annotations "
          f"exist (first expected: {all_items[0].path}). Expected layout:\n"
          f"{self.MANUAL_DOWNLOAD_INSTRUCTIONS}")
    self._set_label_metadata(collection.label_names)
    self.info.metadata["min_samples"] = self._min_samples
    self.info.metadata.update(collection.metadata)
    self._skips = {name: [] for name in splits}
    return {name: self._generate_examples(name, items) for name, items in splits.items()}

  def _set_label_metadata(self, data_names: Mapping[str, list[str]]) -> None:
    features = self.info.features
    labels = {}
    for key, kind in self._label_kinds().items():
      names = list(data_names.get(key) or self._fixed_label_names().get(key) or [])
      feature = features[key]
      if isinstance(feature, tfds.features.ClassLabel):
        if names:
          feature.names = names  # Allowed once; TFDS raises if it conflicts.
        names = list(feature.names)
      elif kind == conventions.MULTILABEL and len(names) != feature.shape[0]:
        raise AnnotationError(
            self._manual_root or "manual_dir", None,
            f"label '{key}' expects {feature.shape[0]} classes but the annotations give "
            f"{len(names)}: {names[:10]}{'...' if len(names) > 10 else ''}")
      labels[key] = {"kind": kind, "names": names}
    self.info.metadata["labels"] = labels

  def _generate_examples(self, split: str, items: Sequence[AudioItem]):
    skips = self._skips.setdefault(split, [])
    bar = tqdm.tqdm(total=len(items), desc=f"{self.name} {split}", unit="file",
                    disable=not self._progress, leave=True)
    kept = 0
    try:
      for item, result in _decode_in_order(items, self._num_workers, self._min_samples):
        bar.update(1)
        if isinstance(result, decode.DecodeError):
          skips.append((self._report_path(item.path), result.reason))
          bar.set_postfix(skipped=len(skips))
          continue
        kept += 1
        yield item.track_id, {"audio": result, "track_id": item.track_id, **item.labels}
    finally:
      bar.close()
    if not kept:
      reasons = collections.Counter(reason.split(":")[0] for _, reason in skips)
      raise ManualDirError(
          f"{self.name} split '{split}': all {len(items)} files were skipped "
          f"({dict(reasons)}; e.g. {skips[0][0]}: {skips[0][1]}). Expected layout:\n"
          f"{self.MANUAL_DOWNLOAD_INSTRUCTIONS}")

  def _report_path(self, path: pathlib.Path) -> str:
    if self._manual_root is not None:
      try:
        return path.relative_to(self._manual_root).as_posix()
      except ValueError:
        pass
    return str(path)

  def _download_and_prepare(self, dl_manager, download_config):
    super()._download_and_prepare(dl_manager=dl_manager, download_config=download_config)
    out_dir = pathlib.Path(os.fspath(self.data_dir))  # The temporary dir, renamed on success.
    for split, skips in self._skips.items():
      write_skip_report(out_dir / SKIP_REPORT_PATTERN.format(split=split), skips)
    self.info.metadata["skipped"] = {split: len(s) for split, s in self._skips.items()}
    self.info.metadata["num_samples"] = {
        split: split_lengths(self, split) for split in self.info.splits.keys()}


def _decode_one(item: AudioItem, min_samples: int):
  try:
    return decode.decode_file(os.fspath(item.path), min_samples=min_samples)
  except decode.DecodeError as e:
    return e


def _decode_in_order(items: Sequence[AudioItem], num_workers: int, min_samples: int
                     ) -> Iterator[tuple[AudioItem, Any]]:
  """Decodes with a thread pool (libsndfile and soxr release the GIL), in input order.

  At most 2·num_workers files are in flight, so memory stays bounded.
  """
  if num_workers <= 1:
    for item in items:
      yield item, _decode_one(item, min_samples)
    return
  window = 2 * num_workers
  with concurrent.futures.ThreadPoolExecutor(num_workers) as pool:
    pending = collections.deque()
    iterator = iter(items)
    for item in iterator:
      pending.append((item, pool.submit(_decode_one, item, min_samples)))
      if len(pending) >= window:
        break
    while pending:
      item, future = pending.popleft()
      nxt = next(iterator, None)
      if nxt is not None:
        pending.append((nxt, pool.submit(_decode_one, nxt, min_samples)))
      yield item, future.result()


def write_skip_report(path: pathlib.Path, skips: Sequence[tuple[str, str]]) -> None:
  """Writes `path<TAB>reason` lines under a header (the header alone if nothing skipped)."""
  with open(path, "w", encoding="utf-8", newline="") as f:
    writer = csv.writer(f, delimiter="\t", lineterminator="\n")
    writer.writerow(["path", "reason"])
    writer.writerows(skips)


def read_skip_report(path: os.PathLike | str) -> list[tuple[str, str]]:
  """(path, reason) rows of a skip report; [] if the file does not exist."""
  if not os.path.exists(path):
    return []
  with open(path, encoding="utf-8", newline="") as f:
    rows = list(csv.reader(f, delimiter="\t"))
  return [(r[0], r[1]) for r in rows[1:] if len(r) >= 2]


def split_lengths(builder: tfds.core.DatasetBuilder, split: str) -> list[int]:
  """Audio lengths (samples) of a prepared split, in on-disk order, without decoding audio.

  On-disk order = shard files one after the other (interleave 1), the order in which TFDS
  slices such as `split[a:b]` count examples.
  """
  ds = builder.as_dataset(split=split, shuffle_files=False,
                          read_config=tfds.ReadConfig(interleave_cycle_length=1),
                          decoders={"audio": tfds.decode.SkipDecoding()})
  ds = ds.map(lambda ex: datasets.encoded_num_samples(ex["audio"]))
  return [int(n) for n in datasets.without_autotune(ds).as_numpy_iterator()]
