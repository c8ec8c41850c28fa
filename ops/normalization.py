"""Normalization as pure functions: z-score, Batch/Layer/Instance/GroupNorm.

Implements the normalization part of the lecture notes (seed 002, "Normalization
Methods"): standardization of inputs, the BatchNorm algorithm of Ioffe & Szegedy
(2015) with per-channel statistics in a CNN, Layer Normalization (Ba et al.,
2016), Instance Normalization (Ulyanov et al., 2016) and Group Normalization
(Wu & He, 2018).

All statistics are computed in float32 whatever the input dtype (bfloat16 inputs
are upcast, normalised and cast back). No variance uses ``E[x^2] - E[x]^2``,
which cancels catastrophically for inputs with a large mean (e.g. 1e4 + small
noise): ``batch_norm_stats``, ``standardize`` and the Layer/Instance/GroupNorms
use a corrected two-pass form ``mean((x - m)^2) - mean(x - m)^2``;
``batch_norm_train`` uses shifted data ``E[d^2] - E[d]^2`` with ``d = x - K``
and K the first example's mean, which reads ``x`` once less and loses
``(mean - K)^2 / var`` more in rounding (accurate unless the first example is
far from the batch mean in standard deviations).
"""

from collections.abc import Sequence
import functools
import math

import jax
import jax.numpy as jnp

from ops.native import bn as native_bn

Axes = int | Sequence[int]


def _as_tuple(axes: Axes, ndim: int) -> tuple[int, ...]:
  """Normalises ``axes`` to a sorted tuple of non-negative ints."""
  if isinstance(axes, int):
    axes = (axes,)
  out = []
  for a in axes:
    if not -ndim <= a < ndim:
      raise ValueError(f'axis {a} out of range for an array of rank {ndim}')
    out.append(a % ndim)
  if len(set(out)) != len(out):
    raise ValueError(f'repeated axis in {tuple(axes)}')
  return tuple(sorted(out))


def _centred_moments(
  x: jax.Array, axes: tuple[int, ...]
) -> tuple[jax.Array, jax.Array, jax.Array]:
  """``(x - mean, mean, var)`` over ``axes`` in float32 (keepdims).

  Corrected two-pass algorithm (Chan, Golub & LeVeque, 1983): centre on a first
  estimate of the mean, then remove the residual mean ``d`` of the centred
  values, which would otherwise add ``d^2`` (rounding error of the float32 mean)
  to the variance of large-mean inputs. The centred values are returned so
  that callers need not subtract a rounded float32 mean again.
  """
  x = x.astype(jnp.float32)
  mean0 = jnp.mean(x, axis=axes, keepdims=True)
  centred = x - mean0
  residual = jnp.mean(centred, axis=axes, keepdims=True)
  var = jnp.mean(jnp.square(centred), axis=axes, keepdims=True)
  var = jnp.maximum(var - jnp.square(residual), 0.0)
  return centred - residual, mean0 + residual, var


def _affine(
  y: jax.Array,
  scale: jax.typing.ArrayLike | None,
  bias: jax.typing.ArrayLike | None,
) -> jax.Array:
  """Applies the learned ``gamma * y + beta`` (in float32) when given."""
  if scale is not None:
    y = y * jnp.asarray(scale, jnp.float32)
  if bias is not None:
    y = y + jnp.asarray(bias, jnp.float32)
  return y


def _out_dtype(x: jax.Array) -> jnp.dtype:
  """Floating inputs keep their dtype; integer inputs give float32."""
  if jnp.issubdtype(x.dtype, jnp.floating):
    return x.dtype
  return jnp.dtype(jnp.float32)


def _check_eps(eps: float) -> None:
  if eps < 0:
    raise ValueError(f'eps must be non-negative, got {eps}')


