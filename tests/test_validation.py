"""Pretraining validation (spec §2.6): the fixed validation input, the validation losses against
the float64 reference loss, 1 device = 8 devices, and the train loop's progress line."""

import jax
import numpy as np
import pytest
import tensorflow_datasets as tfds

from configs import common
from data_pipelines import datasets
from data_pipelines import pretrain_input
from ssc_jax import augment
from ssc_jax import config_checks
from ssc_jax import parallel
from ssc_jax import train
from tests import test_losses
from tests import train_step_fixture as fx

NAMES = {"loss", "ssl_loss", "sl_loss"}


def _reference_validation(config, model, variables, augment_fn, batches, key, train_mode=False):
  """The float64 reference losses (tests/test_losses.py) of each batch's embeddings, averaged.

  Batch i is augmented with fold_in(key, i); rows item-major, labels repeated per view.
  """
  rows = fx.BATCH * fx.VIEWS
  item_ids = np.arange(rows) // fx.VIEWS
  kwargs = dict(temperature=config.loss.temperature, pos_threshold=config.loss.pos_threshold,
                parity=False)
  totals = {"val_loss": 0.0, "val_ssl_loss": 0.0, "val_sl_loss": 0.0}
  @jax.jit
  def embed(batch_key, audio):
    views = augment_fn(batch_key, audio).reshape(rows, fx.LENGTH)
    if train_mode:
      return model.apply(variables, views, train=True, mutable=["batch_stats"])[0][1]
    return model.apply(variables, views, train=False)[1]

  for i, batch in enumerate(batches):
    z = np.asarray(embed(jax.random.fold_in(key, i), batch["audio"]), np.float64)
    labels = np.repeat(batch["labels"], fx.VIEWS, axis=0)
    labeled = np.repeat(batch["labeled"], fx.VIEWS)
    totals["val_loss"] += test_losses.ref_semisup_loss(z, item_ids, labels, **kwargs)
    totals["val_ssl_loss"] += test_losses.ref_semisup_loss(
        z, item_ids, labels, view_positives=True, label_positives=False, row_mask=~labeled,
        **kwargs)
    totals["val_sl_loss"] += test_losses.ref_semisup_loss(
        z, item_ids, labels, view_positives=False, label_positives=True, row_mask=labeled,
        **kwargs)
  return {k: v / len(batches) for k, v in totals.items()}


def test_validation_losses_are_the_float64_reference_on_one_and_eight_devices(small_encoder):
  """Inference-mode BatchNorm, a fixed key per batch, means over the batches; the same numbers
  on a 1-device and an 8-device mesh. Train-mode BatchNorm or another key would differ.

  The variables are audio-calibrated (conftest): at initialisation, inference-mode embeddings
  of different clips are nearly identical and every loss is log(R - 1)."""
  model_config, model, variables = small_encoder
  config = fx.validation_config()
  assert config.model.to_dict() == model_config.to_dict()
  augment_fn = augment.make_augment_fn(config.augment, config.data.sample_rate)
  batches = [fx.fixed_batch(0), fx.fixed_batch(1)]
  key = jax.random.key(fx.VALIDATION_KEY)

  got = {}
  for devices in (1, 8):
    mesh = parallel.make_mesh(jax.devices()[:devices])
    eval_step = train.make_eval_step(config, model, augment_fn, mesh)
    replicated = jax.device_put(variables, parallel.replicated(mesh))
    got[devices] = train.evaluate_validation(eval_step, replicated, batches, mesh, key, NAMES)
    # Iterating the same batches again with the same key gives the same numbers.
    assert train.evaluate_validation(eval_step, replicated, batches, mesh, key, NAMES) == \
        got[devices]
  assert set(got[1]) == {"val_loss", "val_ssl_loss", "val_sl_loss"}
  for k, v in got[1].items():
    np.testing.assert_allclose(got[8][k], v, rtol=2e-5, err_msg=k)

  expected = _reference_validation(config, model, variables, augment_fn, batches, key)
  for k, v in expected.items():
    np.testing.assert_allclose(got[1][k], v, rtol=1e-4, err_msg=k)
  in_train_mode = _reference_validation(config, model, variables, augment_fn, batches, key,
                                        train_mode=True)
  assert abs(in_train_mode["val_loss"] - got[1]["val_loss"]) > 1e-3
  other_key = _reference_validation(config, model, variables, augment_fn, batches,
                                    jax.random.key(8))
  assert abs(other_key["val_loss"] - got[1]["val_loss"]) > 1e-3


def test_validation_means_over_batches_and_drops_components_of_an_absent_pool():
  mesh = parallel.make_mesh(jax.devices()[:1])
  batches = [{"x": np.full(2, 1.0, np.float32)}, {"x": np.full(2, 3.0, np.float32)}]

  def eval_step(variables, batch, key):
    del variables, key
    return {"loss": batch["x"].sum(), "ssl_loss": batch["x"][0], "sl_loss": 0.0}

  assert train.evaluate_validation(eval_step, {}, batches, mesh, jax.random.key(0),
                                   {"loss", "ssl_loss"}) == {"val_loss": 4.0, "val_ssl_loss": 2.0}


