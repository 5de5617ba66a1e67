"""Building blocks with PyTorch semantics for the SemiSupCon encoders (spec §3, §11).

Everything here works on channel-last (NLC) arrays: `[batch, length, channels]`.

* Initialisers reproduce PyTorch's defaults: `kaiming_uniform_(a=√5)` on a weight is
  U(±1/√fan_in), and the bias uses the same bound. TUNe+ convs use kaiming-uniform with the ReLU
  gain, U(±√(6/fan_in)).
* `TorchBatchNorm` is `torch.nn.BatchNorm1d`: biased batch variance to normalise, unbiased batch
  variance for the running estimate, momentum 0.1 (PyTorch convention), eps 1e-5.
* `Conv1d`, `ConvTranspose1d` and `Dense` hold Flax-shaped kernels (`[k, in, out]` and
  `[in, out]`) so exported params read like any Flax model's.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

Initializer = Callable[..., jax.Array]
Dtype = Any

# --------------------------------------------------------------------------------------------
# Initialisers.
# --------------------------------------------------------------------------------------------


def uniform_init(bound: float) -> Initializer:
  """Returns an initializer drawing U(-bound, bound).

  Args:
    bound: half-width of the uniform distribution, > 0.
  """

  def init(key: jax.Array, shape: Sequence[int], dtype: Dtype = jnp.float32) -> jax.Array:
    return jax.random.uniform(key, shape, dtype, minval=-bound, maxval=bound)

  return init


def torch_default_bound(fan_in: int) -> float:
  """PyTorch's default weight and bias bound, 1/√fan_in (kaiming_uniform with a=√5)."""
  return 1.0 / math.sqrt(fan_in)


def kaiming_relu_bound(fan_in: int) -> float:
  """`kaiming_uniform_(mode='fan_in', nonlinearity='relu')` bound: √2·√(3/fan_in)."""
  return math.sqrt(6.0 / fan_in)


def torch_default_init(fan_in: int) -> Initializer:
  """U(±1/√fan_in): PyTorch's default for Conv/Linear weights and biases."""
  return uniform_init(torch_default_bound(fan_in))


def kaiming_relu_init(fan_in: int) -> Initializer:
  """U(±√(6/fan_in)): kaiming-uniform with fan_in mode and the ReLU gain."""
  return uniform_init(kaiming_relu_bound(fan_in))


def conv_fan_in(in_channels: int, kernel_size: int) -> int:
  """PyTorch fan_in of a Conv1d weight `(out, in, k)`: in_channels·kernel_size."""
  return in_channels * kernel_size


def conv_transpose_fan_in(out_channels: int, kernel_size: int) -> int:
  """PyTorch fan_in of a ConvTranspose1d weight `(in, out, k)`: out_channels·kernel_size.

  PyTorch derives fan_in from dimension 1 of the weight, which for a transposed conv is the
  OUTPUT channel count.
  """
  return out_channels * kernel_size


# --------------------------------------------------------------------------------------------
# Layers.
# --------------------------------------------------------------------------------------------