def standardize(
  x: jax.typing.ArrayLike, axis: Axes = 0, eps: float = 1e-8
) -> jax.Array:
  """Z-score ``(x - mean) / std`` with statistics taken over ``axis``.

  The notes' "normalizing training sets": subtract the per-feature mean and
  divide by the per-feature standard deviation (biased, ``1/m``).

  Args:
    x: data, e.g. ``[N, D]`` with examples along ``axis``.
    axis: axis or axes holding the examples.
    eps: added to the variance before the square root.

  Returns:
    Standardized array, same shape and dtype as ``x``.
  """
  x = jnp.asarray(x)
  y = _normalized_f32(x, _as_tuple(axis, x.ndim), eps)
  return y.astype(_out_dtype(x))


def standardize_with(
  x: jax.typing.ArrayLike, mean: jax.typing.ArrayLike, std: jax.typing.ArrayLike
) -> jax.Array:
  """Applies a z-score with given ``mean`` and ``std`` (e.g. training-set ones).

  Args:
    x: data; ``mean`` and ``std`` broadcast against it.
    mean: the mean to subtract.
    std: the standard deviation to divide by (must be positive).

  Returns:
    ``(x - mean) / std`` in the dtype of ``x``.
  """
  x = jnp.asarray(x)
  y = (x.astype(jnp.float32) - jnp.asarray(mean, jnp.float32)) / jnp.asarray(
    std, jnp.float32
  )
  return y.astype(_out_dtype(x))


def batch_norm_stats(
  x: jax.typing.ArrayLike, axes: Axes | None = None
) -> tuple[jax.Array, jax.Array]:
  """Mini-batch mean and biased variance, as in the notes' BN algorithm.

  For an NHWC activation the statistics are per channel: ``axes=(0, 1, 2)``
  reduces over the batch and both spatial axes ("Batch Normalization in CNN"),
  so ``x: [B, H, W, C]`` gives ``mean, var: [C]``. For a dense layer use
  ``axes=(0,)``.

  Args:
    x: activations.
    axes: the axes to reduce over; None means all but the last (channel)
      axis, i.e. ``(0, 1, 2)`` for NHWC and ``(0,)`` for ``[B, C]``.

  Returns:
    ``(mean, var)`` in float32 with the reduced axes removed; ``var`` is
    ``1/m sum (x_i - mean)^2`` (biased), computed in two passes.
  """
  x = jnp.asarray(x)
  if axes is None:
    axes = tuple(range(x.ndim - 1))
  axes = _as_tuple(axes, x.ndim)
  _, mean, var = _centred_moments(x, axes)
  return jnp.squeeze(mean, axes), jnp.squeeze(var, axes)


def batch_norm(
  x: jax.typing.ArrayLike,
  *,
  mean: jax.typing.ArrayLike,
  var: jax.typing.ArrayLike,
  scale: jax.typing.ArrayLike | None = None,
  bias: jax.typing.ArrayLike | None = None,
  eps: float = 1e-5,
) -> jax.Array:
  """Normalises with given statistics: ``gamma (x-mu)/sqrt(var+eps) + beta``.

  In training pass the batch statistics from :func:`batch_norm_stats`; at
  evaluation pass the running averages (see :func:`update_running`). ``mean``,
  ``var``, ``scale`` and ``bias`` broadcast against the trailing (channel) axis.

  Args:
    x: activations, e.g. ``[B, H, W, C]`` or ``[B, C]``.
    mean: per-channel mean, e.g. ``[C]``.
    var: per-channel variance, e.g. ``[C]``.
    scale: gamma, or None for 1.
    bias: beta, or None for 0.
    eps: added to the variance for stability.

  Returns:
    Normalised array, same shape and dtype as ``x`` (computed in float32).
  """
  _check_eps(eps)
  x = jnp.asarray(x)
  mean = jnp.asarray(mean, jnp.float32)
  var = jnp.asarray(var, jnp.float32)
  y = (x.astype(jnp.float32) - mean) * jax.lax.rsqrt(var + eps)
  return _affine(y, scale, bias).astype(_out_dtype(x))


