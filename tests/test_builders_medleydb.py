"""MedleyDB builder on fake *_METADATA.yaml files and V1/V2 stem folders."""

import pytest

from data_pipelines.builders import base
from tests import fake_layouts as fake
from tests import test_builders_util as util


@pytest.fixture(scope="module")
def manual_dir(tmp_path_factory):
  return fake.write_medleydb(tmp_path_factory.mktemp("medleydb"))


def test_build(manual_dir, tmp_path):
  builder = util.build("medleydb", manual_dir, tmp_path)
  names = builder.info.features["instrument"].names
  assert names == [f"i{k:02d}" for k in range(20)]
  rows = {}
  for split in builder.info.splits.keys():
    for track_id, ex in util.examples(builder, split).items():
      rows[track_id] = (split, names[ex["instrument"]])
      assert track_id.endswith("#" + names[ex["instrument"]])
  skipped = {**util.skipped(builder, "train"), **util.skipped(builder, "validation"),
             **util.skipped(builder, "test")}
  assert list(skipped.values()) == ["missing file"]
  assert len(rows) + len(skipped) == 10 + 19 * 2  # Rows of the top-20 instruments.
  by_split = {}
  for split, name in rows.values():
    by_split.setdefault(name, []).append(split)
  # i00 has 10 rows: 1 test, 1 validation (10% of 9, rounded half up), 8 train.
  assert by_split["i00"].count("test") == 1 and by_split["i00"].count("validation") == 1
  assert all(s == "train" for n, splits in by_split.items() if n != "i00" for s in splits)
  exploded = [t for t in rows if "#i01" in t or "#i02" in t]
  assert len({t.split("#")[0] for t in exploded}) == 3  # 2 single stems + 1 stem listed twice.
  assert not any(x in t for t in rows for x in ("Main System", "fx/", "Unlabeled", "#i20", "#i21"))


def test_yaml_without_stems(tmp_path):
  (tmp_path / "m").mkdir()
  (tmp_path / "m" / "Song_METADATA.yaml").write_text("artist: x\n")
  with pytest.raises(base.AnnotationError, match="Song_METADATA.yaml: missing 'stems'"):
    util.build("medleydb", tmp_path / "m", tmp_path / "data")
