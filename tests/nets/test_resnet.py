"""Tests for nets/resnet.py: ImageNet ResNets, plain nets, WRN, ResNeXt, SE.

References: torchvision's published parameter counts and GFLOPS (= MACs)
for its ResNet/WRN/ResNeXt models; He et al. 2016 (plain nets = ResNets
minus shortcuts); Hu et al. 2018 Table 2 for SE-ResNet(-X)t-50.
Big models are only traced (jax.eval_shape), never compiled.
"""

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import nets
from nets import layers
from nets import resnet
from tests.nets import nets_testing


def _trace(model, hw=224, batch=2):
  """(output shape, param count) without compiling anything."""
  x = jax.ShapeDtypeStruct((batch, hw, hw, 3), jnp.float32)
  out, variables = jax.eval_shape(
    lambda x: model.init_with_output({'params': jax.random.key(0)}, x), x
  )
  return out.shape, nets_testing.count(variables['params'])


# name: (torchvision params, torchvision GFLOPS = G MACs)
TORCHVISION = {
  'resnet18': (11_689_512, 1.81),
  'resnet34': (21_797_672, 3.66),
  'resnet50': (25_557_032, 4.09),
  'resnet101': (44_549_160, 7.80),
  'resnet152': (60_192_808, 11.51),
  'wide_resnet50_2': (68_883_240, 11.40),
  'wide_resnet101_2': (126_886_696, 22.75),
  'resnext50_32x4d': (25_028_904, 4.23),
  'resnext101_32x8d': (88_791_336, 16.41),
}
# The fast tier traces one basic-block and one bottleneck net.
FAST = ('resnet18', 'resnet50')
# ImageNet models whose parameter count and MACs are checked in this file.
COVERED = (
  *TORCHVISION,
  *(f'plain{d}' for d in (18, 34, 50, 101, 152)),
  'se_resnet50',
  'se_resnext50_32x4d',
)


def _proj(c_in, c_out):
  """1x1 conv (no bias) + BN (scale, bias) of a projection shortcut."""
  return c_in * c_out + 2 * c_out


