"""Unlabeled pools: FMA and the generic audio_folder builder (unlabeled and labeled CSV)."""

import numpy as np
import pytest

from data_pipelines.builders import base
from tests import test_builders_util as util


def test_fma_medium(tmp_path):
  root = tmp_path / "fma" / "fma_medium"
  files = [f"{k // 5:03d}/{k * 37:06d}.mp3" for k in range(20)]
  for rel in files:
    util.write_audio(root / rel, sr=44100)
  util.write_audio(root / "009" / "009999.mp3", seconds=0.05, sr=44100)  # Too short.
  (root / "README.txt").write_text("not audio")
  builder = util.build("fma/medium", tmp_path / "fma", tmp_path / "data")
  assert builder.info.metadata["labels"] == {}
  assert set(builder.info.features) == {"audio", "track_id"}
  got = {}
  for split in builder.info.splits.keys():
    for track_id in util.examples(builder, split):
      got[track_id] = split
  assert set(got) == set(files)
  for rel, split in got.items():
    frac = base.stable_fraction(rel, "fma-val")
    assert split == ("validation" if frac < 0.1 else "train")
  reports = {**util.skipped(builder, "train"), **util.skipped(builder, "validation")}
  assert list(reports) == ["fma_medium/009/009999.mp3"]
  assert reports["fma_medium/009/009999.mp3"].startswith("too short")


def test_audio_folder_unlabeled(tmp_path):
  manual = tmp_path / "mine"
  files = ["a.wav", "sub/b.flac", "sub/deeper/c.ogg", "d.mp3", "e.au"]
  for rel in files:
    util.write_audio(manual / rel, sr=32000)
  util.write_audio(manual / "stereo.wav", channels=2)
  files.append("stereo.wav")
  (manual / "notes.txt").write_text("x")
  (manual / "._a.wav").write_bytes(b"resource fork")
  builder = util.build("audio_folder/unlabeled", manual, tmp_path / "data")
  got = {t for s in builder.info.splits.keys() for t in util.examples(builder, s)}
  assert got == set(files)
  assert sum(util.split_sizes(builder).values()) == 6


def test_audio_folder_labeled(tmp_path):
  manual = tmp_path / "mine"
  rows = [("x/1.wav", "violin", "train"), ("x/2.wav", "cello", "train"),
          ("y/3.wav", "violin", "validation"), ("y/4.wav", "viola", "test"),
          ("gone.wav", "cello", "train")]
  for rel, _, _ in rows[:-1]:
    util.write_audio(manual / rel)
  util.write_audio(manual / "unlisted.wav")  # Not in the CSV: not used.
  (manual / "labels.csv").write_text(
      "path,label,split\n" + "".join(f"{r},{l},{s}\n" for r, l, s in rows))
  builder = util.build("audio_folder/labeled", manual, tmp_path / "data")
  names = builder.info.features["label"].names
  assert names == ["cello", "viola", "violin"]
  assert util.split_sizes(builder) == {"train": 2, "validation": 1, "test": 1}
  for rel, label, split in rows[:-1]:
    assert names[util.examples(builder, split)[rel]["label"]] == label
  assert util.skipped(builder, "train") == {"gone.wav": "missing file"}


def test_audio_folder_labeled_bad_split(tmp_path):
  manual = tmp_path / "mine"
  util.write_audio(manual / "a.wav")
  (manual / "labels.csv").write_text("path,label,split\na.wav,x,training\n")
  with pytest.raises(base.AnnotationError, match=r"labels.csv:2: split 'training'"):
    util.build("audio_folder/labeled", manual, tmp_path / "data")


def test_all_files_of_a_split_skipped_is_an_error(tmp_path):
  manual = tmp_path / "mine"
  util.write_audio(manual / "a.wav")
  util.write_corrupt(manual / "b.wav")
  (manual / "labels.csv").write_text("path,label,split\na.wav,x,train\nb.wav,y,test\n")
  with pytest.raises(base.ManualDirError, match=r"split 'test': all 1 files were skipped"):
    util.build("audio_folder/labeled", manual, tmp_path / "data")
  np.testing.assert_equal(list((tmp_path / "data").glob("audio_folder/labeled/1.0.0")), [])
