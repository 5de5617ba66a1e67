"""The CLI's absl log filter: library INFO and deprecation notices about TFDS internals go."""

import logging
import os

from ssc_jax import main

_SITE = os.path.join(os.sep, "venv", "lib", "python3.11", "site-packages")


def _record(pathname, level, msg, *args):
  return logging.LogRecord("x", level, pathname, 1, msg, args, None)


def _passes(record):
  return main._ThirdPartyInfoFilter().filter(record)


def test_our_records_pass_at_every_level():
  ours = os.path.join(os.sep, "repo", "ssc_jax", "train.py")
  assert _passes(_record(ours, logging.INFO, "step %d", 10))
  assert _passes(_record(ours, logging.WARNING, "x is deprecated"))


def test_library_info_is_dropped_and_warnings_kept():
  tf_file = os.path.join(_SITE, "tensorflow", "python", "eager", "context.py")
  orbax_file = os.path.join(_SITE, "orbax", "checkpoint", "manager.py")
  assert not _passes(_record(tf_file, logging.INFO, "chatter"))
  assert not _passes(_record(orbax_file, logging.INFO, "chatter"))
  assert _passes(_record(orbax_file, logging.WARNING, "disk almost full"))


def test_deprecation_notices_are_dropped_only_for_tfds_call_sites():
  deprecation = os.path.join(_SITE, "tensorflow", "python", "util", "deprecation.py")
  msg = "From %s: %s (from %s) is deprecated and will be removed %s."
  tfds_site = os.path.join(_SITE, "tensorflow_datasets", "core", "reader.py") + ":102"
  our_site = os.path.join(os.sep, "repo", "data_pipelines", "pretrain_input.py") + ":10"
  assert not _passes(_record(deprecation, logging.WARNING, msg, tfds_site, "CounterV2",
                             "tf.data", "in a future version"))
  assert _passes(_record(deprecation, logging.WARNING, msg, our_site, "CounterV2", "tf.data",
                         "in a future version"))
  tfds_feature = os.path.join(_SITE, "tensorflow_datasets", "core", "features", "feature.py")
  assert not _passes(_record(tfds_feature, logging.WARNING,
                             "`FeatureConnector.dtype` is deprecated. Please change your code."))
  assert _passes(_record(tfds_feature, logging.WARNING, "Some other TFDS warning."))
