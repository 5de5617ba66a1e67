"""Probe heads on frozen 512-d representations (spec §7.1).

The original's heads have no bias: "linear" is Linear(D→K), "mlp" is Linear(D→512) → ReLU →
Linear(512→K). MARBLE's probe is the MLP with biases and dropout 0.2 after the ReLU. Weights
use PyTorch's default Linear init U(±1/√fan_in), as the original.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from ssc_jax.models import layers


class ProbeHead(nn.Module):
  """Linear or one-hidden-layer MLP head.

  Attributes:
    num_outputs: K.
    hidden: hidden width; 0 = linear head.
    use_bias: add biases (False = the original).
    dropout: dropout rate after the hidden ReLU (MLP only).
  """

  num_outputs: int
  hidden: int = 512
  use_bias: bool = False
  dropout: float = 0.0

  @nn.compact
  def __call__(self, h: jax.Array, train: bool = False) -> jax.Array:
    """Maps representations to logits (or regression outputs).

    Args:
      h: [B, D] float32 representations.
      train: enables dropout (needs a 'dropout' rng).

    Returns:
      [B, K] float32.
    """
    x = h.astype(jnp.float32)
    if self.hidden > 0:
      x = nn.relu(layers.Dense(self.hidden, use_bias=self.use_bias, name="dense0")(x))
      if self.dropout > 0:
        x = nn.Dropout(self.dropout, deterministic=not train)(x)
      return layers.Dense(self.num_outputs, use_bias=self.use_bias, name="dense1")(x)
    return layers.Dense(self.num_outputs, use_bias=self.use_bias, name="dense")(x)