def batch_norm_train(
  x: jax.typing.ArrayLike,
  *,
  scale: jax.typing.ArrayLike | None = None,
  bias: jax.typing.ArrayLike | None = None,
  eps: float = 1e-5,
  dtype: jnp.dtype | None = None,
  impl: str = 'auto',
) -> tuple[jax.Array, jax.Array, jax.Array]:
  """Training-mode BatchNorm in one op: ``(y, mean, var)``.

  ``impl='auto'`` runs ``ops.native.bn`` (oneDNN via an XLA FFI call:
  XLA:CPU's reductions and bfloat16 converts made this op ~3x PyTorch's)
  for float32/bfloat16 ``x`` of rank >= 2 where ``bn.available`` (cpu
  backend, library built, oneDNN has the dtype), else the XLA code
  described next; 'xla' forces it; 'onednn' raises ValueError if the native
  op cannot run. The native statistics are these shifted moments (k: x's
  first row) summed in one read, float32 blocks added in double; oneDNN
  only normalises with them (its own float32 mean, then (x - mean)^2 about
  it, fails the 1e4-offset test); the backward is native code centring on
  ``(x - k) - s1`` as here. Sharded batch, vmap, 2nd order: XLA code.

  Statistics per channel over all other axes, from shifted data (see
  ``_shifted_moments``): the values of :func:`batch_norm_stats` followed by
  :func:`batch_norm` up to rounding, with a hand-written gradient (Ioffe &
  Szegedy 2015, Sec. 3) instead of the autodiff of the corrected two-pass
  statistics, which left XLA:CPU about ten passes over every activation
  (it wrote ``x - mean`` to memory twice in the forward pass and read it
  back in six reductions and elementwise loops in the backward). Here the
  forward pass reads ``x`` for the statistics and once more to write
  ``y``; the backward pass reads ``dy`` and ``x`` for two per-channel sums
  and once more to write ``dx``. ``x`` is saved in its own dtype (bfloat16
  stays bfloat16); ``x_hat`` is recomputed, not stored.

  Args:
    x: activations, e.g. ``[B, H, W, C]``.
    scale: per-channel gamma ``[C]``, or None for 1.
    bias: per-channel beta ``[C]``, or None for 0.
    eps: added to the variance.
    dtype: dtype of ``y`` (default: that of ``x``; float32 for integers).
    impl: 'auto', 'xla' or 'onednn' (see above).

  Returns:
    ``y`` shaped like ``x``; ``mean`` and biased ``var`` ``[C]`` in float32,
    differentiable too (their gradients flow into ``x``).
  """
  _check_eps(eps)
  if impl not in ('auto', 'xla', 'onednn'):
    raise ValueError(f"impl must be 'auto', 'xla' or 'onednn', got {impl!r}")
  x = jnp.asarray(x)
  if not jnp.issubdtype(x.dtype, jnp.floating):
    x = x.astype(jnp.float32)
  c = x.shape[-1]
  s = jnp.ones((c,), jnp.float32) if scale is None else scale
  b = jnp.zeros((c,), jnp.float32) if bias is None else bias
  s = jnp.broadcast_to(jnp.asarray(s, jnp.float32), (c,))
  b = jnp.broadcast_to(jnp.asarray(b, jnp.float32), (c,))
  out = jnp.dtype(dtype) if dtype is not None else x.dtype
  if impl == 'onednn':
    native_bn.check(x)
  if impl == 'onednn' or (impl == 'auto' and native_bn.chosen(x)):
    return native_bn.batch_norm_train(x, s, b, float(eps), out)
  return _bn_train(float(eps), out, x, s, b)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 1))
def _bn_train(eps, out_dtype, x, scale, bias):
  return _bn_train_fwd(eps, out_dtype, x, scale, bias)[0]


def _bn_train_fwd(eps, out_dtype, x, scale, bias):
  axes = tuple(range(x.ndim - 1))
  shift, s1, var = _shifted_moments(x, axes)
  inv = jax.lax.rsqrt(var + eps)
  y = _centred(x, shift, s1) * (inv * scale) + bias
  return (y.astype(out_dtype), shift + s1, var), (x, shift, s1, inv, scale)


