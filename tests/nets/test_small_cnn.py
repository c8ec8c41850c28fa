"""Tests for nets/small_cnn.py: the 1-D CNN for MNIST-1D and the 8x8 CNN.

The train/eval contract of every model (nets_testing.check_train_eval) on
small inputs, and the 1-D net's two accepted input ranks.
"""

import jax
import numpy as np
import pytest

import nets
from tests.nets import nets_testing


def test_cnn1d_accepts_both_input_ranks():
  model = nets.create('cnn1d', dropout_rate=0.5)
  x = nets_testing.normal((2, 40), 0)
  _, y = nets_testing.check_train_eval(model, x, 10)
  variables = nets_testing.fake_variables(model, x, train=False)
  np.testing.assert_allclose(
    y, jax.jit(model.apply)(variables, x[..., None]), rtol=1e-5
  )


def test_cnn_small_on_digits():
  model = nets.create('cnn_small', dropout_rate=0.5)
  x = nets_testing.normal((2, 8, 8, 1), 0)
  nets_testing.check_train_eval(model, x, 10)


def _conv_params(c_in, c_out, bias):
  return 9 * c_in * c_out + (c_out if bias else 0)


def test_cnn_small_norm_option_keeps_the_default_and_drops_conv_biases():
  # Default (no norm): four 3x3 convs with biases and the head, by hand.
  convs = ((1, 32), (32, 32), (32, 64), (64, 64))
  plain = sum(_conv_params(a, b, True) for a, b in convs) + 64 * 10 + 10
  assert plain == 65_642
  x = (2, 8, 8, 1)
  n, out = nets_testing.trace(nets.create('cnn_small'), x)
  assert (n, out.shape) == (plain, (2, 10))
  # With a norm: no conv bias (beta replaces it), gamma and beta per channel.
  with_norm = plain - sum(b for _, b in convs) + 2 * sum(b for _, b in convs)
  for norm in ('batch', 'group'):
    n, _ = nets_testing.trace(nets.create('cnn_small', norm=norm), x)
    assert n == with_norm == 65_834


def test_cnn_small_with_batch_norm_on_digits():
  model = nets.create('cnn_small', norm='batch', stage_channels=(4, 8))
  x = nets_testing.normal((4, 8, 8, 1), 0)
  variables, _ = nets_testing.check_train_eval(model, x, 10, dropout=False)
  assert set(variables['batch_stats']) == {
    f'norm{i}_{j}' for i in range(2) for j in range(2)
  }
  assert 'bias' not in variables['params']['conv0_0']


def test_cnn_small_norm_groups_sets_the_groups_of_group_norm():
  x = nets_testing.normal((2, 8, 8, 1), 0)
  model = nets.create(
    'cnn_small', norm='group', norm_groups=4, stage_channels=(8, 16)
  )
  variables = nets_testing.fake_variables(model, x)
  _, inter = model.apply(variables, x, capture_intermediates=True)
  # GroupNorm's output has zero mean over each (example, group); with 4
  # groups of 2 channels, not over each single channel.
  y = np.asarray(inter['intermediates']['norm0_0']['__call__'][0])
  groups = y.reshape(2, 8, 8, 4, 2)
  np.testing.assert_allclose(groups.mean(axis=(1, 2, 4)), 0.0, atol=1e-5)
  assert np.abs(y.mean(axis=(1, 2))).max() > 1e-3
  with pytest.raises(ValueError, match='norm_groups'):
    nets_testing.trace(nets.create('cnn_small', norm_groups=4), (2, 8, 8, 1))


@pytest.mark.slow
def test_cnn1d_kernel_init_forces_one_gaussian_on_every_layer():
  x = nets_testing.normal((2, 40), 0)
  key = jax.random.key(0)
  forced = nets.create('cnn1d', kernel_init='normal:0.01').init(key, x)
  default = nets.create('cnn1d').init(key, x)
  for name in ('conv0', 'conv1', 'conv2', 'head'):
    kernel = np.asarray(forced['params'][name]['kernel'])
    assert abs(kernel.std() - 0.01) < 0.002, name  # >= 160 draws
  # He normal (fan_in = 5 * 32) by default: std sqrt(2 / 160) = 0.112.
  std = np.asarray(default['params']['conv1']['kernel']).std()
  assert abs(std - np.sqrt(2 / 160)) < 0.01
