"""Tests for nets/densenet.py (Huang et al. 2017).

References: torchvision's published parameter counts and GFLOPS (= MACs)
for DenseNet-121/169/201/161, the paper's 0.8M for DenseNet-BC (L=100,
k=12), and a by-hand parameter formula. Big models are only traced.
"""

import functools

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import nets
from nets import densenet
from nets import layers
from tests.nets import nets_testing


def _trace(model, hw, batch=2):
  """(output shape, variables) of init via eval_shape (nothing compiled)."""
  x = jax.ShapeDtypeStruct((batch, hw, hw, 3), jnp.float32)
  out, variables = jax.eval_shape(
    lambda x: model.init_with_output({'params': jax.random.key(0)}, x), x
  )
  return out.shape, variables


def _hand_params(blocks, k, c0, *, stem, classes, theta=0.5, bn_size=4):
  """DenseNet-BC parameter count: every conv bias-free, every BN 2c."""
  total = (49 if stem == 'imagenet' else 9) * 3 * c0
  total += 2 * c0 if stem == 'imagenet' else 0
  c = c0
  for i, n in enumerate(blocks):
    for _ in range(n):
      w = bn_size * k
      total += 2 * c + c * w + 2 * w + 9 * w * k
      c += k
    if i + 1 < len(blocks):
      out = int(theta * c)
      total += 2 * c + c * out
      c = out
  return total + 2 * c + c * classes + classes


# name: (blocks, k, c0, torchvision params, torchvision G MACs)
TORCHVISION = {
  'densenet121': ((6, 12, 24, 16), 32, 64, 7_978_856, 2.83),
  'densenet169': ((6, 12, 32, 32), 32, 64, 14_149_480, 3.36),
  'densenet201': ((6, 12, 48, 32), 32, 64, 20_013_928, 4.29),
  'densenet161': ((6, 12, 36, 24), 48, 96, 28_681_000, 7.73),
}


# ImageNet models whose parameter count and MACs are checked in this file.
COVERED = tuple(TORCHVISION)


@pytest.mark.parametrize(
  'name',
  [
    pytest.param('densenet121', marks=pytest.mark.slow),
    pytest.param('densenet169', marks=pytest.mark.slow),
    pytest.param('densenet201', marks=pytest.mark.slow),
    pytest.param('densenet161', marks=pytest.mark.slow),
  ],
)
def test_imagenet_params_and_macs(name):
  blocks, k, c0, params, gmacs = TORCHVISION[name]
  model = nets.create(name)
  shape, variables = _trace(model, 224)
  assert shape == (2, 1000)
  n = nets_testing.count(variables['params'])
  assert n == params
  assert n == _hand_params(blocks, k, c0, stem='imagenet', classes=1000)
  summary = nets.summarize(model, (224, 224, 3))
  assert summary.params == params
  assert summary.macs / 1e9 == pytest.approx(gmacs, rel=0.02)


@pytest.mark.slow
def test_channel_growth_densenet121():
  model = nets.create('densenet121')
  x = jax.ShapeDtypeStruct((1, 224, 224, 3), jnp.float32)
  variables = _trace(model, 224, batch=1)[1]
  _, state = jax.eval_shape(
    lambda v, x: model.apply(v, x, mutable=['intermediates']), variables, x
  )
  got = {
    name: value[0].shape[1:] for name, value in state['intermediates'].items()
  }
  # After a block of L layers: c0 + L*k; a transition halves (theta=0.5)
  # the channels and the resolution.
  c, hw, want = 64, 56, {}
  for i, n in enumerate((6, 12, 24, 16)):
    c += n * 32
    want[f'block{i + 1}_out'] = (hw, hw, c)
    if i < 3:
      c, hw = c // 2, hw // 2
      want[f'transition{i + 1}_out'] = (hw, hw, c)
  assert got == want
  assert want['block4_out'] == (7, 7, 1024)


