"""Pooling over NHWC feature maps: max, average and global average.

The pooling layers of the lecture notes' CNNs (seed 002: VGG's 2x2 stride-2
max pooling, GoogLeNet's 3x3 stride-1 max pooling inside the Inception
module, global average pooling before the classifier in ResNet and later
models). Window, stride and padding follow `ops.convolution.conv2d`.
"""

from collections.abc import Sequence
import functools

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
  if (
    dims == strides
    and all(p == (0, 0) for p in pads)
    and jnp.issubdtype(x.dtype, jnp.floating)
  ):
    # Windows that tile the map (VGG's and LeNet's 2x2 stride 2): a max over
    # reshaped axes. XLA:CPU's gradient of reduce_window max packs each value
    # with its index into a variadic reduce_window over float32 (bfloat16
    # converted) plus a scatter, which took most of LeNet-5's bfloat16 step.
    _, wh, ww, _ = dims
    ho, wo = x.shape[1] // wh, x.shape[2] // ww
    return _tiled_max(x[:, : ho * wh, : wo * ww], wh, ww)
  # Python scalars, not arrays: an array init value breaks linearisation
  # of reduce_window under jit(grad(...)).
  init = -float('inf')
  if not jnp.issubdtype(x.dtype, jnp.floating):
    init = int(jnp.iinfo(x.dtype).min)
  return lax.reduce_window(x, init, lax.max, dims, strides, pads)


@functools.partial(jax.custom_vjp, nondiff_argnums=(1, 2))
def _tiled_max(x: jax.Array, wh: int, ww: int) -> jax.Array:
  """Max over non-overlapping wh x ww windows of x [B, Ho wh, Wo ww, C]."""
  b, h, w, c = x.shape
  return x.reshape(b, h // wh, wh, w // ww, ww, c).max(axis=(2, 4))


def _tiled_max_fwd(x, wh, ww):
  y = _tiled_max(x, wh, ww)
  return y, (x, y)


def _tiled_max_bwd(wh, ww, res, g):
  """Each window's gradient goes to its first maximum (row-major order).

  As `lax.reduce_window`'s gradient (select-and-scatter) and PyTorch's
  max_pool2d: one winner per window, ties to the first, never split.
  """
  x, y = res
  b, h, w, c = x.shape
  t = x.reshape(b, h // wh, wh, w // ww, ww, c)
  taken = jnp.zeros(y.shape, bool)
  rows = []
  for i in range(wh):
    row = []
    for j in range(ww):
      hit = (t[:, :, i, :, j, :] == y) & ~taken
      taken = taken | hit
      row.append(jnp.where(hit, g, jnp.zeros((), g.dtype)))
    rows.append(jnp.stack(row, axis=3))  # [B, Ho, Wo, ww, C]
  return (jnp.stack(rows, axis=2).reshape(x.shape),)


_tiled_max.defvjp(_tiled_max_fwd, _tiled_max_bwd)


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
