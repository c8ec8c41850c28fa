"""The oneDNN convolution as three differentiable, batchable, shardable ops.

A convolution layer has three passes, each an XLA FFI custom call:
`forward(x, w) -> y`, `backward_data(dy, w) -> dx` and
`backward_weights(x, dy) -> dw`. All three are bilinear, and each one's
vector-Jacobian products are the other two, so every op here is a
`jax.custom_vjp` whose backward rule calls its two siblings: gradients of
any order are exact. Forward-mode (`jax.jvp`, `jax.hessian`) is not
supported: custom_vjp has no JVP.

Layers, from the outside in:
  * `jax.custom_vjp`: the gradients above.
  * `jax.custom_batching.custom_vmap`: under `vmap` the mapped axis is folded
    into the batch (x batched, w shared: one call on V*N examples), or, when
    the kernels are mapped too, into the feature groups (V convolutions of G
    groups are one of V*G groups), so `vmap` is one call, never a loop.
  * `jax.experimental.custom_partitioning`: a custom call is opaque to the
    SPMD partitioner, which would gather the batch and make every device
    compute all of it. The rule keeps the batch dimension sharded (the
    kernel replicated), runs the call on each device's shard, and sums the
    weight gradient over the batch axes with a `psum`.
"""

import functools
from typing import NamedTuple

import jax
from jax.experimental.custom_partitioning import custom_partitioning
import jax.numpy as jnp
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P
import numpy as np

from ops.native import loader


class Geometry(NamedTuple):
  """Everything static about one convolution (hashable)."""

  strides: tuple[int, int]
  pads: tuple[tuple[int, int], tuple[int, int]]
  dilation: tuple[int, int]
  groups: int
  in_hw: tuple[int, int]  # input H, W (backward_data needs it)
  kernel_hw: tuple[int, int]  # KH, KW (backward_weights needs it)

  def out_hw(self) -> tuple[int, int]:
    return tuple(
      (n + lo + hi - d * (k - 1) - 1) // s + 1
      for n, (lo, hi), k, s, d in zip(
        self.in_hw,
        self.pads,
        self.kernel_hw,
        self.strides,
        self.dilation,
        strict=True,
      )
    )


def _result(ref: jax.Array, shape, dtype) -> jax.ShapeDtypeStruct:
  # Built from the input's type so that it keeps shard_map's varying axes.
  return jax.typeof(ref).update(
    shape=tuple(shape), dtype=jnp.dtype(dtype), weak_type=False
  )


# A pass of fewer multiply-adds than this runs on one OpenMP thread. Waking
# a team costs about a millisecond per call when XLA's own pool is busy
# between the calls: LeNet-5's forward+backward at batch 16 (2 and 4
# million multiply-adds per pass) took 7.6 ms with 2 threads per call
# against XLA's 2.6 ms, although each convolution alone was faster on
# oneDNN (AMD EPYC, 2 cores, idle; docs/performance.md).
SMALL_MACS = 1 << 23


def _macs(kind: str, g: Geometry, a, b) -> int:
  """Multiply-adds of one pass (the same for all three)."""
  oh, ow = g.out_hw()
  kh, kw = g.kernel_hw
  if kind == 'forward':  # a = x, b = w
    out, per_group = b.shape[3], b.shape[2]
  elif kind == 'backward_data':  # a = dy, b = w
    out, per_group = a.shape[3], b.shape[2]
  else:  # a = x, b = dy
    out, per_group = b.shape[3], a.shape[3] // g.groups
  return a.shape[0] * oh * ow * out * kh * kw * per_group


