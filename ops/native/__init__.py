"""Native CPU convolution and BatchNorm: oneDNN's kernels as XLA FFI calls.

XLA:CPU's own convolution kernels, the backward ones above all, made a
Flax ResNet-18 train step about 2x slower than PyTorch on the same CPU.
This package runs `ops.convolution.conv2d` on oneDNN (the library behind
PyTorch's CPU convolutions) instead, when it can:

  * `onednn_conv.cc`: the forward, backward-data and backward-weights
    passes as XLA FFI handlers (NHWC, HWIO; any strides, padding, dilation
    and feature groups; float32 and bfloat16), built by `pip install`
    (setup.py) against the `onednn-cpu-gomp` 2023.2.0 wheels (oneDNN 3.2).
  * `loader.py`: finds and registers the libraries; `conv.py`: the
    differentiable, vmap-able, batch-sharded ops.
  * `onednn_bn.cc` and `bn.py`: training-mode BatchNorm, a second library
    built the same way (`ops.normalization.batch_norm_train(impl='auto')`
    uses it where it loaded): shifted-data statistics in one read of x,
    oneDNN's normalisation, and a hand-written two-pass backward, on
    float32 or bfloat16 activations with float32 statistics (no float32
    copy of a bfloat16 activation). Why not oneDNN's own statistics and
    backward: onednn_bn.cc's header.

`conv2d(impl='auto')` uses it on the CPU backend when the library loaded
(`available()`) and can build a convolution of the dtype on this CPU
(`supports`: oneDNN 3.2's bfloat16 kernels need AVX-512, so an AVX2-only
CPU keeps XLA for bfloat16), else XLA; `backend_status()` is the one line
that says which and why.

Which backend, per convolution (`chosen`, the mode from `auto_impl`, else
$CONVNETS_CONV_IMPL, else 'auto'):
  * 'auto': the faster of the two for that shape and dtype, timed once per
    machine and cached (`choice.py`): oneDNN is several times faster than
    XLA on large 2-D layers' gradients, but slower on tiny 1-D ones (the
    depth study's), above all on a busy machine. Several processes
    (`jax.process_count() > 1`) take 'prefer_onednn' instead.
  * 'prefer_onednn': oneDNN wherever it can build the dtype (the rule
    before the measured choice; the test suite pins it: no timing, and
    the same backend on every run); 'xla', 'onednn': forced.

Threads. oneDNN runs each call on an OpenMP team; XLA runs its own ops on
its own pool, and on a multi-device CPU run (e.g. 8 fake devices) the
devices execute concurrently, each from its own thread, each of which
would start a full OpenMP team. The policy: a call that the partitioner
splits over D devices uses max(1, T // D) threads, T being OMP_NUM_THREADS
or the usable cores, so the teams together never ask for more threads than
cores (8 devices x 64 threads would be 512 threads on 64 cores); a
single-device call uses all T. The division is one line in onednn_conv.cc
(`Run`). Idle OpenMP threads sleep (OMP_WAIT_POLICY=PASSIVE, set by the
loader unless the user set it) rather than spin against XLA's pool.

The measurements behind these choices (whole steps, per layer, per
thread policy) are in docs/performance.md.
"""

import contextlib
import contextvars
import os

import jax
import jax.numpy as jnp

from ops.native import choice
from ops.native import loader
from ops.native.conv import conv2d

__all__ = [
  'MODES',
  'auto_impl',
  'available',
  'backend_status',
  'conv2d',
  'mode',
  'unavailable_reason',
]

DTYPES = (jnp.float32, jnp.bfloat16)
MODES = ('auto', 'xla', 'onednn', 'prefer_onednn')
ENV = 'CONVNETS_CONV_IMPL'
_MODE = contextvars.ContextVar('conv_impl', default=None)


def unavailable_reason() -> str:
  """Why the native convolution cannot be used here ('' if it can)."""
  if jax.default_backend() != 'cpu':
    return f'the default backend is {jax.default_backend()}, not cpu'
  return loader.load()[1]


def available() -> bool:
  """True if `conv2d` here can run on oneDNN."""
  return not unavailable_reason()


def check_mode(value: str, what: str = 'conv_impl') -> str:
  """Returns `value` if it is one of `MODES`, else raises ValueError."""
  if value not in MODES:
    raise ValueError(
      f'{what} must be one of {", ".join(repr(m) for m in MODES)}, got '
      f'{value!r}'
    )
  return value