class Conv1d(nn.Module):
  """PyTorch `Conv1d` on NLC inputs (groups=1, dilation=1).

  Attributes:
    features: output channels.
    kernel_size: kernel width k.
    stride: stride.
    padding: zeros added on each side of the length axis.
    use_bias: whether to add a bias (PyTorch's default is True).
    weight_init: "torch" for U(±1/√fan_in) or "kaiming_relu" for U(±√(6/fan_in)). The bias is
      always U(±1/√fan_in), as PyTorch initialises it before any custom weight init.
    dtype: compute dtype; params are float32.

  Params: `kernel [k, in, out]`, `bias [out]`.
  """

  features: int
  kernel_size: int = 3
  stride: int = 1
  padding: int = 0
  use_bias: bool = True
  weight_init: str = "torch"
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    """Applies the conv.

    Args:
      x: [B, L, C_in] input.

    Returns:
      [B, (L + 2·padding - k) // stride + 1, features] in `dtype`.
    """
    in_channels = x.shape[-1]
    fan_in = conv_fan_in(in_channels, self.kernel_size)
    if self.weight_init == "torch":
      kernel_init = torch_default_init(fan_in)
    elif self.weight_init == "kaiming_relu":
      kernel_init = kaiming_relu_init(fan_in)
    else:
      raise ValueError(f"weight_init must be 'torch' or 'kaiming_relu', got {self.weight_init!r}")
    kernel = self.param("kernel", kernel_init, (self.kernel_size, in_channels, self.features),
                        jnp.float32)
    y = lax.conv_general_dilated(
        x.astype(self.dtype), kernel.astype(self.dtype),
        window_strides=(self.stride,),
        padding=((self.padding, self.padding),),
        dimension_numbers=("NWC", "WIO", "NWC"))
    if self.use_bias:
      bias = self.param("bias", torch_default_init(fan_in), (self.features,), jnp.float32)
      y = y + bias.astype(self.dtype)
    return y


class ConvTranspose1d(nn.Module):
  """PyTorch `ConvTranspose1d` with kernel_size == stride and padding 0 (non-overlapping).

  With no overlap, output frame `s·i + j` is `x[i] @ kernel[j] + bias`: the layer is a dense
  map from each input frame to `stride` output frames, written as one einsum.

  Attributes:
    features: output channels.
    kernel_size: kernel width, equal to the stride.
    dtype: compute dtype; params are float32.

  Params: `kernel [k, in, out]` (PyTorch's weight `(in, out, k)` transposed to `(k, in, out)`),
  `bias [out]`; both U(±1/√(out·k)), PyTorch's default for a transposed conv.
  """

  features: int
  kernel_size: int = 3
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    """Upsamples by `kernel_size`.

    Args:
      x: [B, L, C_in] input.

    Returns:
      [B, L·kernel_size, features] in `dtype`.
    """
    batch, length, in_channels = x.shape
    k = self.kernel_size
    init = torch_default_init(conv_transpose_fan_in(self.features, k))
    kernel = self.param("kernel", init, (k, in_channels, self.features), jnp.float32)
    bias = self.param("bias", init, (self.features,), jnp.float32)
    y = jnp.einsum("blc,kco->blko", x.astype(self.dtype), kernel.astype(self.dtype))
    y = y + bias.astype(self.dtype)
    return y.reshape(batch, length * k, self.features)


class Dense(nn.Module):
  """PyTorch `Linear` (default init U(±1/√in_features)).

  Attributes:
    features: output features.
    use_bias: whether to add a bias.
    dtype: compute dtype; params are float32.

  Params: `kernel [in, out]`, `bias [out]` when `use_bias`.
  """

  features: int
  use_bias: bool = True
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    """Applies the affine map.

    Args:
      x: [..., in] input.

    Returns:
      [..., features] in `dtype`.
    """
    init = torch_default_init(x.shape[-1])
    kernel = self.param("kernel", init, (x.shape[-1], self.features), jnp.float32)
    y = x.astype(self.dtype) @ kernel.astype(self.dtype)
    if self.use_bias:
      y = y + self.param("bias", init, (self.features,), jnp.float32).astype(self.dtype)
    return y


