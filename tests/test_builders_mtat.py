"""MTAT builder on a fake copy of annotations_final.csv + MP3 folders."""

import csv

import numpy as np
import pytest

from data_pipelines import datasets
from data_pipelines.builders import base
from tests import fake_layouts as fake
from tests import test_builders_util as util

NUM_TAGS = fake.MTAT_NUM_TAGS
TAGS = fake.MTAT_TAGS
TOP = fake.MTAT_TOP
_clips = fake.mtat_clips  # (mp3_path, tag columns); top-50 columns appear 8x each.


@pytest.fixture(scope="module")
def manual_dir(tmp_path_factory):
  return fake.write_mtat(tmp_path_factory.mktemp("mtat_manual"))


def _vector(tags, columns):
  return np.array([1.0 if j in tags else 0.0 for j in columns], np.float32)


def test_top50(manual_dir, tmp_path):
  builder = util.build("mtat/top50", manual_dir, tmp_path)
  assert builder.info.metadata["labels"]["tags"] == {
      "kind": "multilabel", "names": [TAGS[j] for j in TOP]}
  reloaded = datasets.get_builder("mtat/top50", str(tmp_path))  # What the trainers open.
  assert datasets.label_info(reloaded, "tags") == (50, "multilabel", [TAGS[j] for j in TOP])
  assert util.split_sizes(builder) == {"train": 6, "validation": 2, "test": 4, "unlabeled": 2}
  assert builder.info.metadata["dropped_untagged"] == 1
  clips = dict(_clips())
  for split in ("train", "validation", "test", "unlabeled"):
    for track_id, ex in util.examples(builder, split).items():
      np.testing.assert_array_equal(ex["tags"], _vector(clips[track_id], TOP))
      assert abs(len(ex["audio"]) - 0.25 * 22050) < 0.02 * 0.25 * 22050
      folder = track_id[0]
      expected = {"c": "validation", "d": "test", "e": "test", "f": "test"}.get(folder, "train")
      assert split == ("unlabeled" if not ex["tags"].any() else expected)
  assert set(util.examples(builder, "unlabeled")) == {"b/untagged-train.mp3", "3/no-tag-at-all.mp3"}
  skipped = util.skipped(builder, "train")
  assert skipped["4/missing.mp3"] == "missing file"
  assert skipped["2/corrupt.mp3"].startswith("undecodable")
  assert util.skipped(builder, "test") == {}
  assert builder.info.metadata["skipped"] == {"train": 2, "validation": 0, "test": 0,
                                              "unlabeled": 0}


def test_all188(manual_dir, tmp_path):
  builder = util.build("mtat/all188", manual_dir, tmp_path)
  assert builder.info.metadata["labels"]["tags"]["names"] == TAGS
  assert util.split_sizes(builder) == {"train": 8, "validation": 2, "test": 5}
  clips = dict(_clips())
  train = util.examples(builder, "train")
  assert not train["3/no-tag-at-all.mp3"]["tags"].any()  # Stays labeled, all zeros.
  for split in ("train", "validation", "test"):
    for track_id, ex in util.examples(builder, split).items():
      np.testing.assert_array_equal(ex["tags"], _vector(clips[track_id], range(NUM_TAGS)))


def test_bad_value_names_file_line_and_column(tmp_path):
  manual = tmp_path / "m"
  manual.mkdir()
  with open(manual / "annotations_final.csv", "w", newline="") as f:
    writer = csv.writer(f, delimiter="\t")
    writer.writerow(["clip_id", *TAGS, "mp3_path"])
    writer.writerow(["2", *(["0"] * NUM_TAGS), "0/a.mp3"])
    writer.writerow(["3", "0", "2", *(["0"] * (NUM_TAGS - 2)), "0/b.mp3"])
  with pytest.raises(base.AnnotationError, match=r"annotations_final.csv:3: column 'tag001'"):
    util.build("mtat/top50", manual, tmp_path / "data")


def test_missing_annotations_lists_expected_layout(tmp_path):
  (tmp_path / "m").mkdir()
  (tmp_path / "m" / "readme.txt").write_text("x")
  with pytest.raises(base.ManualDirError, match=r"annotations_final.csv not found(.|\n)*mp3_path"):
    util.build("mtat/top50", tmp_path / "m", tmp_path / "data")
