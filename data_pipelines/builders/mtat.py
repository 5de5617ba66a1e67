"""MagnaTagATune (MTAT): 25,863 ~29 s clips, 188 binary tags (spec §4.4).

Configs:
  top50:  label key 'tags', [50] multi-hot over the 50 tag columns with the largest totals
          over the whole file (ties: earlier column first), kept in CSV column order.
          Clips with none of those 50 tags are not labeled examples: the ones from the train
          folders go to the 'unlabeled' split (tags all zero); from val/test folders they
          are dropped (counted in metadata 'dropped_untagged'). The original put every such
          clip, test folders included, into its training pool; we keep test audio out.
  all188: label key 'tags', [188] multi-hot over every tag column; clips with no tag stay
          labeled (all-zero vector) in their folder's split.
Split by the first character of the clip's folder: 0-9, a, b -> train; c -> validation;
d, e, f -> test.
"""

from __future__ import annotations

import csv
import dataclasses
import pathlib

import numpy as np
import tensorflow_datasets as tfds

from data_pipelines.builders import base

ANNOTATIONS = "annotations_final.csv"
_SPLIT_BY_FOLDER = {**{c: "train" for c in "0123456789ab"}, "c": "validation",
                    **{c: "test" for c in "def"}}


@dataclasses.dataclass
class MtatConfig(tfds.core.BuilderConfig):
  num_tags: int = 50
  untagged_to_unlabeled: bool = True


class Mtat(base.ManualAudioBuilder):
  """MagnaTagATune auto-tagging clips with the folder-based train/validation/test split."""

  BUILDER_CONFIGS = [
      MtatConfig(name="top50", num_tags=50, untagged_to_unlabeled=True,
                 description="50 most frequent tags; untagged train clips -> 'unlabeled'."),
      MtatConfig(name="all188", num_tags=188, untagged_to_unlabeled=False,
                 description="All 188 tags; untagged clips stay labeled with zeros."),
  ]
  MANUAL_DOWNLOAD_INSTRUCTIONS = f"""\
MagnaTagATune (the MIREX/Law et al. release): unzip mp3.zip.001-003 into manual_dir and
put the tag annotation file next to the folders:
  manual_dir/{ANNOTATIONS}   tab-separated: "clip_id", 188 tag columns, "mp3_path"
  manual_dir/0/ ... manual_dir/9/, manual_dir/a/ ... manual_dir/f/   the .mp3 clips
(a .wav with the same stem is used if the .mp3 is absent)."""

  def _label_features(self):
    return {"tags": base.multi_hot_feature(self.builder_config.num_tags)}

  def _collect(self, manual_dir: pathlib.Path) -> base.Collection:
    csv_path = manual_dir / ANNOTATIONS
    if not csv_path.is_file():
      raise base.ManualDirError(
          f"{csv_path} not found. Expected layout:\n{self.MANUAL_DOWNLOAD_INSTRUCTIONS}")
    tag_names, rows = read_annotations(csv_path)
    selected = select_tags(tag_names, rows, self.builder_config.num_tags)
    names = [tag_names[i] for i in selected]
    splits = {"train": [], "validation": [], "test": []}
    if self.builder_config.untagged_to_unlabeled:
      splits["unlabeled"] = []
    dropped = 0
    for line, mp3_path, tags in rows:
      split = split_of(csv_path, line, mp3_path)
      vector = tags[selected].astype(np.float32)
      if self.builder_config.untagged_to_unlabeled and not vector.any():
        if split != "train":
          dropped += 1
          continue
        split = "unlabeled"
      item = base.AudioItem(mp3_path, audio_path(manual_dir, mp3_path), {"tags": vector})
      splits[split].append(item)
    return base.Collection(splits, label_names={"tags": names},
                           metadata={"dropped_untagged": dropped})


def read_annotations(path: pathlib.Path) -> tuple[list[str], list[tuple[int, str, np.ndarray]]]:
  """Parses annotations_final.csv.

  Returns:
    (tag column names [188], rows of (line number, mp3_path, tags [188] uint8)).

  Raises:
    base.AnnotationError: bad header, wrong number of fields or a value other than 0/1.
  """
  with open(path, encoding="utf-8", newline="") as f:
    reader = csv.reader(f, delimiter="\t")
    header = next(reader, None)
    if not header or header[0].strip() != "clip_id" or header[-1].strip() != "mp3_path":
      raise base.AnnotationError(
          path, 1, f"expected a tab-separated header 'clip_id, <tags>, mp3_path', got "
          f"{header[:3] if header else header}...")
    tag_names = [h.strip() for h in header[1:-1]]
    rows = []
    for fields in reader:
      line = reader.line_num
      if not fields or all(not x.strip() for x in fields):
        continue
      if len(fields) != len(header):
        raise base.AnnotationError(path, line, f"{len(fields)} fields, header has {len(header)}")
      try:
        tags = np.array([int(x) for x in fields[1:-1]], dtype=np.uint8)
      except ValueError:
        bad = next(i for i, x in enumerate(fields[1:-1]) if x.strip() not in ("0", "1"))
        raise base.AnnotationError(
            path, line, f"column '{tag_names[bad]}': expected 0 or 1, got {fields[bad + 1]!r}"
        ) from None
      if tags.max(initial=0) > 1:
        bad = int(np.argmax(tags > 1))
        raise base.AnnotationError(path, line, f"column '{tag_names[bad]}': expected 0 or 1")
      mp3_path = fields[-1].strip()
      if not mp3_path:
        raise base.AnnotationError(path, line, "empty mp3_path")
      rows.append((line, mp3_path, tags))
  return tag_names, rows


def select_tags(tag_names: list[str], rows, num_tags: int) -> np.ndarray:
  """Indices (ascending = CSV column order) of the `num_tags` most frequent tag columns."""
  if num_tags > len(tag_names):
    raise base.AnnotationError(ANNOTATIONS, 1,
                               f"{len(tag_names)} tag columns, need at least {num_tags}")
  totals = np.zeros(len(tag_names), np.int64)
  for _, _, tags in rows:
    totals += tags
  order = sorted(range(len(tag_names)), key=lambda i: (-totals[i], i))
  return np.array(sorted(order[:num_tags]), dtype=np.int64)


def split_of(csv_path: pathlib.Path, line: int, mp3_path: str) -> str:
  folder = mp3_path.split("/", 1)[0]
  split = _SPLIT_BY_FOLDER.get(folder[:1].lower()) if folder else None
  if split is None:
    raise base.AnnotationError(csv_path, line,
                               f"mp3_path {mp3_path!r}: folder must start with 0-9 or a-f")
  return split


def audio_path(manual_dir: pathlib.Path, mp3_path: str) -> pathlib.Path:
  path = manual_dir / mp3_path
  if not path.exists():
    wav = path.with_suffix(".wav")
    if wav.exists():
      return wav
  return path