def mode() -> str:
  """What conv2d(impl='auto') means here and now (one of `MODES`).

  The innermost `auto_impl` block's mode, else $CONVNETS_CONV_IMPL (read
  at each call), else 'auto'.
  """
  inner = _MODE.get()
  if inner is not None:
    return inner
  return check_mode(os.environ.get(ENV) or 'auto', f'${ENV}')


def backend_status() -> str:
  """One line: which backend `conv2d(impl='auto')` uses, and why."""
  why = unavailable_reason()
  if why:
    return f'convolution backend: XLA ({why})'
  current = mode()
  if current == 'xla':
    return 'convolution backend: XLA (forced: conv_impl xla)'
  bf16 = (
    ''
    if supports(jnp.bfloat16)
    else '; bfloat16 on XLA: this CPU has no oneDNN bfloat16 convolution'
  )
  threads = (
    f'{loader.default_threads()} OpenMP threads per device, shared between '
    f'devices{bf16}'
  )
  version = loader.onednn_version()
  if current == 'auto' and jax.process_count() == 1:
    where = choice.cache().path or 'memory only'
    return (
      f'convolution backend: oneDNN {version} or XLA, whichever is faster, '
      f'measured once per convolution shape and dtype on this machine '
      f'(cache: {where}; {threads})'
    )
  rule = {
    'onednn': 'forced: conv_impl onednn',
    'prefer_onednn': 'wherever it builds: conv_impl prefer_onednn',
    'auto': 'wherever it builds: several processes measure nothing',
  }[current]
  return (
    f'convolution backend: oneDNN {version} (native XLA FFI call, {rule}; '
    f'{threads})'
  )


def supports(dtype) -> bool:
  """Whether oneDNN takes this dtype here (float32; bfloat16 on AVX-512)."""
  dtype = jnp.dtype(dtype)
  if dtype not in tuple(jnp.dtype(d) for d in DTYPES):
    return False
  return loader.builds(dtype.name)


def check(dtype, what: str = "impl='onednn'") -> None:
  """Raises ValueError unless impl='onednn' can run here on `dtype`."""
  why = unavailable_reason()
  name = jnp.dtype(dtype).name
  if not why and jnp.dtype(dtype) not in tuple(jnp.dtype(d) for d in DTYPES):
    why = f'dtype {name} (float32 and bfloat16 only)'
  elif not why and not supports(dtype):
    why = f'oneDNN has no {name} convolution for this CPU (AVX-512 needed)'
  if why:
    raise ValueError(f'{what} cannot run: {why}')


@contextlib.contextmanager
def auto_impl(impl: str):
  """Makes conv2d(impl='auto') mean `impl` in a block (one of `MODES`).

  Overrides $CONVNETS_CONV_IMPL. The choice is made when a function is
  traced, so it holds for jit functions first called (or lowered) inside
  the block; a function traced before keeps its compiled choice.

  Args:
    impl: 'auto' (measured per shape), 'xla', 'onednn' (raises ValueError
      at trace time where oneDNN cannot run) or 'prefer_onednn'.

  Yields:
    None.
  """
  token = _MODE.set(check_mode(impl, 'impl'))
  try:
    yield
  finally:
    _MODE.reset(token)


def chosen(
  x_shape,
  w_shape,
  dtype,
  strides,
  groups,
  *,
  pads=((0, 0), (0, 0)),
  dilation=(1, 1),
) -> bool:
  """Whether impl='auto' takes oneDNN for this convolution.

  Under `mode()` 'auto' it times both backends on this convolution the
  first time this machine sees it (`choice.choose`), except where oneDNN
  cannot build the dtype (XLA, unmeasured), and except in a run of several
  processes (`jax.process_count() > 1`), which takes 'prefer_onednn':
  every process must trace the same program, and measurements made
  independently on each could differ; so does a shape with symbolic
  dimensions (`jax.export`), which cannot be timed.

  Args:
    x_shape: input shape [N, H, W, C] (global, as traced).
    w_shape: kernel shape [KH, KW, C / groups, O].
    dtype: the convolution's dtype.
    strides: (sh, sw).
    groups: feature groups.
    pads: ((top, bottom), (left, right)), explicit.
    dilation: (dh, dw).
  """
  current = mode()
  if current == 'xla':
    return False
  if current == 'onednn':
    check(dtype)
    return True
  if not (available() and supports(dtype)):
    return False
  static = all(isinstance(d, int) for d in (*x_shape, *w_shape))
  if current == 'prefer_onednn' or jax.process_count() > 1 or not static:
    return True
  conv = choice.make(x_shape, w_shape, dtype, strides, pads, dilation, groups)
  return choice.choose(conv) == 'onednn'
