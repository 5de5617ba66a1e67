"""VocalSet: singer identification and singing-technique classification (spec §4.4).

Both configs carry both label keys:
  'singer':    ClassLabel, the filename prefix before the first '_' ("f1" ... "m11"), 20 singers;
  'technique': ClassLabel, the name of the folder holding the file ("belt", "vibrato", ...), 17.
Class names are taken from the files, in natural order (f1, f2, ..., f9, m1, ..., m11).
Configs differ in the split:
  singer:    per-file 80/10/10 train/validation/test by sha1 of the relative path
             (singers appear in every split, by design of the task);
  technique: singer-disjoint; test = singers in test_singers_technique.txt, train = those in
             train_singers_technique.txt minus 10% of their files (sha1) for validation.
             Ids there ("female1", "male3") are normalised to file prefixes ("f1", "m3").
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
import re

import tensorflow_datasets as tfds

from data_pipelines.builders import base

_ROOTS = ("FULL", "data_by_singer", "VocalSet/FULL", ".")
TRAIN_SINGERS = "train_singers_technique.txt"
TEST_SINGERS = "test_singers_technique.txt"


@dataclasses.dataclass
class VocalsetConfig(tfds.core.BuilderConfig):
  split_rule: str = "singer"


def natural_key(text: str):
  return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", text)]


def normalize_singer(text: str) -> str:
  """'female1' -> 'f1', 'male3' -> 'm3' (the original's rule); file prefixes pass through."""
  return text.strip().lower().replace("emale", "").replace("ale", "")


class Vocalset(base.ManualAudioBuilder):
  """VocalSet singing voice recordings (20 singers, 17 techniques)."""

  BUILDER_CONFIGS = [
      VocalsetConfig(name="singer", split_rule="singer",
                     description="Random per-file 80/10/10 split (singer identification)."),
      VocalsetConfig(name="technique", split_rule="technique",
                     description="Singer-disjoint split from the official singer lists."),
  ]
  MANUAL_DOWNLOAD_INSTRUCTIONS = f"""\
VocalSet (Wilkins et al. 2018), the full archive extracted:
  manual_dir/FULL/<singer>/<context>/<technique>/<prefix>_<...>.wav
      e.g. FULL/female1/arpeggios/belt/f1_arpeggios_belt_c_a.wav
      (also accepted: manual_dir/data_by_singer/... or the singer folders in manual_dir)
  manual_dir/{TRAIN_SINGERS}, manual_dir/{TEST_SINGERS}   one singer per line (technique config)"""

  def _label_features(self):
    return {"singer": tfds.features.ClassLabel(), "technique": tfds.features.ClassLabel()}

  def _collect(self, manual_dir: pathlib.Path) -> base.Collection:
    root = base.first_existing(manual_dir / r for r in _ROOTS if _has_wav(manual_dir / r))
    if root is None:
      raise base.ManualDirError(f"{manual_dir}: no .wav files found. Expected layout:\n"
                                f"{self.MANUAL_DOWNLOAD_INSTRUCTIONS}")
    files = []
    for dirpath, dirnames, filenames in os.walk(root):
      dirnames.sort()
      for name in sorted(filenames):
        if name.lower().endswith(".wav") and not name.startswith("."):
          path = pathlib.Path(dirpath) / name
          files.append((path, name.split("_", 1)[0].lower(), path.parent.name))
    singers = sorted({s for _, s, _ in files}, key=natural_key)
    techniques = sorted({t for _, _, t in files}, key=natural_key)
    if self.builder_config.split_rule == "singer":
      assign = lambda rel, singer: _singer_split(rel)
    else:
      assign = self._technique_splitter(manual_dir)
    splits = {"train": [], "validation": [], "test": []}
    excluded = 0
    for path, singer, technique in files:
      rel = path.relative_to(manual_dir).as_posix()
      split = assign(rel, singer)
      if split is None:
        excluded += 1
        continue
      splits[split].append(base.AudioItem(rel, path, {"singer": singer, "technique": technique}))
    return base.Collection(splits, label_names={"singer": singers, "technique": techniques},
                           metadata={"excluded_singer_not_listed": excluded})

  def _technique_splitter(self, manual_dir: pathlib.Path):
    lists = {}
    for split, name in (("train", TRAIN_SINGERS), ("test", TEST_SINGERS)):
      path = base.first_existing([manual_dir / name, *(manual_dir / r / name for r in _ROOTS)])
      if path is None:
        raise base.ManualDirError(
            f"{manual_dir / name} not found (needed by vocalset/technique). Expected layout:\n"
            f"{self.MANUAL_DOWNLOAD_INSTRUCTIONS}")
      lists[split] = {normalize_singer(s) for s in base.read_lines(path)}
    both = lists["train"] & lists["test"]
    if both:
      raise base.AnnotationError(manual_dir / TEST_SINGERS, None,
                                 f"singers listed for both train and test: {sorted(both)}")

    def assign(rel: str, singer: str) -> str | None:
      if singer in lists["test"]:
        return "test"
      if singer in lists["train"]:
        return "validation" if base.stable_fraction(rel, "vocalset-technique") < 0.1 else "train"
      return None
    return assign


def _singer_split(rel: str) -> str:
  u = base.stable_fraction(rel, "vocalset-singer")
  return "train" if u < 0.8 else ("validation" if u < 0.9 else "test")


def _has_wav(path: pathlib.Path) -> bool:
  if not path.is_dir():
    return False
  for _, _, filenames in os.walk(path):
    if any(n.lower().endswith(".wav") for n in filenames):
      return True
  return False
