"""Pooling over NHWC feature maps: max, average and global average.

The pooling layers of the lecture notes' CNNs (seed 002: VGG's 2x2 stride-2
max pooling, GoogLeNet's 3x3 stride-1 max pooling inside the Inception
module, global average pooling before the classifier in ResNet and later
models). Window, stride and padding follow `ops.convolution.conv2d`.
"""

from collections.abc import Sequence

import jax
from jax import lax
import jax.numpy as jnp

from ops import convolution


def _window_args(x, window, strides, padding):
  """Returns (window dims, strides, padding pairs) for reduce_window."""
  if x.ndim != 4:
    raise ValueError(f'pooling expects NHWC input, got shape {x.shape}')
  win = convolution.as_pair(window, 'window')
  strides = win if strides is None else convolution.as_pair(strides, 'strides')
  pads = convolution.resolve_padding(padding, x.shape[1:3], win, strides)
  if any(x.shape[i + 1] + lo + hi < win[i] for i, (lo, hi) in enumerate(pads)):
    raise ValueError(f'window {win} larger than padded input {x.shape}')
  return (
    (1, *win, 1),
    (1, *strides, 1),
    ((0, 0), *pads, (0, 0)),
  )


def max_pool(
  x: jax.Array,
  window: int | Sequence[int],
  *,
  strides: int | Sequence[int] | None = None,
  padding: convolution.Padding = 'VALID',
) -> jax.Array:
  """Max pooling; padded positions never win (they are -inf).

  Args:
    x: input [B, H, W, C].
    window: window size, int or (wh, ww).
    strides: int or pair; defaults to the window (non-overlapping).
    padding: 'VALID', 'SAME', an int or ((top, bottom), (left, right)).

  Returns:
    Pooled [B, Ho, Wo, C].
  """
  dims, strides, pads = _window_args(x, window, strides, padding)
  # Python scalars, not arrays: an array init value breaks linearisation
  # of reduce_window under jit(grad(...)).
  init = -float('inf')
  if not jnp.issubdtype(x.dtype, jnp.floating):
    init = int(jnp.iinfo(x.dtype).min)
  return lax.reduce_window(x, init, lax.max, dims, strides, pads)


def avg_pool(
  x: jax.Array,
  window: int | Sequence[int],
  *,
  strides: int | Sequence[int] | None = None,
  padding: convolution.Padding = 'VALID',
  count_include_pad: bool = True,
) -> jax.Array:
  """Average pooling.

  Args:
    x: input [B, H, W, C].
    window: window size, int or (wh, ww).
    strides: int or pair; defaults to the window.
    padding: as in `max_pool`; padded positions hold zeros.
    count_include_pad: divide by the full window size (True) or only by the
      number of real (unpadded) positions in each window (False).

  Returns:
    Pooled [B, Ho, Wo, C].
  """
  dims, strides, pads = _window_args(x, window, strides, padding)
  zero = 0.0 if jnp.issubdtype(x.dtype, jnp.floating) else 0
  sums = lax.reduce_window(x, zero, lax.add, dims, strides, pads)
  if count_include_pad:
    return sums / (dims[1] * dims[2])
  ones = jnp.ones((1, *x.shape[1:3], 1), x.dtype)
  counts = lax.reduce_window(ones, zero, lax.add, dims, strides, pads)
  return sums / counts


def global_avg_pool(x: jax.Array) -> jax.Array:
  """Mean over the spatial axes: [B, H, W, C] -> [B, C]."""
  if x.ndim != 4:
    raise ValueError(f'global_avg_pool expects NHWC input, got {x.shape}')
  return jnp.mean(x, axis=(1, 2))


def global_max_pool(x: jax.Array) -> jax.Array:
  """Max over the spatial axes: [B, H, W, C] -> [B, C]."""
  if x.ndim != 4:
    raise ValueError(f'global_max_pool expects NHWC input, got {x.shape}')
  return jnp.max(x, axis=(1, 2))
