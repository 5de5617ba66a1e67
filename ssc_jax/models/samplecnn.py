"""SampleCNN, the default SemiSupCon encoder (spec §3.1), on raw waveforms.

Eleven Conv1d(k=3) + BatchNorm + ReLU blocks. Block 0 is a stride-3 conv with no padding;
blocks 1–9 are stride-1, padding-1 convs each followed by MaxPool(3, 3) (floor); block 10 has
no pool. The output length is floor(T / 3^10), so it is 1 exactly for T in
[59049, 118097] = [3^10, 2·3^10 - 1]; the [B, 1, D] map is then flattened to the [B, D]
representation. (Spec §3.1 quotes 177146 as the upper end; that input gives length 2.) The
unused `fc` of the original is not created.

Channels (width 1.0): 128, 128, 128, 256, 256, 256, 256, 256, 256, 512, 512.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from ssc_jax.models import layers

# Output channels of conv0..conv10 at width 1.0 (spec §3.1 table).
CHANNELS: tuple[int, ...] = (128, 128, 128, 256, 256, 256, 256, 256, 256, 512, 512)
# Block indices (conv{i} + bn{i} + ReLU [+ pool]) whose channel means `layers` can select.
BLOCKS: tuple[int, ...] = tuple(range(len(CHANNELS)))
# Blocks followed by MaxPool(3, 3).
POOLED: tuple[int, ...] = (1, 2, 3, 4, 5, 6, 7, 8, 9)
MIN_LENGTH = 3**10  # 59049: shortest input whose output length is 1.
MAX_LENGTH = 2 * 3**10 - 1  # 118097: longest input whose output length is 1.


def check_view_length(num_samples: int) -> None:
  """Raises ValueError unless SampleCNN maps `num_samples` to an output of length 1.

  Args:
    num_samples: T, samples per view.
  """
  if not MIN_LENGTH <= num_samples <= MAX_LENGTH:
    raise ValueError(
        f"SampleCNN needs data.view_length in [{MIN_LENGTH}, {MAX_LENGTH}] samples so that its "
        f"output length is 1; got {num_samples}.")


class SampleCNN(nn.Module):
  """SampleCNN encoder: raw audio [B, T] → representation [B, D].

  Attributes:
    width: channel multiplier; every channel count c becomes max(1, round(c·width)). 1.0 is
      the paper's model (2,368,512 params, D = 512).
    dtype: compute dtype (e.g. jnp.bfloat16 on accelerators); params stay float32, BN
      statistics are float32 and the output is cast to float32.

  Submodules: `conv0..conv10` (`Conv1d`, kernel [3, in, out] + bias) and `bn0..bn10`
  (`TorchBatchNorm`).

  Intermediates (when applied with `mutable=['intermediates']`): `layer{i}` for i in `BLOCKS`,
  the channel-wise mean over time [B, C_i] float32 of block i's output (after its ReLU and
  pool); `layer10` equals the representation.
  """

  width: float = 1.0
  dtype: Any = jnp.float32

  @property
  def output_dim(self) -> int:
    """D, the representation size: max(1, round(512·width))."""
    return layers.scaled_channels(CHANNELS[-1], self.width)

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    """Encodes raw audio.

    Args:
      x: [B, T] float32 waveform, T in [59049, 118097].
      train: True uses batch statistics in BN and updates the running ones (apply with
        `mutable=['batch_stats']`); False uses the running statistics.

    Returns:
      h: [B, D] float32 representation, D = `output_dim`.

    Raises:
      ValueError: if x is not 2-D or T is outside [59049, 118097].
    """
    if x.ndim != 2:
      raise ValueError(f"SampleCNN expects audio of shape [B, T], got {x.shape}")
    check_view_length(x.shape[1])
    y = x[:, :, None]  # [B, T, 1]
    for i, channels in enumerate(CHANNELS):
      stride, padding = (3, 0) if i == 0 else (1, 1)
      y = layers.Conv1d(
          layers.scaled_channels(channels, self.width), kernel_size=3, stride=stride,
          padding=padding, dtype=self.dtype, name=f"conv{i}")(y)
      y = layers.TorchBatchNorm(dtype=self.dtype, name=f"bn{i}")(
          y, use_running_average=not train)
      y = nn.relu(y)
      if i in POOLED:
        y = layers.max_pool1d(y, 3)
      layers.sow_channel_mean(self, f"layer{i}", y)
    # y: [B, 1, D]
    return y.reshape(y.shape[0], -1).astype(jnp.float32)
