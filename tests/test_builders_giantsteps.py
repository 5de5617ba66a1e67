"""GiantSteps key builder: MTG-key train (confidence filter) and GiantSteps-key test."""

import pytest

from data_pipelines.builders import base
from data_pipelines.builders import giantsteps
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


def _ids(n_train, n_val):
  """Track ids whose hash puts them in train / validation under the documented rule."""
  train, val = [], []
  for i in range(1000, 5000):
    frac = base.stable_fraction(str(i), "giantsteps-val")
    (val if frac < giantsteps.VAL_FRACTION else train).append(str(i))
    if len(train) >= n_train and len(val) >= n_val:
      return train[:n_train], val[:n_val]
  raise AssertionError("not enough ids")


@pytest.fixture(scope="module")
def manual_dir(tmp_path_factory):
  root = tmp_path_factory.mktemp("gs_manual")
  train_ids, val_ids = _ids(4, 2)
  kept = dict(zip(train_ids + val_ids,
                  ["D# minor", "A major", "F# minor", "C# major", "G minor", "A# minor"]))
  expected = dict(zip(train_ids + val_ids,
                      ["Eb minor", "A major", "Gb minor", "Db major", "G minor", "Bb minor"]))
  excluded = {"90001": ("E minor", "1"), "90002": ("-", "0"), "90003": ("C minor / F# minor", "2"),
              "90004": ("", "2")}
  lines = ["ID\tMANUAL KEY\tC"]
  lines += [f"{i}\t{k}\t2" for i, k in kept.items()]
  lines += [f"{i}\t{k}\t{c}" for i, (k, c) in excluded.items()]
  ann = root / MTG / "annotations" / "annotations.txt"
  ann.parent.mkdir(parents=True)
  ann.write_text("\n".join(lines) + "\n")
  for track in [*kept, *excluded]:
    util.write_audio(root / MTG / "audio" / f"{track}.LOFI.mp3", sr=44100)
  test_keys = {"10089": "Eb minor", "10200": "g# major", "10300": "C major\n", "10400": "B minor"}
  for name, key in test_keys.items():
    util.write_audio(root / KEYDS / "audio" / f"{name}.LOFI.mp3", sr=44100)
    key_file = root / KEYDS / "annotations" / "key" / f"{name}.LOFI.key"
    key_file.parent.mkdir(parents=True, exist_ok=True)
    key_file.write_text(key)
  util.write_corrupt(root / KEYDS / "audio" / "10400.LOFI.mp3")
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
