"""VocalSet builder: FULL/<singer>/<context>/<technique>/ layout, both split rules."""

import pytest

from data_pipelines import datasets
from data_pipelines.builders import base
from tests import fake_layouts as fake
from tests import test_builders_util as util


@pytest.fixture(scope="module")
def manual_dir(tmp_path_factory):
  root = tmp_path_factory.mktemp("vocalset")
  return root, fake.write_vocalset(root)


def _all_examples(builder):
  out = {}
  for split in builder.info.splits.keys():
    for track_id, ex in util.examples(builder, split).items():
      assert track_id not in out
      out[track_id] = (split, ex)
  return out


def test_singer_config(manual_dir, tmp_path):
  root, files = manual_dir
  builder = util.build("vocalset/singer", root, tmp_path)
  singers = builder.info.features["singer"].names
  techniques = builder.info.features["technique"].names
  assert singers == ["f2", "f10", "m3", "m5"]  # Natural order.
  assert techniques == ["belt", "straight", "vibrato"]
  reloaded = datasets.get_builder("vocalset/singer", str(tmp_path))  # Names survive reloading.
  assert datasets.label_info(reloaded, "singer") == (4, "multiclass", ["f2", "f10", "m3", "m5"])
  got = _all_examples(builder)
  assert set(got) == set(files)  # Every file exactly once.
  for rel, (split, ex) in got.items():
    assert (singers[ex["singer"]], techniques[ex["technique"]]) == files[rel]
    u = base.stable_fraction(rel, "vocalset-singer")
    assert split == ("train" if u < 0.8 else "validation" if u < 0.9 else "test")
  assert sum(s == "train" for s, _ in got.values()) > len(files) // 2


def test_technique_config_is_singer_disjoint(manual_dir, tmp_path):
  root, files = manual_dir
  builder = util.build("vocalset/technique", root, tmp_path)
  singers = builder.info.features["singer"].names
  got = _all_examples(builder)
  assert set(got) == {rel for rel, (s, _) in files.items() if s != "m5"}
  assert builder.info.metadata["excluded_singer_not_listed"] == 8
  test_singers = {singers[ex["singer"]] for split, ex in got.values() if split == "test"}
  train_singers = {singers[ex["singer"]] for split, ex in got.values() if split != "test"}
  assert test_singers == {"f10"} and train_singers == {"f2", "m3"}
  assert util.split_sizes(builder)["test"] == 8
