"""Reference formulations of convolution, each equal to the production op.

The lecture notes derive convolution several ways; each derivation is one
function here, tested against `ops.convolution` (or `lax` / numpy), so the
networks never run them:

* the direct sum `x_ij = sum_ab w_ab y_(i+a)(j+b)`, output size `N - m + 1`
  (seed 001, "CNN Feed-forward: looking at one layer only"): `conv2d_direct`;
* 1-D convolution as a banded Toeplitz matrix product (seed 001, "convolution
  as a linear operator"): `toeplitz_matrix`, `conv1d_toeplitz`;
* 2-D convolution as patches times a matrix: `im2col` (and `shifted_windows`,
  its column blocks), `conv2d_im2col`;
* spatially separable kernels as column x row (seed 002, the Sobel example):
  `separable_kernel`, `rank1_factorize`, `conv2d_spatially_separable`;
* flattened convolution (seed 002; Jin et al. 2015, "Flattened convolutional
  neural networks for feedforward acceleration": 1-D filters over channels,
  then vertically, then horizontally): `flattened_kernel`, `flattened_conv2d`;
* grouped convolution as split, convolve, concatenate (seed 002; Krizhevsky
  et al. 2012): `grouped_conv2d_split`;
* backpropagation through one valid conv layer by hand (seed 001, "CNN
  back-propagation"): the weight gradient sums over the whole output map,
  the input gradient over a filter window: `conv2d_weight_grad`,
  `conv2d_input_grad`, `conv_layer_backward`.

Images are NHWC and kernels HWIO, as in `ops.convolution`. The notes' hand
backprop of fully connected layers is in `ops/backprop.py`.
"""

from collections.abc import Sequence
import itertools

import jax
import jax.numpy as jnp

from ops import activations
from ops import convolution
from ops.convolution import Padding


def im2col(
  x: jax.Array,
  kernel_size: int | Sequence[int],
  strides: int | Sequence[int] = 1,
  padding: Padding = 'VALID',
  dilation: int | Sequence[int] = 1,
) -> jax.Array:
  """Extracts convolution patches (im2col).

  Args:
    x: input [B, H, W, C].
    kernel_size: kh, kw.
    strides: spatial strides.
    padding: as in `ops.convolution.conv2d`.
    dilation: kernel dilation.

  Returns:
    Patches [B, Ho, Wo, kh*kw*C] ordered (a, b, c), so that
    `im2col(x) @ w.reshape(-1, O)` is the convolution with HWIO kernel w.
  """
  patches = jnp.stack(
    shifted_windows(x, kernel_size, strides, padding, dilation), axis=3
  )  # [B, Ho, Wo, kh*kw, C]
  return patches.reshape(*patches.shape[:3], -1)


def shifted_windows(
  x: jax.Array,
  kernel_size: int | Sequence[int],
  strides: int | Sequence[int] = 1,
  padding: Padding = 'VALID',
  dilation: int | Sequence[int] = 1,
) -> list[jax.Array]:
  """The input seen by each kernel tap: the column blocks of im2col.

  Returns:
    kh * kw arrays [B, Ho, Wo, C] in (a, b) order; window (a, b) holds
    `x_pad[n, i s + a d, j s + b d, c]`.
  """
  if x.ndim != 4:
    raise ValueError(f'im2col expects NHWC input, got shape {x.shape}')
  (kh, kw), (sh, sw) = (
    convolution.as_pair(kernel_size, 'kernel_size'),
    convolution.as_pair(strides, 'strides'),
  )
  dh, dw = convolution.as_pair(dilation, 'dilation')
  pads = convolution.resolve_padding(
    padding, x.shape[1:3], (kh, kw), (sh, sw), (dh, dw)
  )
  xp = jnp.pad(x, ((0, 0), *pads, (0, 0)))
  ho = (xp.shape[1] - dh * (kh - 1) - 1) // sh + 1
  wo = (xp.shape[2] - dw * (kw - 1) - 1) // sw + 1
  if ho < 1 or wo < 1:
    raise ValueError(
      f'kernel {(kh, kw)} is larger than the image {x.shape[1:3]} padded '
      f'to {xp.shape[1:3]}'
    )
  return [
    xp[
      :,
      a * dh : a * dh + (ho - 1) * sh + 1 : sh,
      b * dw : b * dw + (wo - 1) * sw + 1 : sw,
      :,
    ]
    for a in range(kh)
    for b in range(kw)
  ]


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
    raise ValueError(
      f'conv2d_direct shapes {x.shape} and {w.shape}: need NHWC x and an '
      'HWIO w with matching channels'
    )
  kh, kw = w.shape[:2]
  # Window (a, b) is the input seen by tap (a, b): [B, Ho, Wo, C].
  windows = shifted_windows(x, (kh, kw), strides, padding, dilation)
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
  patches = im2col(x, w.shape[:2], strides, padding, dilation)
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


