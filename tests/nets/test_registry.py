"""Tests for nets/registry.py: names, errors, kwargs, default shapes."""

import types

import flax.linen as nn
import jax
import jax.numpy as jnp
import pytest

import nets
from nets import registry

CONTRACT_NAMES = (
  'mlp',
  'lenet5',
  'cnn1d',
  'cnn_small',
  'resnet18_cifar',
  'resnet20_cifar',
  'resnet32_cifar',
  'resnet44_cifar',
  'resnet56_cifar',
  'resnet110_cifar',
  'wrn28_10_cifar',
  'densenet_bc100_k12_cifar',
  'resnet50',
)
OWN_NAMES = (
  'alexnet',
  'alexnet_paper',
  'zfnet',
  'vgg11',
  'vgg19_bn',
  'mobilenet_v1',
  'mobilenet_v1_025',
  'shufflenet_v1_g3',
  'shufflenet_v1_g8_x0_5',
  'ensemble',
  'ensemble_tiny',
)


def test_list_models_has_contract_and_family_names():
  names = nets.list_models()
  assert names == sorted(set(names))
  for name in CONTRACT_NAMES + OWN_NAMES:
    assert name in names, name


def test_every_family_has_a_tiny_variant():
  for family in registry._FAMILIES:
    if family.__name__ in ('nets.mlp', 'nets.lenet'):  # already tiny
      continue
    assert any('tiny' in n for n in family.MODELS), family.__name__


def test_every_name_builds_a_module():
  for name in nets.list_models():
    assert isinstance(nets.create(name), nn.Module), name


def test_unknown_name_lists_close_matches():
  with pytest.raises(ValueError, match='vgg16') as info:
    nets.create('vgg61')
  assert 'unknown model' in str(info.value)
  with pytest.raises(ValueError, match='unknown model'):
    nets.default_input_shape('not_a_model_at_all')


def test_duplicate_names_are_refused():
  a = types.SimpleNamespace(__name__='a', MODELS={'x': 1})
  b = types.SimpleNamespace(__name__='b', MODELS={'x': 2})
  assert registry._merge([a]) == {'x': 1}
  with pytest.raises(ValueError, match='twice'):
    registry._merge([a, b])


def test_kwargs_reach_the_model():
  model = nets.create('vgg_tiny', num_classes=7)
  x = jax.ShapeDtypeStruct((2, 32, 32, 3), jnp.float32)
  variables = jax.eval_shape(
    lambda x: model.init({'params': jax.random.key(0)}, x, train=False), x
  )
  out = jax.eval_shape(lambda v, x: model.apply(v, x), variables, x)
  assert out.shape == (2, 7)


def test_default_input_shapes():
  assert nets.default_input_shape('vgg16') == (224, 224, 3)
  assert nets.default_input_shape('alexnet_paper') == (227, 227, 3)
  assert nets.default_input_shape('resnet20_cifar') == (32, 32, 3)
  assert nets.default_input_shape('lenet5') == (28, 28, 1)
  assert nets.default_input_shape('cnn1d') == (40,)


def test_ensemble_by_names_and_unknown_member():
  model = nets.create('ensemble', members=('vgg_tiny', 'alexnet_tiny'))
  assert len(model.members) == 2
  with pytest.raises(ValueError, match='members'):
    nets.create('ensemble', members=('vgg_tiny', 'nope'))
