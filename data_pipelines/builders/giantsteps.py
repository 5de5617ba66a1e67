"""GiantSteps key estimation (spec §4.4): MTG-key for training, GiantSteps-key for testing.

Label key 'key': ClassLabel over 24 keys, tonics spelled with flats ("C major", "C minor",
"Db major", ..., "B minor"), the spelling mir_eval's weighted score reads.
  train/validation: GiantSteps-MTG-key `annotations.txt` (ID, MANUAL KEY, C), keeping rows
      with confidence C == 2 and a single key (no '/', not '-' or empty). Validation is the
      15% of those tracks with sha1("giantsteps-val" + ID) in the lowest 15% (deterministic;
      the original used an unseeded random 85/15 split).
  test: the GiantSteps key dataset (every audio file with its `.key` file).
Sharps are rewritten as flats (C#->Db, D#->Eb, F#->Gb, G#->Ab, A#->Bb).
"""

from __future__ import annotations

import pathlib
import re

import tensorflow_datasets as tfds

from data_pipelines.builders import base

TONICS = ("C", "Db", "D", "Eb", "E", "F", "Gb", "G", "Ab", "A", "Bb", "B")
KEYS = tuple(f"{t} {m}" for t in TONICS for m in ("major", "minor"))
_ENHARMONIC = {"C#": "Db", "D#": "Eb", "F#": "Gb", "G#": "Ab", "A#": "Bb"}
VAL_FRACTION = 0.15
MTG_DIR = "giantsteps-mtg-key-dataset"
KEY_DIR = "giantsteps-key-dataset"


def normalize_key(text: str) -> str | None:
  """'d# Minor ' -> 'Eb minor'; None if it is not one of the 24 keys."""
  text = " ".join(text.strip().split())
  text = re.sub(r"^([A-Ga-g])", lambda m: m.group(1).upper(), text)
  text = re.sub(r"^([A-G]#)", lambda m: _ENHARMONIC.get(m.group(1), m.group(1)), text)
  parts = text.split(" ")
  if len(parts) != 2:
    return None
  key = f"{parts[0]} {parts[1].lower()}"
  return key if key in KEYS else None


class GiantstepsKey(base.ManualAudioBuilder):
  """Global key of EDM excerpts: GiantSteps-MTG-key (train/validation), GiantSteps key (test)."""

  MANUAL_DOWNLOAD_INSTRUCTIONS = f"""\
The two GiantSteps key datasets (their repositories plus the audio fetched by their scripts):
  manual_dir/{MTG_DIR}/annotations/annotations.txt   tab-separated: ID, MANUAL KEY, C
  manual_dir/{MTG_DIR}/audio/<ID>.LOFI.mp3
  manual_dir/{KEY_DIR}/annotations/key/<name>.key     one line, e.g. "Eb minor"
  manual_dir/{KEY_DIR}/audio/<name>.mp3               e.g. 10089.LOFI.mp3"""

  def _label_features(self):
    return {"key": tfds.features.ClassLabel(names=list(KEYS))}

  def _collect(self, manual_dir: pathlib.Path) -> base.Collection:
    annotations = manual_dir / MTG_DIR / "annotations" / "annotations.txt"
    key_audio = manual_dir / KEY_DIR / "audio"
    key_labels = manual_dir / KEY_DIR / "annotations" / "key"
    missing = [p for p in (annotations, key_audio, key_labels) if not p.exists()]
    if missing:
      raise base.ManualDirError(
          f"not found: {', '.join(map(str, missing))}. Expected layout:\n"
          f"{self.MANUAL_DOWNLOAD_INSTRUCTIONS}")
    splits = {"train": [], "validation": []}
    for track, key in read_mtg_annotations(annotations):
      in_val = base.stable_fraction(track, "giantsteps-val") < VAL_FRACTION
      split = "validation" if in_val else "train"
      rel = f"{MTG_DIR}/audio/{track}.LOFI.mp3"
      splits[split].append(base.AudioItem(rel, manual_dir / rel, {"key": key}))
    splits["test"] = []
    for audio in sorted(p for p in key_audio.iterdir() if p.suffix.lower() in (".mp3", ".wav")):
      stem = audio.name[:-len(audio.suffix)]
      key_file = key_labels / f"{stem}.key"
      if not key_file.is_file():
        raise base.AnnotationError(key_file, None, f"missing key annotation for {audio.name}")
      text = key_file.read_text(encoding="utf-8").strip()
      key = normalize_key(text)
      if key is None:
        raise base.AnnotationError(key_file, 1, f"not one of the 24 major/minor keys: {text!r}")
      splits["test"].append(base.AudioItem(f"{KEY_DIR}/audio/{audio.name}", audio, {"key": key}))
    return base.Collection(splits)


def read_mtg_annotations(path: pathlib.Path) -> list[tuple[str, str]]:
  """(ID, normalised key) of the rows kept by the confidence/ambiguity filter."""
  kept = []
  with open(path, encoding="utf-8") as f:
    for line_no, line in enumerate(f, start=1):
      fields = [x.strip() for x in line.rstrip("\n").split("\t")]
      if line_no == 1 and fields and fields[0].upper() == "ID":
        continue
      if not any(fields):
        continue
      if len(fields) < 3:
        raise base.AnnotationError(path, line_no, "expected ID, MANUAL KEY and C columns")
      track, raw_key, confidence = fields[:3]
      if confidence != "2" or not raw_key or raw_key in ("-", "nan", "NaN") or "/" in raw_key:
        continue
      key = normalize_key(raw_key)
      if key is None:
        raise base.AnnotationError(path, line_no,
                                   f"MANUAL KEY {raw_key!r} is not one of the 24 major/minor keys")
      kept.append((track, key))
  return kept
