"""MedleyDB stem instrument classification, top-20 instruments (spec §4.4).

Label key 'instrument': ClassLabel over the 20 most frequent stem instruments (counted after
exploding stems whose `instrument` is a list, and excluding 'fx/processed sound',
'Unlabeled', 'auxiliary percussion' and 'Main System'), names in alphabetical order. A stem
with several kept instruments appears once per instrument (track_id "<path>#<instrument>"),
as in the original; such copies can land in different splits.
Split, stratified per instrument: 10% of its rows -> test, 10% of the rest -> validation
(both rounded half up), the rest -> train; rows are ordered by sha1 of the track_id, so the
split is deterministic.
Needs PyYAML (installed with flax/orbax).
"""

from __future__ import annotations

import collections
import math
import os
import pathlib

import tensorflow_datasets as tfds

from data_pipelines.builders import base

NUM_CLASSES = 20
EXCLUDED = frozenset({"fx/processed sound", "fx/processed_sound", "Unlabeled",
                      "auxiliary percussion", "Main System"})
VAL_SPLIT = 0.1


class Medleydb(base.ManualAudioBuilder):
  """MedleyDB (v1 + v2) stems labelled with their instrument."""

  MANUAL_DOWNLOAD_INSTRUCTIONS = """\
MedleyDB 1.0 and/or 2.0 audio plus the per-song metadata files, anywhere below manual_dir:
  manual_dir/**/<Song>_METADATA.yaml        (e.g. the medleydb repository's data/Metadata/)
  manual_dir/**/<Song>/<Song>_STEMS/<Song>_STEM_NN.wav   (e.g. V1/<Song>/..., V2/<Song>/...)
Each YAML has 'stem_dir' and 'stems: {S01: {filename: ..., instrument: ... or [...]}, ...}'."""

  def _label_features(self):
    return {"instrument": tfds.features.ClassLabel()}

  def _collect(self, manual_dir: pathlib.Path) -> base.Collection:
    yaml_files, stem_dirs = [], {}
    for dirpath, dirnames, filenames in os.walk(manual_dir):
      dirnames.sort()
      for d in dirnames:
        if d.endswith("_STEMS"):
          stem_dirs.setdefault(d, pathlib.Path(dirpath) / d)
      yaml_files += [pathlib.Path(dirpath) / n for n in sorted(filenames)
                     if n.endswith("_METADATA.yaml")]
    if not yaml_files:
      raise base.ManualDirError(f"{manual_dir}: no *_METADATA.yaml found. Expected layout:\n"
                                f"{self.MANUAL_DOWNLOAD_INSTRUCTIONS}")
    rows = []  # (track_id, path, instrument)
    for yaml_path in yaml_files:
      for stem_dir, filename, instruments in read_metadata(yaml_path):
        folder = stem_dirs.get(stem_dir)
        path = (folder / filename) if folder else manual_dir / stem_dir / filename
        rel = path.relative_to(manual_dir).as_posix() if folder else f"{stem_dir}/{filename}"
        for instrument in instruments:
          if instrument not in EXCLUDED:
            rows.append((f"{rel}#{instrument}", path, instrument))
    counts = collections.Counter(r[2] for r in rows)
    top = sorted(counts, key=lambda name: (-counts[name], name))[:NUM_CLASSES]
    names = sorted(top)
    by_class = collections.defaultdict(list)
    for row in rows:
      if row[2] in top:
        by_class[row[2]].append(row)
    splits = {"train": [], "validation": [], "test": []}
    for name in names:
      members = sorted(by_class[name], key=lambda r: base.stable_fraction(r[0], "medleydb"))
      n_test = math.floor(VAL_SPLIT * len(members) + 0.5)
      n_val = math.floor(VAL_SPLIT * (len(members) - n_test) + 0.5)
      for i, (track_id, path, instrument) in enumerate(members):
        split = "test" if i < n_test else ("validation" if i < n_test + n_val else "train")
        splits[split].append(base.AudioItem(track_id, path, {"instrument": instrument}))
    for items in splits.values():
      items.sort(key=lambda item: item.track_id)
    return base.Collection(splits, label_names={"instrument": names},
                           metadata={"instrument_counts": {n: counts[n] for n in names}})


def read_metadata(path: pathlib.Path) -> list[tuple[str, str, list[str]]]:
  """(stem_dir, stem filename, [instruments]) for each stem of one *_METADATA.yaml."""
  try:
    import yaml  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise ImportError("MedleyDB needs PyYAML: pip install pyyaml") from e
  try:
    with open(path, encoding="utf-8") as f:
      meta = yaml.safe_load(f)
  except yaml.YAMLError as e:
    mark = getattr(e, "problem_mark", None)
    line = mark.line + 1 if mark else None
    raise base.AnnotationError(path, line, f"invalid YAML: {e}") from None
  if not isinstance(meta, dict) or not isinstance(meta.get("stems"), dict):
    raise base.AnnotationError(path, None, "missing 'stems' mapping")
  song = path.name[:-len("_METADATA.yaml")]
  stem_dir = meta.get("stem_dir") or f"{song}_STEMS"
  out = []
  for stem_id in sorted(meta["stems"]):
    stem = meta["stems"][stem_id]
    if not isinstance(stem, dict) or not stem.get("filename") or not stem.get("instrument"):
      raise base.AnnotationError(path, None, f"stems.{stem_id}: needs 'filename' and 'instrument'")
    instruments = stem["instrument"]
    if isinstance(instruments, str):
      instruments = [instruments]
    out.append((str(stem_dir), str(stem["filename"]), [str(i) for i in instruments]))
  return out
