"""Tests of the pretraining input, dataset opening and whole-track loading.

A small TFDS builder defined here stores ramps: track k's sample i holds 1000·k + i, so every
value of a view tells which track and which sample position it came from.
"""

import functools
import logging
import os

import ml_collections
import numpy as np
import pytest
import tensorflow_datasets as tfds

from configs.common import base_config
from data_pipelines import datasets
from data_pipelines import pretrain_input
from tests import tfds_tracks as tracks

T, N = 20, 3  # View length and views per item in these tests.
NUM_TRACKS = 16
SPLITS = ("train", "unlabeled")


def ramp_length(split: str, k: int) -> int:
  """Clip lengths: short (< T, excluded), one-view-only, exactly N·T, long."""
  lengths = (10, 45, N * T, 300) if split == "train" else (300, 15, 50, 250)
  return lengths[k % 4]


def ramp_code(split: str, k: int) -> int:
  return k + (0 if split == "train" else NUM_TRACKS)


@functools.cache
def _ramp_class() -> type:
  # Defined once per process: TFDS registers a builder class by name when it is defined, and
  # other test modules import the fixture below (each import is a fixture of its own).
  class RampMusic(tfds.core.GeneratorBasedBuilder):
    """Ramps with labels, for tests."""
    VERSION = tfds.core.Version("1.0.0")
    BUILDER_CONFIGS = [tfds.core.BuilderConfig(name="a"), tfds.core.BuilderConfig(name="b")]

    def _info(self):
      return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict({
          "audio": tfds.features.Tensor(shape=(None,), dtype=np.int16,
                                        encoding=tfds.features.Encoding.BYTES),
          "track_id": tfds.features.Text(),
          "label": tfds.features.ClassLabel(names=["x", "y", "z"]),
          "tags": tfds.features.Sequence(tfds.features.ClassLabel(num_classes=4)),
          "code": tfds.features.Tensor(shape=(), dtype=np.float32),
      }))

    def _split_generators(self, dl_manager):
      return {s: self._generate_examples(s) for s in SPLITS}

    def _generate_examples(self, split):
      for k in range(NUM_TRACKS):
        code = ramp_code(split, k)
        yield f"{split}-{k}", {
            "audio": (1000 * code + np.arange(ramp_length(split, k))).astype(np.int16),
            "track_id": f"{split}-{k}", "label": code % 3,
            "tags": sorted({code % 4, (code + 1) % 4}), "code": float(code)}
  return RampMusic


@pytest.fixture(scope="module")
def ramp_cls():
  return _ramp_class()


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory, ramp_cls):
  path = str(tmp_path_factory.mktemp("ramp"))
  ramp_cls(config="a", data_dir=path).download_and_prepare()
  # Config b has several shard files per split, as large datasets do.
  ramp_cls(config="b", data_dir=path).download_and_prepare(
      download_config=tfds.download.DownloadConfig(num_shards=3))
  return path


def read_in_file_order(data_dir, config, split):
  """A split's examples in shard-file order, read sequentially by plain TFDS."""
  builder = tfds.builder(f"ramp_music/{config}", data_dir=data_dir)
  ds = builder.as_dataset(split=split, shuffle_files=False,
                          read_config=tfds.ReadConfig(interleave_cycle_length=1))
  return list(tfds.as_numpy(ds))


@pytest.fixture(scope="module")
def synthetic_dir(tmp_path_factory):
  path = str(tmp_path_factory.mktemp("synthetic"))
  datasets.get_builder("synthetic_music/tiny", path)  # Generated on first use.
  return path


@pytest.fixture(scope="module")
def code_of(data_dir):
  """(config, split) -> ramp code of each example index."""
  return {(config, split): np.array([int(ex["code"]) for ex in
                                     read_in_file_order(data_dir, config, split)])
          for config in ("a", "b") for split in SPLITS}


def make_config(data_dir, **overrides) -> ml_collections.ConfigDict:
  c = base_config().data
  c.update(dict(data_dir=data_dir, labeled="ramp_music/a", labeled_split="train",
                unlabeled="ramp_music/a", unlabeled_split="unlabeled", label_key="label",
                view_length=T, num_views=N, batch_size=8, labeled_share=0.5,
                labeled_fraction=1.0, shuffle_buffer=16))
  c.update(overrides)
  return c


