"""oneDNN or XLA for one convolution shape: timed once per machine.

oneDNN is not faster everywhere. On ResNet-18's 2-D layers it beats
XLA:CPU (above all in the backward passes), but on the depth study's
small 1-D layers (MNIST-1D signals, length <= 40, <= 32 channels) a
ResNet-56 step took 0.19 CPU-s with oneDNN against 0.063 with XLA: a
call's fixed cost (creating the primitive, reordering, waking an OpenMP
team) outweighs the work of a tiny convolution. No static rule separates
the two cases on every CPU, so `conv2d(impl='auto')` times both backends
on the shape at hand the first time it is traced, and keeps the faster.

What is timed is what a training step runs for that layer: the forward
pass and both gradients (vjp with respect to the input and the kernel),
jitted, on random data of the shape and dtype: one warm-up call each,
then calls alternating between the backends (so that a change in the
machine's load hits both alike) until each has had `BUDGET_S` of calls
or `MAX_REPS` of them; the medians decide. XLA must beat oneDNN by
`MARGIN` to be taken: oneDNN is the backend the whole-step measurements
in docs/performance.md favour, and a near tie is noise.

The result, {'impl', 'xla_ms', 'onednn_ms'} (so a user can see why), is
kept in an `ops.choice_cache.ChoiceCache` of kind 'conv', one JSON file
per machine (CPU model, flags, cores) and per jax version, oneDNN
version and OpenMP thread count, next to the compile cache; a second run
reads it and measures nothing. One log line (logging INFO; the launcher
shows it with --verbosity=0) per shape measured.

A measurement holds for the machine's load at the time. oneDNN runs each
call on an OpenMP team that waits for all its threads, so other processes
on the cores slow it far more than XLA: on the 2-core test machine, busy
with other jobs, a tiny 1-D layer took 3.2 ms on oneDNN in some seconds
and 0.3 ms in others (XLA 0.5 ms throughout). Delete the cache file (its
path is in `ops.native.backend_status()`) to measure again.

The timing runs while the user's function is traced: concrete jitted
computations on concrete arrays, under `jax.ensure_compile_time_eval`,
return plain floats, so no tracer enters or leaves them. The shape is the
global one; on a multi-device mesh each device runs a share of the batch
on a share of the threads, about the same work per thread as the whole
convolution on one device with all of them.
"""

import contextlib
import functools
import logging
import statistics
import threading
import time
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ops import choice_cache
from ops.native import loader

KIND = 'conv'
BUDGET_S = 0.5  # Of timed calls per backend and shape.
MAX_REPS = 100
# XLA is taken only if oneDNN takes MARGIN times as long or longer.
MARGIN = 1.1

_log = logging.getLogger(__name__)
_lock = threading.Lock()  # One measurement at a time: they share the cores.
_caches: dict[str, choice_cache.ChoiceCache] = {}


class Conv(NamedTuple):
  """One convolution as the choice sees it (the cache key's fields)."""

  dtype: str
  x_shape: tuple[int, ...]  # [N, H, W, C]
  w_shape: tuple[int, ...]  # [KH, KW, C / groups, O]
  strides: tuple[int, int]
  pads: tuple[tuple[int, int], tuple[int, int]]
  dilation: tuple[int, int]
  groups: int

  def key(self) -> str:
    """A readable key, e.g. 'float32 x128x32x32x64 w3x3x64x64 s1x1 ...'."""

    def dims(v):
      return 'x'.join(str(d) for d in v)

    return (
      f'{self.dtype} x{dims(self.x_shape)} w{dims(self.w_shape)} '
      f's{dims(self.strides)} p{dims(sum(self.pads, ()))} '
      f'd{dims(self.dilation)} g{self.groups}'
    )


def make(x_shape, w_shape, dtype, strides, pads, dilation, groups) -> Conv:
  """A `Conv` from conv2d's resolved arguments (plain ints)."""
  return Conv(
    dtype=jnp.dtype(dtype).name,
    x_shape=tuple(int(d) for d in x_shape),
    w_shape=tuple(int(d) for d in w_shape),
    strides=tuple(int(s) for s in strides),
    pads=tuple((int(lo), int(hi)) for lo, hi in pads),
    dilation=tuple(int(d) for d in dilation),
    groups=int(groups),
  )


