"""Tests for nets/googlenet.py (Szegedy et al. 2015, Inception v1).

The reference parameter count is derived by hand from the filter numbers of
the paper's Table 1; the paper quotes about 6.8M parameters (the sum of its
Table 1 column, whose per-layer entries are rounded estimates) and 1.5G
multiply-adds.
"""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import nets
from nets import googlenet
from tests.nets import nets_testing

# Table 1: (#1x1, #3x3 reduce, #3x3, #5x5 reduce, #5x5, pool proj).
TABLE1 = [
  (64, 96, 128, 16, 32, 32),
  (128, 128, 192, 32, 96, 64),
  (192, 96, 208, 16, 48, 64),
  (160, 112, 224, 24, 64, 64),
  (128, 128, 256, 24, 64, 64),
  (112, 144, 288, 32, 64, 64),
  (256, 160, 320, 32, 128, 128),
  (256, 160, 320, 32, 128, 128),
  (384, 192, 384, 48, 128, 128),
]


# ImageNet models whose parameter count and MACs are checked in this file.
COVERED = ('googlenet', 'googlenet_bn', 'se_googlenet', 'googlenet_torchvision')


def _conv(k, c_in, c_out):
  return k * k * c_in * c_out + c_out  # weights + bias


def _inception(c, f):
  c1, r3, c3, r5, c5, cp = f
  n = _conv(1, c, c1) + _conv(1, c, r3) + _conv(3, r3, c3)
  n += _conv(1, c, r5) + _conv(5, r5, c5) + _conv(1, c, cp)
  return n, c1 + c3 + c5 + cp