def _shifted_moments(x, axes):
  """``(K, mean - K, biased var)`` per channel of ``x [..., C]``, two reads.

  Shifted data (Chan, Golub & LeVeque 1983, eq. 1.7): with ``d = x - K``,
  ``mean = K + E[d]`` and ``var = E[d^2] - E[d]^2``. The subtraction
  cancels only by ``kappa = (mean - K)^2 / var``: relative rounding errors
  of order ``(1 + kappa) m u`` (``m`` values per channel, ``u = 2^-24``),
  against ``E[x^2] / var`` for ``E[x^2] - E[x]^2``, which loses every digit
  for inputs with a large mean (1e4 + small noise). K is the first
  example's mean (a read of 1/B of the data), so kappa is small unless
  that example is atypical of the batch. Both moments are of ``d``: a mean
  of ``x`` itself carries float32's rounding of the offset (half an ulp of
  1e4 is 5e-4), which ``(mean - K)^2`` would turn into an error of the
  variance about ``2 |mean - K| 5e-4``. Each reduction reads ``x`` itself:
  the two-pass form's centred copy is never written (XLA:CPU does not fuse
  one producer into two reductions).
  """
  xf = x.astype(jnp.float32)
  shift = jnp.mean(xf[:1], axis=axes)  # [C]
  s1 = jnp.mean(xf - shift, axis=axes)  # mean - K
  s2 = jnp.mean(jnp.square(xf - shift), axis=axes)
  return shift, s1, jnp.maximum(s2 - jnp.square(s1), 0.0)


def _centred(x, shift, s1):
  """``x - mean`` as ``(x - K) - (mean - K)``: no rounded float32 mean."""
  return (x.astype(jnp.float32) - shift) - s1


def _bn_train_bwd(eps, out_dtype, res, cts):
  del eps, out_dtype
  x, shift, s1, inv, scale = res
  dy, dmean, dvar = cts
  axes = tuple(range(x.ndim - 1))
  m = math.prod(x.shape[:-1])
  g = dy.astype(jnp.float32)
  centred = _centred(x, shift, s1)
  x_hat = centred * inv
  # Two reductions, each fusing its own producer: no temporary is written.
  sum_g = jnp.sum(g, axes)
  sum_gx = jnp.sum(g * x_hat, axes)
  dx = (scale * inv) * (g - sum_g / m - x_hat * (sum_gx / m))
  # The statistics' own cotangents (zero unless a loss uses them).
  dx = dx + (dmean + 2.0 * dvar * centred) / m
  return dx.astype(x.dtype), sum_gx, sum_g


_bn_train.defvjp(_bn_train_fwd, _bn_train_bwd)


def update_running(
  running: jax.typing.ArrayLike,
  batch: jax.typing.ArrayLike,
  momentum: float = 0.9,
) -> jax.Array:
  """Running average ``momentum * running + (1 - momentum) * batch``.

  Used for BatchNorm's running mean and variance (flax convention: ``momentum``
  is the weight of the old value). Ioffe & Szegedy use the unbiased variance
  ``m/(m-1) var_B`` for inference; we follow flax and the notes' algorithm and
  average the biased batch variance, the same one used to normalise in
  training. For the batch sizes used here the difference is ``1/(m-1)``.

  Args:
    running: the current running value.
    batch: the new batch statistic.
    momentum: in [0, 1].

  Returns:
    The updated running value (float32).
  """
  if not 0.0 <= momentum <= 1.0:
    raise ValueError(f'momentum must be in [0, 1], got {momentum}')
  running = jnp.asarray(running, jnp.float32)
  batch = jnp.asarray(batch, jnp.float32)
  return momentum * running + (1.0 - momentum) * batch


def _normalize_over(
  x: jax.typing.ArrayLike,
  axes: tuple[int, ...],
  scale: jax.typing.ArrayLike | None,
  bias: jax.typing.ArrayLike | None,
  eps: float,
) -> jax.Array:
  """Normalises with per-example statistics over ``axes`` then scales."""
  x = jnp.asarray(x)
  y = _normalized_f32(x, axes, eps)
  return _affine(y, scale, bias).astype(_out_dtype(x))