def _ffi(kind: str, g: Geometry, a, b, concurrency: int) -> jax.Array:
  """One custom call on per-device arrays; `kind` names the output."""
  (sh, sw), ((pt, pb), (pl, pr)), (dh, dw) = g.strides, g.pads, g.dilation
  if kind == 'forward':  # a = x, b = w
    shape = (a.shape[0], *g.out_hw(), b.shape[3])
  elif kind == 'backward_data':  # a = dy, b = w
    shape = (a.shape[0], *g.in_hw, b.shape[2] * g.groups)
  else:  # a = x, b = dy
    shape = (*g.kernel_hw, a.shape[3] // g.groups, b.shape[3])
  if _macs(kind, g, a, b) < SMALL_MACS:
    concurrency = max(concurrency, loader.default_threads())  # one thread
  i64 = np.int64
  return jax.ffi.ffi_call(loader.TARGETS[kind][0], _result(a, shape, a.dtype))(
    a,
    b,
    stride_h=i64(sh),
    stride_w=i64(sw),
    pad_top=i64(pt),
    pad_bottom=i64(pb),
    pad_left=i64(pl),
    pad_right=i64(pr),
    dilation_h=i64(dh),
    dilation_w=i64(dw),
    groups=i64(g.groups),
    concurrency=i64(concurrency),
  )


# Shardy rules: n is the batch; the other letters are each tensor's own.
_RULES = {
  'forward': 'n h w c, k l i o -> n p q o',
  'backward_data': 'n p q o, k l i o -> n h w c',
  'backward_weights': 'n h w c, n p q o -> k l i o',
}


def batch_spec(sharding) -> object:
  """The mesh axis (or axes) of an argument's leading, batch dimension."""
  spec = getattr(sharding, 'spec', None)
  return spec[0] if spec else None


def batch_axes(batch) -> tuple[str, ...]:
  """`batch_spec`'s value as a tuple of axis names, for `psum`."""
  if batch is None:
    return ()
  return tuple(batch) if isinstance(batch, tuple) else (batch,)


@functools.cache
def _partitioned(kind: str, g: Geometry):
  """The custom call of `kind`, batch-sharded under the SPMD partitioner."""

  def call(a, b):
    return _ffi(kind, g, a, b, concurrency=1)

  op = custom_partitioning(call)

  def partition(mesh, arg_shapes, result_shape):
    del result_shape
    batch = batch_spec(arg_shapes[0].sharding)
    batched = NamedSharding(mesh, P(batch))
    replicated = NamedSharding(mesh, P())
    devices = int(mesh.devices.size)  # all run this call at the same time

    def lower(a, b):
      out = _ffi(kind, g, a, b, concurrency=devices)
      if kind == 'backward_weights' and batch_axes(batch):
        out = jax.lax.psum(out, batch_axes(batch))
      return out

    if kind == 'backward_weights':
      return mesh, lower, replicated, (batched, batched)
    return mesh, lower, batched, (batched, replicated)

  reduction = ('n',) if kind == 'backward_weights' else ()
  op.def_partition(
    partition=partition,
    sharding_rule=_RULES[kind],
    reduction_factors=reduction,
  )
  return op


# vmap: fold the mapped axis V (at position 0) into the batch or the groups.
def _to_batch(a):  # [V, N, ...] -> [V * N, ...]
  return a.reshape(-1, *a.shape[2:])


def _to_channels(a):  # [V, N, H, W, C] -> [N, H, W, V * C]
  return jnp.moveaxis(a, 0, 3).reshape(*a.shape[1:4], -1)


def _from_channels(a, v):  # [N, H, W, V * C] -> [V, N, H, W, C]
  return jnp.moveaxis(a.reshape(*a.shape[:3], v, -1), 3, 0)


def _kernels_to_groups(w, groups):  # [V, KH, KW, I, O] -> [KH, KW, I, V * O]
  return jnp.moveaxis(w, 0, 3).reshape(*w.shape[1:4], -1)


def _kernels_from_groups(w, v):  # [KH, KW, I, V * O] -> [V, KH, KW, I, O]
  return jnp.moveaxis(w.reshape(*w.shape[:3], v, -1), 3, 0)


@functools.cache
def _batched(kind: str, g: Geometry):
  """The partitioned call of `kind` with a vmap rule that folds V away."""
  op = jax.custom_batching.custom_vmap(_partitioned(kind, g))

  @op.def_vmap
  def rule(v, in_batched, a, b):
    a_batched, b_batched = in_batched
    if kind != 'backward_weights' and not b_batched:
      # x (or dy) mapped, kernel shared: V * N examples in one call.
      out = _batched(kind, g)(_to_batch(a), b)
      return out.reshape(v, -1, *out.shape[1:]), True
    # Mapped kernels (or per-example weight gradients): V * G groups.
    if not a_batched:
      a = jnp.broadcast_to(a, (v, *a.shape))
    if not b_batched:
      b = jnp.broadcast_to(b, (v, *b.shape))
    gv = g._replace(groups=g.groups * v)
    if kind == 'backward_weights':
      out = _batched(kind, gv)(_to_channels(a), _to_channels(b))
      return _kernels_from_groups(out, v), True
    out = _batched(kind, gv)(_to_channels(a), _kernels_to_groups(b, g.groups))
    return _from_channels(out, v), True

  return op


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def forward(g: Geometry, x: jax.Array, w: jax.Array) -> jax.Array:
  """y [N, OH, OW, O] = conv(x [N, H, W, C], w [KH, KW, C / G, O])."""
  return _batched('forward', g)(x, w)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def backward_data(g: Geometry, dy: jax.Array, w: jax.Array) -> jax.Array:
  """dx [N, H, W, C]: the input gradient for output gradient dy."""
  return _batched('backward_data', g)(dy, w)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def backward_weights(g: Geometry, x: jax.Array, dy: jax.Array) -> jax.Array:
  """dw [KH, KW, C / G, O]: the kernel gradient for output gradient dy."""
  return _batched('backward_weights', g)(x, dy)


def _forward_fwd(g, x, w):
  return forward(g, x, w), (x, w)


def _forward_bwd(g, res, dy):
  x, w = res
  return backward_data(g, dy, w), backward_weights(g, x, dy)


def _backward_data_fwd(g, dy, w):
  return backward_data(g, dy, w), (dy, w)


def _backward_data_bwd(g, res, ct):  # ct is shaped like x
  dy, w = res
  return forward(g, ct, w), backward_weights(g, ct, dy)


def _backward_weights_fwd(g, x, dy):
  return backward_weights(g, x, dy), (x, dy)


def _backward_weights_bwd(g, res, ct):  # ct is shaped like w
  x, dy = res
  return backward_data(g, dy, ct), forward(g, x, ct)


forward.defvjp(_forward_fwd, _forward_bwd)
backward_data.defvjp(_backward_data_fwd, _backward_data_bwd)
backward_weights.defvjp(_backward_weights_fwd, _backward_weights_bwd)


def conv2d(
  x: jax.Array,
  w: jax.Array,
  *,
  strides: tuple[int, int],
  pads: tuple[tuple[int, int], tuple[int, int]],
  dilation: tuple[int, int],
  groups: int,
) -> jax.Array:
  """`lax.conv_general_dilated` (NHWC, HWIO) computed by oneDNN.

  Args:
    x: input [N, H, W, C], float32 or bfloat16.
    w: kernel [KH, KW, C / groups, O], the dtype of x.
    strides: (sh, sw).
    pads: ((top, bottom), (left, right)), explicit.
    dilation: kernel dilation (dh, dw).
    groups: feature groups.

  Returns:
    y [N, OH, OW, O] in the dtype of x.

  Raises:
    RuntimeError: the native library is not available (and why).
  """
  lib, why = loader.load()
  if lib is None:
    raise RuntimeError(f'the oneDNN convolution is unavailable: {why}')
  if tuple(w.shape[:2]) == (1, 1) and tuple(strides) != (1, 1):
    # A strided 1x1 convolution reads only every s-th pixel: take those
    # pixels first (exact; a slice's gradient is XLA's scatter into zeros)
    # and convolve with stride 1. oneDNN 3.2's own strided 1x1 path (a
    # ResNet's projection shortcut) corrupted the heap in training with an
    # odd batch on 2 OpenMP threads (tests/ops/test_native_conv.py).
    (pt, pb), (pl, pr) = pads
    x = jax.lax.pad(
      x,
      jnp.zeros((), x.dtype),
      ((0, 0, 0), (pt, pb, 0), (pl, pr, 0), (0, 0, 0)),
    )
    x = x[:, :: strides[0], :: strides[1], :]
    strides, pads = (1, 1), ((0, 0), (0, 0))
  g = Geometry(
    strides=tuple(strides),
    pads=tuple(tuple(p) for p in pads),
    dilation=tuple(dilation),
    groups=int(groups),
    in_hw=tuple(x.shape[1:3]),
    kernel_hw=tuple(w.shape[:2]),
  )
  return forward(g, x, w)
