"""Training-mode BatchNorm as native code: differentiable, batchable, shardable.

XLA:CPU's reductions and its bfloat16 <-> float32 conversions are slow: in
a bfloat16 ResNet-18 train step BatchNorm cost about 3x what PyTorch's did
(issue 28). Here the training BatchNorm of `ops.normalization` is two XLA
FFI custom calls (onednn_bn.cc): the forward pass (statistics in one read of
x, then oneDNN's normalisation) and the backward pass (two barrier-free
passes; why not oneDNN's is in onednn_bn.cc). The statistics come from
shifted data, as on the XLA path (k is x's first row, `s1 = mean - k`).

Layers, from the outside in (as `conv.py`):
  * `jax.custom_vjp` (`_bn`): the backward pass is the backward call, which
    also takes the cotangents of the returned mean and variance (adding
    `(dmean + 2 dvar (x - mean)) / m` to dx, as
    `ops.normalization._bn_train_bwd` does) in its per-channel
    coefficients. With `symbolic_zeros` a zero cotangent costs nothing.
  * each call is itself a `custom_vjp` whose rule is the autodiff of its
    XLA twin (`xla_forward`, `xla_backward`), so gradients of any order
    exist (a second order goes through XLA).
  * `jax.custom_batching.custom_vmap`: under `vmap` every mapped element
    has its own statistics; the rule is `jax.vmap` of the XLA twin.
  * `jax.experimental.custom_partitioning`: with the batch dimension
    sharded over devices, statistics must be over the global batch, so the
    shards run the XLA twin with `psum`s (forward: Chan et al.'s parallel
    combination of per-device counts, means and M2; backward: the two
    per-channel sums). Unsharded (one device, or x replicated), the custom
    call runs on max(1, threads / devices) OpenMP threads.
"""

import contextlib
import contextvars
import functools
import math

import jax
from jax.custom_derivatives import SymbolicZero
from jax.experimental.custom_partitioning import custom_partitioning
import jax.numpy as jnp
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P
import numpy as np

from ops.native import conv
from ops.native import loader

DTYPES = ('float32', 'bfloat16')  # the code OnednnBnSupports takes: index
_FORCE = contextvars.ContextVar('bn_impl', default='auto')
_F32 = jnp.float32


def unavailable_reason(dtype=jnp.float32) -> str:
  """Why the native BatchNorm cannot run here on `dtype` ('' if it can)."""
  if jax.default_backend() != 'cpu':
    return f'the default backend is {jax.default_backend()}, not cpu'
  why = loader.load_bn()[1]
  if why:
    return why
  name = jnp.dtype(dtype).name
  if name not in DTYPES:
    return f'dtype {name} (float32 and bfloat16 only)'
  if not _probe(name):
    return f'oneDNN has no {name} batch normalization for this CPU'
  return ''


@functools.cache
def _probe(name: str) -> bool:
  return bool(loader.load_bn()[0].OnednnBnSupports(DTYPES.index(name)))


def available(dtype=jnp.float32) -> bool:
  """True if the library loaded, the backend is cpu and oneDNN builds
  a BatchNorm of `dtype` (float32 or bfloat16) on this CPU."""
  return not unavailable_reason(dtype)


def check(x) -> None:
  """Raises ValueError unless impl='onednn' can run on `x` here."""
  why = unavailable_reason(x.dtype)
  if not why and (x.ndim < 2 or x.size == 0):
    why = f'x must be [N > 0, ..., C], got shape {x.shape}'
  if why:
    raise ValueError(f"impl='onednn' cannot run: {why}")


@contextlib.contextmanager
def force(impl: str):
  """Makes batch_norm_train(impl='auto') mean `impl` in a block.

  For comparing whole networks (nets/ always ask for 'auto'); the choice
  is made when a function is traced, as for `ops.native.auto_impl`.

  Args:
    impl: 'xla', 'onednn' (ValueError at trace time if unavailable) or
      'auto'.

  Yields:
    None.
  """
  if impl not in ('auto', 'xla', 'onednn'):
    raise ValueError(f'unknown impl {impl!r}')
  token = _FORCE.set(impl)
  try:
    yield
  finally:
    _FORCE.reset(token)