def _se(c, r=16):
  """The two SE fully connected layers (with biases) for c channels."""
  return c * (c // r) + c // r + (c // r) * c + c


@pytest.mark.parametrize(
  'name',
  [
    n if n in FAST else pytest.param(n, marks=pytest.mark.slow)
    for n in TORCHVISION
  ],
)
@pytest.mark.slow
def test_imagenet_params_and_macs_match_torchvision(name):
  params, gmacs = TORCHVISION[name]
  model = nets.create(name)
  shape, n = _trace(model)
  assert shape == (2, 1000)
  assert n == params
  summary = nets.summarize(model, (224, 224, 3))
  assert summary.params == params
  assert summary.macs / 1e9 == pytest.approx(gmacs, rel=0.02)


def test_num_classes_changes_head_only():
  shape, n = _trace(nets.create('resnet18', num_classes=10))
  assert shape == (2, 10)
  assert n == TORCHVISION['resnet18'][0] - 990 * 512 - 990


# Projection shortcuts (1x1 conv + BN) of the residual nets, as
# (c_in, c_out, output side): basic-block nets (18, 34) and bottleneck nets.
_BASIC_PROJ = ((64, 128, 28), (128, 256, 14), (256, 512, 7))
_BOTTLENECK_PROJ = ((64, 256, 56), (256, 512, 28), (512, 1024, 14))
_BOTTLENECK_PROJ += ((1024, 2048, 7),)
# He et al. Table 1 FLOPs (= MACs) of the 18- and 34-layer nets, which the
# paper's plain and residual (option A) nets share.
_TABLE1_GMACS = {'plain18': 1.8, 'plain34': 3.6}


@pytest.mark.parametrize(
  'name',
  [
    'plain18',
    pytest.param('plain34', marks=pytest.mark.slow),
    pytest.param('plain50', marks=pytest.mark.slow),
    pytest.param('plain101', marks=pytest.mark.slow),
    pytest.param('plain152', marks=pytest.mark.slow),
  ],
)
def test_plain_nets_are_resnets_without_projections(name):
  # The only published figures for plain nets are Table 1's (18/34); every
  # plain net is checked against its residual twin minus the projections.
  proj = _BASIC_PROJ if name in ('plain18', 'plain34') else _BOTTLENECK_PROJ
  removed_params = sum(_proj(c_in, c_out) for c_in, c_out, _ in proj)
  removed_macs = sum(c_in * c_out * h * h for c_in, c_out, h in proj)
  shape, n = _trace(nets.create(name))
  assert shape == (2, 1000)
  twin = name.replace('plain', 'resnet')
  assert n == TORCHVISION[twin][0] - removed_params
  if name in ('plain18', 'plain50'):
    assert n == {'plain18': 11_515_688, 'plain50': 22_780_456}[name]
  plain = nets.summarize(nets.create(name), (224, 224, 3))
  residual = nets.summarize(nets.create(twin), (224, 224, 3))
  assert plain.macs == residual.macs - removed_macs
  if name in _TABLE1_GMACS:
    assert plain.macs / 1e9 == pytest.approx(_TABLE1_GMACS[name], rel=0.02)


@pytest.mark.parametrize(
  'depth', [18, pytest.param(34, marks=pytest.mark.slow)]
)
def test_option_a_shortcuts_add_no_parameters(depth):
  # The notes (He et al. Fig. 4): "the residual networks have no extra
  # parameter compared to their plain counterparts" (option A shortcuts).
  residual = nets.create(f'resnet{depth}', shortcut='a')
  plain = nets.summarize(nets.create(f'plain{depth}'), (224, 224, 3))
  s = nets.summarize(residual, (224, 224, 3))
  assert (s.params, s.macs) == (plain.params, plain.macs)
  assert s.output_shape == (1000,)
  x = jax.ShapeDtypeStruct((1, 8, 8, 3), jnp.float32)
  with pytest.raises(ValueError, match='shortcut'):
    jax.eval_shape(
      lambda x: nets.create('resnet_tiny', shortcut='c').init(
        {'params': jax.random.key(0)}, x
      ),
      x,
    )


def test_option_a_block_output():
  # The shortcut is the zero-padded subsampled input (shortcut_option_a).
  block = resnet.BasicBlock(8, strides=2, shortcut='a')
  x = nets_testing.normal((1, 4, 4, 4), 5)
  v = nets_testing.fake_variables(block, x, train=False)
  v = jax.tree_util.tree_map_with_path(
    lambda p, a: jnp.zeros_like(a) if p[-1].key == 'scale' else a, v
  )  # zero BN scales: the residual branch is 0 (BN biases are 0 too)
  y = block.apply(v, x, train=False)
  want = jax.nn.relu(resnet.shortcut_option_a(x, 8, 2))
  chex.assert_trees_all_close(y, want)
  assert 'proj_conv' not in v['params']


def test_plain_net_rejects_stochastic_depth():
  model = resnet.ResNet(
    stage_sizes=(1,),
    widths=(8,),
    stem='cifar',
    residual=False,
    drop_path_rate=0.1,
  )
  with pytest.raises(ValueError, match='plain'):
    _trace(model, hw=8)


@pytest.mark.slow
def test_se_models_match_hand_count_and_paper():
  # SE after the last BN of every bottleneck: widths 256/512/1024/2048
  # repeated 3/4/6/3 times.
  se_extra = 3 * _se(256) + 4 * _se(512) + 6 * _se(1024) + 3 * _se(2048)
  assert se_extra == 2_530_992
  for name, base, paper in (
    ('se_resnet50', 'resnet50', 28.09e6),
    ('se_resnext50_32x4d', 'resnext50_32x4d', 27.56e6),
  ):
    shape, n = _trace(nets.create(name))
    assert shape == (2, 1000)
    assert n == TORCHVISION[base][0] + se_extra
    assert n == pytest.approx(paper, rel=0.01)


@pytest.mark.slow
def test_se_macs():
  # SE adds C*C/8 MACs per block (two FCs on pooled features).
  se_macs = sum(
    k * 2 * c * (c // 16) for k, c in ((3, 256), (4, 512), (6, 1024), (3, 2048))
  )
  base = nets.summarize(nets.create('resnet50'), (224, 224, 3)).macs
  se = nets.summarize(nets.create('se_resnet50'), (224, 224, 3)).macs
  assert se - base == se_macs
  # Hu et al. Table 2: SE-ResNet-50 3.87 GFLOPs, measured on ResNet v1
  # (stride on the first 1x1 conv; v1.5 gives 4.09); SE-ResNeXt-50 4.25,
  # which matches the stride-on-3x3 layout of ResNeXt.
  v1 = nets.create('se_resnet50', stride_in_1x1=True)
  macs = nets.summarize(v1, (224, 224, 3)).macs
  assert macs / 1e9 == pytest.approx(3.87, rel=0.02)
  macs = nets.summarize(nets.create('se_resnext50_32x4d'), (224, 224, 3)).macs
  assert macs / 1e9 == pytest.approx(4.25, rel=0.02)


def test_resnet18_cifar():
  model = nets.create('resnet18_cifar')
  shape, n = _trace(model, hw=32)
  assert shape == (2, 10)
  # Same as ResNet-18 with a 3x3x3x64 stem instead of 7x7x3x64 and a
  # 10-way head.
  assert n == TORCHVISION['resnet18'][0] - (49 - 9) * 3 * 64 - 990 * 513
  assert n == 11_173_962


@pytest.mark.parametrize(
  'name', ['resnet_tiny', pytest.param('resnext_tiny', marks=pytest.mark.slow)]
)
def test_tiny_train_and_eval(name):
  model = nets.create(name, drop_path_rate=0.5)
  x = nets_testing.normal((4, 16, 16, 3), 1)
  v = nets_testing.fake_variables(model, x)
  evaluate = jax.jit(
    lambda v, x: model.apply(v, x, train=False, mutable=['batch_stats'])
  )
  train = jax.jit(
    lambda v, x, k: model.apply(
      v, x, train=True, rngs={'dropout': k}, mutable=['batch_stats']
    )
  )
  e1, same_stats = evaluate(v, x)
  e2, _ = evaluate(v, x)
  chex.assert_shape(e1, (4, 10))
  chex.assert_trees_all_equal(e1, e2)
  chex.assert_trees_all_equal(same_stats['batch_stats'], v['batch_stats'])
  outs = []
  for seed in (0, 1):
    y, upd = train(v, x, nets_testing.key(seed))
    chex.assert_tree_all_finite(y)
    chex.assert_shape(y, (4, 10))
    outs.append(y)
  assert not np.allclose(outs[0], outs[1])
  diff = jax.tree.map(
    lambda a, b: float(jnp.max(jnp.abs(a - b))),
    upd['batch_stats'],
    v['batch_stats'],
  )
  assert max(jax.tree.leaves(diff)) > 1e-3
  nets_testing.assert_every_var_updated(v, upd)


@pytest.mark.slow
def test_group_norm_is_per_example():
  model = nets.create('resnet_tiny', norm='group')
  x = nets_testing.normal((2, 16, 16, 3), 2)
  v = nets_testing.fake_variables(model, x)
  assert 'batch_stats' not in v
  both = model.apply(v, x, train=True, rngs={'dropout': nets_testing.key(0)})
  one = model.apply(v, x[:1], train=False)
  chex.assert_trees_all_close(both[:1], one, atol=1e-5)
  with pytest.raises(ValueError, match='norm'):
    nets_testing.fake_variables(nets.create('resnet_tiny', norm='layer'), x)


def test_drop_path_rates_follow_linear_rule():
  rates = []

  def record(next_fun, args, kwargs, context):
    if isinstance(context.module, layers.DropPath):
      rates.append(context.module.rate)
    return next_fun(*args, **kwargs)

  model = resnet.ResNet(
    stage_sizes=(2, 2), widths=(4, 8), stem='cifar', drop_path_rate=0.2
  )
  with nn.intercept_methods(record):
    _trace(model, hw=8)
  # l / L * p for l = 1..L = 4 (Huang et al. linear decay, p_L = 0.8).
  np.testing.assert_allclose(rates, [0.05, 0.1, 0.15, 0.2])


def test_bad_arguments():
  with pytest.raises(ValueError, match='drop_path_rate'):
    _trace(nets.create('resnet_tiny', drop_path_rate=1.0), hw=8)
  with pytest.raises(ValueError, match='stem'):
    _trace(nets.create('resnet_tiny', stem='big'), hw=8)


def test_bfloat16_compute_keeps_float32_params():
  model = nets.create('resnet_tiny', dtype=jnp.bfloat16)
  x = jnp.ones((2, 8, 8, 3))
  v = nets_testing.fake_variables(model, x)
  assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(v['params']))
  assert jax.jit(model.apply)(v, x).dtype == jnp.bfloat16


# --- CIFAR ResNets (He et al. 2016, Sec. 4.2) ------------------------------


def _cifar_resnet_params(n, classes=10):
  """He et al. 6n+2 net, option A (parameter-free) shortcuts, by hand."""
  conv_bn = lambda c_in, c_out: 9 * c_in * c_out + 2 * c_out
  total = conv_bn(3, 16)
  c_in = 16
  for w in (16, 32, 64):
    for _ in range(n):
      total += conv_bn(c_in, w) + conv_bn(w, w)
      c_in = w
  return total + 64 * classes + classes


@pytest.mark.parametrize(
  'depth,paper_m',
  [(20, 0.27), (32, 0.46), (44, 0.66), (56, 0.85), (110, 1.7)],
)
@pytest.mark.slow
def test_cifar_resnet_params(depth, paper_m):
  shape, n = _trace(nets.create(f'resnet{depth}_cifar'), hw=32)
  assert shape == (2, 10)
  assert n == _cifar_resnet_params((depth - 2) // 6)
  assert n / 1e6 == pytest.approx(paper_m, abs=0.01 if depth < 100 else 0.05)
  if depth == 20:
    assert n == 269_722


def test_option_a_shortcut_hand_values():
  x = jnp.arange(2 * 4 * 4 * 2, dtype=jnp.float32).reshape(2, 4, 4, 2)
  y = resnet.shortcut_option_a(x, 6, 2)
  chex.assert_shape(y, (2, 2, 2, 6))
  np.testing.assert_array_equal(y[..., 2:4], x[:, ::2, ::2, :])
  assert float(jnp.abs(y[..., :2]).sum() + jnp.abs(y[..., 4:]).sum()) == 0.0


def test_cifar_resnet_depth_check_and_option_a_everywhere():
  with pytest.raises(ValueError, match='depth'):
    resnet.resnet_cifar(21)
  model = nets.create('resnet20_cifar')
  assert (model.shortcut, model.stem, model.widths) == (
    'a',
    'cifar',
    (16, 32, 64),
  )
  assert model.stage_sizes == (3, 3, 3)


@pytest.mark.slow
def test_cifar_tiny_train_and_eval():
  model = nets.create('resnet8_cifar_tiny', drop_path_rate=0.3)
  x = nets_testing.normal((4, 8, 8, 3), 3)
  v, y = nets_testing.check_train_eval(model, x, 10)
  # Eval with an immutable 'batch_stats' gives the same logits.
  chex.assert_trees_all_equal(jax.jit(model.apply)(v, x), y)
  g = nets.create('resnet8_cifar_tiny', norm='group')
  vg = nets_testing.fake_variables(g, x)
  assert 'batch_stats' not in vg
  chex.assert_tree_all_finite(g.apply(vg, x))


def test_narrow_cifar_twins_have_the_same_params():
  # resnet_cifar takes narrower widths; the plain twin (residual=False) has
  # exactly the residual net's parameters (option A shortcuts).
  widths = (8, 16, 32)
  conv_bn = lambda c_in, c_out: 9 * c_in * c_out + 2 * c_out
  by_hand = conv_bn(1, 8) + 32 * 10 + 10
  c_in = 8
  for w in widths:
    by_hand += conv_bn(c_in, w) + conv_bn(w, w)
    c_in = w
  assert by_hand == 19_074
  for residual in (True, False):
    model = nets.create('resnet8_cifar_tiny', residual=residual, widths=widths)
    n, out = nets_testing.trace(model, (2, 28, 28, 1))
    assert (n, out.shape) == (by_hand, (2, 10))


def _embed_in_3x3(params_1d):
  """2-D params whose 3x3 kernels hold the 1-D k x 1 kernels mid-column."""

  def embed(path, leaf):
    if path[-1].key != 'kernel' or leaf.ndim != 4 or leaf.shape[:2] != (3, 1):
      return leaf
    return jnp.zeros((3, 3, *leaf.shape[2:])).at[:, 1:2].set(leaf)

  return jax.tree_util.tree_map_with_path(embed, params_1d)


@pytest.mark.parametrize(
  'residual', [True, pytest.param(False, marks=pytest.mark.slow)]
)
@pytest.mark.slow
def test_1d_cifar_resnet_is_the_2d_net_on_a_unit_width(residual):
  # On [B, L, 1, C] with padding 1, only the middle column of a 3x3 kernel
  # meets data, so the 2-D net (checked against the paper above) with the
  # 1-D kernels in that column must give the 1-D net's logits.
  widths = (4, 8, 8)
  one_d = nets.create(
    'resnet8_cifar_tiny', spatial_dims=1, widths=widths, residual=residual
  )
  two_d = nets.create('resnet8_cifar_tiny', widths=widths, residual=residual)
  x = nets_testing.normal((3, 40, 1), 5)
  v1 = one_d.init(jax.random.key(1), x)
  v2 = {**v1, 'params': _embed_in_3x3(v1['params'])}
  y1 = jax.jit(one_d.apply)(v1, x)
  y2 = jax.jit(two_d.apply)(v2, x[:, :, None, :])
  chex.assert_shape(y1, (3, 10))
  chex.assert_trees_all_close(y1, y2, atol=1e-5)
  # [B, L] signals are read as one channel.
  chex.assert_trees_all_close(jax.jit(one_d.apply)(v1, x[..., 0]), y1)


def test_1d_cifar_resnet_params_by_hand():
  # He et al.'s 6n+2 net with 3 x 1 kernels: conv + BN is 3 c_in c_out + 2 c.
  conv_bn = lambda c_in, c_out: 3 * c_in * c_out + 2 * c_out
  widths, n = (8, 16, 32), 3
  by_hand, c_in = conv_bn(1, 8), 8
  for w in widths:
    for _ in range(n):
      by_hand += conv_bn(c_in, w) + conv_bn(w, w)
      c_in = w
  by_hand += 32 * 10 + 10
  assert by_hand == 23_314
  for residual in (True, False):
    model = nets.create(
      'resnet20_cifar', spatial_dims=1, widths=widths, residual=residual
    )
    n_params, out = nets_testing.trace(model, (2, 40, 1))
    assert (n_params, out.shape) == (by_hand, (2, 10))


def test_1d_resnet_rejects_what_it_cannot_build():
  x = jnp.zeros((2, 40, 1))
  with pytest.raises(ValueError, match='spatial_dims must be 1 or 2'):
    nets.create('resnet8_cifar_tiny', spatial_dims=3).init(jax.random.key(0), x)
  with pytest.raises(ValueError, match="stem='cifar'"):
    nets.create('resnet18', spatial_dims=1).init(jax.random.key(0), x)
  with pytest.raises(ValueError, match=r'\[B, L\] or \[B, L, C\]'):
    nets.create('resnet8_cifar_tiny', spatial_dims=1).init(
      jax.random.key(0), jnp.zeros((2, 8, 8, 1))
    )
