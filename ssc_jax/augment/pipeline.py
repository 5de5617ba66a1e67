"""Entry points: the train step's augmentation and the robustness sweep's corruptions."""

from __future__ import annotations

from typing import Sequence

import jax
import ml_collections

from configs import augment as augment_defaults
from ssc_jax.augment import chain
from ssc_jax.augment import registry
from ssc_jax.augment import severity as severity_lib


def identity(key: jax.Array, audio: jax.Array) -> jax.Array:
  """The no-augmentation function: returns `audio` itself."""
  del key
  return audio


def make_augment_fn(augment_config: ml_collections.ConfigDict,
                    sample_rate: int, strategy: str | None = None) -> chain.BatchFn:
  """Builds the jit-able augmentation the train step applies to every global batch.

  Args:
    augment_config: an `augment` section (defaults: configs/augment.py).
    sample_rate: Hz of the audio.
    strategy: execution strategy of `chain.batched`, overriding `augment_config.strategy`;
      both unset picks it from the backend at trace time ("vmap" must be forced when
      compiling for a TPU from a CPU host).

  Returns:
    fn(key, audio [B, N, T] float32) -> [B, N, T]: per item a Compose gate, per view the
    chain's gates and parameters, all drawn from `key` (one key per call; the train step
    folds in the step number). `identity` when severity is 0 or the chain is empty.

  Raises:
    ValueError: for unknown transform names (listing the valid ones) or invalid settings,
      before any computation.
  """
  names = tuple(augment_config.chain)
  registry.check_names(names)
  strategy = strategy or augment_config.get("strategy") or None
  if strategy not in (None,) + chain.STRATEGIES:
    raise ValueError(f"augment config: unknown strategy {strategy!r}; use one of "
                     f"{', '.join(chain.STRATEGIES)} or '' (by backend).")
  settings = severity_lib.resolve(augment_config, sample_rate)
  if settings.severity == 0 or not names or settings.compose_p <= 0.0:
    return identity
  transforms = [registry.build(name, settings, sample_rate) for name in names]
  transforms = [t for t in transforms if t.p > 0.0]
  if not transforms:
    return identity
  return chain.batched(transforms, settings.compose_p, strategy)


def make_corruption_fn(names: Sequence[str], severity: int, sample_rate: int,
                       with_chain: bool) -> chain.BatchFn:
  """Builds a robustness-test corruption (spec §7.4) from the same transforms.

  Args:
    names: corruptions (or any transform names) applied after the chain, in order, each
      with its configured p (1 for the spec's corruptions).
    severity: 0..4; sets the chain's parameters and the per-item Compose probability
      min(1, 0.4 severity). 0 = no corruption at all.
    sample_rate: Hz.
    with_chain: prepend the 6-transform pretraining chain at `severity`.

  Returns:
    fn(key, audio [B, N, T]) -> [B, N, T]. For the protocol, pass one track per item and its
    chunks as views: the Compose gate is drawn per track, the parameters per chunk.
  """
  cfg = augment_defaults.defaults()
  cfg.chain = (tuple(cfg.chain) if with_chain else ()) + tuple(names)
  cfg.severity = severity
  return make_augment_fn(cfg, sample_rate)
