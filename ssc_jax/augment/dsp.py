"""Small DSP helpers shared by the augmentations: fast trig, levels, mel scale, FFT filtering.

XLA on CPU lowers `sin`, `cos` and `atan2` to scalar libm calls (about 10-40 ns per element
on the project machine), while multiply-adds vectorise. The phase vocoders evaluate these on
~10^5 bins per view, so this module provides polynomial versions accurate to ~3e-7 (well
below float32 STFT round-off) that cost a few multiply-adds per element on every backend.
"""

from __future__ import annotations

import functools
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

TWO_PI = 2.0 * np.pi
# Cody-Waite split of pi/2: _PIO2_HI has 8 significant bits, so q * _PIO2_HI is exact in
# float32 for |q| < 2^15 (|x| < ~5e4 rad, far above any phase used here).
_PIO2_HI = np.float32(1.5703125)
_PIO2_LO = np.float32(np.pi / 2 - 1.5703125)
# Odd minimax-style fit of atan(a) = a * P(a^2) on [0, 1]; max error 2.5e-7 rad.
_ATAN_COEFFS = (0.9999961118, -0.3331736835, 0.1980781686, -0.1323334424, 0.07962368182,
                -0.03360421273, 0.006811787234)


def fast_sincos(x: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Returns (sin x, cos x) with quadrant reduction and degree-8/9 Taylor polynomials.

  Args:
    x: float32 array of any shape; accurate for |x| < 5e4 (abs. error < 5e-7).

  Returns:
    (sin, cos), each shaped like `x`.
  """
  q = jnp.round(x * np.float32(2.0 / np.pi))
  r = (x - q * _PIO2_HI) - q * _PIO2_LO  # r in [-pi/4, pi/4]
  r2 = r * r
  s = r * (1.0 + r2 * (-1.0 / 6 + r2 * (1.0 / 120 + r2 * (-1.0 / 5040 + r2 * (1.0 / 362880)))))
  c = 1.0 + r2 * (-0.5 + r2 * (1.0 / 24 + r2 * (-1.0 / 720 + r2 * (1.0 / 40320))))
  quadrant = q.astype(jnp.int32) & 3
  sin = jnp.where(quadrant == 0, s, jnp.where(quadrant == 1, c, jnp.where(quadrant == 2, -s, -c)))
  cos = jnp.where(quadrant == 0, c, jnp.where(quadrant == 1, -s, jnp.where(quadrant == 2, -c, s)))
  return sin, cos


def fast_atan2(y: jax.Array, x: jax.Array) -> jax.Array:
  """Four-quadrant arctangent with a polynomial core; abs. error < 5e-7 rad, atan2(0, 0) = 0.

  Args:
    y: float32 array.
    x: float32 array broadcastable with `y`.

  Returns:
    Angles in [-pi, pi], shaped like `y * x`.
  """
  ax, ay = jnp.abs(x), jnp.abs(y)
  hi = jnp.maximum(ax, ay)
  lo = jnp.minimum(ax, ay)
  a = lo / jnp.where(hi > 0, hi, 1.0)
  a2 = a * a
  poly = _ATAN_COEFFS[-1]
  for coeff in _ATAN_COEFFS[-2::-1]:
    poly = poly * a2 + coeff
  r = a * poly
  r = jnp.where(ay > ax, np.float32(np.pi / 2) - r, r)
  r = jnp.where(x < 0, np.float32(np.pi) - r, r)
  return jnp.where(y < 0, -r, r)


def wrap_phase(x: jax.Array) -> jax.Array:
  """Maps angles to [-pi, pi] (the principal value), elementwise."""
  return x - np.float32(TWO_PI) * jnp.round(x * np.float32(1.0 / TWO_PI))


def rms(x: jax.Array, axis: int = -1, keepdims: bool = False) -> jax.Array:
  """Root mean square along `axis`."""
  return jnp.sqrt(jnp.mean(jnp.square(x), axis=axis, keepdims=keepdims))


def db_to_amplitude(db: jax.Array | float) -> jax.Array:
  """10^(db / 20): an amplitude ratio from decibels."""
  return jnp.power(10.0, jnp.asarray(db, jnp.float32) / 20.0)


def hz_to_mel(f: jax.Array | float) -> jax.Array:
  """HTK mel scale: 2595 log10(1 + f / 700)."""
  return 2595.0 * jnp.log10(1.0 + jnp.asarray(f, jnp.float32) / 700.0)


def mel_to_hz(m: jax.Array | float) -> jax.Array:
  """Inverse of `hz_to_mel`."""
  return 700.0 * (jnp.power(10.0, jnp.asarray(m, jnp.float32) / 2595.0) - 1.0)


def mel_uniform(key: jax.Array, low_hz: float, high_hz: float) -> jax.Array:
  """Draws one frequency uniformly on the mel scale between `low_hz` and `high_hz` (Hz)."""
  m = jax.random.uniform(key, (), jnp.float32, hz_to_mel(low_hz), hz_to_mel(high_hz))
  return mel_to_hz(m)


@functools.lru_cache(maxsize=None)
def fast_fft_length(n: int) -> int:
  """Smallest 2^a 3^b 5^c >= n: FFT sizes that XLA (ducc, cuFFT) handles fastest."""
  best = 1 << max(0, (n - 1).bit_length())
  p5 = 1
  while p5 < best:
    p35 = p5
    while p35 < best:
      p = p35
      while p < n:
        p *= 2
      best = min(best, p)
      p35 *= 3
    p5 *= 5
  return best


def staged(fn: Callable[..., Any], live: jax.Array, *args: Any) -> Any:
  """fn(*args), written to memory on XLA:CPU instead of being fused into its consumers.

  XLA fuses elementwise producers into their consumers. On CPU a gather is not vectorised,
  so a gather fused with the elementwise math that produces its operand or its indices
  redoes that math per gathered element in scalar code (2-3x slower in the phase vocoder).
  No fusion crosses a branch, so `fn` runs as the branch of a `lax.cond` on `live`, a
  predicate XLA cannot fold. Other backends (and vmapped calls, where the cond becomes a
  select) just compute fn.

  Args:
    fn: function of arrays returning a pytree of arrays.
    live: [] bool that is true at run time (e.g. a parameter's validity).
    *args: fn's arguments.

  Returns:
    fn(*args); zeros of the same structure where `live` is false.
  """
  if jax.default_backend() != "cpu":
    return fn(*args)
  zeros = lambda *a: jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), jax.eval_shape(fn, *a))
  return jax.lax.cond(live, fn, zeros, *args)


def fft_filter(x: jax.Array, response: jax.Array, fft_length: int) -> jax.Array:
  """Zero-phase filtering by a real frequency response on a zero-padded FFT.

  The padding (fft_length - T samples of zeros) holds the filter's tails so that they do not
  wrap around the view; whatever leaves the view's end is dropped, as in a `same` convolution.

  Args:
    x: [T] float32 signal.
    response: [fft_length // 2 + 1] float32 real gains at the rfft bin frequencies.
    fft_length: static FFT size >= T.

  Returns:
    [T] float32 filtered signal.
  """
  spectrum = jnp.fft.rfft(x, n=fft_length)
  return jnp.fft.irfft(spectrum * response, n=fft_length)[: x.shape[-1]]
