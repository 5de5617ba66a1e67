"""Gain (random level in dB) and polarity inversion, per view (spec §5.2)."""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp

from ssc_jax.augment import dsp


@dataclasses.dataclass(frozen=True)
class GainSettings:
  """Gain parameters: p per view; dB ~ U[min_db, max_db] (U[-15 s, 5 s] in the spec)."""
  p: float
  min_db: float
  max_db: float


class GainParams(NamedTuple):
  """Drawn per view."""
  db: jax.Array  # [] float32 gain in decibels.


def sample_gain(key: jax.Array, settings: GainSettings) -> GainParams:
  """Draws a gain uniformly in [min_db, max_db] dB (one view)."""
  return GainParams(jax.random.uniform(key, (), jnp.float32, settings.min_db, settings.max_db))


def gain(x: jax.Array, params: GainParams) -> jax.Array:
  """x * 10^(db / 20): the RMS changes by exactly `db` decibels.

  Args:
    x: [T] float32.
    params: the drawn gain.

  Returns:
    [T] float32.
  """
  return x * dsp.db_to_amplitude(params.db)


@dataclasses.dataclass(frozen=True)
class PolaritySettings:
  """Polarity inversion: p per view (min(0.8, 0.6 s) in the spec)."""
  p: float


class PolarityParams(NamedTuple):
  """Polarity inversion has no random parameter."""


def sample_polarity(key: jax.Array, settings: PolaritySettings) -> PolarityParams:
  """No parameters to draw."""
  del key, settings
  return PolarityParams()


def polarity_inversion(x: jax.Array, params: PolarityParams) -> jax.Array:
  """-x (exact)."""
  del params
  return -x
