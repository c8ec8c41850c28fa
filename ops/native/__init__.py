"""Native CPU convolution: oneDNN's kernels as XLA FFI custom calls.

XLA:CPU's own convolution kernels, the backward ones above all, made a
Flax ResNet-18 train step about 2x slower than PyTorch on the same CPU.
This package runs `ops.convolution.conv2d` on oneDNN (the library behind
PyTorch's CPU convolutions) instead, when it can:

  * `onednn_conv.cc`: the forward, backward-data and backward-weights
    passes as XLA FFI handlers (NHWC, HWIO; any strides, padding, dilation
    and feature groups; float32 and bfloat16), built by `pip install`
    (setup.py) against the `onednn-cpu-gomp` 2023.2.0 wheels (oneDNN 3.2).
  * `loader.py`: finds and registers the library; `conv.py`: the
    differentiable, vmap-able, batch-sharded ops.

`conv2d(impl='auto')` uses it on the CPU backend when the library loaded
(`available()`) and can build a convolution of the dtype on this CPU
(`supports`: oneDNN 3.2's bfloat16 kernels need AVX-512, so an AVX2-only
CPU keeps XLA for bfloat16), else XLA; `backend_status()` is the one line
that says which and why.

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

`auto` takes oneDNN for every float32 and bfloat16 convolution it can
build. The measurements behind these choices (whole steps, per layer, per
thread policy) are in docs/performance.md.
"""

import contextlib
import contextvars

import jax
import jax.numpy as jnp

from ops.native import loader
from ops.native.conv import conv2d

__all__ = [
  'auto_impl',
  'available',
  'backend_status',
  'conv2d',
  'unavailable_reason',
]

DTYPES = (jnp.float32, jnp.bfloat16)
_AUTO = contextvars.ContextVar('auto_impl', default='auto')


def unavailable_reason() -> str:
  """Why the native convolution cannot be used here ('' if it can)."""
  if jax.default_backend() != 'cpu':
    return f'the default backend is {jax.default_backend()}, not cpu'
  return loader.load()[1]


def available() -> bool:
  """True if `conv2d` here can run on oneDNN."""
  return not unavailable_reason()


def backend_status() -> str:
  """One line: which backend `conv2d(impl='auto')` uses, and why."""
  why = unavailable_reason()
  if why:
    return f'convolution backend: XLA ({why})'
  bf16 = (
    ''
    if supports(jnp.bfloat16)
    else ('; bfloat16 on XLA: this CPU has no oneDNN bfloat16 convolution')
  )
  return (
    f'convolution backend: oneDNN {loader.onednn_version()} '
    f'(native XLA FFI call, {loader.default_threads()} OpenMP threads per '
    f'device, shared between devices{bf16})'
  )


def supports(dtype) -> bool:
  """Whether oneDNN takes this dtype here (float32; bfloat16 on AVX-512)."""
  dtype = jnp.dtype(dtype)
  if dtype not in tuple(jnp.dtype(d) for d in DTYPES):
    return False
  return loader.builds(dtype.name)


def check(dtype) -> None:
  """Raises ValueError unless impl='onednn' can run here on `dtype`."""
  why = unavailable_reason()
  name = jnp.dtype(dtype).name
  if not why and jnp.dtype(dtype) not in tuple(jnp.dtype(d) for d in DTYPES):
    why = f'dtype {name} (float32 and bfloat16 only)'
  elif not why and not supports(dtype):
    why = f'oneDNN has no {name} convolution for this CPU (AVX-512 needed)'
  if why:
    raise ValueError(f"impl='onednn' cannot run: {why}")


@contextlib.contextmanager
def auto_impl(impl: str):
  """Makes conv2d(impl='auto') mean `impl` ('xla' or 'onednn') in a block.

  For comparing whole networks (nets/ always asks for 'auto'): the choice is
  made when a function is traced, so jit functions inside the block (a
  function jitted before it keeps its compiled choice).

  Args:
    impl: 'xla', 'onednn' (raises ValueError at trace time if unavailable)
      or 'auto'.

  Yields:
    None.
  """
  if impl not in ('auto', 'xla', 'onednn'):
    raise ValueError(f'unknown impl {impl!r}')
  token = _AUTO.set(impl)
  try:
    yield
  finally:
    _AUTO.reset(token)


def chosen(x_shape, w_shape, dtype, strides, groups) -> bool:
  """Whether impl='auto' takes oneDNN for this convolution."""
  del groups
  forced = _AUTO.get()
  if forced == 'xla':
    return False
  if forced == 'onednn':
    check(dtype)
    return True
  # Every float32 and bfloat16 convolution: per layer, oneDNN's bfloat16
  # backward-weights looked slower than XLA's on small maps (4x4 outputs,
  # strided 1x1) in a loaded sitting, but keeping XLA for those made the
  # whole ResNet-18 bfloat16 step slower on the idle machine (2430 ms
  # against 2074 ms all on oneDNN), and the whole step is what counts.
  del x_shape, w_shape, strides
  return available() and supports(dtype)
