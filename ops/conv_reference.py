"""Didactic formulations of convolution, each equal to the production op.

From the lecture notes: the direct sum `x_ij = sum_ab w_ab y_(i+a)(j+b)`
with output size `N - m + 1` (seed 001, "CNN Feed-forward: looking at one
layer only"); 1-D convolution as a banded Toeplitz matrix product (seed 001,
"convolution as a linear operator"); 2-D convolution as im2col times a
matrix; spatially separable kernels as column x row (seed 002, the Sobel
example); flattened convolution (Jin et al. 2015, "Flattened convolutional
neural networks for feedforward acceleration": 1-D filters over channels,
then vertically, then horizontally); grouped convolution as split, convolve,
concatenate (Krizhevsky et al. 2012). Tests check each one against
`lax.conv_general_dilated` or `ops.convolution`.
"""

from collections.abc import Sequence
import itertools

import jax
import jax.numpy as jnp

from ops import convolution
from ops.convolution import Padding


def conv2d_direct(
  x: jax.Array,
  w: jax.Array,
  *,
  strides: int | Sequence[int] = 1,
  padding: Padding = 'VALID',
  dilation: int | Sequence[int] = 1,
) -> jax.Array:
  """The notes' direct sum, one shifted window per kernel tap.

  `out[n, i, j, o] = sum_{a, b, c} w[a, b, c, o] y[n, i s + a d, j s + b d, c]`
  on the padded input; with stride 1 and no padding the output is
  `(N - m + 1) x (N - m + 1)`.

  Args:
    x: input [B, H, W, C].
    w: kernel [kh, kw, C, O].
    strides: int or pair.
    padding: as in `ops.convolution.conv2d` (default 'VALID', the notes').
    dilation: int or pair.

  Returns:
    Output [B, Ho, Wo, O].
  """
  if x.ndim != 4 or w.ndim != 4 or w.shape[2] != x.shape[3]:
    raise ValueError(f'conv2d_direct shapes {x.shape} and {w.shape}')
  kh, kw = w.shape[:2]
  # Window (a, b) is the input seen by tap (a, b): [B, Ho, Wo, C].
  windows = convolution.shifted_windows(x, (kh, kw), strides, padding, dilation)
  ho, wo = windows[0].shape[1:3]
  out = jnp.zeros((x.shape[0], ho, wo, w.shape[3]), jnp.result_type(x, w))
  taps = itertools.product(range(kh), range(kw))
  for (a, b), window in zip(taps, windows, strict=True):
    out = out + jnp.einsum('bhwc,co->bhwo', window, w[a, b])
  return out


def toeplitz_matrix(w: jax.Array, n: int) -> jax.Array:
  """The notes' banded Toeplitz matrix of a 1-D kernel.

  Args:
    w: kernel [m] (w_1 .. w_m in the notes).
    n: input length.

  Returns:
    T [n + m - 1, n] with `T[i, j] = w[i - j]` (zero outside the band), so
    `T @ y` is the full convolution `np.convolve(y, w)`.
  """
  if w.ndim != 1 or n < 1:
    raise ValueError(f'toeplitz_matrix needs a 1-D kernel and n >= 1, got '
                     f'{w.shape}, {n}')  # fmt: skip
  m = w.shape[0]
  diff = jnp.arange(n + m - 1)[:, None] - jnp.arange(n)[None, :]
  inside = (diff >= 0) & (diff < m)
  return jnp.where(inside, w[jnp.clip(diff, 0, m - 1)], 0)


def conv1d_toeplitz(
  y: jax.Array, w: jax.Array, mode: str = 'full'
) -> jax.Array:
  """1-D convolution (true, flipped-kernel) as a Toeplitz matrix product.

  Args:
    y: signal [..., n].
    w: kernel [m].
    mode: 'full' (n + m - 1 outputs, the notes' matrix), 'valid'
      (n - m + 1) or 'same' (n, centred), as in `np.convolve`.

  Returns:
    The convolution [..., n_out].
  """
  n, m = y.shape[-1], w.shape[0]
  full = y @ toeplitz_matrix(w, n).T
  if mode == 'full':
    return full
  if mode == 'valid':
    lo, size = min(n, m) - 1, max(n, m) - min(n, m) + 1
  elif mode == 'same':
    size = max(n, m)
    lo = (n + m - 1 - size) // 2
  else:
    raise ValueError(f"unknown mode {mode!r}; use 'full', 'valid' or 'same'")
  return full[..., lo : lo + size]


def conv2d_im2col(
  x: jax.Array,
  w: jax.Array,
  *,
  strides: int | Sequence[int] = 1,
  padding: Padding = 'VALID',
  dilation: int | Sequence[int] = 1,
) -> jax.Array:
  """2-D convolution as im2col patches times the flattened kernel.

  Args:
    x: input [B, H, W, C].
    w: kernel [kh, kw, C, O].
    strides: int or pair.
    padding: as in `ops.convolution.conv2d`.
    dilation: int or pair.

  Returns:
    Output [B, Ho, Wo, O].
  """
  if w.ndim != 4 or w.shape[2] != x.shape[-1]:
    raise ValueError(f'conv2d_im2col shapes {x.shape} and {w.shape}')
  patches = convolution.im2col(x, w.shape[:2], strides, padding, dilation)
  return patches @ w.reshape(-1, w.shape[3])  # [B, Ho, Wo, kh*kw*C] @ [K, O]