def _se(c, r=16):
  return 2 * c * (c // r) + c // r + c


def _hand_count(classes=1000, se=False):
  total = _conv(7, 3, 64) + _conv(1, 64, 64) + _conv(3, 64, 192)
  c = 192
  for f in TABLE1:
    n, c = _inception(c, f)
    total += n + (_se(c) if se else 0)
  return total + c * classes + classes


def _aux_count(c, classes=1000, pooled=4):
  """Aux head: 1x1 conv 128, FC 1024 on the 4x4x128 map, FC classes."""
  fc1 = pooled * pooled * 128 * 1024 + 1024
  return _conv(1, c, 128) + fc1 + 1024 * classes + classes


def _trace(model, hw=224, batch=2, **kw):
  x = jax.ShapeDtypeStruct((batch, hw, hw, 3), jnp.float32)
  out, variables = jax.eval_shape(
    lambda x: model.init_with_output({'params': jax.random.key(0)}, x, **kw),
    x,
  )
  return out, variables


def test_table1_channels():
  assert [_inception(0, f)[1] for f in TABLE1] == [
    256,
    480,
    512,
    512,
    512,
    528,
    832,
    832,
    1024,
  ]  # the "depth" column of Table 1
  assert list(googlenet.INCEPTION_CONFIG.values()) == TABLE1


@pytest.mark.slow
def test_googlenet_params_match_hand_count():
  out, v = _trace(nets.create('googlenet'))
  assert out.shape == (2, 1000)
  n = nets_testing.count(v['params'])
  assert n == _hand_count() == 6_998_552
  assert n == pytest.approx(6.8e6, rel=0.03)  # paper's rounded total
  assert 'batch_stats' not in v


@pytest.mark.slow
def test_googlenet_macs():
  summary = nets.summarize(nets.create('googlenet'), (224, 224, 3))
  assert summary.params == _hand_count()
  # Table 1 ops column: conv1 118M, conv2 360M, 3a 128M, 3b 304M, 4a 73M,
  # 4b 88M, 4c 100M, 4d 119M, 4e 170M, 5a 54M, 5b 71M, linear 1M.
  table1 = (118, 360, 128, 304, 73, 88, 100, 119, 170, 54, 71, 1)
  assert sum(table1) == 1586
  assert summary.macs / 1e6 == pytest.approx(sum(table1), rel=0.02)
  assert summary.macs / 1e9 == pytest.approx(1.5, rel=0.06)
  assert summary.output_shape == (1000,)


@pytest.mark.slow
def test_variant_macs():
  # No published figure for either variant. BatchNorm costs no MACs, so
  # googlenet_bn has GoogLeNet's; SE adds two FCs per module, 2 c (c / 16)
  # MACs for a module of c output channels.
  base = nets.summarize(nets.create('googlenet'), (224, 224, 3)).macs
  bn = nets.summarize(nets.create('googlenet_bn'), (224, 224, 3))
  se = nets.summarize(nets.create('se_googlenet'), (224, 224, 3))
  assert bn.macs == base
  channels = [_inception(0, f)[1] for f in TABLE1]
  assert se.macs - base == sum(2 * c * (c // 16) for c in channels)
  assert bn.output_shape == se.output_shape == (1000,)


def test_variants_param_counts():
  convs = 64 + 64 + 192 + sum(sum(f) for f in TABLE1)
  out, v = _trace(nets.create('googlenet_bn'))
  assert out.shape == (2, 1000)
  # Each conv's bias (c) becomes a BatchNorm scale and bias (2c).
  assert nets_testing.count(v['params']) == _hand_count() + convs
  assert 'batch_stats' in v
  out, v = _trace(nets.create('se_googlenet'))
  assert out.shape == (2, 1000)
  assert nets_testing.count(v['params']) == _hand_count(se=True)


@pytest.mark.slow
def test_torchvision_variant_counts():
  # torchvision's published figures: 6,624,904 parameters, 1.50 G MACs
  # ("GFLOPS 1.5" in its model table). Against googlenet_bn, whose count and
  # MACs are checked above: every "5x5" branch is 3x3 (16 r5 c5 fewer
  # weights, and as many MACs per output pixel at 28, 28, 14 ... 7 px), and
  # the aux heads' fc1 weights are torchvision's 2048 x 1024.
  model = nets.create('googlenet_torchvision')
  summary = nets.summarize(model, (224, 224, 3))
  assert summary.params == 6_624_904
  bn = nets.summarize(nets.create('googlenet_bn'), (224, 224, 3))
  sizes = (28, 28, 14, 14, 14, 14, 14, 7, 7)
  saved = [16 * f[3] * f[4] for f in TABLE1]
  assert bn.params - summary.params == sum(saved)
  assert bn.macs - summary.macs == sum(
    w * s * s for w, s in zip(saved, sizes, strict=True)
  )
  assert summary.macs / 1e9 == pytest.approx(1.50, abs=0.005)
  _, v = _trace(nets.create('googlenet_torchvision', aux_heads=True))
  assert nets_testing.count(v['params']) == 13_004_888


def test_aux_heads_train_only():
  model = nets.create('googlenet', aux_heads=True)
  out, v = _trace(model)
  assert out.shape == (2, 1000)
  aux = nets_testing.count(v['params']) - _hand_count()
  assert aux == _aux_count(512) + _aux_count(528)
  x = jax.ShapeDtypeStruct((2, 224, 224, 3), jnp.float32)
  main, (a1, a2) = jax.eval_shape(
    lambda v, x: model.apply(
      v, x, train=True, return_aux=True, rngs={'dropout': nets_testing.key(0)}
    ),
    v,
    x,
  )
  assert main.shape == a1.shape == a2.shape == (2, 1000)
  with pytest.raises(ValueError, match='return_aux'):
    jax.eval_shape(lambda v, x: model.apply(v, x, return_aux=True), v, x)


@pytest.mark.slow
def test_tiny_train_and_eval_with_aux():
  # Only the modules around the aux heads (3a, 4a, 4d) keep it cheap; 80x80
  # inputs leave 5x5 maps at 4a for the heads' 5x5 pooling.
  subset = tuple((n, googlenet.INCEPTION_CONFIG[n]) for n in ('3a', '4a', '4d'))
  model = nets.create(
    'googlenet_tiny', aux_heads=True, se_reduction=16, inception=subset
  )
  x = nets_testing.normal((3, 80, 80, 3), 0)
  v = nets_testing.fake_variables(model, x)
  assert set(v) == {'params'}
  e = model.apply(v, x)
  chex.assert_shape(e, (3, 10))
  chex.assert_trees_all_equal(e, model.apply(v, x))
  outs = [
    model.apply(
      v, x, train=True, return_aux=True, rngs={'dropout': nets_testing.key(s)}
    )
    for s in (0, 1)
  ]
  chex.assert_tree_all_finite(outs)
  chex.assert_shape(outs[0][1], [(3, 10), (3, 10)])
  assert not np.allclose(outs[0][0], outs[1][0])
  main_only = model.apply(
    v, x, train=True, rngs={'dropout': nets_testing.key(0)}
  )
  chex.assert_shape(main_only, (3, 10))


def test_naive_module_channels_and_cost():
  c1, _, c3, _, c5, _ = TABLE1[0]
  naive = googlenet.NaiveInception(c1, c3, c5)
  reduced = googlenet.Inception(TABLE1[0])
  sn = nets.summarize(naive, (28, 28, 192))
  sr = nets.summarize(reduced, (28, 28, 192))
  # The pool branch passes all 192 input channels through.
  assert sn.output_shape == (28, 28, c1 + c3 + c5 + 192)
  assert sr.output_shape == (28, 28, 256)
  pixels = 28 * 28
  assert sn.macs == pixels * 192 * (c1 + 9 * c3 + 25 * c5)
  weights = _inception(192, TABLE1[0])[0] - sum(TABLE1[0])  # minus biases
  assert sr.macs == pixels * weights
  assert sn.macs > 2 * sr.macs  # why the notes' module (b) adds 1x1s
  x = nets_testing.normal((1, 6, 6, 8), 0)
  v = nets_testing.fake_variables(naive, x)
  y = naive.apply(v, x)
  # Last channels: 3x3 stride-1 max-pool of the input.
  np.testing.assert_allclose(y[0, 2, 2, -8:], x[0, 1:4, 1:4].max((0, 1)))
