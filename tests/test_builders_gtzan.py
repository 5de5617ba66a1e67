"""GTZAN fault-filtered builder: shipped split lists, fake genre folders, user lists."""

import numpy as np
import pytest

from data_pipelines.builders import base
from data_pipelines.builders import gtzan
from tests import fake_layouts as fake
from tests import test_builders_util as util

_shipped = fake.gtzan_shipped


def test_shipped_lists_are_the_443_197_290_partition():
  lists = {s: _shipped(s) for s in gtzan.SPLIT_FILES}
  assert {s: len(v) for s, v in lists.items()} == {"train": 443, "validation": 197, "test": 290}
  everything = [e for v in lists.values() for e in v]
  assert len(set(everything)) == 930
  assert lists["train"][0] == "blues/blues.00029.wav"
  assert lists["validation"][0] == "blues/blues.00000.wav"
  assert lists["test"][0] == "blues/blues.00012.wav"
  assert lists["test"][-1] == "rock/rock.00090.wav"
  for entry in everything:  # Every line parses.
    gtzan.parse_entry(gtzan.SHIPPED_LISTS, 0, entry)


def test_build_with_shipped_lists(tmp_path):
  manual = tmp_path / "gtzan"
  layout = fake.write_gtzan(manual)
  pcm, unlisted = layout["pcm"], layout["unlisted"]

  builder = util.build("gtzan_filtered", manual, tmp_path / "data")
  assert util.split_sizes(builder) == {"train": 2, "validation": 1, "test": 1}
  assert builder.info.features["genre"].names == list(gtzan.GENRES)
  assert builder.info.metadata["labels"]["genre"]["names"][0] == "blues"
  train = util.examples(builder, "train")
  assert set(train) == {"blues/blues.00029", "country/country.00019"}
  np.testing.assert_array_equal(train["blues/blues.00029"]["audio"], pcm)  # 22050 Hz int16: exact.
  assert train["country/country.00019"]["genre"] == gtzan.GENRES.index("country")
  assert util.examples(builder, "test")["rock/rock.00090"]["genre"] == 9
  skipped = util.skipped(builder, "train")
  assert len(skipped) == 441
  assert skipped["genres_original/jazz/jazz.00054.wav"].startswith("undecodable")
  assert sum(r == "missing file" for r in skipped.values()) == 440
  assert len(util.skipped(builder, "test")) == 289
  assert not any(unlisted in p for s in ("train", "validation", "test")
                 for p in util.skipped(builder, s))


def test_user_lists_override_and_bad_entry(tmp_path):
  manual = tmp_path / "gtzan"
  for name in ("blues.00001", "metal.00007", "rock.00003"):
    util.write_audio(manual / "genres" / name.split(".")[0] / f"{name}.au")
  (manual / "train_filtered.txt").write_text("blues/blues.00001.wav\nmetal/metal.00007.wav\n")
  (manual / "valid_filtered.txt").write_text("rock/rock.00003.wav\n")
  (manual / "test_filtered.txt").write_text("\n")
  builder = util.build("gtzan_filtered", manual, tmp_path / "data")
  assert util.split_sizes(builder) == {"train": 2, "validation": 1}
  assert builder.info.metadata["split_lists"] == str(manual)
  (manual / "test_filtered.txt").write_text("blues/blues.00002.wav\nmetal/blues.00003.wav\n")
  with pytest.raises(base.AnnotationError, match=r"test_filtered.txt:2: expected"):
    util.build("gtzan_filtered", manual, tmp_path / "data2")
