"""nets.weights: the fast checks (ResNet-18 parity, round trips, bad files).

ResNet-18 is compared with torchvision layer by layer (tests/nets/
torch_testing.py); the other models are in test_weights_parity.py (slow).
The bad-file tests build state_dicts from the zoo's own export, so they need
neither torch nor large models.
"""

import numpy as np
import pytest

import nets
from nets import weights
from tests.nets import nets_testing
from tests.nets import torch_testing


def _tiny_state_dict(name='resnet_tiny', **kw):
  model = nets.create(name, **kw)
  variables = nets_testing.fake_variables(
    model, np.zeros((1, 32, 32, 3), np.float32), train=False
  )
  return model, variables, weights.to_state_dict(model, variables)


@pytest.mark.slow
def test_resnet18_matches_torchvision_and_exports_back(tmp_path):
  torch = torch_testing.torch()
  tv = torch_testing.torchvision()
  torch.manual_seed(0)
  reference = torch_testing.randomize(tv.models.resnet18(weights=None))
  path = str(tmp_path / 'resnet18.pth')
  torch.save(reference.state_dict(), path)
  model = nets.create('resnet18')
  variables = weights.load(model, path, input_shape=(64, 64, 3))
  x = np.random.default_rng(0).standard_normal((2, 3, 64, 64), np.float32)
  errors = torch_testing.compare(model, variables, reference, x)
  print(f'resnet18-64px: {errors}')  # the README table's numbers (pytest -s)
  # Back: the export loads strictly into torchvision and is the same file.
  exported = weights.to_state_dict(model, variables)
  original = torch_testing.state_dict(reference)
  assert sorted(exported) == sorted(original)
  for key, value in original.items():
    np.testing.assert_array_equal(exported[key], value, err_msg=key)
  fresh = tv.models.resnet18(weights=None)
  fresh.load_state_dict({k: torch.from_numpy(v) for k, v in exported.items()})


def test_round_trip_through_safetensors_is_exact(tmp_path):
  torch_testing.torch()  # safetensors comes with the same test extra
  model, variables, sd = _tiny_state_dict('resnext_tiny')
  path = str(tmp_path / 'w.safetensors')
  weights.save_state_dict(sd, path)
  back = weights.load(model, path, input_shape=(32, 32, 3))
  flat = nets_testing.jax.tree.leaves(variables)
  for a, b in zip(flat, nets_testing.jax.tree.leaves(back), strict=True):
    np.testing.assert_array_equal(np.asarray(a), b)


def test_nchw_flatten_of_the_first_dense_layer():
  # A VGG fc6 row for input (c, h, w) sits at c*H*W + h*W + w in PyTorch and
  # at (h*W + w)*C + c here: check one entry by hand.
  model = nets.create('vgg_tiny', pool_size=2)
  variables = nets_testing.fake_variables(
    model, np.zeros((1, 32, 32, 3), np.float32), train=False
  )
  sd = weights.to_state_dict(model, variables)
  kernel = np.asarray(variables['params']['fc6']['kernel'])  # [2*2*16, 32]
  c, h, w, out = 5, 1, 0, 7
  theirs = sd['classifier.0.weight'][out, c * 4 + h * 2 + w]
  assert theirs == kernel[(h * 2 + w) * 16 + c, out]


def test_densenet_legacy_keys_load():
  model, variables, sd = _tiny_state_dict('densenet_tiny')
  legacy = {
    k.replace('.norm1.', '.norm.1.').replace('.conv2.', '.conv.2.'): v
    for k, v in sd.items()
  }
  assert legacy.keys() != sd.keys()
  like = weights.abstract_variables(model, (32, 32, 3))
  back, _ = weights.from_state_dict(model, legacy, like=like)
  for a, b in zip(
    nets_testing.jax.tree.leaves(variables),
    nets_testing.jax.tree.leaves(back),
    strict=True,
  ):
    np.testing.assert_array_equal(np.asarray(a), b)


def test_new_head_keeps_the_given_classifier():
  model, _, sd = _tiny_state_dict(num_classes=1000)
  small = nets.create('resnet_tiny', num_classes=7)
  like = nets_testing.fake_variables(
    small, np.zeros((1, 32, 32, 3), np.float32), train=False
  )
  got, reinit = weights.from_state_dict(small, sd, like=like, new_head=True)
  assert reinit == ['head']
  np.testing.assert_array_equal(
    got['params']['head']['kernel'], like['params']['head']['kernel']
  )
  np.testing.assert_array_equal(
    got['params']['stem_conv']['kernel'],
    sd['conv1.weight'].transpose(2, 3, 1, 0),
  )
  with pytest.raises(weights.WeightsError, match=r'shapes differ for fc\.'):
    weights.from_state_dict(small, sd, like=like)


@pytest.mark.parametrize(
  'edit, message',
  [
    (lambda sd: sd.pop('layer1.0.bn1.running_var'), 'missing layer1.0.bn1'),
    (lambda sd: sd.update(extra=np.zeros(3)), 'unexpected extra'),
    (
      lambda sd: sd.update({'conv1.weight': np.zeros((8, 3, 5, 5))}),
      r'shapes differ for conv1\.weight \(8, 3, 5, 5\) != \(8, 3, 3, 3\)',
    ),
  ],
  ids=['missing', 'extra', 'shape'],
)
def test_bad_state_dicts_name_the_first_keys(edit, message):
  model, _, sd = _tiny_state_dict()
  edit(sd)
  like = weights.abstract_variables(model, (32, 32, 3))
  with pytest.raises(weights.WeightsError, match=message) as info:
    weights.from_state_dict(model, sd, like=like)
  assert '\n' not in str(info.value)


def test_another_models_file_is_refused_by_name():
  _, _, vgg_sd = _tiny_state_dict('vgg_tiny')
  model = nets.create('resnet_tiny')
  like = weights.abstract_variables(model, (32, 32, 3))
  with pytest.raises(weights.WeightsError) as info:
    weights.from_state_dict(model, vgg_sd, like=like)
  message = str(info.value)
  # Missing in the model's order, unexpected in the file's.
  assert 'missing fc.bias, fc.weight, layer1.0.conv1.weight and 29' in message
  assert 'unexpected features.0.bias, features.0.weight' in message


def test_unreadable_files_and_families_without_a_layout(tmp_path):
  junk = tmp_path / 'junk.pth'
  junk.write_bytes(b'not a pickle')
  torch_testing.torch()
  with pytest.raises(weights.WeightsError, match='cannot read'):
    weights.load_state_dict(str(junk))
  with pytest.raises(weights.WeightsError, match='no weights file'):
    weights.load_state_dict(str(tmp_path / 'absent.pth'))
  with pytest.raises(ValueError, match='no PyTorch layout for ShuffleNetV1'):
    weights.to_state_dict(nets.create('shufflenet_v1_tiny'), {})
