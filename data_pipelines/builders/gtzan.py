"""GTZAN genre with the fault-filtered split (443 / 197 / 290 clips; spec §4.4).

TFDS name 'gtzan_filtered' (TFDS's catalog already owns 'gtzan'). Label key 'genre':
ClassLabel over the 10 genres in alphabetical order (= first-appearance order of the lists,
blues first). The split lists ship in `data_pipelines/split_lists/gtzan/` (provenance in the
README there); three files of the same names in manual_dir override them.
"""

from __future__ import annotations

import pathlib

import tensorflow_datasets as tfds

from data_pipelines.builders import base

GENRES = ("blues", "classical", "country", "disco", "hiphop", "jazz", "metal", "pop",
          "reggae", "rock")
SPLIT_FILES = {"train": "train_filtered.txt", "validation": "valid_filtered.txt",
               "test": "test_filtered.txt"}
SHIPPED_LISTS = pathlib.Path(__file__).resolve().parent.parent / "split_lists" / "gtzan"
_ROOTS = ("genres_original", "genres", "Data/genres_original", "gtzan/genres", ".")
_EXTENSIONS = (".wav", ".au")


class GtzanFiltered(base.ManualAudioBuilder):
  """GTZAN music genre clips with the artist-filtered (fault-filtered) partition."""

  MANUAL_DOWNLOAD_INSTRUCTIONS = """\
GTZAN (Tzanetakis & Cook): the genre folders of the original archive (.au) or of the common
WAV re-distribution, with files named <genre>.000NN.{wav,au}:
  manual_dir/genres/<genre>/<genre>.000NN.au          (original archive), or
  manual_dir/genres_original/<genre>/<genre>.000NN.wav  (WAV copy), or
  manual_dir/<genre>/<genre>.000NN.wav
  <genre> = blues classical country disco hiphop jazz metal pop reggae rock
Optional: manual_dir/{train,valid,test}_filtered.txt replace the shipped split lists."""

  def _label_features(self):
    return {"genre": tfds.features.ClassLabel(names=list(GENRES))}

  def _collect(self, manual_dir: pathlib.Path) -> base.Collection:
    root = base.first_existing(
        manual_dir / r for r in _ROOTS if (manual_dir / r / "blues").is_dir())
    if root is None:
      raise base.ManualDirError(
          f"{manual_dir}: no 'blues' genre folder found. Expected layout:\n"
          f"{self.MANUAL_DOWNLOAD_INSTRUCTIONS}")
    list_dir = manual_dir if all((manual_dir / f).is_file() for f in SPLIT_FILES.values()) \
        else SHIPPED_LISTS
    splits = {split: [] for split in SPLIT_FILES}
    seen = {}
    for split, name in SPLIT_FILES.items():
      list_path = list_dir / name
      for line_no, entry in enumerate(_read_raw_lines(list_path), start=1):
        if not entry:
          continue
        genre, stem = parse_entry(list_path, line_no, entry)
        if stem in seen:
          raise base.AnnotationError(list_path, line_no, f"{stem} already listed ({seen[stem]})")
        seen[stem] = f"{list_path.name}:{line_no}"
        splits[split].append(base.AudioItem(f"{genre}/{stem}", find_audio(root, genre, stem),
                                             {"genre": genre}))
    return base.Collection(splits, metadata={"split_lists": str(list_dir)})


def _read_raw_lines(path: pathlib.Path) -> list[str]:
  with open(path, encoding="utf-8") as f:
    return [line.strip() for line in f]


def parse_entry(path: pathlib.Path, line_no: int, entry: str) -> tuple[str, str]:
  """'blues/blues.00029.wav' (or without folder/extension) -> ('blues', 'blues.00029')."""
  name = entry.rsplit("/", 1)[-1]
  for ext in _EXTENSIONS:
    if name.endswith(ext):
      name = name[:-len(ext)]
  genre = name.split(".", 1)[0]
  folder = entry.rsplit("/", 1)[0] if "/" in entry else genre
  if genre not in GENRES or folder != genre or not name[len(genre) + 1:].isdigit():
    raise base.AnnotationError(
        path, line_no, f"expected '<genre>/<genre>.000NN.wav' with a GTZAN genre, got {entry!r}")
  return genre, name


def find_audio(root: pathlib.Path, genre: str, stem: str) -> pathlib.Path:
  for ext in _EXTENSIONS:
    path = root / genre / (stem + ext)
    if path.exists():
      return path
  return root / genre / (stem + _EXTENSIONS[0])
