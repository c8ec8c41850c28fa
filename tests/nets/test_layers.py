"""Tests for nets/layers.py against independent formulations.

The normalisation layers are tested in test_norms.py.
"""

import chex
import flax.linen as nn
import jax
from jax import lax
import jax.numpy as jnp
import numpy as np
import pytest

from nets import layers
from tests.nets import nets_testing

# Cheap 'rbg' keys and numpy inputs: threefry compiles for seconds per shape.
KEY = nets_testing.key(0)


def _rand(shape, seed=1):
  return nets_testing.normal(shape, seed)


def _lax_conv(x, w, strides=1, padding='SAME', groups=1):
  return lax.conv_general_dilated(
    x,
    w,
    (strides, strides),
    padding,
    dimension_numbers=('NHWC', 'HWIO', 'NHWC'),
    feature_group_count=groups,
  )


def test_dense_matches_matmul_and_keeps_float32_params():
  x = _rand((3, 5))
  layer = layers.Dense(4, bias_init=nn.initializers.constant(0.5))
  v = layer.init(KEY, x)
  w = v['params']['kernel']
  chex.assert_shape(w, (5, 4))
  np.testing.assert_allclose(layer.apply(v, x), x @ w + 0.5, rtol=1e-5)
  y16 = layers.Dense(4, dtype=jnp.bfloat16).apply(v, x)
  assert y16.dtype == jnp.bfloat16
  assert w.dtype == jnp.float32
  np.testing.assert_allclose(y16, x @ w + 0.5, atol=0.1)


@pytest.mark.parametrize('strides,padding', [(1, 'SAME'), (2, 'VALID')])
def test_conv_matches_lax(strides, padding):
  x = _rand((2, 9, 9, 4))
  layer = layers.Conv(6, 3, strides=strides, padding=padding, use_bias=True)
  v = layer.init(KEY, x)
  w, b = v['params']['kernel'], v['params']['bias']
  chex.assert_shape(w, (3, 3, 4, 6))
  want = _lax_conv(x, w, strides, padding) + b
  np.testing.assert_allclose(layer.apply(v, x), want, rtol=1e-5, atol=1e-5)


def test_grouped_conv_is_concatenation_of_group_convs():
  x = _rand((1, 6, 6, 4))
  layer = layers.Conv(6, 3, groups=2)
  v = layer.init(KEY, x)
  w = v['params']['kernel']
  chex.assert_shape(w, (3, 3, 2, 6))
  # Group 0 maps channels 0:2 to outputs 0:3, group 1 maps 2:4 to 3:6.
  want = jnp.concatenate(
    [
      _lax_conv(x[..., :2], w[..., :3]),
      _lax_conv(x[..., 2:], w[..., 3:]),
    ],
    axis=-1,
  )
  np.testing.assert_allclose(layer.apply(v, x), want, rtol=1e-5, atol=1e-5)


def test_conv_rejects_bad_groups_and_rank():
  with pytest.raises(ValueError, match='groups'):
    layers.Conv(6, 3, groups=4).init(KEY, jnp.ones((1, 4, 4, 6)))
  with pytest.raises(ValueError, match='NHWC'):
    layers.Conv(6, 3).init(KEY, jnp.ones((4, 4, 6)))


def test_conv_default_init_is_he_fan_out():
  v = layers.Conv(256, 3).init(KEY, jnp.ones((1, 3, 3, 128)))
  w = np.asarray(v['params']['kernel'])
  # He et al. 2015 with fan_out = 3 * 3 * 256: std = sqrt(2 / 2304).
  np.testing.assert_allclose(w.std(), np.sqrt(2 / 2304), rtol=0.03)
  assert abs(w.mean()) < 1e-3