# Backpropagation through one valid, stride-1 conv layer (seed 001, "CNN
# back-propagation"): `x = conv2d_direct(y_prev, w)`, `y = sigma(x)`.


def _check_output_map(image_hw, kernel_hw, out_hw) -> None:
  """The error map of a valid conv must be `image - kernel + 1` per axis."""
  want = tuple(n - k + 1 for n, k in zip(image_hw, kernel_hw, strict=True))
  if tuple(out_hw) != want:
    raise ValueError(
      f'dE/dx map {tuple(out_hw)} does not match image {tuple(image_hw)} and '
      f'kernel {tuple(kernel_hw)}: a valid conv outputs {want}'
    )


def conv2d_weight_grad(
  y: jax.typing.ArrayLike,
  dE_dx: jax.typing.ArrayLike,
  kernel_hw: tuple[int, int],
) -> jax.Array:
  """Weight gradient `[kh, kw, C_in, C_out]` of a valid, stride-1 conv.

  `dE/dw[a, b, c, o] = sum_{n, i, j} dE/dx[n, i, j, o] y[n, i + a, j + b, c]`,
  the notes' sum over the entire output map (and the batch).

  Args:
    y: the layer's input `[B, H, W, C_in]`.
    dE_dx: error at its output `[B, H - kh + 1, W - kw + 1, C_out]`.
    kernel_hw: `(kh, kw)`.
  """
  y, dE_dx = jnp.asarray(y), jnp.asarray(dE_dx)
  if y.ndim != 4 or dE_dx.ndim != 4 or y.shape[0] != dE_dx.shape[0]:
    raise ValueError(
      f'need NHWC images and error maps with one batch, got {y.shape} and '
      f'{dE_dx.shape}'
    )
  _check_output_map(y.shape[1:3], kernel_hw, dE_dx.shape[1:3])
  ho, wo = dE_dx.shape[1:3]
  rows = [
    [
      jnp.einsum('nijo,nijc->co', dE_dx, y[:, a : a + ho, b : b + wo])
      for b in range(kernel_hw[1])
    ]
    for a in range(kernel_hw[0])
  ]
  return jnp.stack([jnp.stack(r) for r in rows])


def conv2d_input_grad(
  w: jax.typing.ArrayLike, dE_dx: jax.typing.ArrayLike
) -> jax.Array:
  """Input gradient `[B, H, W, C_in]` of a valid, stride-1 conv.

  `dE/dy[n, p, q, c] = sum_{a, b, o} dE/dx[n, p - a, q - b, o] w[a, b, c, o]`:
  each output position scatters its error back over the filter window it saw.
  """
  w, dE_dx = jnp.asarray(w), jnp.asarray(dE_dx)
  if w.ndim != 4 or dE_dx.ndim != 4 or dE_dx.shape[3] != w.shape[3]:
    raise ValueError(
      f'need an HWIO kernel and an NHWC error map with matching output '
      f'channels, got {w.shape} and {dE_dx.shape}'
    )
  kh, kw = w.shape[:2]
  bsz, ho, wo, _ = dE_dx.shape
  out = jnp.zeros((bsz, ho + kh - 1, wo + kw - 1, w.shape[2]), dE_dx.dtype)
  for a in range(kh):
    for b in range(kw):
      contrib = jnp.einsum('nijo,co->nijc', dE_dx, w[a, b])
      out = out.at[:, a : a + ho, b : b + wo].add(contrib)
  return out


def conv_layer_backward(
  y_prev: jax.typing.ArrayLike,
  w: jax.typing.ArrayLike,
  dE_dy: jax.typing.ArrayLike,
  activation: str,
) -> tuple[jax.Array, jax.Array]:
  """Backprop through `y = sigma(conv2d_direct(y_prev, w))` as in the notes.

  `dE/dx = dE/dy * sigma'(x)`, then the weight gradient (sum over the output
  map) and the input gradient (sum over a filter window).

  Returns:
    `(dE/dw [kh, kw, C_in, C_out], dE/dy_prev [B, H, W, C_in])`.
  """
  w = jnp.asarray(w)
  x = conv2d_direct(jnp.asarray(y_prev), w)  # Valid, stride 1.
  dE_dx = jnp.asarray(dE_dy) * activations.get_grad(activation)(x)
  dE_dw = conv2d_weight_grad(y_prev, dE_dx, w.shape[:2])
  return dE_dw, conv2d_input_grad(w, dE_dx)
