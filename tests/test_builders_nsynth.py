"""NSynth builder on fake examples.json + audio folders (only valid and test present)."""

import json

import pytest

from data_pipelines.builders import base
from data_pipelines.builders import nsynth
from tests import fake_layouts as fake
from tests import test_builders_util as util

FAMILY = fake.NSYNTH_FAMILY
NOTES = fake.NSYNTH_NOTES  # Only nsynth-valid and nsynth-test.
_write = fake.write_nsynth


def test_pitch_names():
  assert len(nsynth.PITCH_NAMES) == 112
  assert nsynth.PITCH_NAMES[0] == "A-1" and nsynth.PITCH_NAMES[60 - 9] == "C4"
  assert nsynth.PITCH_NAMES[-1] == "C9" and nsynth.midi_name(61) == "C#4"


def test_build_valid_and_test(tmp_path):
  manual = tmp_path / "nsynth"
  _write(manual, NOTES, corrupt={"reed_acoustic_011-045-127"})
  builder = util.build("nsynth_notes", manual, tmp_path / "data")
  assert util.split_sizes(builder) == {"validation": 3, "test": 2}
  assert builder.info.features["instrument_family"].names == FAMILY
  assert builder.info.metadata["labels"]["pitch"]["names"][51] == "C4"
  for split, folder in (("validation", "nsynth-valid"), ("test", "nsynth-test")):
    examples = util.examples(builder, split)
    for name, pitch, family in NOTES[folder]:
      track_id = f"{folder}/audio/{name}.wav"
      if name == "reed_acoustic_011-045-127":
        assert track_id not in examples
        continue
      assert examples[track_id]["pitch"] == pitch - 9
      assert examples[track_id]["instrument_family"] == family
      assert abs(len(examples[track_id]["audio"]) - 4000 * 22050 / 16000) <= 1
  assert list(util.skipped(builder, "test")) == ["nsynth-test/audio/reed_acoustic_011-045-127.wav"]


def test_bad_entries(tmp_path):
  _write(tmp_path / "a", {"nsynth-test": [("x_1-130-1", 130, 0)]})
  with pytest.raises(base.AnnotationError, match="x_1-130-1: pitch 130 outside 9..120"):
    util.build("nsynth_notes", tmp_path / "a", tmp_path / "data")
  _write(tmp_path / "b", {"nsynth-test": [("x_1-60-1", 60, 3)]})
  meta = json.loads((tmp_path / "b" / "nsynth-test" / "examples.json").read_text())
  meta["x_1-60-1"]["instrument_family_str"] = "banjo"
  (tmp_path / "b" / "nsynth-test" / "examples.json").write_text(json.dumps(meta))
  with pytest.raises(base.AnnotationError, match="instrument_family 3 / 'banjo'"):
    util.build("nsynth_notes", tmp_path / "b", tmp_path / "data")
