"""nets.weights: import against a hand-built file, round trips, bad files.

A tiny VGG with BatchNorm is imported from a state_dict written out here by
hand, with torchvision's names and layouts, and run against a numpy forward
pass in PyTorch's conventions (NCHW, OIHW, a (C, H, W) flatten): a reference
that does not go through the exporter. ResNet-18 is compared with
torchvision layer by layer (tests/nets/torch_testing.py; slow), the other
models in test_weights_parity.py (slow). The bad-file tests build
state_dicts from the zoo's own export, so they need neither torch nor large
models.
"""

import sys
import tracemalloc

import numpy as np
import pytest

import nets
from nets import weights
from nets import weights_layouts
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


# torchvision's vgg_tiny_bn: (conv, bn, relu, pool) per block, then
# classifier.{0, 3, 6}. Channels (in, out) of the three blocks' convs.
_TINY_VGG_CONVS = ((3, 8), (8, 16), (16, 16))


def _hand_built_vgg_state_dict(rng):
  """torchvision names and shapes for vgg_tiny_bn(pool_size=2), by hand."""
  sd = {}
  for b, (i, o) in enumerate(_TINY_VGG_CONVS):
    conv, bn = f'features.{4 * b}', f'features.{4 * b + 1}'
    sd[f'{conv}.weight'] = rng.normal(size=(o, i, 3, 3)) / np.sqrt(9 * i)
    sd[f'{conv}.bias'] = 0.1 * rng.normal(size=o)
    # Distinct BN tensors: a scale/bias or mean/var mix-up changes the output.
    sd[f'{bn}.weight'] = 0.8 + 0.4 * rng.uniform(size=o)
    sd[f'{bn}.bias'] = 0.1 * rng.normal(size=o)
    sd[f'{bn}.running_mean'] = 0.2 * rng.normal(size=o)
    sd[f'{bn}.running_var'] = 0.5 + rng.uniform(size=o)
    sd[f'{bn}.num_batches_tracked'] = np.array(7, np.int64)
  for n, i, o in ((0, 16 * 2 * 2, 32), (3, 32, 32), (6, 32, 10)):
    sd[f'classifier.{n}.weight'] = rng.normal(size=(o, i)) / np.sqrt(i)
    sd[f'classifier.{n}.bias'] = 0.1 * rng.normal(size=o)
  return {
    k: v if v.dtype == np.int64 else v.astype(np.float32) for k, v in sd.items()
  }


