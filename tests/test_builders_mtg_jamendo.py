"""MTG-Jamendo builder on fake split-0 TSVs and audio folders."""

import numpy as np
import pytest

from data_pipelines.builders import base
from tests import test_builders_util as util

SUBSET = "autotagging_instrument"
NAMES = [f"instrument---i{i:02d}" for i in range(40)]
SPLITS = {"train": range(0, 8), "validation": range(8, 11), "test": range(11, 14)}


def _tracks():
  """track number -> tags; every one of the 40 tags is used by some track."""
  return {t: [NAMES[i] for i in range(40) if i % 14 == t] for t in range(14)}


def _write_tsvs(split_dir, tracks, subset=SUBSET):
  split_dir.mkdir(parents=True, exist_ok=True)
  for split, numbers in SPLITS.items():
    lines = ["TRACK_ID\tARTIST_ID\tALBUM_ID\tPATH\tDURATION\tTAGS"]
    for t in numbers:
      lines.append("\t".join([f"track_{1000 + t:07d}", f"artist_{t:06d}", f"album_{t:06d}",
                              f"{t:02d}/{1000 + t}.mp3", "200.5", *tracks[t]]))
    (split_dir / f"{subset}-{split}.tsv").write_text("\n".join(lines) + "\n")


@pytest.fixture(scope="module")
def manual_dir(tmp_path_factory):
  root = tmp_path_factory.mktemp("mtg_manual")
  _write_tsvs(root / "data" / "splits" / "split-0", _tracks())
  for t in range(14):
    path = root / "audio" / f"{t:02d}" / f"{1000 + t}.mp3"
    if t == 3:
      util.write_corrupt(path)
    elif t == 12:
      util.write_audio(path.with_name(f"{1000 + t}.low.mp3"), sr=44100)  # Low-quality copy.
    else:
      util.write_audio(path, sr=44100)
  return root


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
