"""Production convolutions in NHWC layout with HWIO kernels.

Implements the convolution types of the lecture notes (seed 002, "Various
Types of Convolutions"): standard, pointwise (1x1), depthwise (Howard et al.
2017, MobileNets), depthwise separable, grouped (Krizhevsky et al. 2012),
channel shuffle (Zhang et al. 2018, ShuffleNet), dilated and transposed
convolution, plus the helpers that pooling and nets/ share (`as_pair`,
`resolve_padding`) and the size arithmetic (`conv_output_size`,
`conv_transpose_output_size`, `receptive_field`). Like every deep-learning
library (and unlike the notes' Toeplitz slide) these compute a
cross-correlation: `y[i, j] = sum_ab w[a, b] x[i*s + a*d, j*s + b*d]`.

`conv2d` is the op every network uses. On the CPU backend it runs oneDNN's
kernels (forward, backward-data, backward-weights) as XLA FFI custom calls
(`ops/native/`, `impl='onednn'`); `impl='auto'` takes, per convolution
shape, whichever of oneDNN and XLA was faster on this machine (timed once
and cached, `ops/native/choice.py`); with `impl='xla'`, and where the
library was not built, it differentiates through
`lax.conv_general_dilated`. The didactic formulations (direct sum, Toeplitz,
im2col forward, separable, flattened) live in `ops/conv_reference.py`.
"""

from collections.abc import Sequence

import jax
from jax import lax
import jax.numpy as jnp

Padding = str | int | Sequence[int] | Sequence[Sequence[int]]

_DIMS_2D = ('NHWC', 'HWIO', 'NHWC')
IMPLS = ('auto', 'xla', 'onednn')


def as_pair(value: int | Sequence[int], name: str) -> tuple[int, int]:
  """Returns `value` as a pair of positive ints (ValueError otherwise)."""
  if isinstance(value, int):
    pair = (value, value)
  else:
    pair = tuple(int(v) for v in value)
    if len(pair) != 2:
      raise ValueError(f'{name} must be an int or a pair, got {value!r}')
  if any(v < 1 for v in pair):
    raise ValueError(f'{name} must be positive, got {value!r}')
  return pair