class TorchBatchNorm(nn.Module):
  """`torch.nn.BatchNorm1d` on channel-last inputs.

  Train mode normalises with the biased batch variance over every axis but the last and
  updates the running statistics as PyTorch does:
  `mean ← 0.9·mean + 0.1·batch_mean`, `var ← 0.9·var + 0.1·batch_var·n/(n-1)`.
  Eval mode normalises with the running statistics. Nothing is updated during `init`.

  Statistics are plain `jnp.mean`s: under `jax.jit` with the batch sharded over a mesh they are
  global (synchronised BN), which is intended; no `axis_name` is needed.

  Attributes:
    momentum: PyTorch-convention momentum (weight of the NEW batch statistic).
    epsilon: added to the variance.
    dtype: output dtype; statistics are always computed in float32.

  Variables: params `scale [C]` (init 1), `bias [C]` (init 0); batch_stats `mean [C]` (init 0),
  `var [C]` (init 1).
  """

  momentum: float = 0.1
  epsilon: float = 1e-5
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, use_running_average: bool) -> jax.Array:
    """Normalises `x`.

    Args:
      x: [..., C] input (typically [B, L, C]).
      use_running_average: True for eval mode (running statistics), False for train mode.

    Returns:
      [..., C] normalised, scaled and shifted input in `dtype`.

    Raises:
      ValueError: in train mode when there is only one value per channel (PyTorch refuses
        this as well; the unbiased variance is undefined).
    """
    channels = x.shape[-1]
    scale = self.param("scale", nn.initializers.ones, (channels,), jnp.float32)
    bias = self.param("bias", nn.initializers.zeros, (channels,), jnp.float32)
    running_mean = self.variable("batch_stats", "mean", jnp.zeros, (channels,), jnp.float32)
    running_var = self.variable("batch_stats", "var", jnp.ones, (channels,), jnp.float32)

    x32 = x.astype(jnp.float32)
    if use_running_average:
      mean, var = running_mean.value, running_var.value
    else:
      axes = tuple(range(x.ndim - 1))
      n = math.prod(x.shape[:-1])
      if n < 2:
        raise ValueError(
            f"TorchBatchNorm in train mode needs more than 1 value per channel, got input "
            f"shape {x.shape}.")
      mean = jnp.mean(x32, axis=axes)
      var = jnp.mean(jnp.square(x32 - mean), axis=axes)  # Two-pass: no cancellation.
      if not self.is_initializing():
        m = self.momentum
        running_mean.value = (1.0 - m) * running_mean.value + m * mean
        running_var.value = (1.0 - m) * running_var.value + m * var * (n / (n - 1))
    mult = scale * lax.rsqrt(var + self.epsilon)
    shift = bias - mean * mult
    return (x32 * mult + shift).astype(self.dtype)


# --------------------------------------------------------------------------------------------
# Pooling (PyTorch MaxPool1d / AvgPool1d with stride = window, no padding: floor mode).
# --------------------------------------------------------------------------------------------


def _fold(x: jax.Array, window: int) -> jax.Array:
  """[B, L, C] → [B, L // window, window, C], dropping the last L % window frames."""
  batch, length, channels = x.shape
  out = length // window
  if out < 1:
    raise ValueError(f"cannot pool length {length} with window {window}")
  return x[:, :out * window].reshape(batch, out, window, channels)


def max_pool1d(x: jax.Array, window: int = 3) -> jax.Array:
  """`MaxPool1d(window, window)` (floor mode) on [B, L, C] → [B, L // window, C]."""
  return jnp.max(_fold(x, window), axis=2)


def avg_pool1d(x: jax.Array, window: int = 3) -> jax.Array:
  """`AvgPool1d(window)` (stride = window, floor mode) on [B, L, C] → [B, L // window, C]."""
  return jnp.mean(_fold(x, window), axis=2)


def sow_channel_mean(module: nn.Module, name: str, y: jax.Array) -> None:
  """Records block output y [B, L, C]'s mean over L ([B, C] float32) as intermediate `name`.

  Only computed when the caller applies with `mutable=['intermediates']` (layer-wise
  embeddings); otherwise nothing is traced.
  """
  if module.is_mutable_collection("intermediates"):
    module.sow("intermediates", name, jnp.mean(y.astype(jnp.float32), axis=1))


def scaled_channels(channels: int, width: float) -> int:
  """A channel count scaled by a width multiplier: max(1, round(channels·width))."""
  return max(1, round(channels * width))
