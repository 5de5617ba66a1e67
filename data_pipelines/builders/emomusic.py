"""EmoMusic (1000 Songs for Emotional Analysis of Music): static arousal/valence (spec §4.4).

Label keys (regression, [2] float32, column 0 = arousal, 1 = valence):
  'emotion':     z-scored with the mean and (population) std of the non-test clips;
  'emotion_raw': the annotation means as given (1..9 scale).
metadata['emotion_mean'] / ['emotion_std'] hold the z-score statistics.
Split (the jukemir protocol): 'Mediaeval 2013 set' == evaluation -> test; the other clips
go to train or validation by sha1(normalised artist) mod 10 (0-7 train, 8-9 validation),
where the artist is lower-cased, reduced to ASCII letters and spaces, and space-collapsed.
"""

from __future__ import annotations

import hashlib
import pathlib

import numpy as np

from data_pipelines import conventions
from data_pipelines.builders import base

STATIC = "static_annotations.csv"
SONGS_INFO = "songs_info.csv"
SET_COLUMN = "Mediaeval 2013 set"


def normalize_artist(artist: str) -> str:
  kept = "".join(c for c in artist.lower() if ord(c) < 128 and (c.isalpha() or c.isspace()))
  return " ".join(kept.split())


def artist_split(artist: str) -> str:
  digest = int(hashlib.sha1(normalize_artist(artist).encode("utf-8")).hexdigest(), 16)
  return "train" if digest % 10 < 8 else "validation"


class Emomusic(base.ManualAudioBuilder):
  """EmoMusic 45 s clips with static arousal/valence annotations."""

  MANUAL_DOWNLOAD_INSTRUCTIONS = f"""\
EmoMusic / "1000 Songs for Emotional Analysis of Music" (Soleymani et al. 2013):
  manual_dir/annotations/{STATIC}   (or manual_dir/{STATIC})
      song_id, mean_arousal, mean_valence, ...
  manual_dir/annotations/{SONGS_INFO}  (or manual_dir/{SONGS_INFO})
      song_id, Artist, ..., {SET_COLUMN}
  manual_dir/clips_45seconds/<song_id>.mp3"""

  def _label_features(self):
    return {"emotion": base.multi_hot_feature(2), "emotion_raw": base.multi_hot_feature(2)}

  def _label_kinds(self):
    return {"emotion": conventions.REGRESSION, "emotion_raw": conventions.REGRESSION}

  def _fixed_label_names(self):
    return {"emotion": ["arousal", "valence"], "emotion_raw": ["arousal", "valence"]}

  def _collect(self, manual_dir: pathlib.Path) -> base.Collection:
    static = base.first_existing([manual_dir / "annotations" / STATIC, manual_dir / STATIC])
    info = base.first_existing([manual_dir / "annotations" / SONGS_INFO, manual_dir / SONGS_INFO])
    if static is None or info is None:
      raise base.ManualDirError(f"{manual_dir}: {STATIC} and {SONGS_INFO} are required. "
                                f"Expected layout:\n{self.MANUAL_DOWNLOAD_INSTRUCTIONS}")
    songs = {}
    for line, row in base.read_csv_rows(info, ["song_id", "Artist", SET_COLUMN]):
      songs[_song_id(info, line, row)] = row
    records = []  # (song_id, split, [arousal, valence])
    for line, row in base.read_csv_rows(static, ["song_id", "mean_arousal", "mean_valence"]):
      song = _song_id(static, line, row)
      if song not in songs:
        raise base.AnnotationError(static, line, f"song_id {song} has no row in {SONGS_INFO}")
      values = []
      for column in ("mean_arousal", "mean_valence"):
        try:
          values.append(float(row[column]))
        except ValueError:
          raise base.AnnotationError(
              static, line, f"{column}: not a number: {row[column]!r}") from None
      if not np.all(np.isfinite(values)):
        raise base.AnnotationError(static, line, f"non-finite annotation {values}")
      meta = songs[song]
      split = "test" if meta[SET_COLUMN].lower() == "evaluation" else artist_split(meta["Artist"])
      records.append((song, split, values))
    raw = np.array([r[2] for r in records], np.float64).reshape(-1, 2)
    fit = raw[[r[1] != "test" for r in records]]
    if len(fit) < 2:
      raise base.AnnotationError(static, None, "fewer than 2 non-test clips: cannot z-score")
    mean, std = fit.mean(axis=0), fit.std(axis=0)
    std = np.where(std > 0, std, 1.0)
    splits = {"train": [], "validation": [], "test": []}
    for (song, split, _), values in zip(records, raw):
      rel = f"clips_45seconds/{song}.mp3"
      splits[split].append(base.AudioItem(rel, manual_dir / rel, {
          "emotion": ((values - mean) / std).astype(np.float32),
          "emotion_raw": values.astype(np.float32)}))
    return base.Collection(splits, metadata={"emotion_mean": mean.tolist(),
                                             "emotion_std": std.tolist()})


def _song_id(path: pathlib.Path, line: int, row: dict[str, str]) -> int:
  try:
    return int(float(row["song_id"]))
  except ValueError:
    raise base.AnnotationError(path, line, f"song_id: not a number: {row['song_id']!r}") from None
