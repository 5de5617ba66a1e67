"""EmoMusic builder: static annotations, songs_info, artist-hash split, z-scored targets."""

import numpy as np
import pytest

from data_pipelines import datasets
from data_pipelines.builders import base
from tests import fake_layouts as fake
from tests import test_builders_util as util

_expected_dev_split = fake.emomusic_dev_split  # The jukemir rule, written out independently.
_songs = fake.emomusic_songs


@pytest.fixture(scope="module")
def manual_dir(tmp_path_factory):
  return fake.write_emomusic(tmp_path_factory.mktemp("emomusic"))


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