def chosen(x) -> bool:
  """Whether impl='auto' takes oneDNN for `x` (float32/bfloat16, rank >= 2)."""
  forced = _FORCE.get()
  if forced == 'xla':
    return False
  if forced == 'onednn':
    check(x)
    return True
  return x.ndim >= 2 and x.size > 0 and available(x.dtype)


# ---- The XLA twins: per device, with psums over the sharded batch axes. ----


def xla_forward(x, scale, bias, eps, axes=()):
  """(y in x's dtype, mean, var, k, s1), as the custom call computes them."""
  red = tuple(range(x.ndim - 1))
  xf = x.astype(_F32)
  # k is a value of x, not a mean: XLA:CPU recomputes a mean in each fusion
  # that uses it and may contract k - k0 into an FMA with the unrounded
  # product, so that k - k0 is no longer exactly 0 on device 0.
  k = xf[(0,) * (x.ndim - 1)]
  s1 = jnp.mean(xf - k, red)
  var = jnp.maximum(jnp.mean(jnp.square(xf - k), red) - jnp.square(s1), 0.0)
  if axes:
    k, s1, var = _combine(k, s1, var, math.prod(x.shape[:-1]), axes)
  inv = jax.lax.rsqrt(var + eps)
  y = ((xf - k) - s1) * (inv * scale) + bias
  return y.astype(x.dtype), k + s1, var, k, s1


def _combine(k, s1, var, n, axes):
  """Global (k, s1, var) from each device's n values (Chan et al. 1979).

  The shift becomes device 0's k (x's first row, as without sharding);
  each device's mean enters as `(k - k0) + s1`, a difference of nearby
  numbers, and M2 = n var adds n (mean_i - mean)^2.
  """
  first = jax.lax.axis_index(axes) == 0
  k0 = jax.lax.psum(jnp.where(first, k, 0.0), axes)
  count = jax.lax.psum(jnp.asarray(n, _F32), axes)
  local = (k - k0) + s1
  s1 = jax.lax.psum(n * local, axes) / count
  m2 = jax.lax.psum(n * (var + jnp.square(local - s1)), axes)
  return k0, s1, m2 / count


def xla_backward(x, dy, k, s1, var, scale, dmean, dvar, eps, axes=()):
  """(dx, dscale, dbias) for the cotangents of y, mean and var.

  Ioffe & Szegedy (2015, Sec. 3) for y, plus ``(dmean + 2 dvar (x - mean))
  / m`` for the statistics, as ``ops.normalization._bn_train_bwd``.
  """
  red = tuple(range(x.ndim - 1))
  g = dy.astype(_F32)
  inv = jax.lax.rsqrt(var + eps)
  centred = (x.astype(_F32) - k) - s1
  x_hat = centred * inv
  sum_g, sum_gx = jnp.sum(g, red), jnp.sum(g * x_hat, red)
  m = jnp.asarray(math.prod(x.shape[:-1]), _F32)
  if axes:
    sum_g, sum_gx, m = jax.lax.psum((sum_g, sum_gx, m), axes)
  dx = (scale * inv) * (g - sum_g / m - x_hat * (sum_gx / m))
  dx = dx + (dmean + 2.0 * dvar * centred) / m
  return dx.astype(x.dtype), sum_gx, sum_g


# ---- The custom calls, partitioned, batched and differentiable. ----


def _result(ref, shape, dtype) -> jax.ShapeDtypeStruct:
  # Built from x's type so that it keeps shard_map's varying axes.
  return jax.typeof(ref).update(
    shape=tuple(shape), dtype=jnp.dtype(dtype), weak_type=False
  )


def _native(kind, eps, concurrency, *args):
  loader.load_bn()  # registers the targets (once)
  x = args[0]
  vec = _result(x, x.shape[-1:], _F32)
  attrs = {'eps': np.float32(eps), 'concurrency': np.int64(concurrency)}
  # forward: x, scale, bias -> y, mean, var, k, s1; backward: x, dy, k, s1,
  # var, scale, dmean, dvar -> dx, dscale, dbias.
  shapes = (_result(x, x.shape, x.dtype),) + (vec,) * (
    4 if kind == 'forward' else 2
  )
  target = loader.BN_TARGETS[kind][0]
  return tuple(jax.ffi.ffi_call(target, shapes)(*args, **attrs))


def _twin(kind, eps, axes=()):
  base = xla_forward if kind == 'forward' else xla_backward
  return lambda *args: base(*args, eps, axes=axes)