def take(config, num_batches, **kwargs):
  ds = pretrain_input.make_pretrain_dataset(config, **{"seed": 0, **kwargs})
  it = ds.as_numpy_iterator()
  return [next(it) for _ in range(num_batches)]


def source_of(index):
  """(split, example index in the split) of a global track index (train + unlabeled)."""
  return ("train", index) if index < NUM_TRACKS else ("unlabeled", index - NUM_TRACKS)


def index_length(code_of, config, index):
  """Clip length of a global track index, through the ramp code read with plain TFDS."""
  split, i = source_of(index)
  return ramp_length(split, code_of[(config, split)][i] % NUM_TRACKS)


# ------------------------------------------------------------------------------------------------


def test_batch_layout_and_labels(data_dir, code_of):
  # No autotuner: deleting an iterator would wait out its thread's sleep (datasets docstring).
  assert pretrain_input.make_pretrain_dataset(
      make_config(data_dir), seed=0).options().autotune.enabled is False
  batches = take(make_config(data_dir), 6)
  for b in batches:
    assert b["audio"].dtype == np.float32 and b["audio"].shape == (8, N, T)
    assert b["labels"].dtype == np.float32 and b["labels"].shape == (8, 3)
    assert b["labeled"].dtype == np.bool_ and b["track_index"].dtype == np.int64
    np.testing.assert_array_equal(b["labeled"], [True] * 4 + [False] * 4)
    assert not b["labels"][4:].any()
    for i in range(4):  # One-hot of the track's ClassLabel.
      split, k = source_of(b["track_index"][i])
      expected = np.eye(3)[code_of[("a", split)][k] % 3]
      np.testing.assert_array_equal(b["labels"][i], expected)
    assert (b["track_index"][:4] < NUM_TRACKS).all()  # Labeled items come from train.


