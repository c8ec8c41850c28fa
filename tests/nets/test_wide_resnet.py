"""Tests for nets/wide_resnet.py (Zagoruyko & Komodakis 2016, CIFAR WRNs).

References: the paper's 36.5M parameters for WRN-28-10 and a by-hand count
of the pre-activation blocks. Big models are only traced (jax.eval_shape).
"""

import chex
import jax
import jax.numpy as jnp
import pytest

import nets
from nets import wide_resnet
from tests.nets import nets_testing


def _wrn_params(depth, k, classes=10):
  """WRN-d-k: pre-activation blocks, 1x1 projections without BN."""
  n = (depth - 4) // 6
  total = 9 * 3 * 16
  c_in = 16
  for w in (16 * k, 32 * k, 64 * k):
    for _ in range(n):
      total += 2 * c_in + 9 * c_in * w + 2 * w + 9 * w * w
      total += c_in * w if c_in != w else 0
      c_in = w
  return total + 2 * c_in + c_in * classes + classes


def test_wrn28_10_params_and_depth_check():
  n, out = nets_testing.trace(nets.create('wrn28_10_cifar'), (2, 32, 32, 3))
  assert out.shape == (2, 10)
  assert n == _wrn_params(28, 10) == 36_479_194  # paper: 36.5M
  n, out = nets_testing.trace(
    wide_resnet.wrn_cifar(16, 4, num_classes=100), (2, 32, 32, 3)
  )
  assert out.shape == (2, 100)
  assert n == _wrn_params(16, 4, classes=100)
  with pytest.raises(ValueError, match='depth'):
    wide_resnet.wrn_cifar(27, 10)
  with pytest.raises(ValueError, match='widen_factor'):
    wide_resnet.wrn_cifar(16, 0)


@pytest.mark.slow
def test_wrn16_8_params():
  n, out = nets_testing.trace(nets.create('wrn16_8_cifar'), (2, 32, 32, 3))
  assert out.shape == (2, 10)
  assert n == _wrn_params(16, 8)


@pytest.mark.slow
def test_tiny_train_and_eval_with_dropout_and_drop_path():
  model = nets.create(
    'wrn10_1_cifar_tiny', drop_path_rate=0.3, dropout_rate=0.3
  )
  x = nets_testing.normal((4, 8, 8, 3), 3)
  v, y = nets_testing.check_train_eval(model, x, 10)
  # Eval with an immutable 'batch_stats' gives the same logits.
  chex.assert_trees_all_equal(jax.jit(model.apply)(v, x), y)


def test_group_norm_has_no_running_stats_and_same_params():
  x = jax.ShapeDtypeStruct((2, 8, 8, 3), jnp.float32)
  g = nets.create('wrn10_1_cifar_tiny', norm='group')
  struct = jax.eval_shape(
    lambda x: g.init({'params': nets_testing.key(0)}, x), x
  )
  assert set(struct) == {'params'}
  n_group, out = nets_testing.trace(g, x.shape)
  n_batch, _ = nets_testing.trace(nets.create('wrn10_1_cifar_tiny'), x.shape)
  assert n_group == n_batch == _wrn_params(10, 1)
  assert out.shape == (2, 10)
  kinds = {r.kind for r in nets.summarize(g, (8, 8, 3)).rows}
  assert 'GroupNorm' in kinds and 'BatchNorm' not in kinds


@pytest.mark.slow
def test_group_norm_forward_is_finite():
  g = nets.create('wrn10_1_cifar_tiny', norm='group')
  x = nets_testing.normal((4, 8, 8, 3), 3)
  vg = nets_testing.fake_variables(g, x)
  assert 'batch_stats' not in vg
  chex.assert_tree_all_finite(jax.jit(g.apply)(vg, x))


def test_bad_drop_path_rate():
  model = nets.create('wrn10_1_cifar_tiny', drop_path_rate=1.0)
  with pytest.raises(ValueError, match='drop_path_rate'):
    nets_testing.trace(model, (1, 8, 8, 3))
