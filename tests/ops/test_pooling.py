"""Tests for ops/pooling.py: hand values and a numpy loop reference."""

import chex
import jax
from jax import lax
import jax.numpy as jnp
import numpy as np
import pytest

from ops import convolution
from ops import pooling

X44 = np.array(
  [[1.0, 1, 2, 4], [5, 6, 7, 8], [3, 2, 1, 0], [1, 2, 3, 4]], np.float32
)


def _numpy_pool(x, window, strides, pads, reduce, count_include_pad=True):
  """Loop reference on [B, H, W, C]; padded cells are NaN (ignored)."""
  (wh, ww), (sh, sw) = window, strides
  xp = np.pad(x, ((0, 0), *pads, (0, 0)), constant_values=np.nan)
  ho = (xp.shape[1] - wh) // sh + 1
  wo = (xp.shape[2] - ww) // sw + 1
  out = np.zeros((x.shape[0], ho, wo, x.shape[3]))
  for i in range(ho):
    for j in range(wo):
      win = xp[:, i * sh : i * sh + wh, j * sw : j * sw + ww]
      if reduce == 'max':
        out[:, i, j] = np.nanmax(win, axis=(1, 2))
      elif count_include_pad:
        out[:, i, j] = np.nansum(win, axis=(1, 2)) / (wh * ww)
      else:
        out[:, i, j] = np.nanmean(win, axis=(1, 2))
  return out


def test_hand_values_4x4():
  x = jnp.asarray(X44)[None, :, :, None]
  np.testing.assert_array_equal(
    pooling.max_pool(x, 2)[0, :, :, 0], [[6, 8], [3, 4]]
  )
  np.testing.assert_allclose(
    pooling.avg_pool(x, 2)[0, :, :, 0], [[3.25, 5.25], [2, 2]]
  )
  np.testing.assert_allclose(pooling.global_avg_pool(x), [[50 / 16]])
  np.testing.assert_array_equal(
    pooling.max_pool(x, 3, strides=1)[0, :, :, 0], [[7, 8], [7, 8]]
  )


@pytest.mark.parametrize(
  'window,strides,padding',
  [(2, None, 'VALID'), (3, 2, 'SAME'), ((3, 2), (1, 2), 1),
   (3, 1, ((0, 2), (1, 0)))],
)  # fmt: skip
@pytest.mark.slow
def test_matches_numpy_loops(window, strides, padding):
  x = np.random.default_rng(0).standard_normal((2, 7, 6, 3), np.float32)
  win = convolution.as_pair(window, 'window')
  strides = win if strides is None else convolution.as_pair(strides, 'strides')
  pads = convolution.resolve_padding(padding, x.shape[1:3], win, strides)
  kw = dict(strides=strides, padding=padding)
  np.testing.assert_allclose(
    pooling.max_pool(jnp.asarray(x), window, **kw),
    _numpy_pool(x, win, strides, pads, 'max'),
    rtol=1e-6,
  )
  for include in (True, False):
    np.testing.assert_allclose(
      pooling.avg_pool(jnp.asarray(x), window, count_include_pad=include, **kw),
      _numpy_pool(x, win, strides, pads, 'avg', include),
      rtol=1e-5,
      atol=1e-6,
    )


def test_max_pool_padding_never_wins():
  x = -jnp.ones((1, 3, 3, 1))
  y = pooling.max_pool(x, 3, strides=1, padding='SAME')
  np.testing.assert_array_equal(y, x)


def test_bad_arguments_raise():
  x = jnp.zeros((1, 4, 4, 1))
  with pytest.raises(ValueError, match='CIRCULAR'):
    pooling.max_pool(x, 2, padding='CIRCULAR')
  with pytest.raises(ValueError, match='NHWC'):
    pooling.avg_pool(x[0], 2)
  with pytest.raises(ValueError, match='larger'):
    pooling.max_pool(x, 5)


def test_pooling_under_jit_matches_eager():
  x = np.random.default_rng(1).standard_normal((2, 8, 8, 4), np.float32)
  calls = {
    'max': lambda v: pooling.max_pool(v, 3, strides=2, padding='SAME'),
    'avg': lambda v: pooling.avg_pool(
      v, 3, strides=2, padding=1, count_include_pad=False
    ),
    'global_avg': pooling.global_avg_pool,
    'global_max': pooling.global_max_pool,
  }
  jitted = jax.jit(lambda v: {k: f(v) for k, f in calls.items()})(x)
  for name, f in calls.items():
    chex.assert_trees_all_close(
      jitted[name], f(x), atol=1e-6, custom_message=name
    )
  chex.assert_shape(jitted['max'], (2, 4, 4, 4))