def context() -> dict[str, str]:
  """What a measurement holds for, beyond the machine (the library loads)."""
  return {
    'jax': jax.__version__,
    'onednn': loader.onednn_version(),
    'omp_threads': str(loader.default_threads()),
  }


def cache() -> choice_cache.ChoiceCache:
  """This process's cache of conv choices, one per cache directory.

  The directory is `ops.choice_cache.default_directory()`, read now (so
  $CONVNETS_CHOICE_CACHE_DIR set after import counts).
  """
  directory = choice_cache.default_directory()
  with _lock:
    if directory not in _caches:
      _caches[directory] = choice_cache.ChoiceCache(KIND, context(), directory)
    return _caches[directory]


def forget() -> None:
  """Drops the caches read so far: the next choice reads its file again."""
  with _lock:
    _caches.clear()


def _conv(conv: Conv, x: jax.Array, w: jax.Array, *, impl: str) -> jax.Array:
  from ops import convolution  # noqa: PLC0415 - it imports ops.native

  return convolution.conv2d(
    x,
    w,
    strides=conv.strides,
    padding=conv.pads,
    dilation=conv.dilation,
    groups=conv.groups,
    impl=impl,
  )


def _train_step(conv: Conv, impl: str):
  """Jitted forward and both gradients of `conv` on `impl`."""

  def step(x, w, dy):
    y, pull = jax.vjp(functools.partial(_conv, conv, impl=impl), x, w)
    return (y, *pull(dy))

  return jax.jit(step)


def _random(shape, dtype, seed: int) -> jax.Array:
  rng = np.random.default_rng(seed)
  return jnp.asarray(rng.standard_normal(shape, np.float32), dtype)


def _call_ms(fn, args) -> float:
  start = time.perf_counter()
  jax.block_until_ready(fn(*args))
  return 1e3 * (time.perf_counter() - start)


def measure(conv: Conv) -> dict[str, float]:
  """Median ms of a forward and both gradients of `conv` on each backend.

  Module level so that tests can replace it (no test times anything).

  Returns:
    {'xla_ms': ..., 'onednn_ms': ...}.
  """
  with jax.ensure_compile_time_eval():  # run now, even inside a trace
    x = _random(conv.x_shape, conv.dtype, 0)
    w = _random(conv.w_shape, conv.dtype, 1)
    y = jax.eval_shape(functools.partial(_conv, conv, impl='xla'), x, w)
    dy = _random(y.shape, conv.dtype, 2)
    fns = {}
    for impl in ('xla', 'onednn'):
      fns[impl] = _train_step(conv, impl).lower(x, w, dy).compile()
      _call_ms(fns[impl], (x, w, dy))  # warm-up
    times = {impl: [] for impl in fns}
    while any(
      len(t) < MAX_REPS and sum(t) < 1e3 * BUDGET_S for t in times.values()
    ):
      for impl, fn in fns.items():  # alternating: load changes hit both
        if len(times[impl]) < MAX_REPS and sum(times[impl]) < 1e3 * BUDGET_S:
          times[impl].append(_call_ms(fn, (x, w, dy)))
  return {f'{impl}_ms': statistics.median(t) for impl, t in times.items()}


def decide(times: dict[str, float]) -> str:
  """'xla' if it is faster by `MARGIN`, else 'onednn'."""
  return 'xla' if times['xla_ms'] * MARGIN <= times['onednn_ms'] else 'onednn'


def choose(conv: Conv) -> str:
  """'onednn' or 'xla' for `conv`: from the cache, else measured now."""
  store = cache()
  key = conv.key()
  found = _valid(store.get(key))
  if found:
    return found['impl']
  with _lock:  # another thread may have measured it meanwhile
    found = _valid(store.get(key))
    if found:
      return found['impl']
    times = {k: float(v) for k, v in measure(conv).items()}
  entry: dict[str, Any] = {'impl': decide(times), **times}
  store.put(key, entry)
  _log.info(
    'conv %s: %s (XLA %.3g ms, oneDNN %.3g ms for forward and both '
    'gradients; cached in %s)',
    key,
    entry['impl'],
    times['xla_ms'],
    times['onednn_ms'],
    store.path or 'memory only',
  )
  return entry['impl']


def _valid(entry: Any) -> dict[str, Any] | None:
  """The cached entry if it names a backend, else None (measure again)."""
  with contextlib.suppress(AttributeError, TypeError):
    if entry.get('impl') in ('xla', 'onednn'):
      return entry
  return None
