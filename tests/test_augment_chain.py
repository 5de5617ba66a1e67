"""Gates, keys, OneOf, severity 0, config handling, sharding and robustness levels."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from configs import augment as augment_defaults
from ssc_jax import augment
from ssc_jax.augment import chain
from ssc_jax.augment import registry
from ssc_jax.augment import severity

SR = 22050


def _config(chain_names, level=2, **overrides):
  c = augment_defaults.defaults()
  c.chain = tuple(chain_names)
  c.severity = level
  for dotted, value in overrides.items():
    section, field = dotted.split("__") if "__" in dotted else (None, dotted)
    (c[section] if section else c)[field] = value
  return c


def _within_binomial(rate, p, n):
  return abs(rate - p) <= 4 * np.sqrt(p * (1 - p) / n) + 1e-9


def test_per_view_gate_rate_matches_p():
  fn = jax.jit(augment.make_augment_fn(_config(["polarity_inversion"], compose_p=1.0), SR))
  x = jnp.ones((3000, 2, 8), jnp.float32)
  flipped = np.asarray(fn(jax.random.key(0), x))[..., 0] < 0  # [B, N]
  p = severity.resolve(_config([]), SR).polarity_inversion.p  # 0.6 at severity 2.
  assert _within_binomial(flipped.mean(), p, flipped.size)
  # Views of one item are gated independently: both-flipped rate is p^2.
  assert _within_binomial(np.mean(flipped.all(axis=1)), p * p, flipped.shape[0])


def test_compose_gate_is_per_item():
  cfg = _config(["polarity_inversion"], polarity_inversion__p=1.0)
  fn = jax.jit(augment.make_augment_fn(cfg, SR))
  flipped = np.asarray(fn(jax.random.key(1), jnp.ones((3000, 3, 8))))[..., 0] < 0
  assert np.all(flipped.all(axis=1) | ~flipped.any(axis=1))  # All views or none.
  assert _within_binomial(flipped[:, 0].mean(), 0.8, flipped.shape[0])  # min(1, 0.8 s).


def test_one_of_picks_one_member_per_item_uniformly():
  marker = chain.Transform("marker", 0.3, lambda k, choice: choice,
                           lambda x, choice: jnp.full_like(x, choice + 1.0),
                           sample_item=lambda k: jax.random.randint(k, (), 0, 4))
  fn = jax.jit(chain.batched([marker], 1.0))
  out = np.asarray(fn(jax.random.key(2), jnp.zeros((4000, 4, 2))))[..., 0]  # 0 = gated off.
  gated = out > 0
  assert _within_binomial(gated.mean(), 0.3, gated.size)
  for row, g in zip(out, gated):
    assert len(set(row[g])) <= 1  # One member per item.
  chosen = np.array([row[g][0] for row, g in zip(out, gated) if g.any()])
  for member in (1, 2, 3, 4):
    assert _within_binomial(np.mean(chosen == member), 0.25, len(chosen))


def test_keys_make_it_reproducible_and_items_differ():
  cfg = _config(["gain", "colored_noise", "delay"], compose_p=1.0, gain__p=1.0)
  fn = jax.jit(augment.make_augment_fn(cfg, SR))
  x = jnp.asarray(np.random.default_rng(0).normal(size=(6, 2, 4096)).astype(np.float32))
  a, b = fn(jax.random.key(5), x), fn(jax.random.key(5), x)
  np.testing.assert_array_equal(a, b)
  assert not np.array_equal(a, fn(jax.random.key(6), x))
  gains = np.asarray(jax.jit(augment.make_augment_fn(_config(["gain"], compose_p=1.0,
                                                             gain__p=1.0), SR))(
      jax.random.key(7), jnp.ones((6, 2, 4))))[..., 0]
  assert len(np.unique(gains)) == gains.size  # Per item and per view parameters.


def test_severity_zero_and_empty_chain_are_the_identity():
  x = jnp.ones((2, 2, 16))
  for cfg in (_config(augment_defaults.BASE_CHAIN, level=0), _config([])):
    fn = augment.make_augment_fn(cfg, SR)
    assert fn is augment.identity and fn(jax.random.key(0), x) is x
  assert augment.make_corruption_fn(["reverb"], 0, SR, with_chain=True) is augment.identity


def test_bad_config_is_refused_before_any_work():
  with pytest.raises(ValueError, match="valid names: gain"):
    augment.make_augment_fn(_config(["gain", "reverbb"]), SR)
  with pytest.raises(ValueError, match="severity"):
    augment.make_augment_fn(_config(["gain"], level=5), SR)
  with pytest.raises(ValueError, match="filtering.p"):
    augment.make_augment_fn(_config(["filtering"], filtering__p=1.5), SR)
  with pytest.raises(ValueError, match="gain.min_db"):
    augment.make_augment_fn(_config(["gain"], gain__min_db=10.0), SR)
  with pytest.raises(ValueError, match="unknown strategy 'gpu'"):
    augment.make_augment_fn(_config(["gain"], strategy="gpu"), SR)


def test_config_overrides_and_severity_table():
  st = severity.resolve(_config([], gain__min_db=-3.0, pitch_shift__p=0.9), SR)
  assert st.gain.min_db == -3.0 and st.gain.max_db == 5.0 and st.pitch_shift.p == 0.9
  s4 = severity.resolve(_config([], level=4), SR)
  assert (s4.compose_p, s4.gain.min_db, s4.colored_noise.min_snr_db) == (1.0, -30.0, 1.5)
  assert (s4.filtering.highpass_min_hz, s4.filtering.lowpass_min_hz) == (400.0, 75.0)
  assert s4.delay.repeats == (3, 5) and s4.delay.attenuations == pytest.approx((0.8, 1.2))
  s1 = severity.resolve(_config([], level=1), SR)
  assert s1.delay.repeats == (0, 2) and s1.compose_p == pytest.approx(0.4)
  assert s1.delay.min_samples == int(200 * SR / 1000)


def test_chain_on_a_sharded_batch_matches_the_unsharded_one():
  fn = augment.make_augment_fn(_config(["gain", "pitch_shift", "delay"], pitch_shift__p=1.0), SR)
  x = jnp.asarray(np.random.default_rng(1).normal(size=(8, 2, 4096)).astype(np.float32))
  mesh = Mesh(np.array(jax.devices()[:8]), ("data",))
  sharding = NamedSharding(mesh, P("data"))
  sharded = jax.jit(fn, out_shardings=sharding)(jax.random.key(4), jax.device_put(x, sharding))
  plain = jax.jit(fn)(jax.random.key(4), x)
  # Same draws; float rounding of differently batched FFTs may move a peak-region border.
  err = np.linalg.norm(np.asarray(sharded) - plain) / np.linalg.norm(plain)
  assert err < 1e-2
  assert sharded.sharding.is_equivalent_to(sharding, 3)
  assert not np.allclose(plain, x)


def test_strategies_draw_the_same_augmentations():
  # "groups" (vmapped groups in a loop) is what the 8-device tests above run; here the
  # accelerator path ("vmap") and the single-CPU path with real branches must agree.
  settings = severity.resolve(_config([], level=2), SR)
  transforms = [registry.build(n, settings, SR) for n in ("gain", "filtering", "delay")]
  transforms.append(dataclasses.replace(registry.build("polarity_inversion", settings, SR),
                                        skippable=True))  # Exercise the branch.
  x = jnp.asarray(np.random.default_rng(2).normal(size=(4, 2, 4096)).astype(np.float32))
  outs = {how: np.asarray(jax.jit(chain.batched(transforms, 0.8, how))(jax.random.key(8), x))
          for how in ("vmap", "branch")}
  np.testing.assert_allclose(outs["branch"], outs["vmap"], atol=1e-5)
  assert not np.allclose(outs["vmap"], x)


@pytest.mark.slow
def test_every_transform_agrees_between_the_accelerator_and_the_cpu_strategies():
  """Each transform of the table on silence and on harmonic tones, from one key, run by the
  accelerators' form ("vmap", one vectorised pass) and by both CPU forms ("branch": one CPU
  device, expensive transforms only on their gated-on views; "groups": several CPU devices,
  a loop over groups of items, here two). The gates and parameters are the same draws, so
  the outputs agree to float rounding, with one documented exception (docs/augmentation.md,
  "Execution and cost"): the pitch shifter's peak picking and bin routing (`round(ratio *
  peak)`) sit on exact thresholds that the rounding differences between its per-view
  ("branch") and vectorised computation can cross differently, moving a few peak regions of
  some frames; there the same views change and the outputs agree to 1 % (L2)."""
  settings = severity.resolve(_config([], level=4), SR)  # Chain p in 0.6..0.8.
  transforms = [registry.build(n, settings, SR) for n in registry.TRANSFORM_NAMES]
  rng = np.random.default_rng(3)
  f0 = rng.uniform(100, 600, size=(32, 2, 1))
  tones = sum(np.sin(2 * np.pi * k * f0 * np.arange(4096) / SR + rng.uniform(0, 6, f0.shape))
              / k for k in range(1, 6))
  x = jnp.asarray(np.concatenate([np.zeros((4, 2, 4096)), tones]).astype(np.float32))
  assert chain._groups(36, 2) == 2  # pylint: disable=protected-access

  def run_all(how):
    fns = [chain.batched([t], 0.8, how) for t in transforms]
    apply_all = lambda key, audio: jnp.stack(
        [fn(k, audio) for fn, k in zip(fns, jax.random.split(key, len(fns)))])
    return np.asarray(jax.jit(apply_all)(jax.random.key(9), x))

  outs = {how: run_all(how) for how in ("vmap", "branch", "groups")}
  for i, t in enumerate(transforms):
    ref = outs["vmap"][i]
    assert ref.shape == x.shape and ref.dtype == np.float32 and np.isfinite(ref).all(), t.name
    changed = np.any(ref != x, axis=-1)  # [B, N] views the transform touched.
    assert changed[4:].any(), t.name
    if t.p < 1.0:  # Gated-off views come back unchanged (Compose 0.8 and the view gates).
      assert not changed[4:].all(), t.name
    for how in ("branch", "groups"):
      out = outs[how][i]
      if t.name == "pitch_shift":
        np.testing.assert_array_equal(np.any(out != x, axis=-1), changed)
        assert np.linalg.norm(out - ref) <= 1e-2 * np.linalg.norm(ref), how
      else:
        np.testing.assert_allclose(out, ref, rtol=0, atol=1e-5, err_msg=f"{t.name}: {how}")


def test_the_table_and_the_config_defaults_name_the_same_sections():
  """configs/augment.py (plain data) holds the defaults of exactly the table's sections."""
  defaults = augment_defaults.defaults()
  sections = {k for k, v in defaults.items() if isinstance(v, type(defaults))}
  assert sections == {s.name for s in registry.SECTIONS}
  assert set(augment_defaults.BASE_CHAIN) <= set(registry.CHAIN_NAMES)
  assert registry.TRANSFORM_NAMES == registry.CHAIN_NAMES + registry.CORRUPTION_NAMES


def test_robustness_ladder():
  levels = augment.robustness_levels()
  assert [lv.name for lv in levels] == [f"severity_{s}" for s in range(5)] + [
      f"tier_{t}" for t in range(5, 11)]
  assert [lv.severity for lv in levels] == [0, 1, 2, 3, 4] + [2] * 6
  assert levels[7].corruptions == ("timestretch", "splice", "reverb", "chorus")
  assert levels[10].corruptions[-2:] == ("bitcrush", "mp3") and len(levels[10].corruptions) == 9
  assert all(lv.with_chain for lv in levels)
  assert {lv.corruptions[0] for lv in augment.single_corruption_levels()} == set(
      augment.CORRUPTION_NAMES)
  assert not any(lv.with_chain for lv in augment.single_corruption_levels())
