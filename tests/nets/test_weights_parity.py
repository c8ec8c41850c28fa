"""The zoo against torchvision and timm, layer by layer, after import.

Each case builds the PyTorch model with random weights and a fixed seed,
randomises every BatchNorm's running statistics and affine parameters (so a
mean/var or scale/bias mix-up cannot pass), saves its state_dict, imports it
with ``nets.weights.load`` and compares every conv and dense output and the
logits in inference mode on the same input (tests/nets/torch_testing.py):
a failure names the first differing layer. ResNet-18 is in the fast tier
(test_weights.py); these compile bigger nets and are slow. The README's
table "Importing PyTorch weights" lists the errors they measure.

Inputs are 64-112 px: every net here is fully convolutional up to an
adaptive pool (VGG and AlexNet pool 2x2 or 6x6 maps into their 7x7 and
6x6 classifier inputs, which also exercises the adaptive pooling bins).
"""

import numpy as np
import pytest

import nets
from nets import weights
from tests.nets import torch_testing

# zoo name, model_kw, library, PyTorch name, PyTorch kwargs, input pixels
CASES = [
  ('resnet34', {}, 'torchvision', 'resnet34', {}, 64),
  ('resnet50', {}, 'torchvision', 'resnet50', {}, 64),
  ('resnet101', {}, 'torchvision', 'resnet101', {}, 64),
  ('resnet152', {}, 'torchvision', 'resnet152', {}, 64),
  ('resnext50_32x4d', {}, 'torchvision', 'resnext50_32x4d', {}, 64),
  ('wide_resnet50_2', {}, 'torchvision', 'wide_resnet50_2', {}, 64),
  ('vgg11', {}, 'torchvision', 'vgg11', {}, 64),
  ('vgg16', {}, 'torchvision', 'vgg16', {}, 64),
  ('vgg16_bn', {}, 'torchvision', 'vgg16_bn', {}, 64),
  ('alexnet', {}, 'torchvision', 'alexnet', {}, 112),
  ('densenet121', {}, 'torchvision', 'densenet121', {}, 64),
  (
    'googlenet_torchvision',
    {},
    'torchvision',
    'googlenet',
    {'aux_logits': False, 'init_weights': True},
    112,
  ),
  (
    'googlenet_torchvision',
    {'transform_input': True},
    'torchvision',
    'googlenet',
    {'aux_logits': False, 'init_weights': True, 'transform_input': True},
    96,
  ),
  ('mobilenet_v1', {'relu6': True}, 'timm', 'mobilenetv1_100', {}, 96),
  ('se_resnet50', {}, 'timm', 'seresnet50', {}, 64),
]


def _torch_model(library: str, name: str, kwargs: dict):
  if library == 'timm':
    return torch_testing.timm().create_model(name, pretrained=False, **kwargs)
  tv = torch_testing.torchvision()
  return getattr(tv.models, name)(weights=None, **kwargs)


def _ids(case):
  zoo, kw, _, theirs, _, px = case
  extra = ','.join(f'{k}={v}' for k, v in kw.items())
  return f'{zoo}[{extra}]-{theirs}-{px}px' if extra else f'{zoo}-{px}px'


@pytest.mark.slow
@pytest.mark.parametrize('case', CASES, ids=[_ids(c) for c in CASES])
def test_parity(case, tmp_path):
  zoo_name, model_kw, library, name, kwargs, px = case
  torch = torch_testing.torch()
  torch.manual_seed(0)
  reference = torch_testing.randomize(_torch_model(library, name, kwargs))
  path = str(tmp_path / f'{name}.pth')
  torch.save(reference.state_dict(), path)
  model = nets.create(zoo_name, **model_kw)
  variables = weights.load(model, path, input_shape=(px, px, 3))
  x = np.random.default_rng(1).standard_normal((2, 3, px, px), np.float32)
  errors = torch_testing.compare(model, variables, reference, x)
  print(f'{_ids(case)}: {errors}')  # the README table's numbers (pytest -s)
  exported = weights.to_state_dict(model, variables)
  original = torch_testing.state_dict(reference)
  assert sorted(exported) == sorted(original)
  for key, value in original.items():
    np.testing.assert_array_equal(exported[key], value, err_msg=key)
