"""data_pipelines/conventions.py: the shared facts against the spec and the configs' values."""

from configs import common
from data_pipelines import conventions
from ssc_jax import models


def test_view_is_2_7_seconds_at_22050_hz_and_fits_both_encoders():
  assert conventions.SAMPLE_RATE == 22050  # Spec §4.1.
  assert conventions.VIEW_LENGTH == 59535 == int(2.7 * 22050)  # Spec §4.2.
  for encoder in ("samplecnn", "tuneplus"):
    models.check_view_length(encoder, conventions.VIEW_LENGTH)


def test_the_base_config_uses_the_shared_values():
  # Configs are plain data and keep their own literals; the defaults must agree.
  data = common.base_config().data
  assert (data.sample_rate, data.view_length) == (conventions.SAMPLE_RATE,
                                                  conventions.VIEW_LENGTH)


def test_label_kinds_are_the_strings_prepared_datasets_store():
  # Written into every prepared dataset's metadata: renaming one would orphan those datasets.
  assert conventions.LABEL_KINDS == ("multiclass", "multilabel", "regression")
