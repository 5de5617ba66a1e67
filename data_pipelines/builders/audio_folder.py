"""Any folder of audio files, for pretraining on your own collection.

Configs:
  unlabeled: every audio file below manual_dir (.wav .mp3 .flac .ogg .oga .au .aif .aiff);
             splits 'train' (90%) / 'validation' (10%) by sha1 of the relative path.
  labeled:   manual_dir/labels.csv with columns `path,label[,split]`; label key 'label'
             (ClassLabel, names sorted). `path` is relative to manual_dir; `split` is
             train / validation / test, or absent for an 80/10/10 sha1 split. Only listed
             files are used. Multi-label CSVs are not supported.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib

import tensorflow_datasets as tfds

from data_pipelines.builders import base

AUDIO_EXTENSIONS = (".wav", ".mp3", ".flac", ".ogg", ".oga", ".au", ".aif", ".aiff")
LABELS_CSV = "labels.csv"
SPLITS = ("train", "validation", "test")


@dataclasses.dataclass
class AudioFolderConfig(tfds.core.BuilderConfig):
  labeled: bool = False


class AudioFolder(base.ManualAudioBuilder):
  """Your own audio files, unlabeled or with one class label per file from a CSV."""

  BUILDER_CONFIGS = [
      AudioFolderConfig(name="unlabeled", labeled=False,
                        description="All audio files, no labels."),
      AudioFolderConfig(name="labeled", labeled=True,
                        description="Files and labels from labels.csv."),
  ]
  MANUAL_DOWNLOAD_INSTRUCTIONS = f"""\
Any folder of audio files ({' '.join(AUDIO_EXTENSIONS)}), in any sub-folders:
  unlabeled: manual_dir/**/<file>
  labeled:   manual_dir/{LABELS_CSV} with a header `path,label` or `path,label,split`
             (path relative to manual_dir; split in {'/'.join(SPLITS)})"""

  def _label_features(self):
    return {"label": tfds.features.ClassLabel()} if self.builder_config.labeled else {}

  def _collect(self, manual_dir: pathlib.Path) -> base.Collection:
    if self.builder_config.labeled:
      return self._collect_labeled(manual_dir)
    files = []
    for dirpath, dirnames, filenames in os.walk(manual_dir):
      dirnames.sort()
      files += [pathlib.Path(dirpath) / n for n in sorted(filenames)
                if n.lower().endswith(AUDIO_EXTENSIONS) and not n.startswith(".")]
    if not files:
      raise base.ManualDirError(f"{manual_dir}: no audio files found. Expected layout:\n"
                                f"{self.MANUAL_DOWNLOAD_INSTRUCTIONS}")
    splits = {"train": [], "validation": []}
    for path in files:
      rel = path.relative_to(manual_dir).as_posix()
      split = "validation" if base.stable_fraction(rel, "folder-val") < 0.1 else "train"
      splits[split].append(base.AudioItem(rel, path))
    return base.Collection(splits)

  def _collect_labeled(self, manual_dir: pathlib.Path) -> base.Collection:
    csv_path = manual_dir / LABELS_CSV
    if not csv_path.is_file():
      raise base.ManualDirError(f"{csv_path} not found. Expected layout:\n"
                                f"{self.MANUAL_DOWNLOAD_INSTRUCTIONS}")
    rows = base.read_csv_rows(csv_path, ["path", "label"])
    splits = {s: [] for s in SPLITS}
    seen = set()
    for line, row in rows:
      rel, label = row["path"], row["label"]
      if not rel or not label:
        raise base.AnnotationError(csv_path, line, "empty 'path' or 'label'")
      if rel in seen:
        raise base.AnnotationError(csv_path, line, f"path {rel!r} listed twice")
      seen.add(rel)
      split = row.get("split", "")
      if not split:
        u = base.stable_fraction(rel, "folder-labeled")
        split = "train" if u < 0.8 else ("validation" if u < 0.9 else "test")
      elif split not in SPLITS:
        raise base.AnnotationError(csv_path, line, f"split {split!r} is not one of {SPLITS}")
      splits[split].append(base.AudioItem(rel, manual_dir / rel, {"label": label}))
    names = sorted({item.labels["label"] for items in splits.values() for item in items})
    return base.Collection(splits, label_names={"label": names})
