"""MTG-Jamendo builder on fake split-0 TSVs and audio folders."""

import numpy as np
import pytest

from data_pipelines.builders import base
from tests import fake_layouts as fake
from tests import test_builders_util as util

NAMES = fake.MTG_NAMES  # The 40 instrument tags of the fake autotagging_instrument TSVs.
SPLITS = fake.MTG_SPLITS
_tracks = fake.mtg_tracks  # track number -> tags; every tag is used by some track.
_write_tsvs = fake.write_mtg_tsvs


@pytest.fixture(scope="module")
def manual_dir(tmp_path_factory):
  return fake.write_mtg_jamendo(tmp_path_factory.mktemp("mtg_manual"))


def test_instrument_config(manual_dir, tmp_path):
  builder = util.build("mtg_jamendo/instrument", manual_dir, tmp_path)
  assert builder.info.metadata["labels"]["tags"] == {"kind": "multilabel", "names": NAMES}
  assert util.split_sizes(builder) == {"train": 7, "validation": 3, "test": 3}
  tracks = _tracks()
  for split, numbers in SPLITS.items():
    examples = util.examples(builder, split)
    assert set(examples) == {f"track_{1000 + t:07d}" for t in numbers if t != 3}
    for track_id, ex in examples.items():
      t = int(track_id[-4:]) - 1000
      expected = np.array([n in tracks[t] for n in NAMES], np.float32)
      np.testing.assert_array_equal(ex["tags"], expected)
  assert list(util.skipped(builder, "train")) == ["audio/03/1003.mp3"]


def test_wrong_number_of_tags_is_an_error(tmp_path):
  manual = tmp_path / "m"
  _write_tsvs(manual / "splits" / "split-0", _tracks(), subset="autotagging_genre")
  util.write_audio(manual / "audio" / "00" / "1000.mp3")
  with pytest.raises(base.AnnotationError, match="expects 87 classes but the annotations give 40"):
    util.build("mtg_jamendo/genre", manual, tmp_path / "data")


def test_missing_split_files_list_layout(tmp_path):
  (tmp_path / "m").mkdir()
  (tmp_path / "m" / "x.txt").write_text("x")
  with pytest.raises(base.ManualDirError, match="autotagging_top50tags-train.tsv"):
    util.build("mtg_jamendo/top50", tmp_path / "m", tmp_path / "data")
