"""Free Music Archive (FMA) audio as an unlabeled pool (spec §4.4: FMA-medium in the paper).

Configs small / medium / large / full (the archive subsets). No label keys.
Splits: 'train' (90%) and 'validation' (10%) by sha1 of the relative path.
Use it as the unlabeled source with split 'train'.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib

import tensorflow_datasets as tfds

from data_pipelines.builders import base

VAL_FRACTION = 0.1


@dataclasses.dataclass
class FmaConfig(tfds.core.BuilderConfig):
  subset: str = "medium"


class Fma(base.ManualAudioBuilder):
  """FMA MP3s (one subset), unlabeled, 90/10 train/validation."""

  BUILDER_CONFIGS = [FmaConfig(name=s, subset=s) for s in ("small", "medium", "large", "full")]
  MANUAL_DOWNLOAD_INSTRUCTIONS = """\
Free Music Archive (Defferrard et al. 2017): one of fma_small.zip, fma_medium.zip,
fma_large.zip, fma_full.zip extracted into manual_dir:
  manual_dir/fma_<subset>/<NNN>/<NNNNNN>.mp3     e.g. fma_medium/000/000002.mp3
  (or the <NNN>/ folders directly in manual_dir)"""

  def _collect(self, manual_dir: pathlib.Path) -> base.Collection:
    root = manual_dir / f"fma_{self.builder_config.subset}"
    if not root.is_dir():
      root = manual_dir
    files = []
    for dirpath, dirnames, filenames in os.walk(root):
      dirnames.sort()
      files += [pathlib.Path(dirpath) / n for n in sorted(filenames)
                if n.lower().endswith(".mp3") and not n.startswith(".")]
    if not files:
      raise base.ManualDirError(f"{root}: no .mp3 files found. Expected layout:\n"
                                f"{self.MANUAL_DOWNLOAD_INSTRUCTIONS}")
    splits = {"train": [], "validation": []}
    for path in files:
      rel = path.relative_to(root).as_posix()
      split = "validation" if base.stable_fraction(rel, "fma-val") < VAL_FRACTION else "train"
      splits[split].append(base.AudioItem(rel, path))
    return base.Collection(splits)
