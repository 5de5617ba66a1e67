"""Orbax train-state checkpoints and the plain-params export."""

import flax.serialization
import jax
import numpy as np
import pytest

import ssc_jax
from ssc_jax import checkpoint
from ssc_jax import models
from ssc_jax import parallel
from ssc_jax import train
from tests import processes
from tests import train_step_fixture as fx


def _trained_state(mesh):
  config = fx.tiny_config()
  model = models.build_model(config.model)
  tx = train.make_optimizer(config)
  init_rng, aug_rng = jax.random.split(jax.random.key(0))
  state = train.create_train_state(config, model, tx, mesh, init_rng)
  step = train.make_train_step(config, model, tx, lambda k, x: x, mesh)
  state, _ = step(state, parallel.host_batch_to_global(fx.fixed_batch(), mesh), aug_rng)
  return config, model, tx, state


def test_save_then_restore_onto_another_mesh_is_identical(tmp_path):
  mesh8 = parallel.make_mesh()
  config, model, tx, state = _trained_state(mesh8)
  ckpt = checkpoint.Checkpointer(str(tmp_path), keep=2)
  ckpt.save(1, state)
  ckpt.close()
  expected = jax.device_get(state)

  # A new process would build a fresh state as the restore target; use a 1-device mesh to
  # show the checkpoint does not depend on the device count.
  mesh1 = parallel.make_mesh(jax.devices()[:1])
  fresh = train.create_train_state(config, model, tx, mesh1, jax.random.key(1))
  reopened = checkpoint.Checkpointer(str(tmp_path), keep=2)
  assert reopened.latest_step() == 1
  restored = reopened.restore(1, train.abstract_train_state(fresh))
  reopened.close()
  assert int(restored.step) == 1
  jax.tree.map(np.testing.assert_array_equal, jax.device_get(restored), expected)
  leaf = jax.tree.leaves(restored.params)[0]
  assert leaf.sharding.mesh.devices.size == 1

  # The model's variables alone, without building an optimizer state: host arrays that
  # equal the saved ones, whatever mesh wrote them.
  step, variables = checkpoint.restore_variables(str(tmp_path))
  assert step == 1 and set(variables) == {"params", "batch_stats"}
  assert all(type(x) is np.ndarray for x in jax.tree.leaves(variables))
  jax.tree.map(np.testing.assert_array_equal, variables,
               {"params": expected.params, "batch_stats": expected.batch_stats})


def test_two_processes_restore_the_variables_saved_on_8_devices(tmp_path):
  mesh = parallel.make_mesh()
  config = fx.tiny_config()
  state = train.create_train_state(config, models.build_model(config.model),
                                   train.make_optimizer(config), mesh, jax.random.key(2))
  ckpt = checkpoint.Checkpointer(str(tmp_path / "run"))
  ckpt.save(3, state)
  ckpt.close()
  out = tmp_path / "out"
  out.mkdir()
  port = processes.free_port()
  processes.run_workers("two_process_restore_worker.py",
                        [[str(i), str(port), str(tmp_path / "run"), str(out)] for i in range(2)])
  expected = jax.tree_util.tree_leaves_with_path(jax.device_get(state.variables))
  assert expected
  for process in range(2):
    got = np.load(out / f"process_{process}.npz")
    assert int(got["step"]) == 3 and len(got.files) == len(expected) + 1
    for path, value in expected:
      np.testing.assert_array_equal(got[jax.tree_util.keystr(path)], value)


def test_restore_variables_of_a_workdir_without_checkpoints_names_it(tmp_path):
  with pytest.raises(FileNotFoundError, match=rf"{tmp_path}: no checkpoint under"):
    checkpoint.restore_variables(str(tmp_path))


def test_export_load_embed_matches_live_model(tmp_path):
  config, model, _, state = _trained_state(parallel.make_mesh())
  path = str(tmp_path / "export" / "encoder.msgpack")
  checkpoint.export_variables(path, state.variables, config.model, sample_rate=16000,
                              view_length=60000, training={"datasets": ["a/b"], "steps": 1})

  # Plain Flax params: readable without ssc_jax.
  with open(path, "rb") as f:
    raw = flax.serialization.msgpack_restore(f.read())
  assert set(raw) == {"params", "batch_stats", "ssc_jax"}
  assert set(raw["params"]) == {"encoder", "head"}
  card = checkpoint.read_export(path).card
  assert card == {
      "encoder": config.model.encoder, "width": config.model.width, "sample_rate": 16000,
      "view_length": 60000, "projection_hidden": config.model.projection_hidden,
      "projection_dim": config.model.projection_dim, "dtype": "float32",
      "ssc_jax_version": ssc_jax.__version__, "training": {"datasets": ["a/b"], "steps": 1},
      "source": None}
  with pytest.raises(ValueError, match="view_length"):  # SampleCNN cannot take 1000 samples.
    checkpoint.export_variables(path, state.variables, config.model, sample_rate=16000,
                                view_length=1000)

  exported = checkpoint.read_export(path)
  loaded_model, variables = models.build_model(exported.model_config), exported.variables
  audio = fx.fixed_batch(seed=3)["audio"][:, 0]
  live = model.apply(state.variables, audio, train=False, method=model.embed)
  got = loaded_model.apply(variables, audio, train=False, method=loaded_model.embed)
  np.testing.assert_array_equal(np.asarray(got), np.asarray(live))
  assert got.shape == (fx.BATCH, models.encoder_output_dim(config.model))


def test_export_without_card_warns(tmp_path):
  path = tmp_path / "old.msgpack"
  tree = {"params": {"encoder": {}, "head": {}}, "batch_stats": {"encoder": {}},
          "ssc_jax": {"format": checkpoint.EXPORT_FORMAT,
                      "model_config": fx.tiny_config().model.to_json()}}
  path.write_bytes(flax.serialization.msgpack_serialize(tree))
  with pytest.warns(UserWarning, match="before model cards existed"):
    assert checkpoint.read_export(str(path)).card is None


def test_read_export_rejects_other_files(tmp_path):
  path = tmp_path / "not_ours.msgpack"
  path.write_bytes(flax.serialization.msgpack_serialize({"params": {"w": np.zeros(2)}}))
  with pytest.raises(ValueError, match="not an ssc_jax encoder export"):
    checkpoint.read_export(str(path))