def test_views_are_ramps_of_the_right_track_and_adjacent(data_dir, code_of):
  both_branches = set()
  starts_of_long = set()
  for b in take(make_config(data_dir), 25):
    values = np.round(b["audio"] * 32768).astype(np.int64)  # [B, N, T]
    for item, index in zip(values, b["track_index"]):
      split, i = source_of(index)
      code = code_of[("a", split)][i]
      length = index_length(code_of, "a", index)
      assert (item // 1000 == code).all()
      pos = item % 1000
      np.testing.assert_array_equal(np.diff(pos, axis=1), 1)  # Consecutive samples.
      assert (pos[:, 0] >= 0).all() and (pos[:, -1] < length).all()
      assert length >= T  # Short clips never appear.
      if length >= N * T:  # One window cut into N adjacent views.
        np.testing.assert_array_equal(pos[:, 0], pos[0, 0] + T * np.arange(N))
        both_branches.add("window")
        if length == N * T:  # The window fits exactly: its start can only be 0.
          assert pos[0, 0] == 0
        if length == 300:
          starts_of_long.add(int(pos[0, 0]))
      else:  # Independent chunks, each inside the clip.
        both_branches.add("chunks")
        if not np.array_equal(pos[:, 0], pos[0, 0] + T * np.arange(N)):
          both_branches.add("independent")
  assert both_branches == {"window", "chunks", "independent"}
  assert len(starts_of_long) > 5  # Window starts are random.


def test_short_clips_are_excluded_and_reported(data_dir, caplog):
  config = make_config(data_dir)
  with caplog.at_level(logging.WARNING, logger="data_pipelines.pretrain_input"):
    plan = pretrain_input.plan_pretrain_input(config, seed=0)
  short_train = sum(ramp_length("train", k) < T for k in range(NUM_TRACKS))
  short_unlabeled = sum(ramp_length("unlabeled", k) < T for k in range(NUM_TRACKS))
  assert plan.excluded == {"labeled": short_train, "unlabeled": short_unlabeled}
  messages = " ".join(r.getMessage() for r in caplog.records)
  assert f"excluded {short_train} labeled" in messages
  assert f"excluded {short_unlabeled} unlabeled" in messages
  usable = sum(p.indices.size for p in plan.labeled_parts + plan.unlabeled_parts)
  assert usable == 2 * NUM_TRACKS - short_train - short_unlabeled


def test_hosts_see_disjoint_tracks_that_cover_the_data(data_dir, code_of):
  config = make_config(data_dir)
  seen = []
  for host in range(2):
    indices = set()
    for b in take(config, 30, process_index=host, process_count=2):
      assert b["audio"].shape == (4, N, T)
      np.testing.assert_array_equal(b["labeled"], [True, True, False, False])
      indices |= set(b["track_index"].tolist())
    seen.append(indices)
  assert not seen[0] & seen[1]
  usable = {i for i in range(2 * NUM_TRACKS) if index_length(code_of, "a", i) >= T}
  assert seen[0] | seen[1] == usable


@pytest.mark.parametrize("overrides", [
    dict(labeled_fraction=0.5),  # Two unlabeled parts to mix.
    dict(unlabeled="ramp_music/b"),  # Shard files read in parallel.
])
def test_same_seed_same_batches_other_start_step_other_batches(data_dir, overrides):
  config = make_config(data_dir, **overrides)
  a = take(config, 2, seed=5, start_step=100)
  b = take(config, 2, seed=5, start_step=100)
  c = take(config, 2, seed=5, start_step=101)
  for x, y in zip(a, b):
    for key in x:
      np.testing.assert_array_equal(x[key], y[key])
  assert any(not np.array_equal(x["audio"], z["audio"]) for x, z in zip(a, c))


@pytest.mark.parametrize("n,fraction", [(16, 0.5), (10, 0.25), (7, 1.0), (9, 0.0), (1000, 0.05)])
def test_labeled_subset_size_and_stability(n, fraction):
  subset = pretrain_input.labeled_subset(n, fraction, seed=3)
  assert subset.size == int(np.floor(fraction * n + 0.5))
  assert (np.diff(subset) > 0).all() and (subset.size == 0 or (0 <= subset[0] and subset[-1] < n))
  np.testing.assert_array_equal(subset, pretrain_input.labeled_subset(n, fraction, seed=3))
  if 0 < subset.size < n:
    assert not np.array_equal(subset, pretrain_input.labeled_subset(n, fraction, seed=4))


def _usable_indices(data_dir, config, split):
  """Example indices of clips with >= T samples."""
  return {i for i, ex in enumerate(read_in_file_order(data_dir, config, split))
          if len(ex["audio"]) >= T}


def test_fraction_applied_once_leftovers_join_the_same_dataset_pool(data_dir):
  config = make_config(data_dir, labeled_fraction=0.5)
  kept = set(pretrain_input.labeled_subset(NUM_TRACKS, 0.5, seed=0).tolist())
  assert len(kept) == NUM_TRACKS // 2
  usable = _usable_indices(data_dir, "a", "train")
  labeled, unlabeled = set(), set()
  for b in take(config, 60):
    labeled |= set(b["track_index"][b["labeled"]].tolist())
    unlabeled |= set(b["track_index"][~b["labeled"]].tolist())
  assert labeled == kept & usable
  assert unlabeled & set(range(NUM_TRACKS)) == (set(range(NUM_TRACKS)) - kept) & usable
  assert unlabeled - set(range(NUM_TRACKS)) == {
      NUM_TRACKS + i for i in _usable_indices(data_dir, "a", "unlabeled")}


def test_read_indexed_recovers_the_index_across_shuffled_shards(data_dir, code_of):
  builder = datasets.get_builder("ramp_music/b", data_dir)
  assert builder.info.splits["unlabeled"].num_shards == 3
  ds = datasets.read_indexed(builder, "unlabeled", 2, 14, keys=("code",), shuffle_seed=1)
  got = [(int(ex["index"]), int(ex["code"])) for ex in ds.as_numpy_iterator()]
  assert sorted(i for i, _ in got) == list(range(2, 14))
  assert [i for i, _ in got] != list(range(2, 14))  # The files were read out of order.
  for index, code in got:
    assert code == code_of[("b", "unlabeled")][index]


def test_audio_lengths_from_scan_and_metadata(data_dir, synthetic_dir):
  ramp = datasets.get_builder("ramp_music/b", data_dir)
  lengths, exact = datasets.audio_lengths(ramp, "train", 0, NUM_TRACKS)
  assert exact
  expected = [len(ex["audio"]) for ex in read_in_file_order(data_dir, "b", "train")]
  np.testing.assert_array_equal(lengths, expected)
  synthetic = datasets.get_builder("synthetic_music/tiny", synthetic_dir)
  lengths, exact = datasets.audio_lengths(synthetic, "test", 1, 3)
  assert exact and lengths.tolist() == [6 * 22050] * 2


def test_other_dataset_as_unlabeled_drops_the_leftovers(data_dir):
  config = make_config(data_dir, labeled_fraction=0.5, unlabeled="ramp_music/b")
  plan = pretrain_input.plan_pretrain_input(config, seed=0)
  assert [p.name for p in plan.unlabeled_parts] == ["ramp_music/b"]
  assert plan.unlabeled_parts[0].offset == NUM_TRACKS
  unlabeled = set()
  for b in take(config, 30):
    unlabeled |= set(b["track_index"][~b["labeled"]].tolist())
  assert unlabeled == {NUM_TRACKS + i for i in _usable_indices(data_dir, "b", "unlabeled")}


def test_truncated_labeled_count_and_one_sided_batches(data_dir):
  (b,) = take(make_config(data_dir, batch_size=8, labeled_share=0.3), 1)  # int(2.4) = 2.
  np.testing.assert_array_equal(b["labeled"], [True] * 2 + [False] * 6)
  (b,) = take(make_config(data_dir, labeled_share=0.0, labeled=""), 1)
  assert not b["labeled"].any() and b["labels"].shape == (8, 1) and not b["labels"].any()
  (b,) = take(make_config(data_dir, labeled_share=1.0, unlabeled=""), 1)
  assert b["labeled"].all()


def test_multilabel_sequence_labels(data_dir, code_of):
  (b,) = take(make_config(data_dir, label_key="tags"), 1)
  assert b["labels"].shape == (8, 4)
  for i in range(4):
    code = code_of[("a", "train")][b["track_index"][i]]
    expected = np.zeros(4)
    expected[[code % 4, (code + 1) % 4]] = 1
    np.testing.assert_array_equal(b["labels"][i], expected)


def test_several_label_keys_are_concatenated_in_order(data_dir, code_of):
  (b,) = take(make_config(data_dir, label_key="tags, label"), 1)
  assert b["labels"].shape == (8, 4 + 3)
  for i in range(4):
    code = code_of[("a", "train")][b["track_index"][i]]
    expected = np.zeros(7)
    expected[[code % 4, (code + 1) % 4, 4 + code % 3]] = 1
    np.testing.assert_array_equal(b["labels"][i], expected)
  assert not b["labels"][4:].any()


# Sizes and shares are refused by ssc_jax.config_checks (tests/test_end_to_end.py); what needs
# the data is refused here.
@pytest.mark.parametrize("overrides,process_count,pattern", [
    (dict(labeled=""), 1, r"data\.labeled is empty"),
    (dict(unlabeled=""), 1, r"data\.unlabeled is empty"),
    (dict(labeled_fraction=0.01), 1, r"keeps no track.*round\(0\.01 \* 16\) = 0"),
    (dict(labeled_fraction=1.0, unlabeled_split="train"), 1, r"unlabeled pool is empty"),
    (dict(label_key="nope"), 1, r"label_key 'nope'.*\['code', 'label', 'tags'\]"),
    (dict(label_key="code"), 1, r"regression target"),
    (dict(label_key="label,code"), 1, r"label_key 'code'.*regression target"),
    (dict(label_key="label,,tags"), 1, r"several\s+distinct ones separated by commas"),
    (dict(label_key="label,label"), 1, r"several\s+distinct ones separated by commas"),
    (dict(labeled_split="validation"), 1, r"no split 'validation'.*\['train', 'unlabeled'\]"),
])
def test_impossible_configs_are_refused(data_dir, overrides, process_count, pattern):
  config = make_config(data_dir, **overrides)
  with pytest.raises(ValueError, match=pattern):
    pretrain_input.make_pretrain_dataset(config, seed=0, process_count=process_count)


def test_synthetic_music_at_full_view_length(synthetic_dir):
  config = base_config().data
  config.update(dict(data_dir=synthetic_dir, labeled="synthetic_music/tiny",
                     unlabeled="synthetic_music/tiny", batch_size=4, shuffle_buffer=4))
  (b,) = take(config, 1)
  assert b["audio"].shape == (4, 2, 59535) and b["labels"].shape == (4, 12)
  assert 0.05 < np.abs(b["audio"]).max() <= 1.0
  assert not np.array_equal(b["audio"][:, 0], b["audio"][:, 1])
  np.testing.assert_array_equal(b["labeled"], [True, True, False, False])
  assert not b["labels"][2:].any() and (b["labels"][:2].sum(1) > 0).all()
  assert (b["track_index"][:2] < 8).all() and (b["track_index"][2:] >= 8).all()


def test_sample_rate_mismatch_is_refused(synthetic_dir):
  config = base_config().data
  config.update(dict(data_dir=synthetic_dir, labeled="synthetic_music/tiny",
                     unlabeled="synthetic_music/tiny", sample_rate=16000))
  with pytest.raises(ValueError, match=r"22050 Hz but data\.sample_rate is 16000"):
    pretrain_input.plan_pretrain_input(config, seed=0)


def test_not_prepared_dataset_error_names_the_command(tmp_path, data_dir):
  with pytest.raises(datasets.DatasetNotPreparedError) as err:
    datasets.get_builder("no_such_dataset/cfg", str(tmp_path))
  message = str(err.value)
  assert "no_such_dataset/cfg" in message and str(tmp_path) in message
  assert (f"python -m data_pipelines.prepare --dataset=no_such_dataset/cfg --manual_dir=<DIR> "
          f"--data_dir={tmp_path}") in message
  # A registered builder that needs preparing is refused too (only generated ones auto-build).
  with pytest.raises(datasets.DatasetNotPreparedError, match="ramp_music/a"):
    datasets.get_builder("ramp_music/a", str(tmp_path))
  assert datasets.get_builder("ramp_music/a", data_dir).is_prepared()


def test_resolve_data_dir_explicit_then_tfds_env_then_default(monkeypatch):
  monkeypatch.setenv("TFDS_DATA_DIR", "/from/env")
  assert datasets.resolve_data_dir("~/explicit") == os.path.expanduser("~/explicit")
  assert datasets.resolve_data_dir("gs://bucket/data") == "gs://bucket/data"
  assert datasets.resolve_data_dir("") == "/from/env"
  assert datasets.resolve_data_dir(None) == "/from/env"
  monkeypatch.delenv("TFDS_DATA_DIR")
  assert datasets.resolve_data_dir("") == os.path.expanduser("~/ssc_jax_data")


def test_label_info(data_dir):
  builder = datasets.get_builder("ramp_music/a", data_dir)
  assert datasets.label_info(builder, "label") == (3, "multiclass", ["x", "y", "z"])
  assert datasets.label_info(builder, "tags")[:2] == (4, "multilabel")
  assert datasets.label_info(builder, "code") == (1, "regression", ["code_0"])
  with pytest.raises(ValueError, match=r"'audio'.*\['code', 'label', 'tags'\]"):
    datasets.label_info(builder, "audio")


def test_load_tracks(data_dir, code_of):
  got = tracks.load_tracks("ramp_music/a", "train", data_dir, ["label", "tags", "code"])
  codes = code_of[("a", "train")]
  assert len(got["audio"]) == NUM_TRACKS and got["label"].dtype == np.int64
  for i, audio in enumerate(got["audio"]):
    expected = (1000 * codes[i] + np.arange(ramp_length("train", codes[i]))) / 32768.0
    np.testing.assert_allclose(audio, expected, rtol=0, atol=1e-7)
    assert got["lengths"][i] == len(expected)
    assert got["track_id"][i] == f"train-{codes[i]}"
  np.testing.assert_array_equal(got["label"], codes % 3)
  assert got["tags"].shape == (NUM_TRACKS, 4)
  np.testing.assert_array_equal(got["tags"].sum(1), 2)
  np.testing.assert_array_equal(got["code"], codes.astype(np.float32))
  assert len(tracks.load_tracks("ramp_music/a", "train", data_dir, [], max_tracks=3)["audio"]) == 3
