"""EmoMusic builder: static annotations, songs_info, artist-hash split, z-scored targets."""

import csv
import hashlib

import numpy as np
import pytest

from data_pipelines import datasets
from data_pipelines.builders import base
from tests import test_builders_util as util

INFO_COLUMNS = ["song_id", "file_name", "Artist", "Song title", "start of the segment (min.sec)",
                "end of the segment (min.sec)", "Genre", "Mediaeval 2013 set"]


def _expected_dev_split(artist):
  """The jukemir rule, written out independently of the builder."""
  kept = "".join(c for c in artist.lower() if c.isascii() and (c.isalpha() or c.isspace()))
  digest = hashlib.sha1(" ".join(kept.split()).encode()).hexdigest()
  return "train" if int(digest, 16) % 10 < 8 else "validation"


def _songs():
  rng = np.random.default_rng(3)
  artists = [f"Artist Number {chr(65 + k)}" for k in range(20)]
  dev = [a for a in artists if _expected_dev_split(a) == "train"][:5]
  dev += [a for a in artists if _expected_dev_split(a) == "validation"][:2]
  songs = []
  for k, artist in enumerate(dev + ["Beyoncé & Co.", "BEYONCÉ  &  co"]):
    songs.append((k + 2, artist, "development", rng.uniform(1, 9, 2)))
  for k in range(3):
    songs.append((100 + k, f"Eval Artist {k}", "evaluation", rng.uniform(1, 9, 2)))
  return songs


@pytest.fixture(scope="module")
def manual_dir(tmp_path_factory):
  root = tmp_path_factory.mktemp("emomusic")
  (root / "annotations").mkdir()
  with open(root / "annotations" / "songs_info.csv", "w", newline="") as f:
    writer = csv.writer(f, quoting=csv.QUOTE_ALL)
    writer.writerow(INFO_COLUMNS)
    for song, artist, group, _ in _songs():
      writer.writerow([song, f"{song}.mp3", f"{artist}\t", "title\t", "0.15", "1.00", "Rock\t",
                       group])
  with open(root / "annotations" / "static_annotations.csv", "w", newline="") as f:
    writer = csv.writer(f)
    writer.writerow(["song_id", "mean_arousal", "std_arousal", "mean_valence", "std_valence"])
    for song, _, _, (arousal, valence) in _songs():
      writer.writerow([song, f"{arousal:.4f}", "1.1", f"{valence:.4f}", "0.9"])
  for song, *_ in _songs():
    util.write_audio(root / "clips_45seconds" / f"{song}.mp3", sr=44100)
  return root


def test_build(manual_dir, tmp_path):
  builder = util.build("emomusic", manual_dir, tmp_path)
  songs = _songs()
  raw = {s: np.round(v, 4) for s, _, _, v in songs}
  dev = np.array([raw[s] for s, _, g, _ in songs if g == "development"])
  mean, std = dev.mean(axis=0), dev.std(axis=0)
  np.testing.assert_allclose(builder.info.metadata["emotion_mean"], mean, rtol=1e-12)
  np.testing.assert_allclose(builder.info.metadata["emotion_std"], std, rtol=1e-12)
  assert builder.info.metadata["labels"]["emotion"] == {"kind": "regression",
                                                         "names": ["arousal", "valence"]}
  reloaded = datasets.get_builder("emomusic", str(tmp_path))
  assert datasets.label_info(reloaded, "emotion") == (2, "regression", ["arousal", "valence"])
  splits = {}
  for split in builder.info.splits.keys():
    for track_id, ex in util.examples(builder, split).items():
      song = int(track_id.split("/")[1][:-4])
      splits[song] = split
      np.testing.assert_allclose(ex["emotion_raw"], raw[song], rtol=1e-6)
      np.testing.assert_allclose(ex["emotion"], (raw[song] - mean) / std, rtol=1e-5, atol=1e-6)
  for song, artist, group, _ in songs:
    assert splits[song] == ("test" if group == "evaluation" else _expected_dev_split(artist))
  assert splits[9] == splits[10]  # Same artist, different spelling.
  assert set(splits.values()) == {"train", "validation", "test"}


def test_annotation_without_song_info(manual_dir, tmp_path):
  import shutil
  root = tmp_path / "copy"
  shutil.copytree(manual_dir, root)
  with open(root / "annotations" / "static_annotations.csv", "a") as f:
    f.write("999,5.0,1.0,5.0,1.0\n")
  with pytest.raises(base.AnnotationError, match=r"static_annotations.csv:\d+: song_id 999"):
    util.build("emomusic", root, tmp_path / "data")
