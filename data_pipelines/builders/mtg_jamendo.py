"""MTG-Jamendo auto-tagging, official split-0 (spec §4.4).

Configs (label key 'tags', multi-hot):
  top50 (K=50), genre (K=87), moodtheme (K=56), instrument (K=40).
Splits: train / validation / test from `<subset>-{train,validation,test}.tsv`. Tags are the
fifth and later tab-separated fields (0-based column 5 on); class names are sorted
alphabetically (the original used first-appearance order; only the index order differs).
Full tracks are stored (average ~4 min): plan on about 10 MB per track at 22050 Hz int16.
"""

from __future__ import annotations

import dataclasses
import pathlib

import numpy as np
import tensorflow_datasets as tfds

from data_pipelines.builders import base

_SPLITS = {"train": "train", "validation": "validation", "test": "test"}
_SPLIT_DIRS = ("data/splits/split-0", "splits/split-0", "split-0", ".")
_AUDIO_DIRS = ("audio", "raw_30s/audio", "audio-low", "raw_30s_audio", ".")


@dataclasses.dataclass
class MtgJamendoConfig(tfds.core.BuilderConfig):
  subset: str = "autotagging_top50tags"
  num_tags: int = 50


class MtgJamendo(base.ManualAudioBuilder):
  """MTG-Jamendo tracks with the split-0 auto-tagging subsets."""

  BUILDER_CONFIGS = [
      MtgJamendoConfig(name="top50", subset="autotagging_top50tags", num_tags=50),
      MtgJamendoConfig(name="genre", subset="autotagging_genre", num_tags=87),
      MtgJamendoConfig(name="moodtheme", subset="autotagging_moodtheme", num_tags=56),
      MtgJamendoConfig(name="instrument", subset="autotagging_instrument", num_tags=40),
  ]
  MANUAL_DOWNLOAD_INSTRUCTIONS = """\
MTG-Jamendo: the split TSVs from the dataset's metadata repository and the audio archives.
  manual_dir/data/splits/split-0/<subset>-{train,validation,test}.tsv
      (also accepted: manual_dir/splits/split-0/, manual_dir/split-0/ or manual_dir/)
      <subset> = autotagging_top50tags | autotagging_genre | autotagging_moodtheme |
                 autotagging_instrument; header TRACK_ID ARTIST_ID ALBUM_ID PATH DURATION TAGS
  manual_dir/audio/<PATH>   e.g. audio/14/214.mp3 (the low-quality 14/214.low.mp3 also works;
      also accepted: manual_dir/raw_30s/audio/, manual_dir/audio-low/ or manual_dir/)"""

  def _label_features(self):
    return {"tags": base.multi_hot_feature(self.builder_config.num_tags)}

  def _collect(self, manual_dir: pathlib.Path) -> base.Collection:
    subset = self.builder_config.subset
    split_dir = base.first_existing(
        manual_dir / d for d in _SPLIT_DIRS if (manual_dir / d / f"{subset}-train.tsv").exists())
    if split_dir is None:
      raise base.ManualDirError(
          f"{manual_dir}: no {subset}-train.tsv found. Expected layout:\n"
          f"{self.MANUAL_DOWNLOAD_INSTRUCTIONS}")
    rows = {}
    for split, stem in _SPLITS.items():
      path = split_dir / f"{subset}-{stem}.tsv"
      if not path.is_file():
        raise base.ManualDirError(f"{path} not found (the three split files are required).")
      rows[split] = read_split_tsv(path)
    all_rows = [row for split_rows in rows.values() for row in split_rows]
    names = sorted({tag for _, _, _, tags in all_rows for tag in tags})
    index = {name: i for i, name in enumerate(names)}
    audio_root = find_audio_root(manual_dir, [r[2] for r in all_rows])
    splits = {}
    for split, split_rows in rows.items():
      items = []
      for _, track_id, rel, tags in split_rows:
        vector = np.zeros(len(names), np.float32)
        vector[[index[t] for t in tags]] = 1.0
        items.append(base.AudioItem(track_id, audio_file(audio_root, rel), {"tags": vector}))
      splits[split] = items
    return base.Collection(splits, label_names={"tags": names})


def read_split_tsv(path: pathlib.Path) -> list[tuple[int, str, str, list[str]]]:
  """Rows (line, TRACK_ID, PATH, tags) of a split TSV; raises AnnotationError on bad lines."""
  rows = []
  with open(path, encoding="utf-8") as f:
    header = f.readline().rstrip("\n").split("\t")
    if header[:4] != ["TRACK_ID", "ARTIST_ID", "ALBUM_ID", "PATH"]:
      raise base.AnnotationError(path, 1, f"unexpected header {header[:6]}")
    for line_no, line in enumerate(f, start=2):
      fields = [x.strip() for x in line.rstrip("\n").split("\t")]
      if not any(fields):
        continue
      if len(fields) < 6 or not fields[0] or not fields[3]:
        raise base.AnnotationError(path, line_no, "expected TRACK_ID, ARTIST_ID, ALBUM_ID, "
                                   "PATH, DURATION and at least one tag")
      tags = [t for t in fields[5:] if t]
      if not tags:
        raise base.AnnotationError(path, line_no, f"track {fields[0]} has no tag")
      rows.append((line_no, fields[0], fields[3], tags))
  return rows


def find_audio_root(manual_dir: pathlib.Path, rel_paths: list[str]) -> pathlib.Path:
  """The first candidate audio folder holding one of the first 50 listed tracks."""
  for d in _AUDIO_DIRS:
    root = manual_dir / d
    if any(audio_file(root, rel).exists() for rel in rel_paths[:50]):
      return root
  return manual_dir / _AUDIO_DIRS[0]


def audio_file(root: pathlib.Path, rel: str) -> pathlib.Path:
  path = root / rel
  if not path.exists():
    low = path.with_name(path.stem + ".low" + path.suffix)
    if low.exists():
      return low
  return path
