"""MedleyDB builder on fake *_METADATA.yaml files and V1/V2 stem folders."""

import pytest
import yaml

from data_pipelines.builders import base
from tests import test_builders_util as util

# Stem instrument per song; 22 kept instruments, the last 2 rarest fall outside the top 20.
COUNTS = {"i00": 10, **{f"i{k:02d}": 2 for k in range(1, 20)}, "i20": 1, "i21": 1}


def _stems():
  """(song, stem instrument) pairs; one stem has a list, some use excluded labels."""
  stems = [name for name, n in COUNTS.items() for _ in range(n)]
  stems.remove("i01")
  stems.remove("i02")
  stems.append(["i01", "i02"])  # Exploded: counts once for each.
  stems += ["Main System", "fx/processed sound", "Unlabeled"]
  songs = {}
  for k, instrument in enumerate(stems):
    songs.setdefault(f"Artist{k % 4}_Song{k % 4}", []).append(instrument)
  return songs


@pytest.fixture(scope="module")
def manual_dir(tmp_path_factory):
  root = tmp_path_factory.mktemp("medleydb")
  for s, (song, instruments) in enumerate(sorted(_stems().items())):
    version = "V1" if s % 2 == 0 else "V2"
    stems = {}
    for k, instrument in enumerate(instruments, start=1):
      filename = f"{song}_STEM_{k:02d}.wav"
      stems[f"S{k:02d}"] = {"component": "", "filename": filename, "instrument": instrument,
                            "raw": {"R01": {"filename": "x.wav", "instrument": instrument}}}
      if not (song.endswith("0") and k == 1):  # One stem file is missing.
        util.write_audio(root / "Audio" / version / song / f"{song}_STEMS" / filename, sr=44100)
    meta = {"album": "A", "artist": song.split("_")[0], "mix_filename": f"{song}_MIX.wav",
            "stem_dir": f"{song}_STEMS", "raw_dir": f"{song}_RAW", "stems": stems}
    path = root / "Metadata" / f"{song}_METADATA.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(meta))
  return root


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