def test_global_pools_hand_values():
  x = jnp.asarray(X44)[None, :, :, None]
  x2 = jnp.concatenate([x, -x], axis=-1)  # [1, 4, 4, 2]
  np.testing.assert_allclose(pooling.global_avg_pool(x2), [[50 / 16, -50 / 16]])
  np.testing.assert_array_equal(pooling.global_max_pool(x2), [[8.0, 0.0]])
  with pytest.raises(ValueError, match='NHWC'):
    pooling.global_max_pool(x2[0])


def test_max_pool_gradient_under_jit_routes_to_the_max():
  # Each 2x2 window passes its upstream gradient to its largest entry only.
  x = jnp.asarray(X44)[None, :, :, None]
  g = jnp.array([[1.0, 2.0], [3.0, 4.0]])[None, :, :, None]
  grad = jax.jit(jax.grad(lambda v: jnp.sum(g * pooling.max_pool(v, 2))))(x)
  want = np.zeros((4, 4))
  want[1, 1], want[1, 3], want[2, 0], want[3, 3] = 1.0, 2.0, 3.0, 4.0
  np.testing.assert_array_equal(grad[0, :, :, 0], want)
  # Average pooling spreads it evenly: g / 4 on every cell of the window.
  grad_avg = jax.grad(lambda v: jnp.sum(g * pooling.avg_pool(v, 2)))(x)
  np.testing.assert_allclose(
    grad_avg[0, :, :, 0],
    np.kron(np.asarray(g[0, :, :, 0]), np.ones((2, 2))) / 4,
  )


def _reduce_window_max(x, window):
  """The general path's formula, as a reference for the tiled one."""
  dims = (1, window, window, 1)
  return lax.reduce_window(x, -float('inf'), lax.max, dims, dims, 'VALID')


@pytest.mark.parametrize(
  'shape, window, dtype',
  [
    ((2, 8, 8, 3), 2, jnp.float32),
    ((2, 5, 7, 4), 2, jnp.float32),  # VALID drops the last row and column
    ((3, 9, 6, 2), 3, jnp.float32),
    ((2, 8, 8, 3), 2, jnp.bfloat16),
  ],
)
def test_tiled_max_pool_matches_reduce_window_and_its_gradient(
  shape, window, dtype
):
  x = jax.random.normal(jax.random.key(0), shape).astype(dtype)
  g = jax.random.normal(
    jax.random.key(1),
    (shape[0], shape[1] // window, shape[2] // window, shape[3]),
  ).astype(dtype)

  def loss(f):
    return jax.jit(jax.grad(lambda v: jnp.sum(g * f(v))))

  got = loss(lambda v: pooling.max_pool(v, window))(x)
  want = loss(lambda v: _reduce_window_max(v, window))(x)
  np.testing.assert_array_equal(
    pooling.max_pool(x, window), _reduce_window_max(x, window)
  )
  np.testing.assert_array_equal(got, want)
  assert got.dtype == dtype


def test_tiled_max_pool_gives_a_tie_to_the_first_entry_only():
  # Equal entries (ReLU's zeros): one winner per window, in row-major
  # order, as select-and-scatter and PyTorch's max_pool2d; never split.
  x = jnp.zeros((1, 4, 4, 1)).at[0, 3, 2, 0].set(-1.0).at[0, 3, 3, 0].set(-1.0)
  x = x.at[0, 2, 2, 0].set(-1.0)  # window (1, 1): the only 0 is (2, 3)
  g = jnp.array([[1.0, 2.0], [3.0, 4.0]])[None, :, :, None]
  grad = jax.grad(lambda v: jnp.sum(g * pooling.max_pool(v, 2)))(x)
  want = np.zeros((4, 4))
  want[0, 0], want[0, 2], want[2, 0], want[2, 3] = 1.0, 2.0, 3.0, 4.0
  np.testing.assert_array_equal(grad[0, :, :, 0], want)
  reference = jax.grad(lambda v: jnp.sum(g * _reduce_window_max(v, 2)))(x)
  np.testing.assert_array_equal(reference[0, :, :, 0], want)