@pytest.fixture(scope="module")
def synthetic_dir(tmp_path_factory):
  path = str(tmp_path_factory.mktemp("synthetic"))
  datasets.get_builder("synthetic_music/tiny", path)  # Generated on first use.
  return path


def _data_config(data_dir):
  c = common.base_config().data
  c.labeled = c.unlabeled = "synthetic_music/tiny"
  c.label_key = "instrument"
  c.data_dir = data_dir
  c.batch_size = 8
  c.labeled_fraction = 0.25  # A training budget: validation labels every labeled track.
  c.shuffle_buffer = 4
  return c


def test_validation_input_is_fixed_and_splits_the_validation_tracks(synthetic_dir):
  """The same batches every pass; labeled items first, carrying their validation-split labels;
  a track is labeled or unlabeled, never both (same split of the same dataset: b_s·n labeled)."""
  data = _data_config(synthetic_dir)
  val = pretrain_input.ValidationInput(data, labeled_split="validation",
                                       unlabeled_split="validation", num_batches=3, seed=0)
  first = list(val)
  assert len(first) == 3
  assert [pretrain_input.batch_digest(b) for b in val] == \
      [pretrain_input.batch_digest(b) for b in first]

  builder = datasets.get_builder("synthetic_music/tiny", synthetic_dir)
  examples = list(tfds.as_numpy(builder.as_dataset(split="validation", shuffle_files=False)))
  instrument = np.array([ex["instrument"] for ex in examples])
  num_classes = builder.info.features["instrument"].num_classes
  labeled_tracks, unlabeled_tracks = set(), set()
  for b in first:
    assert b["audio"].shape == (8, 2, data.view_length)
    np.testing.assert_array_equal(b["labeled"], np.arange(8) < 4)
    for index, labels in zip(b["track_index"][:4], b["labels"][:4]):
      np.testing.assert_array_equal(labels, np.eye(num_classes)[instrument[index]])
    assert not b["labels"][4:].any()
    labeled_tracks |= set(b["track_index"][:4].tolist())
    unlabeled_tracks |= set(b["track_index"][4:].tolist())
  # round(b_s·4) = 2 of the 4 validation tracks are labeled (not round(p_s·4) = 1).
  assert len(labeled_tracks) == 2 and len(unlabeled_tracks) == 2
  assert labeled_tracks | unlabeled_tracks == set(range(len(examples)))


def test_validation_input_refuses_a_missing_split(synthetic_dir):
  with pytest.raises(ValueError, match="no_such_split"):
    pretrain_input.ValidationInput(_data_config(synthetic_dir), labeled_split="no_such_split",
                                   unlabeled_split="validation", num_batches=1, seed=0)


def test_validation_input_is_sharded_per_host_like_the_training_input(synthetic_dir):
  """Two hosts: half the batch each, disjoint tracks (contiguous ranges of each split)."""
  data = _data_config(synthetic_dir)
  seen = []
  for process_index in range(2):
    val = pretrain_input.ValidationInput(
        data, labeled_split="validation", unlabeled_split="test", num_batches=2, seed=0,
        process_index=process_index, process_count=2)
    tracks = set()
    for b in val:
      assert b["audio"].shape[0] == 4
      np.testing.assert_array_equal(b["labeled"], [True, True, False, False])
      tracks |= set(b["track_index"].tolist())
    seen.append(tracks)
  # Labeled: validation tracks 0..3 (all labeled); unlabeled: test tracks, offset by 4. Host p
  # draws (with repetition, as in training) from its halves of both splits only.
  assert seen[0] & {0, 1} and seen[0] & {4, 5} and seen[0] <= {0, 1, 4, 5}
  assert seen[1] & {2, 3} and seen[1] & {6, 7} and seen[1] <= {2, 3, 6, 7}


@pytest.mark.parametrize("every, batches", [(-1, 8), (10, 0)])
def test_impossible_validation_settings_are_refused(every, batches):
  c = fx.tiny_config()
  c.train.eval_every_steps, c.train.eval_batches = every, batches
  with pytest.raises(config_checks.ConfigError, match="train.eval_every_steps"):
    config_checks.check_pretrain_config(c, device_count=8, process_count=1)


def test_progress_line_has_step_total_rate_elapsed_and_eta():
  # 750 steps left at 2 s/step = 1500 s = 0:25:00; 3725 s elapsed = 1:02:05.
  assert train.progress_line(250, 1000, 1.23456, 96.04, 3725.0, 2.0) == (
      "step 250/1000 (25.0%)  loss 1.2346  views/s 96.0  elapsed 1:02:05  ETA 0:25:00")
  assert train.progress_line(1000, 1000, 0.5, 10.0, 59.6, 0.3).endswith(
      "elapsed 0:01:00  ETA 0:00:00")