def separable_kernel(col: jax.Array, row: jax.Array) -> jax.Array:
  """Rank-1 kernel `col^T x row`, e.g. Sobel = [1, 2, 1]^T [-1, 0, 1]."""
  if col.ndim != 1 or row.ndim != 1:
    raise ValueError(f'col and row must be 1-D, got {col.shape}, {row.shape}')
  return jnp.outer(col, row)


def rank1_factorize(k: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Best rank-1 factorisation `k ~ outer(col, row)` via the SVD.

  Exact when k is separable (rank 1). The scale is split evenly
  (`|col| = |row|`) and the sign fixed so that col's largest entry is
  positive; any factorisation differs from this one by `(c col, row / c)`.

  Args:
    k: kernel [kh, kw].

  Returns:
    (col [kh], row [kw]).
  """
  if k.ndim != 2:
    raise ValueError(f'rank1_factorize expects a 2-D kernel, got {k.shape}')
  u, s, vt = jnp.linalg.svd(k.astype(jnp.float32))
  root = jnp.sqrt(s[0])
  col, row = u[:, 0] * root, vt[0] * root
  sign = jnp.sign(col[jnp.argmax(jnp.abs(col))])
  return col * sign, row * sign


def conv2d_spatially_separable(
  x: jax.Array,
  col: jax.Array,
  row: jax.Array,
  *,
  strides: int | Sequence[int] = 1,
  padding: Padding = 'VALID',
) -> jax.Array:
  """Per-channel conv with the kernel `outer(col, row)`: vertical, then
  horizontal, costing kh + kw instead of kh * kw multiplies per output.

  Args:
    x: input [B, H, W, C].
    col: vertical filter [kh] (shared by channels) or [kh, C].
    row: horizontal filter [kw] or [kw, C].
    strides: int or pair.
    padding: as in `ops.convolution.conv2d`, for the full kh x kw kernel.

  Returns:
    Output [B, Ho, Wo, C].
  """
  c = x.shape[-1]
  col = jnp.broadcast_to(col.reshape(col.shape[0], -1), (col.shape[0], c))
  row = jnp.broadcast_to(row.reshape(row.shape[0], -1), (row.shape[0], c))
  (sh, sw) = convolution.as_pair(strides, 'strides')
  pads = convolution.resolve_padding(
    padding, x.shape[1:3], (col.shape[0], row.shape[0]), (sh, sw)
  )
  y = convolution.depthwise_conv2d(
    x, col[:, None, None, :], strides=(sh, 1), padding=(pads[0], (0, 0))
  )
  return convolution.depthwise_conv2d(
    y, row[None, :, None, :], strides=(1, sw), padding=((0, 0), pads[1])
  )


def flattened_kernel(
  channel_w: jax.Array, vertical_w: jax.Array, horizontal_w: jax.Array
) -> jax.Array:
  """The full HWIO kernel of a flattened conv: `W[h, w, c, n] = v[h, n]
  h[w, n] c[c, n]`, one rank-1 3-D filter per output channel n."""
  return jnp.einsum('cn,hn,wn->hwcn', channel_w, vertical_w, horizontal_w)


def flattened_conv2d(
  x: jax.Array,
  channel_w: jax.Array,
  vertical_w: jax.Array,
  horizontal_w: jax.Array,
  *,
  strides: int | Sequence[int] = 1,
  padding: Padding = 'VALID',
) -> jax.Array:
  """Flattened convolution (Jin et al. 2015): three 1-D convolutions.

  A 1-D filter across channels (a 1x1 conv C -> N), then a vertical kh x 1
  and a horizontal 1 x kw filter per output channel.

  Args:
    x: input [B, H, W, C].
    channel_w: [C, N].
    vertical_w: [kh, N].
    horizontal_w: [kw, N].
    strides: int or pair.
    padding: padding of the equivalent full kh x kw convolution.

  Returns:
    Output [B, Ho, Wo, N], equal to `conv2d(x, flattened_kernel(...))`.
  """
  y = convolution.pointwise_conv2d(x, channel_w)  # [B, H, W, N]
  return conv2d_spatially_separable(
    y, vertical_w, horizontal_w, strides=strides, padding=padding
  )


def grouped_conv2d_split(
  x: jax.Array,
  w: jax.Array,
  groups: int,
  *,
  strides: int | Sequence[int] = 1,
  padding: Padding = 'SAME',
) -> jax.Array:
  """Grouped convolution the AlexNet way: split channels, convolve each
  group with its own filters, concatenate.

  Args:
    x: input [B, H, W, C].
    w: kernel [kh, kw, C // groups, O]; group g owns outputs
      g * O / groups ... (g + 1) * O / groups - 1.
    groups: number of groups.
    strides: int or pair.
    padding: as in `ops.convolution.conv2d`.

  Returns:
    Output [B, Ho, Wo, O].
  """
  if x.shape[-1] % groups or w.shape[-1] % groups:
    raise ValueError(f'groups={groups} must divide {x.shape} and {w.shape}')
  xs = jnp.split(x, groups, axis=-1)
  ws = jnp.split(w, groups, axis=-1)
  return jnp.concatenate(
    [
      convolution.conv2d(xg, wg, strides=strides, padding=padding, impl='xla')
      for xg, wg in zip(xs, ws, strict=True)
    ],
    axis=-1,
  )
