"""configs/paper.py: every preset is the spec's experiment, passes the checks, and runs a step."""

import json

import jax
import numpy as np
import pytest

from configs import mtat
from configs import paper
from data_pipelines import pretrain_input
from ssc_jax import augment
from ssc_jax import config_checks
from ssc_jax import models
from ssc_jax import parallel
from ssc_jax import train


def test_every_preset_of_the_spec_exists():
  names = set(paper.presets())
  expected = {"semisl", "ssl", "sl", "tuneplus"}
  for f in ("0.05", "0.1", "0.25", "0.5", "0.75"):
    expected |= {f"ps={f}", f"bs={f}"}
  for t in ("1", "2", "4", "6", "weighted"):
    expected |= {f"sl_T={t}", f"smsl_T={t}"}
  for kind in ("ssl", "sl", "smsl"):
    expected |= {f"views_{kind}_N={n}" for n in (2, 4, 8, 16, 32)}
  assert names == expected


@pytest.mark.parametrize("name", sorted(paper.presets()))
def test_preset_passes_the_config_checks_on_one_device(name):
  config_checks.check_pretrain_config(paper.get_config(name), device_count=1, process_count=1)
  config_checks.check_pretrain_config(paper.get_config(name + ",smoke"), device_count=8,
                                      process_count=1)


def test_presets_change_only_their_factor():
  main, table = mtat.get_config(), paper.presets()
  assert table["semisl"].to_dict() == main.to_dict()
  assert table["tuneplus"].model.encoder == "tuneplus"
  ps = table["ps=0.05"]
  assert (ps.data.labeled_fraction, ps.data.labeled_share, ps.train.total_steps) == (
      0.05, 0.5, 50_000)
  assert ps.data.batch_size * ps.data.num_views == 192
  bs = table["bs=0.25"]
  assert (bs.data.labeled_fraction, bs.data.labeled_share) == (1.0, 0.25)
  sl_t = table["sl_T=4"]
  assert (sl_t.loss.pos_threshold, sl_t.data.labeled_share, sl_t.data.unlabeled) == (4, 1.0, "")
  assert table["smsl_T=weighted"].loss.positives == "weighted"
  views = table["views_ssl_N=16"]
  assert (views.data.num_views, views.data.batch_size, views.data.labeled_share,
          views.data.labeled) == (16, 12, 0.0, "")
  # The ablations keep the augmentation chain at severity 2 (the SL main setup has none).
  assert views.augment.severity == 2 and table["sl"].augment.severity == 0


def test_unknown_preset_and_option_are_refused():
  with pytest.raises(ValueError, match="unknown preset 'ps=0.3'"):
    paper.get_config("ps=0.3")
  with pytest.raises(ValueError, match="unknown option"):
    paper.get_config("semisl,fast")


# What the jitted train step reads from a config (`train.make_train_step`, with the model,
# optimiser and augmentation it is given): presets whose smoke forms agree on these and on the
# batch shapes compile to the same program, so the test below compiles it once for them.
_STEP_SECTIONS = ("model", "augment", "loss", "optimizer")


def _step_signature(config, batch) -> str:
  fields = {k: config[k].to_dict() for k in _STEP_SECTIONS}
  fields.update(sample_rate=config.data.sample_rate, total_steps=config.train.total_steps,
                shapes={k: list(v.shape) for k, v in batch.items()})
  return json.dumps(fields, sort_keys=True)


@pytest.mark.slow
def test_every_preset_smoke_form_runs_one_real_train_step(tmp_path_factory):
  """Each preset's smoke config: its first batch from the real input pipeline (its sources,
  N, b_s, p_s and labels), one update of the real jitted train step (its encoder, loss,
  positives and augmentation) on the 8 test devices. Not the loop around it (checkpoints,
  logging, export: tests/test_end_to_end.py runs that on the demo). The ~18 distinct programs
  are compiled at XLA:CPU backend optimisation level 0 (as parameter init is) to halve the
  compile time; presets with the same program share the compiled step."""
  data_dir = str(tmp_path_factory.getbasetemp() / "data")
  mesh = parallel.make_mesh()
  steps, fresh_states = {}, {}
  for name in sorted(paper.presets()):
    config = paper.get_config(name + ",smoke")
    config.data.data_dir = data_dir
    d = config.data
    batch = next(pretrain_input.HostBatchIterator(pretrain_input.make_pretrain_dataset(
        d, seed=config.seed, process_index=0, process_count=1)))
    labeled = batch["labeled"]
    assert batch["audio"].shape == (d.batch_size, d.num_views, d.view_length), name
    assert labeled.sum() == int(d.batch_size * d.labeled_share), name
    assert np.all(batch["labels"][~labeled] == 0) and np.all(batch["labels"][labeled].sum(1) == 1)

    model_key = json.dumps(config.model.to_dict(), sort_keys=True)
    if model_key not in fresh_states:
      model = models.build_model(config.model)
      state = train.create_train_state(config, model, train.make_optimizer(config), mesh,
                                       jax.random.key(config.seed))
      fresh_states[model_key] = jax.device_get(state)
    signature = _step_signature(config, batch)
    if signature not in steps:
      model, tx = models.build_model(config.model), train.make_optimizer(config)
      augment_fn = augment.make_augment_fn(config.augment, d.sample_rate)
      state = jax.device_put(fresh_states[model_key], parallel.replicated(mesh))
      global_batch = parallel.host_batch_to_global(batch, mesh)
      steps[signature] = train.make_train_step(config, model, tx, augment_fn, mesh).lower(
          state, global_batch, jax.random.key(1)).compile(models.init_compile_options())
    initial = fresh_states[model_key]
    state, metrics = steps[signature](jax.device_put(initial, parallel.replicated(mesh)),
                                      parallel.host_batch_to_global(batch, mesh),
                                      jax.random.key(1))
    assert int(state.step) == 1 and np.isfinite(float(metrics["loss"])), name
    moved = jax.tree.map(lambda a, b: np.any(np.asarray(a) != b), state.params, initial.params)
    assert all(jax.tree.leaves(moved)), name  # Every parameter was updated.
  assert len(steps) < len(paper.presets())  # Some presets shared a program.
