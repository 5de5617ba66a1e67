"""TUNe+, the alternative SemiSupCon encoder (spec §3.3): a U-Net-like 1-D CNN on raw audio.

With c = `channels` (11 in the paper) and T a multiple of 81:

* down:  c1..c5 = ConvBlock(pool(·)), channels c, 2c, 4c, 8c, 16c at lengths T, T/3, …, T/81;
* up:    c6..c9 = ConvBlock(cat(ConvTranspose(prev), skip)), back to c channels at length T;
* tail:  c10..c13 = ConvBlock(cat(pool(prev), skip)), 2c..16c; c14..c18 = ConvBlock(pool(·)),
         32c, 32c, 32c, 32c, 512;
* out:   AvgPool1d(3) and flatten → [B, 512].

ConvBlock = Conv1d(k3, s1, p1, bias) + BatchNorm + ReLU with kaiming-uniform(fan_in, ReLU)
conv weights; pools are MaxPool1d(3, 3); ConvTranspose1d(k3, s3, p0) keeps PyTorch's default
init. The output length is floor(T / 3^10), so T must be a multiple of 81 in
[59049, 118017]. The unused `fc` of the original is not created.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from ssc_jax.models import layers

OUTPUT_CHANNELS = 512  # Channels of c18 (and the representation) at width 1.0.
BLOCKS: tuple[int, ...] = tuple(range(1, 19))  # block1..block18, selectable as `layers`.
MIN_LENGTH = 3**10  # 59049.
MAX_LENGTH = 81 * ((2 * 3**10 - 1) // 81)  # 118017: largest multiple of 81 with output length 1.


def check_view_length(num_samples: int) -> None:
  """Raises ValueError unless TUNe+ accepts `num_samples` (multiple of 81, output length 1).

  Args:
    num_samples: T, samples per view.
  """
  if num_samples % 81 or not MIN_LENGTH <= num_samples <= MAX_LENGTH:
    raise ValueError(
        f"TunePlus needs data.view_length to be a multiple of 81 (so the U-Net skips align) in "
        f"[{MIN_LENGTH}, {MAX_LENGTH}] (so the output length is 1); got {num_samples}.")


class ConvBlock(nn.Module):
  """Conv1d(k3, s1, p1) + TorchBatchNorm + ReLU, conv weights kaiming-uniform(fan_in, ReLU).

  Attributes:
    features: output channels.
    dtype: compute dtype.
  """

  features: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    """Args: x: [B, L, C_in]; train: BN mode. Returns: [B, L, features]."""
    y = layers.Conv1d(self.features, kernel_size=3, stride=1, padding=1,
                      weight_init="kaiming_relu", dtype=self.dtype, name="conv")(x)
    y = layers.TorchBatchNorm(dtype=self.dtype, name="bn")(y, use_running_average=not train)
    return nn.relu(y)


class TunePlus(nn.Module):
  """TUNe+ encoder: raw audio [B, T] → representation [B, D].

  Attributes:
    channels: base channel count c (the paper's `in_channels`, 11).
    width: multiplier on every channel count: the base becomes max(1, round(c·width)) (stages
      use multiples of it) and the output max(1, round(512·width)). At 1.0 the model has
      2,220,390 params and D = 512.
    dtype: compute dtype; params stay float32 and the output is float32.

  Submodules: `block1..block18` (`ConvBlock`, each with `conv` and `bn`) and `up6..up9`
  (`ConvTranspose1d` feeding blocks 6–9).

  Intermediates (when applied with `mutable=['intermediates']`): `layer{i}` for i in `BLOCKS`,
  the channel-wise mean over time [B, C_i] float32 of ConvBlock i's output (before any pool);
  `layer18` equals the representation whenever block 18 has exactly 3 frames (T < 4·3^9,
  e.g. 59535), as the final AvgPool1d(3) then averages all of them.
  """

  channels: int = 11
  width: float = 1.0
  dtype: Any = jnp.float32

  @property
  def output_dim(self) -> int:
    """D, the representation size: max(1, round(512·width))."""
    return layers.scaled_channels(OUTPUT_CHANNELS, self.width)

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    """Encodes raw audio.

    Args:
      x: [B, T] float32 waveform, T a multiple of 81 in [59049, 118017].
      train: True uses batch statistics in BN and updates the running ones (apply with
        `mutable=['batch_stats']`); False uses the running statistics.

    Returns:
      h: [B, D] float32 representation, D = `output_dim`.

    Raises:
      ValueError: if x is not 2-D or T is not accepted.
    """
    if x.ndim != 2:
      raise ValueError(f"TunePlus expects audio of shape [B, T], got {x.shape}")
    check_view_length(x.shape[1])
    c = layers.scaled_channels(self.channels, self.width)
    pool = layers.max_pool1d

    def block(i: int, features: int, y: jax.Array) -> jax.Array:
      out = ConvBlock(features, dtype=self.dtype, name=f"block{i}")(y, train)
      layers.sow_channel_mean(self, f"layer{i}", out)
      return out

    def up(i: int, features: int, y: jax.Array) -> jax.Array:
      return layers.ConvTranspose1d(features, kernel_size=3, dtype=self.dtype, name=f"up{i}")(y)

    def cat(a: jax.Array, b: jax.Array) -> jax.Array:
      return jnp.concatenate([a.astype(self.dtype), b.astype(self.dtype)], axis=-1)

    # Down path: lengths T, T/3, T/9, T/27, T/81.
    c1 = block(1, c, x[:, :, None])
    c2 = block(2, 2 * c, pool(c1))
    c3 = block(3, 4 * c, pool(c2))
    c4 = block(4, 8 * c, pool(c3))
    c5 = block(5, 16 * c, pool(c4))
    # Up path with skips: back to length T.
    c6 = block(6, 8 * c, cat(up(6, 8 * c, c5), c4))
    c7 = block(7, 4 * c, cat(up(7, 4 * c, c6), c3))
    c8 = block(8, 2 * c, cat(up(8, 2 * c, c7), c2))
    c9 = block(9, c, cat(up(9, c, c8), c1))
    # Tail: down again, concatenating the up-path maps.
    c10 = block(10, 2 * c, cat(pool(c9), c8))
    c11 = block(11, 4 * c, cat(pool(c10), c7))
    c12 = block(12, 8 * c, cat(pool(c11), c6))
    c13 = block(13, 16 * c, cat(pool(c12), c5))
    y = c13
    for i in (14, 15, 16, 17):
      y = block(i, 32 * c, pool(y))
    y = block(18, self.output_dim, pool(y))
    y = layers.avg_pool1d(y, 3)  # [B, 1, D]
    return y.reshape(y.shape[0], -1).astype(jnp.float32)