@pytest.mark.slow
def test_layers_see_all_preceding_feature_maps():
  model = nets.create('densenet_tiny', growth_rate=3)
  x = nets_testing.normal((2, 8, 8, 3), 0)
  v = nets_testing.fake_variables(model, x)
  _, state = model.apply(
    v, x, capture_intermediates=True, mutable=['intermediates']
  )
  acts = state['intermediates']
  out = lambda *path: functools.reduce(dict.get, path, acts)['__call__'][0]
  block, x0 = out('block1'), out('stem_conv')
  chex.assert_shape(block, (2, 8, 8, 8 + 2 * 3))
  # The block output is [x_0, x_1, x_2] in order.
  np.testing.assert_allclose(block[..., :8], x0, atol=1e-6)
  np.testing.assert_allclose(
    block[..., 8:11], out('block1', 'layer1'), atol=1e-6
  )
  np.testing.assert_allclose(
    block[..., 11:], out('block1', 'layer2'), atol=1e-6
  )
  # Layer 2's first 1x1 conv reads c0 + k channels: [x_0, x_1].
  assert v['params']['block1']['layer2']['conv1']['kernel'].shape[2] == 11


@pytest.mark.slow
def test_densenet_bc100_k12_cifar():
  model = nets.create('densenet_bc100_k12_cifar')
  shape, variables = _trace(model, 32)
  assert shape == (2, 10)
  n = nets_testing.count(variables['params'])
  assert n == _hand_params((16, 16, 16), 12, 24, stem='cifar', classes=10)
  assert n == pytest.approx(0.8e6, rel=0.05)  # paper Table 2: 0.8M
  with pytest.raises(ValueError, match='depth'):
    densenet.densenet_cifar(99, 12)


def test_non_bottleneck_densenet_cifar():
  model = densenet.densenet_cifar(40, 12, bottleneck=False)
  shape, variables = _trace(model, 32)
  assert shape == (2, 10)
  # Huang et al. Table 2: DenseNet (L=40, k=12) has 1.0M parameters.
  assert nets_testing.count(variables['params']) == pytest.approx(
    1.0e6, rel=0.1
  )


def test_dropout_follows_every_conv_but_the_first():
  # Huang et al. Sec. 4.2: "a dropout layer after each convolutional layer
  # (except the first one)", transitions included.
  calls = []

  def record(next_fun, args, kwargs, context):
    out = next_fun(*args, **kwargs)
    if isinstance(context.module, (layers.Conv, layers.Dropout)):
      calls.append(
        (type(context.module).__name__, '/'.join(context.module.path))
      )
    return out

  model = nets.create('densenet_tiny', dropout_rate=0.2)
  x = jax.ShapeDtypeStruct((2, 8, 8, 3), jnp.float32)
  _, v = _trace(model, 8)
  with nn.intercept_methods(record):
    jax.eval_shape(
      lambda v, x: model.apply(
        v,
        x,
        train=True,
        rngs={'dropout': jax.random.key(0)},
        mutable=['batch_stats'],
      ),
      v,
      x,
    )
  kinds = [kind for kind, _ in calls]
  # stem conv, then (conv, dropout) for 2 blocks x 2 layers x 2 convs and
  # for the one transition: 10 convs, 9 dropouts.
  assert kinds == ['Conv'] + ['Conv', 'Dropout'] * 9
  assert ('Dropout', 'transition1/dropout') in calls


@pytest.mark.slow
def test_tiny_train_and_eval():
  model = nets.create('densenet_tiny', dropout_rate=0.3)
  x = nets_testing.normal((4, 8, 8, 3), 2)
  v = nets_testing.fake_variables(model, x)
  chex.assert_trees_all_equal(model.apply(v, x), model.apply(v, x))
  ys, stats = [], None
  for s in (0, 1):
    y, upd = model.apply(
      v,
      x,
      train=True,
      rngs={'dropout': nets_testing.key(s)},
      mutable=['batch_stats'],
    )
    ys.append(y)
    stats = upd['batch_stats']
  chex.assert_tree_all_finite(ys)
  chex.assert_shape(ys, (4, 10))
  assert not np.allclose(ys[0], ys[1])
  moved = jax.tree.map(
    lambda a, b: bool(jnp.any(a != b)), stats, v['batch_stats']
  )
  assert all(jax.tree.leaves(moved))
  _, same = model.apply(v, x, mutable=['batch_stats'])
  chex.assert_trees_all_equal(same['batch_stats'], v['batch_stats'])


@pytest.mark.slow
def test_group_norm_option():
  model = nets.create('densenet_tiny', norm='group')
  x = nets_testing.normal((2, 8, 8, 3), 3)
  v = nets_testing.fake_variables(model, x)
  assert 'batch_stats' not in v
  chex.assert_trees_all_close(
    model.apply(v, x)[:1], model.apply(v, x[:1]), atol=1e-5
  )
