r"""Benchmark: forward+backward time of `conv2d` with its two gradient impls.

On CPU, XLA's kernel for the weight gradient of a convolution dominates CNN
training time; `ops.convolution.conv2d(impl='im2col_grad')` computes that
gradient as one im2col (patches) matrix product instead. This script times
`jax.grad` of a scalar loss through both impls, forward and backward in one
jitted call, and checks that the two gradients agree.

Usage:
  python -m experiments.bench_conv --repeats=3
  python -m experiments.bench_conv --batch=32 --size=16 --channels=32
"""

import time

from absl import app
from absl import flags
import jax
import jax.numpy as jnp
import numpy as np

from ops import convolution

_BATCH = flags.DEFINE_integer('batch', 128, 'Batch size.')
_SIZE = flags.DEFINE_integer('size', 32, 'Height and width of the input.')
_CHANNELS = flags.DEFINE_integer('channels', 64, 'Input = output channels.')
_KERNEL = flags.DEFINE_integer('kernel', 3, 'Kernel height and width.')
_STRIDE = flags.DEFINE_integer('stride', 1, 'Convolution stride.')
_REPEATS = flags.DEFINE_integer('repeats', 5, 'Timed calls per impl.')
_DTYPE = flags.DEFINE_enum('dtype', 'float32', ['float32', 'bfloat16'], '')


def make_step(impl: str, strides: int):
  """Returns jit(grad) of sum(conv2d(x, w)^2) w.r.t. (x, w)."""

  def loss(x, w):
    y = convolution.conv2d(x, w, strides=strides, padding='SAME', impl=impl)
    return jnp.sum(jnp.square(y.astype(jnp.float32)))

  return jax.jit(jax.grad(loss, argnums=(0, 1)))


def time_step(step, x, w, repeats: int) -> tuple[float, tuple[jax.Array, ...]]:
  """Compiles, warms up once, then returns the median seconds per call."""
  grads = jax.block_until_ready(step(x, w))
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    jax.block_until_ready(step(x, w))
    times.append(time.perf_counter() - start)
  return float(np.median(times)), grads


def main(argv):
  del argv
  dtype = jnp.dtype(_DTYPE.value)
  x_key, w_key = jax.random.split(jax.random.key(0))
  c, k = _CHANNELS.value, _KERNEL.value
  x = jax.random.normal(x_key, (_BATCH.value, _SIZE.value, _SIZE.value, c))
  w = jax.random.normal(w_key, (k, k, c, c)) / np.sqrt(k * k * c)
  x, w = x.astype(dtype), w.astype(dtype)
  print(
    f'backend={jax.default_backend()} devices={jax.device_count()} '
    f'x={x.shape} w={w.shape} strides={_STRIDE.value} dtype={dtype.name}'
  )
  results = {}
  for impl in ('xla', 'im2col_grad'):
    seconds, grads = time_step(
      make_step(impl, _STRIDE.value), x, w, _REPEATS.value
    )
    results[impl] = grads
    print(f'{impl:>12}: {seconds * 1e3:9.1f} ms per forward+backward')
  for name, a, b in zip(
    ('dx', 'dw'), results['xla'], results['im2col_grad'], strict=True
  ):
    a, b = np.asarray(a, np.float32), np.asarray(b, np.float32)
    rel = np.abs(a - b).max() / (np.abs(a).max() + 1e-12)
    print(f'max relative difference {name}: {rel:.2e}')


if __name__ == '__main__':
  app.run(main)
