"""configs/paper.py: every preset is the spec's experiment, passes the checks, and runs a step."""

import concurrent.futures
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
  config_checks.check_pretrain_config(paper.get_config(name + ",smoke"), device_count=2,
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
# batch shapes compile to the same program, which the tests below compile once for them.
_STEP_SECTIONS = ("model", "augment", "loss", "optimizer")


def _key(**fields) -> str:
  return json.dumps(fields, sort_keys=True)


class _SmokeSteps:
  """Runs smoke forms through one real train step each, sharing what presets have in common:
  compiled steps (by `_STEP_SECTIONS` and batch shapes), fresh states (by model) and first
  batches (by data section)."""

  def __init__(self, data_dir: str):
    self.data_dir = data_dir
    self.mesh = parallel.make_mesh(jax.devices()[:2])  # Every smoke batch is even.
    self.steps, self.fresh_states, self.batches = {}, {}, {}

  def batch(self, config) -> dict[str, np.ndarray]:
    key = _key(data=config.data.to_dict(), seed=config.seed)
    if key not in self.batches:
      self.batches[key] = next(pretrain_input.HostBatchIterator(
          pretrain_input.make_pretrain_dataset(config.data, seed=config.seed, process_index=0,
                                               process_count=1)))
    return self.batches[key]

  def fresh_state(self, config) -> train.TrainState:
    key = _key(model=config.model.to_dict(), optimizer=config.optimizer.to_dict())
    if key not in self.fresh_states:
      state = train.create_train_state(config, models.build_model(config.model),
                                       train.make_optimizer(config), self.mesh,
                                       jax.random.key(config.seed))
      self.fresh_states[key] = jax.device_get(state)
    return self.fresh_states[key]

  def _prepare(self, name: str):
    """Preset `name`'s smoke config, first batch, fresh state, step signature and step args."""
    config = paper.get_config(name + ",smoke")
    config.data.data_dir = self.data_dir
    batch = self.batch(config)
    initial = self.fresh_state(config)
    args = (jax.device_put(initial, parallel.replicated(self.mesh)),
            parallel.host_batch_to_global(batch, self.mesh), jax.random.key(1))
    signature = _key(**{k: config[k].to_dict() for k in _STEP_SECTIONS},
                     sample_rate=config.data.sample_rate, total_steps=config.train.total_steps,
                     shapes={k: list(v.shape) for k, v in batch.items()})
    return config, batch, initial, signature, args

  def compile_all(self, names: list[str]) -> None:
    """Compiles the distinct programs of `names` two at a time (XLA releases the GIL)."""
    lowered = {}
    for name in names:
      config, _, _, signature, args = self._prepare(name)
      if signature not in self.steps and signature not in lowered:
        step = train.make_train_step(config, models.build_model(config.model),
                                     train.make_optimizer(config),
                                     augment.make_augment_fn(config.augment,
                                                             config.data.sample_rate),
                                     self.mesh)
        lowered[signature] = step.lower(*args)
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
      compiled = pool.map(lambda low: low.compile(models.init_compile_options()),
                          lowered.values())
      self.steps.update(zip(lowered, compiled))

  def run(self, name: str) -> None:
    """One update of preset `name`'s smoke form; checks its batch and its update."""
    config, batch, initial, signature, args = self._prepare(name)
    d = config.data
    labeled = batch["labeled"]
    assert batch["audio"].shape == (d.batch_size, d.num_views, d.view_length), name
    assert labeled.sum() == int(d.batch_size * d.labeled_share), name
    assert np.all(batch["labels"][~labeled] == 0), name
    assert np.all(batch["labels"][labeled].sum(axis=1) == 1), name  # One instrument each.
    state, metrics = self.steps[signature](*args)
    assert int(state.step) == 1 and np.isfinite(float(metrics["loss"])), name
    moved = jax.tree.map(lambda a, b: np.any(np.asarray(a) != b), state.params, initial.params)
    assert all(jax.tree.leaves(moved)), name  # Every parameter was updated.


@pytest.fixture(scope="module")
def smoke_steps(tmp_path_factory):
  return _SmokeSteps(str(tmp_path_factory.getbasetemp() / "data"))


_VIEW_COUNT_PRESETS = sorted(n for n in paper.presets() if n.startswith("views_")
                             and not n.endswith("_N=2"))


@pytest.mark.slow
def test_every_two_view_preset_smoke_form_runs_one_real_train_step(smoke_steps):
  """The 27 presets at N = 2 (main setups, p_s, b_s and T_pos sweeps, N = 2 of the view-count
  ablation), each: its smoke form's first batch from the real input pipeline (its sources,
  b_s, p_s and labels) through one update of the real jitted train step (its encoder, loss,
  positives and augmentation) on 2 of the test devices. Not the loop around the step
  (checkpoints, logging, export: tests/test_end_to_end.py runs it on the demo). Presets with
  the same program share the compiled step (11 programs here), compiled at XLA:CPU backend
  optimisation level 0 (as parameter init is), which halves the compile time, two at a
  time."""
  names = sorted(set(paper.presets()) - set(_VIEW_COUNT_PRESETS))
  assert len(names) == 27
  smoke_steps.compile_all(names)
  for name in names:
    smoke_steps.run(name)
  assert len(smoke_steps.steps) < len(names)  # Presets did share programs.


@pytest.mark.slow
def test_every_view_count_preset_smoke_form_runs_one_real_train_step(smoke_steps):
  """The same for the 12 presets at N = 4..32 (B = 2 items: up to 64 views per step)."""
  assert len(_VIEW_COUNT_PRESETS) == 12
  smoke_steps.compile_all(_VIEW_COUNT_PRESETS)
  for name in _VIEW_COUNT_PRESETS:
    smoke_steps.run(name)