def _rule(kind: str, ndim: int) -> str:
  """Shardy rule: n the batch, c the channels, the letters between spatial."""
  x = ' '.join(['n', *'defghijklm'[: ndim - 2], 'c'])
  if kind == 'forward':
    return f'{x}, c, c -> {x}, c, c, c, c'
  return f'{x}, {x}, c, c, c, c, c, c -> {x}, c, c'


@functools.cache
def _partitioned(kind: str, eps: float, ndim: int):
  """The call of `kind`; with a sharded batch, the XLA twin with psums."""
  op = custom_partitioning(functools.partial(_native, kind, eps, 1))
  n_batched = 1 if kind == 'forward' else 2  # x (and dy) lead the arguments

  def partition(mesh, arg_shapes, result_shape):
    batch = conv.batch_spec(arg_shapes[0].sharding)
    axes = conv.batch_axes(batch)
    batched = NamedSharding(mesh, P(batch))
    replicated = NamedSharding(mesh, P())
    if axes:
      lower = _twin(kind, eps, axes)
    else:  # every device runs the whole call at the same time
      lower = functools.partial(_native, kind, eps, int(mesh.devices.size))
    args = (batched,) * n_batched + (replicated,) * (
      len(arg_shapes) - n_batched
    )
    results = (batched,) + (replicated,) * (len(result_shape) - 1)
    return mesh, lower, results, args

  op.def_partition(partition=partition, sharding_rule=_rule(kind, ndim))
  return op


@functools.cache
def _call(kind: str, eps: float, ndim: int):
  """The partitioned call with a vmap rule and gradients of any order."""
  batched = jax.custom_batching.custom_vmap(_partitioned(kind, eps, ndim))

  @batched.def_vmap
  def rule(axis_size, in_batched, *args):
    del axis_size
    in_axes = tuple(0 if b else None for b in in_batched)
    out = jax.vmap(_twin(kind, eps), in_axes=in_axes)(*args)
    return out, tuple(True for _ in out)

  call = jax.custom_vjp(lambda *args: batched(*args))
  call.defvjp(
    lambda *args: (batched(*args), args),
    lambda args, ct: jax.vjp(_twin(kind, eps), *args)[1](ct),
  )
  return call


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _bn(eps, x, scale, bias):
  return _call('forward', eps, x.ndim)(x, scale, bias)[:3]


def _bn_fwd(eps, x, scale, bias):
  x, scale, bias = x.value, scale.value, bias.value  # symbolic_zeros
  y, mean, var, k, s1 = _call('forward', eps, x.ndim)(x, scale, bias)
  return (y, mean, var), (x, k, s1, var, scale)


def _bn_bwd(eps, res, cts):
  x, k, s1, var, scale = res
  # Zero cotangents arrive symbolic: those of the statistics become [C]
  # zeros (the call folds them into dx's coefficients, no extra pass); a
  # zero dy (only the statistics used) a zero array.
  dy, dmean, dvar = (
    jnp.zeros(t.shape, t.dtype) if isinstance(t, SymbolicZero) else t
    for t in cts
  )
  return _call('backward', eps, x.ndim)(
    x, dy.astype(x.dtype), k, s1, var, scale, dmean, dvar
  )


_bn.defvjp(_bn_fwd, _bn_bwd, symbolic_zeros=True)


def batch_norm_train(x, scale, bias, eps: float, out_dtype=None):
  """Training BatchNorm on oneDNN: ``(y, mean, biased var)``.

  Args:
    x: activations ``[N, ..., C]``, float32 or bfloat16, N > 0.
    scale: gamma ``[C]`` float32.
    bias: beta ``[C]`` float32.
    eps: added to the variance.
    out_dtype: dtype of y (default x's); oneDNN writes y in x's dtype, so
      another one costs a conversion.

  Returns:
    y shaped like x; mean and var ``[C]`` float32, all differentiable.

  Raises:
    ValueError: the native op cannot run here on x (and why).
  """
  check(x)
  scale = jnp.asarray(scale, _F32)
  bias = jnp.asarray(bias, _F32)
  y, mean, var = _bn(float(eps), x, scale, bias)
  if out_dtype is not None and jnp.dtype(out_dtype) != y.dtype:
    y = y.astype(out_dtype)
  return y, mean, var