def _same_pads(n: int, k: int, strides: int, dilation: int) -> tuple[int, int]:
  """Padding giving ceil(n / strides) outputs; the extra pixel goes last."""
  out = -(-n // strides)
  total = max((out - 1) * strides + dilation * (k - 1) + 1 - n, 0)
  return total // 2, total - total // 2


def resolve_padding(
  padding: Padding,
  input_size: Sequence[int],
  kernel_size: Sequence[int],
  strides: Sequence[int] = (1, 1),
  dilation: Sequence[int] = (1, 1),
) -> tuple[tuple[int, int], ...]:
  """Turns a padding spec into explicit `((lo, hi), ...)` pairs per axis.

  Args:
    padding: 'SAME' (output size ceil(n / strides)), 'VALID' (no padding), an
      int (same on every side), one int per axis, or one (lo, hi) per axis.
    input_size: spatial input sizes.
    kernel_size: spatial kernel sizes (before dilation).
    strides: strides per axis.
    dilation: kernel dilations per axis.

  Returns:
    One (lo, hi) pair of non-negative ints per spatial axis.
  """
  ndim = len(input_size)
  if isinstance(padding, str):
    mode = padding.upper()
    if mode == 'VALID':
      return ((0, 0),) * ndim
    if mode == 'SAME':
      return tuple(
        _same_pads(n, k, s, d)
        for n, k, s, d in zip(
          input_size, kernel_size, strides, dilation, strict=True
        )
      )
    raise ValueError(
      f"unknown padding {padding!r}; use 'SAME', 'VALID', an int or pairs"
    )
  if isinstance(padding, int):
    pads = ((padding, padding),) * ndim
  else:
    pads = tuple(
      (p, p) if isinstance(p, int) else tuple(int(q) for q in p)
      for p in padding
    )
  if len(pads) != ndim or any(len(p) != 2 for p in pads):
    raise ValueError(f'padding {padding!r} does not match {ndim} spatial dims')
  if any(p < 0 for pair in pads for p in pair):
    raise ValueError(f'padding must be non-negative, got {padding!r}')
  return tuple((int(lo), int(hi)) for lo, hi in pads)


def conv_output_size(
  n: int,
  k: int,
  *,
  strides: int = 1,
  padding: int | str | Sequence[int] = 0,
  dilation: int = 1,
) -> int:
  """Output length of a convolution along one axis.

  `floor((n + p_lo + p_hi - d (k - 1) - 1) / s) + 1`; with stride 1, no
  padding and no dilation this is the notes' `N - m + 1`.

  Args:
    n: input length.
    k: kernel length.
    strides: stride s.
    padding: p on both sides, a (lo, hi) pair, 'SAME' or 'VALID'.
    dilation: kernel dilation d.

  Returns:
    The output length (at least 1).
  """
  for name, v in (
    ('n', n),
    ('k', k),
    ('strides', strides),
    ('dilation', dilation),
  ):
    if v < 1:
      raise ValueError(f'{name} must be a positive int, got {v}')
  if not isinstance(padding, str) and not isinstance(padding, int):
    padding = (tuple(padding),)
  ((lo, hi),) = resolve_padding(padding, (n,), (k,), (strides,), (dilation,))
  span = dilation * (k - 1) + 1
  if n + lo + hi < span:
    raise ValueError(f'kernel span {span} exceeds padded input {n + lo + hi}')
  return (n + lo + hi - span) // strides + 1


def _lax_conv(x, w, strides, pads, dilation, groups):
  return lax.conv_general_dilated(
    x,
    w,
    window_strides=strides,
    padding=pads,
    rhs_dilation=dilation,
    dimension_numbers=_DIMS_2D,
    feature_group_count=groups,
  )


def conv2d(
  x: jax.Array,
  w: jax.Array,
  *,
  strides: int | Sequence[int] = 1,
  padding: Padding = 'SAME',
  dilation: int | Sequence[int] = 1,
  groups: int = 1,
  impl: str = 'auto',
) -> jax.Array:
  """2-D convolution (cross-correlation), the op every network uses.

  Args:
    x: input [B, H, W, C].
    w: kernel [kh, kw, C // groups, O].
    strides: int or (sh, sw).
    padding: 'SAME', 'VALID', an int, (ph, pw) or ((top, bottom), (left,
      right)).
    dilation: kernel dilation, int or pair.
    groups: feature groups; 1 is standard, C is depthwise.
    impl: 'xla' (autodiff of `lax.conv_general_dilated`), 'onednn' (the
      native CPU kernels of `ops/native/`; float32 and bfloat16) or 'auto'
      (`ops.native.chosen`: by default the faster of the two for this
      shape, timed once per machine; `ops.native.auto_impl` or
      $CONVNETS_CONV_IMPL can force either; `ops.native.backend_status()`
      says which and why).

  Returns:
    Output [B, Ho, Wo, O] in the promoted dtype of x and w.
  """
  if x.ndim != 4 or w.ndim != 4:
    raise ValueError(
      f'conv2d expects NHWC x and HWIO w, got {x.shape} and {w.shape}'
    )
  if impl not in IMPLS:
    raise ValueError(f'unknown impl {impl!r}; expected one of {IMPLS}')
  c, o = x.shape[-1], w.shape[-1]
  if groups < 1 or c % groups or o % groups:
    raise ValueError(f'groups={groups} must divide channels in={c}, out={o}')
  if w.shape[2] != c // groups:
    raise ValueError(
      f'kernel in-channels {w.shape[2]} != C / groups = {c // groups}'
    )
  strides, dilation = as_pair(strides, 'strides'), as_pair(dilation, 'dilation')
  pads = resolve_padding(padding, x.shape[1:3], w.shape[:2], strides, dilation)
  spans = [d * (k - 1) + 1 for k, d in zip(w.shape[:2], dilation, strict=True)]
  padded = [n + lo + hi for n, (lo, hi) in zip(x.shape[1:3], pads, strict=True)]
  if any(s > n for s, n in zip(spans, padded, strict=True)):
    # lax would silently return an empty (size-0) output.
    raise ValueError(
      f'kernel span {tuple(spans)} is larger than the padded input '
      f'{tuple(padded)}'
    )
  dtype = jnp.result_type(x.dtype, w.dtype)
  x, w = x.astype(dtype), w.astype(dtype)
  if impl != 'xla':
    # Imported here: ops.native loads nothing until asked, but keeps the
    # oneDNN wiring out of this module's import-time dependencies.
    from ops import native

    if impl == 'onednn':
      native.check(dtype)
    elif not native.chosen(
      x.shape, w.shape, dtype, strides, groups, pads=pads, dilation=dilation
    ):
      impl = 'xla'
  if impl == 'xla':
    return _lax_conv(x, w, strides, pads, dilation, groups)
  return native.conv2d(
    x, w, strides=strides, pads=pads, dilation=dilation, groups=groups
  )


def conv1d(
  x: jax.Array,
  w: jax.Array,
  *,
  strides: int = 1,
  padding: str | int | Sequence[int] = 'SAME',
  dilation: int = 1,
  groups: int = 1,
  impl: str = 'auto',
) -> jax.Array:
  """1-D convolution, NWC input and WIO kernel (a conv2d with H = 1).

  Args:
    x: input [B, L, C].
    w: kernel [k, C // groups, O].
    strides: stride.
    padding: 'SAME', 'VALID', an int or a (lo, hi) pair.
    dilation: kernel dilation.
    groups: feature groups.
    impl: as in `conv2d`.

  Returns:
    Output [B, Lo, O].
  """
  if x.ndim != 3 or w.ndim != 3:
    raise ValueError(f'conv1d expects NWC x, WIO w, got {x.shape}, {w.shape}')
  if isinstance(padding, str):
    pad_w = resolve_padding(padding, x.shape[1:2], w.shape[:1], (strides,),
                            (dilation,))[0]  # fmt: skip
  elif isinstance(padding, int):
    pad_w = (padding, padding)
  else:
    pad_w = tuple(padding)
  y = conv2d(
    x[:, None],
    w[None],
    strides=(1, strides),
    padding=((0, 0), pad_w),
    dilation=(1, dilation),
    groups=groups,
    impl=impl,
  )
  return y[:, 0]


def pointwise_conv2d(x: jax.Array, w: jax.Array) -> jax.Array:
  """1x1 (pointwise) convolution: a matrix product over channels.

  Args:
    x: input [B, H, W, C].
    w: kernel [C, O] or [1, 1, C, O].

  Returns:
    Output [B, H, W, O].
  """
  if w.ndim == 4:
    if w.shape[:2] != (1, 1):
      raise ValueError(f'pointwise kernel must be 1x1, got {w.shape}')
    w = w[0, 0]
  if x.ndim != 4 or w.ndim != 2 or w.shape[0] != x.shape[-1]:
    raise ValueError(f'pointwise_conv2d shapes {x.shape} and {w.shape}')
  return jnp.einsum('bhwc,co->bhwo', x, w)


def depthwise_conv2d(
  x: jax.Array,
  w: jax.Array,
  *,
  strides: int | Sequence[int] = 1,
  padding: Padding = 'SAME',
  dilation: int | Sequence[int] = 1,
) -> jax.Array:
  """Depthwise convolution: each input channel has its own filters.

  Args:
    x: input [B, H, W, C].
    w: kernel [kh, kw, 1, C * multiplier]; output channel c * m + j is
      filter j of input channel c.
    strides: int or pair.
    padding: as in `conv2d`.
    dilation: int or pair.

  Returns:
    Output [B, Ho, Wo, C * multiplier].
  """
  if w.ndim != 4 or w.shape[2] != 1:
    raise ValueError(
      f'depthwise kernel must be [kh, kw, 1, C*m], got {w.shape}'
    )
  return conv2d(
    x,
    w,
    strides=strides,
    padding=padding,
    dilation=dilation,
    groups=x.shape[-1],
  )


def depthwise_separable_conv2d(
  x: jax.Array,
  w_dw: jax.Array,
  w_pw: jax.Array,
  *,
  strides: int | Sequence[int] = 1,
  padding: Padding = 'SAME',
  dilation: int | Sequence[int] = 1,
) -> jax.Array:
  """Depthwise separable convolution (MobileNets): depthwise, then 1x1.

  Args:
    x: input [B, H, W, M].
    w_dw: depthwise kernel [kh, kw, 1, M * multiplier].
    w_pw: pointwise kernel [M * multiplier, N] or [1, 1, M * multiplier, N].
    strides: stride of the depthwise step.
    padding: padding of the depthwise step.
    dilation: dilation of the depthwise step.

  Returns:
    Output [B, Ho, Wo, N].
  """
  y = depthwise_conv2d(x, w_dw, strides=strides, padding=padding,
                       dilation=dilation)  # fmt: skip
  return pointwise_conv2d(y, w_pw)


def channel_shuffle(x: jax.Array, groups: int) -> jax.Array:
  """ShuffleNet channel shuffle: reshape to [g, C/g], transpose, flatten.

  Args:
    x: input [..., C].
    groups: number of groups g; must divide C.

  Returns:
    Same shape; channel g_i * (C/g) + j moves to position j * g + g_i, so
    6 channels in 2 groups become [0, 3, 1, 4, 2, 5].
  """
  c = x.shape[-1]
  if groups < 1 or c % groups:
    raise ValueError(f'groups={groups} must divide channels {c}')
  y = x.reshape(*x.shape[:-1], groups, c // groups)
  return jnp.swapaxes(y, -1, -2).reshape(x.shape)


def conv_transpose_output_size(
  n: int,
  k: int,
  *,
  strides: int = 1,
  padding: int | Sequence[int] = 0,
  dilation: int = 1,
  output_padding: int = 0,
) -> int:
  """Output length of a transposed convolution along one axis.

  `(n - 1) s - p_lo - p_hi + d (k - 1) + 1 + output_padding`: the input
  length of the forward convolution whose gradient it is.
  """
  lo, hi = (padding, padding) if isinstance(padding, int) else padding
  if min(n, k, strides, dilation) < 1 or min(lo, hi, output_padding) < 0:
    raise ValueError('sizes must be positive and paddings non-negative')
  if output_padding >= strides:
    raise ValueError(f'output_padding {output_padding} >= strides {strides}')
  return (n - 1) * strides - lo - hi + dilation * (k - 1) + 1 + output_padding


def conv_transpose2d(
  y: jax.Array,
  w: jax.Array,
  *,
  strides: int | Sequence[int] = 1,
  padding: Padding = 'VALID',
  dilation: int | Sequence[int] = 1,
  output_padding: int | Sequence[int] = 0,
) -> jax.Array:
  """Transposed convolution: the gradient of `conv2d` w.r.t. its input.

  Args:
    y: input [B, H, W, O] (the forward conv's output channels).
    w: the forward conv's kernel [kh, kw, C, O]; the result has C channels.
    strides: forward stride; the output is upsampled by it.
    padding: the forward conv's padding: an int, pairs, 'VALID', or 'SAME'
      (output size H * strides, as in Flax/TF).
    dilation: forward kernel dilation.
    output_padding: extra rows/cols at the end (< strides) selecting among
      the forward input sizes that give the same output size; must be 0
      with 'SAME', which fixes the output size itself.

  Returns:
    Output [B, Ho, Wo, C], `Ho = conv_transpose_output_size(H, kh, ...)`.
  """
  if y.ndim != 4 or w.ndim != 4 or w.shape[3] != y.shape[3]:
    raise ValueError(f'conv_transpose2d shapes {y.shape} and {w.shape}')
  strides, dilation = as_pair(strides, 'strides'), as_pair(dilation, 'dilation')
  extra = (
    (output_padding,) * 2
    if isinstance(output_padding, int)
    else tuple(output_padding)
  )
  k = w.shape[:2]
  if isinstance(padding, str) and padding.upper() == 'SAME':
    if any(extra):
      raise ValueError(
        f"output_padding {output_padding!r} cannot be combined with 'SAME'"
      )
    full = [n * s for n, s in zip(y.shape[1:3], strides, strict=True)]
    pads = resolve_padding('SAME', full, k, strides, dilation)
    extra = tuple(
      f - conv_transpose_output_size(n, kk, strides=s, padding=p, dilation=d)
      for f, n, kk, s, p, d in zip(
        full, y.shape[1:3], k, strides, pads, dilation, strict=True
      )
    )
  else:
    pads = resolve_padding(padding, y.shape[1:3], k, strides, dilation)
  if any(e < 0 or e >= s for e, s in zip(extra, strides, strict=True)):
    raise ValueError(f'output_padding {extra} must be in [0, strides)')
  # Flip the kernel and swap its in/out channels; dilate the input.
  w_t = jnp.swapaxes(w, 2, 3)[::-1, ::-1]
  t_pads = [
    (d * (kk - 1) - lo, d * (kk - 1) - hi + e)
    for kk, d, (lo, hi), e in zip(k, dilation, pads, extra, strict=True)
  ]
  return lax.conv_general_dilated(
    y,
    w_t.astype(y.dtype),
    window_strides=(1, 1),
    padding=t_pads,
    lhs_dilation=strides,
    rhs_dilation=dilation,
    dimension_numbers=_DIMS_2D,
  )


def receptive_field(
  kernel_sizes: Sequence[int],
  dilations: Sequence[int] | None = None,
  strides: Sequence[int] | None = None,
) -> int:
  """Receptive field (one axis) of a stack of convolutions.

  `r = 1 + sum_l d_l (k_l - 1) prod_{i<l} s_i`; three 3x3 convs with
  dilations 1, 2, 4 see 15x15 pixels (the notes' dilated-conv figure).
  """
  n = len(kernel_sizes)
  dilations = [1] * n if dilations is None else list(dilations)
  strides = [1] * n if strides is None else list(strides)
  if len(dilations) != n or len(strides) != n:
    raise ValueError('kernel_sizes, dilations and strides differ in length')
  if min([*kernel_sizes, *dilations, *strides], default=1) < 1:
    raise ValueError('kernel sizes, dilations and strides must be positive')
  field, jump = 1, 1
  for k, d, s in zip(kernel_sizes, dilations, strides, strict=True):
    field += d * (k - 1) * jump
    jump *= s
  return field
