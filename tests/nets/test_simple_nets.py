"""Tests for mlp.py, lenet.py, alexnet.py and vgg.py (CNNs: test_small_cnn.py).

Parameter counts are exact (torchvision's published counts or hand sums with
ops.cost); MACs are within 2% of the published figures. Big models are only
traced with jax.eval_shape; tiny variants run forward in train and eval mode.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import nets
from ops import cost
from tests.nets import nets_testing

# torchvision's parameter counts and "GFLOPS" (MACs) at 224x224.
TORCHVISION = {
  'alexnet': (61_100_840, 0.71e9),
  'vgg11': (132_863_336, 7.61e9),
  'vgg13': (133_047_848, 11.31e9),
  'vgg16': (138_357_544, 15.47e9),
  'vgg19': (143_667_240, 19.63e9),
  'vgg11_bn': (132_868_840, 7.61e9),
  'vgg13_bn': (133_053_736, 11.31e9),
  'vgg16_bn': (138_365_992, 15.47e9),
  'vgg19_bn': (143_678_248, 19.63e9),
}


# ImageNet models whose parameter count and MACs are checked in this file
# (tests/nets/test_registry.py checks that every ImageNet model is covered).
COVERED = (*TORCHVISION, 'alexnet_paper', 'zfnet')


def _conv(k, c_in, c_out, groups=1):
  return cost.conv_params(k, k, c_in, c_out, groups=groups, bias=True)


def _fc_head(n_in):
  return (
    cost.dense_params(n_in, 4096)
    + cost.dense_params(4096, 4096)
    + cost.dense_params(4096, 1000)
  )


def _shapes(name, batch=2, shape=None, **kwargs):
  """(param count, output shape) by tracing init and apply; no compile."""
  model = nets.create(name, **kwargs)
  x_shape = (batch, *(shape or nets.default_input_shape(name)))
  n, out = nets_testing.trace(model, x_shape, train=False)
  return n, out.shape


# The fast tier traces AlexNet and one VGG with and one without BatchNorm.
FAST = ('alexnet', 'vgg11', 'vgg16_bn')


@pytest.mark.parametrize(
  'name',
  [
    n if n in FAST else pytest.param(n, marks=pytest.mark.slow)
    for n in sorted(TORCHVISION)
  ],
)
def test_torchvision_counts_and_macs(name):
  want_params, want_macs = TORCHVISION[name]
  n, out_shape = _shapes(name)
  assert n == want_params
  assert out_shape == (2, 1000)
  macs = nets.summarize(nets.create(name), (224, 224, 3)).macs
  assert abs(macs - want_macs) / want_macs < 0.02


def test_alexnet_paper_two_tower_layout():
  n, out_shape = _shapes('alexnet_paper')
  want = (
    _conv(11, 3, 96)
    + _conv(5, 96, 256, groups=2)
    + _conv(3, 256, 384)
    + _conv(3, 384, 384, groups=2)
    + _conv(3, 384, 256, groups=2)
    + _fc_head(6 * 6 * 256)
  )
  assert n == want == 60_965_224  # the paper's "60 million parameters"
  assert out_shape == (2, 1000)
  s = nets.summarize(nets.create('alexnet_paper'), (227, 227, 3))
  assert s.rows[0].output_shape == (55, 55, 96)  # Fig. 2's first layer
  # The paper gives no MAC count; Sze et al. 2017 ("Efficient processing of
  # deep neural networks", Proc. IEEE, Table III) count 724M MACs for this
  # two-tower AlexNet: convs 666M (grouped conv2/4/5), fcs 58.6M.
  assert s.macs / 1e6 == pytest.approx(724, rel=0.02)
  convs = (
    cost.conv_macs(11, 11, 3, 96, 55, 55)
    + cost.conv_macs(5, 5, 96, 256, 27, 27, groups=2)
    + cost.conv_macs(3, 3, 256, 384, 13, 13)
    + cost.conv_macs(3, 3, 384, 384, 13, 13, groups=2)
    + cost.conv_macs(3, 3, 384, 256, 13, 13, groups=2)
  )
  fcs = 6 * 6 * 256 * 4096 + 4096 * 4096 + 4096 * 1000
  assert s.macs == convs + fcs == 724_406_816


def test_zfnet_layout_from_the_paper():
  n, out_shape = _shapes('zfnet')
  want = (
    _conv(7, 3, 96)
    + _conv(5, 96, 256)
    + _conv(3, 256, 384)
    + _conv(3, 384, 384)
    + _conv(3, 384, 256)
    + _fc_head(6 * 6 * 256)
  )
  assert n == want == 62_357_608
  assert out_shape == (2, 1000)
  s = nets.summarize(nets.create('zfnet'), (224, 224, 3))
  sizes = [r.output_shape[0] for r in s.rows if r.kind in ('Conv', 'MaxPool')]
  # Zeiler & Fergus Fig. 3: 110, 55, 26, 13, 13, 13, 13, 6.
  assert sizes == [110, 55, 26, 13, 13, 13, 13, 6]
  # No published MAC count for ZFNet: by hand from Fig. 3's map sizes,
  # k*k*c_in*c_out*h*w per conv, n_in*n_out per fc.
  convs = (
    7 * 7 * 3 * 96 * 110**2
    + 5 * 5 * 96 * 256 * 26**2
    + 9 * 13**2 * (256 * 384 + 384 * 384 + 384 * 256)
  )
  fcs = 6 * 6 * 256 * 4096 + 4096 * 4096 + 4096 * 1000
  assert s.macs == convs + fcs == 1_168_032_896


def test_lenet5_count_and_shapes():
  # C1 5*5*1*6+6, C3 5*5*6*16+16, F5 400*120+120, F6 120*84+84, out 84*10+10.
  n, out_shape = _shapes('lenet5')
  assert n == 156 + 2_416 + 48_120 + 10_164 + 850 == 61_706
  assert out_shape == (2, 10)


def test_lenet5_forward():
  model = nets.create('lenet5', pool='max', activation='relu', dropout_rate=0.5)
  x = nets_testing.normal((2, 28, 28, 1), 0)
  nets_testing.check_train_eval(model, x, 10)


def test_mlp_flattens_and_counts():
  n, out_shape = _shapes('mlp', hidden_sizes=(32, 16), num_classes=3)
  assert n == 784 * 32 + 32 + 32 * 16 + 16 + 16 * 3 + 3
  assert out_shape == (2, 3)
  model = nets.create('mlp', hidden_sizes=(8,), dropout_rate=0.5)
  x = nets_testing.normal((4, 6, 6, 1), 0)
  variables = nets_testing.fake_variables(model, x, train=False)
  np.testing.assert_allclose(
    model.apply(variables, x), model.apply(variables, x.reshape(4, 36))
  )
  nets_testing.check_train_eval(model, x, 10)


def test_mlp_constant_init_keeps_hidden_units_identical():
  # The notes' symmetry problem: equal weights give equal hidden units.
  model = nets.create('mlp', hidden_sizes=(4,), kernel_init='ones')
  x = jnp.array([[0.5, -1.0, 2.0], [1.0, 0.0, -0.5]])
  v = model.init({'params': nets_testing.key(0)}, x)
  _, acts = nets.capture_intermediates(model, v, x, ['fc0'])
  hidden = np.asarray(acts['fc0'])
  np.testing.assert_allclose(hidden, np.repeat(x.sum(1, keepdims=True), 4, 1))
  with pytest.raises(ValueError, match='kernel_init'):
    nets.create('mlp', kernel_init='bogus').init(
      {'params': jax.random.key(0)}, jnp.ones((1, 3))
    )


@pytest.mark.slow
def test_mlp_maxout_layers_take_the_max_of_their_pieces():
  model = nets.create(
    'mlp', hidden_sizes=(5, 4), activation='maxout', maxout_pieces=3
  )
  n, out_shape = _shapes(
    'mlp', shape=(6,), hidden_sizes=(5, 4), activation='maxout', maxout_pieces=3
  )
  assert n == 3 * (6 * 5 + 5) + 3 * (5 * 4 + 4) + 4 * 10 + 10
  assert out_shape == (2, 10)
  x = nets_testing.normal((7, 6), 0)
  v = model.init({'params': nets_testing.key(0)}, x)
  _, acts = nets.capture_intermediates(model, v, x, ['fc0'])
  w = np.asarray(v['params']['fc0']['kernel'])  # [k, in, out]
  b = np.asarray(v['params']['fc0']['bias'])  # [k, out]
  want = np.max(np.einsum('bi,kio->bko', np.asarray(x), w) + b, axis=1)
  np.testing.assert_allclose(acts['fc0'], want, rtol=1e-5, atol=1e-6)
  # Each piece is drawn on its own [in, out] fans: LeCun's Var = 1 / 300,
  # not 1 / 600 as a fan-in of k * in would give.
  wide = nets.create('mlp', hidden_sizes=(400,), activation='maxout')
  wv = wide.init({'params': nets_testing.key(1)}, jnp.ones((1, 300)))
  std = float(np.std(wv['params']['fc0']['kernel']))
  assert std == pytest.approx(np.sqrt(1 / 300), rel=0.02)
  # That variance keeps a maxout net's second moment over depth (He's 2/n
  # would double it per layer: 2^6 = 64 after six layers).
  deep = nets.create('mlp', hidden_sizes=(256,) * 6, activation='maxout')
  x = nets_testing.normal((512, 256), 2)
  dv = deep.init({'params': nets_testing.key(2)}, x)
  _, acts = nets.capture_intermediates(deep, dv, x, ['fc5'])
  assert float(jnp.mean(acts['fc5'] ** 2)) == pytest.approx(1.0, rel=0.3)


def test_mlp_parametrised_kernel_inits():
  x = jnp.ones((1, 500))
  small = nets.create('mlp', hidden_sizes=(400,), kernel_init='normal:0.01')
  v = small.init({'params': nets_testing.key(0)}, x)
  assert float(np.std(v['params']['fc0']['kernel'])) == pytest.approx(
    0.01, rel=0.02
  )
  const = nets.create('mlp', hidden_sizes=(3,), kernel_init='constant:0.25')
  v = const.init({'params': nets_testing.key(0)}, x)
  np.testing.assert_array_equal(v['params']['fc0']['kernel'], 0.25)
  np.testing.assert_array_equal(v['params']['head']['kernel'], 0.25)
  for bad, match in (('uniform:0.1', 'parametrised'), ('normal:x', 'number')):
    with pytest.raises(ValueError, match=match):
      nets.create('mlp', kernel_init=bad).init(
        {'params': nets_testing.key(0)}, x
      )


def test_alexnet_tiny_forward():
  x = nets_testing.normal((2, 32, 32, 3), 0)
  nets_testing.check_train_eval(nets.create('alexnet_tiny'), x, 10)


@pytest.mark.slow
def test_vgg_tiny_bn_forward_and_bfloat16():
  x = nets_testing.normal((2, 32, 32, 3), 0)
  nets_testing.check_train_eval(nets.create('vgg_tiny_bn'), x, 10)
  model = nets.create('vgg_tiny', dtype=jnp.bfloat16)
  variables = nets_testing.fake_variables(model, x, train=False)
  y = jax.jit(model.apply)(variables, x)
  assert y.dtype == jnp.bfloat16
  assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(variables))
