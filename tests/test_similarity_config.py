"""`loss.similarity` configs: presets, refusals before work starts, labels that reach the loss."""

import numpy as np
import pytest

from configs import common
from configs import similarity as similarity_config
from data_pipelines import pretrain_input
from data_pipelines import synthetic_music
from ssc_jax import config_checks
from ssc_jax import losses
from tests import test_pretrain_input
from tests.test_pretrain_input import code_of, data_dir, ramp_cls  # noqa: F401 (fixtures)

SYNTHETIC_FEATURES = {
    "key": ("key", "multiclass", synthetic_music.KEY_NAMES),
    "pitch_classes": ("pitch_classes", "multilabel", synthetic_music.PITCH_CLASS_NAMES),
    "instrument": ("instrument", "multiclass", synthetic_music.INSTRUMENT_NAMES),
    "emotion": ("emotion", "regression", ("arousal", "valence")),
}


def check(config):
  config_checks.check_pretrain_config(config, device_count=1, process_count=1)


def test_presets_build_pass_the_checks_and_differ_only_in_positives():
  threshold = similarity_config.get_config("key_threshold")
  distance = similarity_config.get_config("key_distance")
  for c in (threshold, distance, similarity_config.get_config("key_distance,smoke")):
    check(c)
    config_checks.check_similarity_labels(c, [SYNTHETIC_FEATURES["key"]])
  assert (threshold.loss.similarity, distance.loss.similarity) == ("label_overlap",
                                                                   "key_distance")
  distance.loss.similarity = "label_overlap"
  assert distance.to_dict() == threshold.to_dict()
  for bad in ("", "key", "key_distance,fast"):
    with pytest.raises(ValueError, match=r"configs/similarity\.py: unknown preset"):
      similarity_config.get_config(bad)


def test_default_config_has_no_similarity():
  assert config_checks.similarity(common.base_config().loss) is None


@pytest.mark.parametrize("overrides,pattern", [
    (dict(similarity="cosine"), r"loss\.similarity='cosine'.*Unknown label similarity"),
    (dict(similarity="regression", regression_sigma=0.0),
     r"loss\.regression_sigma=0\.0.*sigma must be > 0"),
    (dict(similarity="key_distance", key_weights=(1.0, 2.0)),
     r"loss\.key_weights=\(1\.0, 2\.0\).*\[0, 1\]"),
    (dict(similarity="pitch_class_overlap", pitch_class_measure="cosine"),
     r"loss\.pitch_class_measure='cosine'"),
])
def test_bad_similarity_settings_are_refused(overrides, pattern):
  config = common.base_config()
  config.loss.update(overrides)
  with pytest.raises(config_checks.ConfigError, match=pattern):
    check(config)


def test_a_similarity_over_several_label_features_is_refused():
  config = common.base_config()
  config.loss.similarity = "pitch_class_overlap"
  config.data.label_key = "pitch_classes,key"
  with pytest.raises(config_checks.ConfigError, match=r"one label feature.*pitch_classes,key"):
    check(config)


@pytest.mark.parametrize("name,feature,pattern", [
    ("key_distance", "pitch_classes", r"'pitch_classes'.*multilabel.*not a key.*'C' is not a key"),
    ("key_distance", "instrument", r"'instrument'.*not a key.*'organ'"),
    ("pitch_class_overlap", "key", r"'key'.*not a pitch-class set"),
    ("regression", "key", r"'key'.*multiclass label; it compares real-valued"),
])
def test_label_features_a_similarity_cannot_compare_are_refused(name, feature, pattern):
  config = common.base_config()
  config.loss.similarity = name
  with pytest.raises(config_checks.ConfigError, match=pattern):
    config_checks.check_similarity_labels(config, [SYNTHETIC_FEATURES[feature]])


@pytest.mark.parametrize("name,feature", [("key_distance", "key"),
                                          ("pitch_class_overlap", "pitch_classes"),
                                          ("regression", "emotion")])
def test_matching_label_features_are_accepted(name, feature):
  config = common.base_config()
  config.loss.similarity = name
  config_checks.check_similarity_labels(config, [SYNTHETIC_FEATURES[feature]])
  config_checks.check_similarity_labels(config, [])  # No labeled items: nothing to compare.


def test_key_names_set_the_table_order():
  config = common.base_config()
  config.loss.similarity = "key_distance"
  giantsteps = [f"{t} {m}" for t in ("C", "Db", "D", "Eb", "E", "F", "Gb", "G", "Ab", "A",
                                     "Bb", "B") for m in ("major", "minor")]
  similarity = config_checks.similarity(config.loss, giantsteps)
  assert dict(similarity.params)["key_names"] == tuple(giantsteps)
  labels = np.eye(24, dtype=np.float32)[[giantsteps.index("C major"),
                                         giantsteps.index("A minor"),
                                         giantsteps.index("C minor")]]
  target = np.asarray(losses.target_matrix(np.arange(3), labels, similarity=similarity))
  np.testing.assert_array_equal(target[0], [1.0, 0.5, 0.0])


def test_regression_labels_reach_the_batch_only_with_a_similarity(data_dir, code_of):
  config = test_pretrain_input.make_config(data_dir, label_key="code")
  with pytest.raises(ValueError, match=r"regression target.*loss\.similarity='regression'"):
    pretrain_input.make_pretrain_dataset(config, seed=0)
  (batch,) = test_pretrain_input.take(config, 1, allow_regression_labels=True)
  for i in range(4):  # The labeled items carry their real-valued code.
    split, k = test_pretrain_input.source_of(batch["track_index"][i])
    assert batch["labels"][i, 0] == code_of[("a", split)][k]
  assert not batch["labels"][4:].any() and batch["labeled"][:4].all()
  assert pretrain_input.label_features(config) == (("code", "regression", ("code_0",)),)