def _torch_convention_forward(sd, x):
  """vgg_tiny_bn in eval mode, NCHW, in float64 numpy: x [B, 3, 16, 16]."""
  for b in range(len(_TINY_VGG_CONVS)):
    w, bias = sd[f'features.{4 * b}.weight'], sd[f'features.{4 * b}.bias']
    h, wd = x.shape[2:]
    xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    taps = [(i, j) for i in range(3) for j in range(3)]  # torch.nn.Conv2d
    x = bias[:, None, None] + sum(
      np.einsum('bchw,oc->bohw', xp[:, :, i : i + h, j : j + wd], w[..., i, j])
      for i, j in taps
    )
    mean, var, scale, shift = (
      sd[f'features.{4 * b + 1}.{k}'][:, None, None]
      for k in ('running_mean', 'running_var', 'weight', 'bias')
    )
    x = np.maximum((x - mean) / np.sqrt(var + 1e-5) * scale + shift, 0.0)
    n, c, h, wd = x.shape
    x = x.reshape(n, c, h // 2, 2, wd // 2, 2).max(axis=(3, 5))  # 2x2/2 pool
  x = x.reshape(x.shape[0], -1)  # (C, H, W) order; the 2x2 map needs no pool
  for n in (0, 3, 6):
    x = x @ sd[f'classifier.{n}.weight'].T + sd[f'classifier.{n}.bias']
    x = np.maximum(x, 0.0) if n != 6 else x
  return x


def test_import_matches_a_forward_pass_in_torch_conventions():
  rng = np.random.default_rng(0)
  sd = _hand_built_vgg_state_dict(rng)
  model = nets.create('vgg_tiny_bn', pool_size=2)
  like = weights.abstract_variables(model, (16, 16, 3))
  variables, reinit = weights.from_state_dict(model, sd, like=like)
  assert not reinit
  x = rng.normal(size=(2, 3, 16, 16)).astype(np.float32)
  want = _torch_convention_forward(
    {k: v.astype(np.float64) for k, v in sd.items()}, x.astype(np.float64)
  )
  got = model.apply(variables, x.transpose(0, 2, 3, 1), train=False)
  # float32 against float64 through 6 layers of <= 144 terms: 1e-5 of the
  # largest logit is 100 float32 roundings; a layout mistake is O(1).
  np.testing.assert_allclose(got, want, rtol=0, atol=1e-5 * np.abs(want).max())


def test_expected_shapes_are_those_of_the_exported_tensors():
  # from_state_dict checks a file's shapes without building arrays; the
  # shapes must be those of the export's tensors on every layout rule.
  cases = [
    ('resnet_tiny', {'se_reduction': 4}),  # SE gates: 1x1 convs in timm
    ('vgg_tiny', {'pool_size': 2}),  # fc6 after an NCHW flatten
    ('alexnet_tiny', {}),
    ('densenet_tiny', {}),
    ('mobilenet_v1_tiny', {}),
    ('googlenet_tiny', {}),
  ]
  seen = set()
  for name, kw in cases:
    model = nets.create(name, **kw)
    layout = weights_layouts.layout_of(model)
    like = weights.abstract_variables(model, (32, 32, 3))
    plan = weights._plan(layout, weights._modules(like))
    for key, (path, leaf, _, value) in plan.items():
      exported = weights._to_torch(layout, path, leaf, np.zeros(value.shape))
      got = weights._torch_shape(layout, path, leaf, value.shape)
      assert got == exported.shape, (name, key)
      seen.add(
        'flatten'
        if path in layout.flatten_chw and leaf == 'kernel'
        else f'{len(got)}-d'
      )
  assert seen == {'flatten', '1-d', '2-d', '4-d'}


def test_checking_shapes_allocates_no_model_sized_arrays():
  # VGG-16's fc6 kernel is 25088 x 4096 (411 MB in float32). A file whose
  # every tensor has the wrong shape is refused after the shape check
  # alone; the file here is zero-strided views, so the check is all that
  # could allocate.
  model = nets.create('vgg16')
  like = weights.abstract_variables(model, (32, 32, 3))
  layout = weights_layouts.layout_of(model)
  sd = {
    key: np.broadcast_to(np.float32(0), (*value.shape, 2))
    for key, (_, _, _, value) in weights._plan(
      layout, weights._modules(like)
    ).items()
  }
  tracemalloc.start()
  try:
    with pytest.raises(weights.WeightsError, match='shapes differ'):
      weights.from_state_dict(model, sd, like=like)
    peak = tracemalloc.get_traced_memory()[1]
  finally:
    tracemalloc.stop()
  assert peak < 16 * 2**20, f'{peak / 2**20:.0f} MiB traced'


def test_missing_torch_fails_the_parity_tests_unless_opted_out(monkeypatch):
  monkeypatch.setitem(sys.modules, 'torch', None)  # `import torch` fails
  monkeypatch.delenv(torch_testing.NO_TORCH, raising=False)
  with pytest.raises(BaseException) as info:  # a skip is no Exception
    torch_testing.torch()
  assert info.type is pytest.fail.Exception, f'{info.type}: {info.value}'
  assert 'CONVNETS_NO_TORCH=1' in str(info.value)
  monkeypatch.setenv(torch_testing.NO_TORCH, '1')
  with pytest.raises(pytest.skip.Exception, match='CONVNETS_NO_TORCH=1'):
    torch_testing.torch()


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
