"""The SemiSupCon projection head (spec §3.2)."""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from ssc_jax.models import layers


class ProjectionHead(nn.Module):
  """Linear(D→hidden, no bias) → ReLU → Linear(hidden→features, no bias), PyTorch init.

  No normalisation: the loss normalises z. At D = 512 the head has 327,680 params.

  Attributes:
    hidden: hidden width.
    features: output width (the contrastive space).
    dtype: compute dtype; params stay float32 and the output is float32.

  Submodules: `dense0`, `dense1` (each with `kernel [in, out]`).
  """

  hidden: int = 512
  features: int = 128
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, h: jax.Array) -> jax.Array:
    """Projects representations.

    Args:
      h: [B, D] representation.

    Returns:
      z: [B, features] float32 projection (not normalised).
    """
    y = layers.Dense(self.hidden, use_bias=False, dtype=self.dtype, name="dense0")(h)
    y = nn.relu(y)
    y = layers.Dense(self.features, use_bias=False, dtype=self.dtype, name="dense1")(y)
    return y.astype(jnp.float32)
