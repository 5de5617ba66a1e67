"""SemiSupCon models: encoders (SampleCNN, TUNe+), the projection head, and the full model.

Variables of `SemiSupConModel` are plain nested dicts:
`{'params': {'encoder': ..., 'head': ...}, 'batch_stats': {'encoder': ...}}`.

Typical use:

  model = build_model(config.model)
  variables = init_variables(model, key, num_samples=T)      # or model.init(key, audio, ...)
  (h, z), updates = model.apply(variables, audio, train=True, mutable=['batch_stats'])
  h = model.apply(variables, audio, method=SemiSupConModel.embed)   # encoder only, eval BN
  h, state = model.apply(variables, audio, method=SemiSupConModel.embed,
                         mutable=['intermediates'])   # + state['intermediates']['encoder']
                                                      #   ['layer{i}'][0]: block i's time mean
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from ssc_jax.models import samplecnn, tune
from ssc_jax.models.heads import ProjectionHead
from ssc_jax.models.samplecnn import SampleCNN
from ssc_jax.models.tune import TunePlus

__all__ = [
    "ENCODERS", "ProjectionHead", "SampleCNN", "SemiSupConModel", "TunePlus", "build_encoder",
    "build_model", "check_layers", "check_view_length", "encoder_blocks", "encoder_output_dim",
    "init_variables",
]

# Encoder name (config `model.encoder`) → (module class, view-length check, block indices).
ENCODERS: dict[str, tuple[type[nn.Module], Any, tuple[int, ...]]] = {
    "samplecnn": (SampleCNN, samplecnn.check_view_length, samplecnn.BLOCKS),
    "tuneplus": (TunePlus, tune.check_view_length, tune.BLOCKS),
}


class SemiSupConModel(nn.Module):
  """Encoder followed by the projection head.

  Attributes:
    encoder: maps audio [B, T] (with a `train` flag) to h [B, D].
    head: maps h [B, D] to z [B, P]; None for an encoder converted without its projector
      (`model.projection_dim = 0`), which can embed but not project.
  """

  encoder: nn.Module
  head: nn.Module | None

  def __call__(self, audio: jax.Array, train: bool) -> tuple[jax.Array, jax.Array]:
    """Encodes and projects.

    Args:
      audio: [B, T] float32 waveforms (views flattened into the batch).
      train: BN mode; in train mode apply with `mutable=['batch_stats']`.

    Returns:
      h: [B, D] float32 representation (what downstream tasks use).
      z: [B, P] float32 projection (what the contrastive loss uses).
    """
    if self.head is None:
      raise ValueError("this model has no projection head (model.projection_dim = 0).")
    h = self.encoder(audio, train=train)
    return h, self.head(h)

  def embed(self, audio: jax.Array, train: bool = False) -> jax.Array:
    """Encoder only: audio [B, T] float32 → h [B, D] float32.

    Call as `model.apply(variables, audio, method=SemiSupConModel.embed)`; the head's params
    may be present in `variables` and are ignored.
    """
    return self.encoder(audio, train=train)


def _dtype(name: Any) -> Any:
  return jnp.dtype(name) if name is not None else jnp.float32


def build_encoder(name: str, width: float = 1.0, **kwargs: Any) -> nn.Module:
  """Builds an encoder by name.

  Args:
    name: "samplecnn" or "tuneplus".
    width: channel multiplier (1.0 = the paper's model).
    **kwargs: other fields of the encoder class (e.g. `dtype`, or `channels` for TUNe+).

  Returns:
    The (unbound) encoder module.

  Raises:
    ValueError: for an unknown name.
  """
  if name not in ENCODERS:
    raise ValueError(f"unknown model.encoder {name!r}; valid: {sorted(ENCODERS)}")
  return ENCODERS[name][0](width=width, **kwargs)


def build_model(model_config: ml_collections.ConfigDict) -> SemiSupConModel:
  """Builds the encoder + projection head from `config.model`.

  Args:
    model_config: ConfigDict with `encoder` (str), `width` (float), `projection_hidden` (int),
      `projection_dim` (int; 0 = no head) and optionally `dtype` (compute dtype name, e.g.
      "bfloat16").

  Returns:
    The (unbound) SemiSupConModel.
  """
  dtype = _dtype(model_config.get("dtype", None))
  encoder = build_encoder(model_config.encoder, width=model_config.width, dtype=dtype)
  head = None
  if model_config.projection_dim:
    head = ProjectionHead(hidden=model_config.projection_hidden,
                          features=model_config.projection_dim, dtype=dtype)
  return SemiSupConModel(encoder=encoder, head=head)


def encoder_output_dim(model_config: ml_collections.ConfigDict) -> int:
  """D, the size of the representation h that `build_model(model_config)` produces."""
  return build_encoder(model_config.encoder, width=model_config.width).output_dim


def encoder_blocks(name: str) -> tuple[int, ...]:
  """Block indices of encoder `name` whose channel means can be returned as `layers`."""
  if name not in ENCODERS:
    raise ValueError(f"unknown model.encoder {name!r}; valid: {sorted(ENCODERS)}")
  return ENCODERS[name][2]


def check_layers(name: str, layers: Any) -> tuple[int, ...]:
  """Returns `layers` as a tuple of ints; raises ValueError naming those encoder `name` lacks."""
  layers = tuple(int(i) for i in layers)
  blocks = encoder_blocks(name)
  bad = [i for i in layers if i not in blocks]
  if bad:
    raise ValueError(f"layers {bad} do not exist: {name}'s blocks are {blocks[0]}..{blocks[-1]}.")
  return layers


def check_view_length(name: str, num_samples: int) -> None:
  """Raises ValueError (naming data.view_length) if encoder `name` cannot take T samples.

  Args:
    name: encoder name, as in `build_encoder`.
    num_samples: T, samples per view.
  """
  if name not in ENCODERS:
    raise ValueError(f"unknown model.encoder {name!r}; valid: {sorted(ENCODERS)}")
  ENCODERS[name][1](num_samples)


def init_compile_options() -> dict[str, Any] | None:
  """XLA options for compiling parameter initialisation (run once; compile time dominates).

  On CPU, backend optimisation level 0 compiles the ~50 threefry draws about 3x faster.
  """
  return {"xla_backend_optimization_level": 0} if jax.default_backend() == "cpu" else None


def init_variables(model: nn.Module, rng: jax.Array, num_samples: int) -> dict[str, Any]:
  """Initialises `model` (an encoder or SemiSupConModel) for views of `num_samples` samples.

  Equivalent to `model.init(rng, zeros([1, T]), train=False)` under `jax.jit`: params do not
  depend on the input values, and in eval mode the forward pass is dead code that XLA removes.
  On CPU the init is compiled with XLA's backend optimisation level 0, which compiles the ~50
  threefry draws about 3x faster (init runs once; its run time does not matter). Values can
  differ from a plain `jax.jit(model.init)` by 1 ulp (different fused multiply-adds).

  Args:
    model: an unbound encoder (`build_encoder`) or `SemiSupConModel` (`build_model`).
    rng: PRNG key for the initialisers.
    num_samples: T, samples per view (validated by the encoder).

  Returns:
    Plain nested dict `{'params': ..., 'batch_stats': ...}` of float32 arrays.
  """
  init = lambda key, audio: model.init(key, audio, train=False)
  audio = jax.ShapeDtypeStruct((1, num_samples), jnp.float32)
  compiled = jax.jit(init).lower(rng, audio).compile(init_compile_options())
  return compiled(rng, jnp.zeros((1, num_samples), jnp.float32))
