"""Tests for nets/registry.py: names, errors, kwargs, default shapes."""

import types

import flax.linen as nn
import jax
import jax.numpy as jnp
import pytest

import nets
from nets import layers
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
    if family.__name__ in ('nets.mlp', 'nets.small_cnn', 'nets.lenet'):
      # already tiny
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


def _imagenet_models():
  return {
    n
    for n in nets.list_models()
    if nets.default_input_shape(n) in ((224, 224, 3), (227, 227, 3))
  }


def test_every_imagenet_model_has_count_and_macs_tests():
  # Each family's test file lists in COVERED the ImageNet models whose
  # exact parameter count and MACs it checks (published figure or a hand
  # count); a newly registered model without such a test fails here.
  from tests.nets import test_densenet
  from tests.nets import test_ensemble
  from tests.nets import test_googlenet
  from tests.nets import test_mobilenet
  from tests.nets import test_resnet
  from tests.nets import test_shufflenet
  from tests.nets import test_simple_nets

  covered = set()
  for module in (
    test_densenet,
    test_ensemble,
    test_googlenet,
    test_mobilenet,
    test_resnet,
    test_shufflenet,
    test_simple_nets,
  ):
    covered |= set(module.COVERED)
  imagenet = _imagenet_models()
  assert len(imagenet) == 66
  assert imagenet - covered == set()
  assert covered - imagenet == set()


F32, BF16 = jnp.dtype(jnp.float32), jnp.dtype(jnp.bfloat16)
# Every family through its small variants (and the four small models).
SMALL = [
  n
  for n in nets.list_models()
  if 'tiny' in n or n in ('mlp', 'lenet5', 'cnn1d', 'cnn_small')
]


@pytest.mark.parametrize('name', SMALL)
@pytest.mark.slow
def test_num_classes_and_compute_dtype_in_every_family(name):
  # Traced only: params stay float32, every conv and dense layer computes in
  # bfloat16, the logits are [2, num_classes] in bfloat16 (the ensemble
  # fuses its members' probabilities in float32 by design).
  model = nets.create(name, num_classes=7, dtype=jnp.bfloat16)
  x = jax.ShapeDtypeStruct((2, *nets.default_input_shape(name)), jnp.float32)
  v = jax.eval_shape(
    lambda x: model.init({'params': jax.random.key(0)}, x, train=False), x
  )
  assert {p.dtype for p in jax.tree.leaves(v['params'])} == {F32}
  dtypes = set()

  def record(next_fun, args, kwargs, context):
    out = next_fun(*args, **kwargs)
    if isinstance(context.module, (layers.Conv, layers.Dense)):
      dtypes.add(out.dtype)
    return out

  with nn.intercept_methods(record):
    out = jax.eval_shape(lambda v, x: model.apply(v, x), v, x)
  assert dtypes == {BF16}
  assert out.shape == (2, 7)
  want = F32 if name.startswith('ensemble') else BF16
  assert out.dtype == want
