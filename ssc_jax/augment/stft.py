"""Short-time Fourier transform with 50 % or 75 % overlap, and its exact inverse, for one view.

Geometry: frames of n_fft samples every hop = n_fft / overlap samples. The view is
zero-padded by n_fft - hop samples in front and to a whole number of hops behind, so every
sample of the view lies under exactly `overlap` frames. Analysis and synthesis use the same
window: periodic Hann at 75 % overlap (sum of squares over the 4 frames = 1.5), its square
root (the sine window) at 50 % overlap (sum of squares = 1). Weighted overlap-add divided by
that constant reconstructs an unmodified view to float32 round-off.

Framing and overlap-add are `overlap` shifted slices of a [frames + overlap - 1, hop] reshape
of the signal: no gather, no scatter, the same cost on every backend.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np


class StftGeometry(NamedTuple):
  """Static layout of the STFT of a `length`-sample view (all Python ints)."""
  length: int  # T, samples in the view.
  n_fft: int  # Frame (and FFT) size.
  overlap: int  # Frames covering each sample: 2 or 4.
  hop: int  # n_fft // overlap.
  n_frames: int  # F, frames covering the view.
  pad_front: int  # Zeros before the view (n_fft - hop).
  padded_length: int  # (F + overlap - 1) * hop.

  @property
  def n_bins(self) -> int:
    """K = n_fft // 2 + 1 rfft bins."""
    return self.n_fft // 2 + 1


def geometry(length: int, n_fft: int, overlap: int = 4) -> StftGeometry:
  """Returns the STFT layout for a view of `length` samples.

  Args:
    length: T, samples in the view (> 0).
    n_fft: frame size, a multiple of `overlap`.
    overlap: 2 (50 %, sine window) or 4 (75 %, Hann window).

  Raises:
    ValueError: on an unsupported overlap or an n_fft it does not divide.
  """
  if overlap not in (2, 4):
    raise ValueError(f"overlap must be 2 or 4, got {overlap}.")
  if n_fft <= 0 or n_fft % overlap:
    raise ValueError(f"n_fft must be a positive multiple of {overlap}, got {n_fft}.")
  hop = n_fft // overlap
  pad_front = n_fft - hop
  n_frames = (length + pad_front - 1) // hop + 1
  return StftGeometry(length, n_fft, overlap, hop, n_frames, pad_front,
                      (n_frames + overlap - 1) * hop)


def window(geom: StftGeometry) -> np.ndarray:
  """Analysis = synthesis window [n_fft] float32 (periodic Hann, or sine at 50 % overlap)."""
  hann = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(geom.n_fft) / geom.n_fft)
  return (hann if geom.overlap == 4 else np.sqrt(hann)).astype(np.float32)


def stft(x: jax.Array, geom: StftGeometry) -> jax.Array:
  """Windowed STFT of one view.

  Args:
    x: [T] float32 with T == geom.length.
    geom: layout from `geometry`.

  Returns:
    [F, K] complex64; frame f starts at view sample f * hop - pad_front.
  """
  back = geom.padded_length - geom.pad_front - geom.length
  chunks = jnp.pad(x, (geom.pad_front, back)).reshape(-1, geom.hop)
  frames = jnp.concatenate([chunks[i:i + geom.n_frames] for i in range(geom.overlap)], axis=-1)
  return jnp.fft.rfft(frames * window(geom), axis=-1)


def istft(spectrum: jax.Array, geom: StftGeometry) -> jax.Array:
  """Weighted overlap-add inverse of `stft` (exact for an unmodified spectrum).

  Args:
    spectrum: [F, K] complex64.
    geom: the layout used for the forward transform.

  Returns:
    [T] float32.
  """
  w = window(geom)
  # sum_f w^2(n - f hop) = overlap * mean(w^2) for every n (constant-overlap-add).
  norm = np.float32(geom.overlap * np.mean(w * w))
  frames = jnp.fft.irfft(spectrum, n=geom.n_fft, axis=-1) * (w / norm)
  parts = frames.reshape(geom.n_frames, geom.overlap, geom.hop)
  last = geom.overlap - 1
  out = sum(jnp.pad(parts[:, i], ((i, last - i), (0, 0))) for i in range(geom.overlap))
  return out.reshape(-1)[geom.pad_front:geom.pad_front + geom.length]


def default_n_fft(sample_rate: int) -> int:
  """Frame size of ~46 ms (1024 at 22.05 kHz, 2048 at 44.1/48 kHz), a power of two."""
  return int(2 ** round(np.log2(sample_rate * 0.0464)))