def test_depthwise_conv_is_per_channel_correlation():
  x = _rand((1, 5, 5, 3))
  layer = layers.DepthwiseConv(3, padding='VALID', multiplier=2)
  v = layer.init(KEY, x)
  w = np.asarray(v['params']['kernel'])  # [3, 3, 1, 6]
  chex.assert_shape(w, (3, 3, 1, 6))
  y = np.asarray(layer.apply(v, x))
  xn = np.asarray(x)
  want = np.zeros((1, 3, 3, 6))
  for o in range(6):  # output o reads input channel o // multiplier
    for i in range(3):
      for j in range(3):
        patch = xn[0, i : i + 3, j : j + 3, o // 2]
        want[0, i, j, o] = np.sum(patch * w[:, :, 0, o])
  np.testing.assert_allclose(y, want, rtol=1e-5, atol=1e-5)


def test_dropout_train_vs_eval():
  x = jnp.ones((4, 100))
  drop = layers.Dropout(0.5)
  np.testing.assert_array_equal(drop.apply({}, x, train=False), x)
  y1 = drop.apply({}, x, train=True, rngs={'dropout': nets_testing.key(1)})
  y2 = drop.apply({}, x, train=True, rngs={'dropout': nets_testing.key(2)})
  assert set(np.unique(np.asarray(y1))) <= {0.0, 2.0}
  assert not np.array_equal(y1, y2)
  with pytest.raises(ValueError, match='rate'):
    layers.Dropout(1.0).apply({}, x, train=True)


def test_drop_path_drops_whole_examples():
  x = jnp.ones((64, 3, 3, 2))
  y = layers.DropPath(0.5).apply(
    {}, x, train=True, rngs={'dropout': nets_testing.key(3)}
  )
  per_example = np.asarray(y).reshape(64, -1)
  assert set(np.unique(per_example.min(1))) <= {0.0, 2.0}
  np.testing.assert_array_equal(per_example.min(1), per_example.max(1))
  assert 0 < per_example[:, 0].sum() < 128
  np.testing.assert_array_equal(
    layers.DropPath(0.5).apply({}, x, train=False), x
  )


@pytest.mark.slow
def test_se_block_matches_hand_formula():
  x = _rand((2, 3, 3, 8))
  se = layers.SEBlock(reduction=4)
  v = se.init(KEY, x)
  p = v['params']
  chex.assert_shape(p['reduce']['kernel'], (8, 2))
  s = x.mean(axis=(1, 2))
  s = jax.nn.relu(s @ p['reduce']['kernel'] + p['reduce']['bias'])
  s = jax.nn.sigmoid(s @ p['expand']['kernel'] + p['expand']['bias'])
  want = x * s[:, None, None, :]
  np.testing.assert_allclose(se.apply(v, x), want, rtol=1e-5, atol=1e-6)


def test_adaptive_avg_pool_uses_torch_bins():
  x = np.asarray(_rand((1, 5, 4, 2)))
  y = np.asarray(layers.AdaptiveAvgPool((3, 2)).apply({}, x))
  # Rows of 5 into 3 bins: [0, 2), [1, 4), [3, 5); cols of 4 into 2: halves.
  for i, (h0, h1) in enumerate([(0, 2), (1, 4), (3, 5)]):
    for j, (w0, w1) in enumerate([(0, 2), (2, 4)]):
      want = x[0, h0:h1, w0:w1].mean(axis=(0, 1))
      np.testing.assert_allclose(y[0, i, j], want, rtol=1e-5)
  same = layers.AdaptiveAvgPool(5).apply({}, np.ones((1, 5, 5, 1)))
  chex.assert_shape(same, (1, 5, 5, 1))


def test_pool_modules_match_reduce_window():
  x = _rand((1, 4, 4, 1))
  mx = layers.MaxPool(2).apply({}, x)
  np.testing.assert_allclose(
    mx[0, :, :, 0], np.asarray(x)[0, :, :, 0].reshape(2, 2, 2, 2).max((1, 3))
  )
  av = layers.AvgPool(2).apply({}, x)
  np.testing.assert_allclose(
    av[0, :, :, 0],
    np.asarray(x)[0, :, :, 0].reshape(2, 2, 2, 2).mean((1, 3)),
    rtol=1e-6,
  )


def test_bfloat16_dense_on_cpu_is_the_float32_product_rounded():
  # XLA:CPU's bfloat16 matmul is slow, so on CPU the product is computed in
  # float32 from the float32 kernel and rounded once to bfloat16.
  layer = layers.Dense(16, dtype=jnp.bfloat16)
  x = jax.random.normal(jax.random.key(0), (8, 64))
  params = layer.init(jax.random.key(1), x)
  y = layer.apply(params, x)
  assert y.dtype == jnp.bfloat16
  kernel = params['params']['kernel']
  want = jnp.dot(x, kernel, precision='highest').astype(jnp.bfloat16)
  np.testing.assert_array_equal(np.asarray(y, np.float32), want)
  # The product of bfloat16 operands (the other backends' rule) differs.
  both = jnp.dot(x.astype(jnp.bfloat16), kernel.astype(jnp.bfloat16))
  assert np.any(np.asarray(both, np.float32) != np.asarray(want, np.float32))