def _normalized_f32(
  x: jax.Array, axes: tuple[int, ...], eps: float
) -> jax.Array:
  """``(x - mean) / sqrt(var + eps)`` over ``axes``, returned in float32."""
  _check_eps(eps)
  centred, _, var = _centred_moments(x, axes)
  return centred * jax.lax.rsqrt(var + eps)


def layer_norm(
  x: jax.typing.ArrayLike,
  *,
  scale: jax.typing.ArrayLike | None = None,
  bias: jax.typing.ArrayLike | None = None,
  eps: float = 1e-5,
  axes: Axes = (-1,),
) -> jax.Array:
  """Layer normalization (Ba et al., 2016): per-example stats over ``axes``.

  The default normalises over the feature axis; for a CNN the notes' LayerNorm
  normalises over ``(H, W, C)``, i.e. ``axes=(-3, -2, -1)``.

  Args:
    x: activations.
    scale: gamma (broadcast against ``x``), or None.
    bias: beta, or None.
    eps: added to the variance.
    axes: axes to compute the mean and variance over.

  Returns:
    Normalised array, same shape and dtype as ``x``.
  """
  x = jnp.asarray(x)
  return _normalize_over(x, _as_tuple(axes, x.ndim), scale, bias, eps)


def instance_norm(
  x: jax.typing.ArrayLike,
  *,
  scale: jax.typing.ArrayLike | None = None,
  bias: jax.typing.ArrayLike | None = None,
  eps: float = 1e-5,
) -> jax.Array:
  """Instance normalization (Ulyanov et al., 2016): per example and channel.

  Args:
    x: NHWC activations (or ``[B, ..., C]`` with spatial axes in between).
    scale: per-channel gamma ``[C]``, or None.
    bias: per-channel beta ``[C]``, or None.
    eps: added to the variance.

  Returns:
    Normalised array, same shape and dtype as ``x``.
  """
  x = jnp.asarray(x)
  if x.ndim < 3:
    raise ValueError(
      f'instance_norm needs [B, ..., C] with spatial axes, got shape {x.shape}'
    )
  return _normalize_over(x, tuple(range(1, x.ndim - 1)), scale, bias, eps)


def group_norm(
  x: jax.typing.ArrayLike,
  *,
  num_groups: int,
  scale: jax.typing.ArrayLike | None = None,
  bias: jax.typing.ArrayLike | None = None,
  eps: float = 1e-5,
) -> jax.Array:
  """Group normalization (Wu & He, 2018) on NHWC or ``[B, ..., C]`` inputs.

  Channels are split into ``num_groups`` contiguous groups; each example and
  group is normalised over its spatial axes and the group's channels.
  ``num_groups = C`` is InstanceNorm and ``num_groups = 1`` is LayerNorm over
  ``(H, W, C)``.

  Args:
    x: activations ``[B, ..., C]``.
    num_groups: number of groups G; must divide C.
    scale: per-channel gamma ``[C]``, or None.
    bias: per-channel beta ``[C]``, or None.
    eps: added to the variance.

  Returns:
    Normalised array, same shape and dtype as ``x``.
  """
  x = jnp.asarray(x)
  if x.ndim < 2:
    raise ValueError(f'group_norm needs [B, ..., C], got shape {x.shape}')
  channels = x.shape[-1]
  if num_groups < 1 or channels % num_groups:
    raise ValueError(
      f'num_groups={num_groups} must be a positive divisor of the number '
      f'of channels C={channels}'
    )
  grouped = x.reshape(*x.shape[:-1], num_groups, channels // num_groups)
  # Reduce over spatial axes and the channels inside each group, not over G.
  axes = tuple(range(1, grouped.ndim - 2)) + (grouped.ndim - 1,)
  y = _normalized_f32(grouped, axes, eps)
  y = _affine(y.reshape(x.shape), scale, bias)
  return y.astype(_out_dtype(x))
