"""GiantSteps key builder: MTG-key train (confidence filter) and GiantSteps-key test."""

import pytest

from data_pipelines.builders import base
from data_pipelines.builders import giantsteps
from tests import fake_layouts as fake
from tests import test_builders_util as util

MTG = giantsteps.MTG_DIR
KEYDS = giantsteps.KEY_DIR


def test_normalize_key():
  assert giantsteps.normalize_key("D# minor") == "Eb minor"
  assert giantsteps.normalize_key("g#  Major ") == "Ab major"
  assert giantsteps.normalize_key("A# major") == "Bb major"
  assert giantsteps.normalize_key("Db minor") == "Db minor"
  assert giantsteps.normalize_key("C minor / F# minor") is None
  assert giantsteps.normalize_key("A-A# minor") is None
  assert len(giantsteps.KEYS) == 24 and giantsteps.KEYS[:3] == ("C major", "C minor", "Db major")


@pytest.fixture(scope="module")
def manual_dir(tmp_path_factory):
  root = tmp_path_factory.mktemp("gs_manual")
  expected, train_ids, val_ids = fake.write_giantsteps(root)
  return root, expected, train_ids, val_ids


def test_build(manual_dir, tmp_path):
  root, expected, train_ids, val_ids = manual_dir
  builder = util.build("giantsteps_key", root, tmp_path)
  assert builder.info.features["key"].names == list(giantsteps.KEYS)
  assert util.split_sizes(builder) == {"train": 4, "validation": 2, "test": 3}
  names = builder.info.features["key"].names
  for split, ids in (("train", train_ids), ("validation", val_ids)):
    examples = util.examples(builder, split)
    assert set(examples) == {f"{MTG}/audio/{i}.LOFI.mp3" for i in ids}
    for i in ids:
      assert names[examples[f"{MTG}/audio/{i}.LOFI.mp3"]["key"]] == expected[i]
  test = util.examples(builder, "test")
  assert {k: names[v["key"]] for k, v in test.items()} == {
      f"{KEYDS}/audio/10089.LOFI.mp3": "Eb minor",
      f"{KEYDS}/audio/10200.LOFI.mp3": "Ab major",
      f"{KEYDS}/audio/10300.LOFI.mp3": "C major"}
  assert list(util.skipped(builder, "test")) == [f"{KEYDS}/audio/10400.LOFI.mp3"]


def test_unknown_key_in_key_file(manual_dir, tmp_path):
  root = tmp_path / "copy"
  import shutil
  shutil.copytree(manual_dir[0], root)
  (root / KEYDS / "annotations" / "key" / "10089.LOFI.key").write_text("H dorian")
  with pytest.raises(base.AnnotationError, match=r"10089.LOFI.key:1: not one of the 24"):
    util.build("giantsteps_key", root, tmp_path / "data")
