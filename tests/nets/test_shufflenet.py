"""Tests for nets/shufflenet.py (Zhang, Zhou, Lin & Sun, CVPR 2018).

References: the paper's Table 1 (stage channels, output sizes and the 1x
complexity per group count g), Table 2 (0.5x: 38 MFLOPs) and Table 5, and
the authors' release (megvii-model/ShuffleNet-Series, ShuffleNetV1: stem and
stage channels in network.py, FLOPs and #Params of the g = 3 and g = 8
models at 0.5x to 2x in README.md). ShuffleNet's "FLOPs" are mult-adds.
Every variant is also checked exactly against a hand count of its layers;
for g = 1, 2, 4 at 0.5x, 1.5x and 2x that count is the only reference (no
published figure exists). Big models are only traced, never compiled.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import pytest

import nets
from nets import layers
from nets import shufflenet
from tests.nets import nets_testing

# (g, scale): (stem, stage channels), by hand from Table 1 times the scale
# rounded to a multiple of 4g; g = 3 and g = 8 are the authors' network.py.
CHANNELS = {
  (1, 0.5): (12, (72, 144, 288)),
  (1, 1.0): (24, (144, 288, 576)),
  (1, 1.5): (24, (216, 432, 864)),
  (1, 2.0): (48, (288, 576, 1152)),
  (2, 0.5): (12, (104, 200, 400)),
  (2, 1.0): (24, (200, 400, 800)),
  (2, 1.5): (24, (304, 600, 1200)),
  (2, 2.0): (48, (400, 800, 1600)),
  (3, 0.5): (12, (120, 240, 480)),
  (3, 1.0): (24, (240, 480, 960)),
  (3, 1.5): (24, (360, 720, 1440)),
  (3, 2.0): (48, (480, 960, 1920)),
  (4, 0.5): (12, (144, 272, 544)),
  (4, 1.0): (24, (272, 544, 1088)),
  (4, 1.5): (24, (416, 816, 1632)),
  (4, 2.0): (48, (544, 1088, 2176)),
  (8, 0.5): (16, (192, 384, 768)),
  (8, 1.0): (24, (384, 768, 1536)),
  (8, 1.5): (24, (576, 1152, 2304)),
  (8, 2.0): (48, (768, 1536, 3072)),
}
# (g, scale): (MFLOPs, M params or None). 1x: Table 1; the rest: Table 2,
# Table 5 and the README (whose #Params omit the classifier bias).
PUBLISHED = {
  (1, 1.0): (143, None),
  (2, 1.0): (140, None),
  (3, 1.0): (137, 1.9),
  (4, 1.0): (133, None),
  (8, 1.0): (137, 2.4),
  (3, 0.5): (38, 0.7),
  (3, 1.5): (292, 3.4),
  (3, 2.0): (524, 5.4),
  (8, 0.5): (40, 1.0),
  (8, 1.5): (290, 4.3),
  (8, 2.0): (522, 6.5),
}


def _variant(name):
  """'shufflenet_v1_g8_x0_5' -> (8, 0.5); aliases are 1x (g = 3 default)."""
  if name == 'shufflenet_v1':
    return 3, 1.0
  parts = name.split('_')
  g = int(parts[2][1:])
  scale = float(f'{parts[3][1:]}.{parts[4]}') if len(parts) > 3 else 1.0
  return g, scale


def _hand_cost(g, stem, channels, units=(4, 8, 4), classes=1000):
  """(params, MACs) at 224x224, layer by layer from Fig. 2 and Table 1.

  Convs have no bias and each is followed by a BatchNorm (2c params); the
  first 1x1 conv of Stage 2 is not grouped; a stride-2 unit's branch makes
  `out - in` channels (its shortcut is a parameter-free average pool).
  """
  params = 3 * 3 * 3 * stem + 2 * stem
  macs = 3 * 3 * 3 * stem * 112 * 112
  h, c_in = 56, stem  # after the 3x3/2 max pool
  for s, (c, n) in enumerate(zip(channels, units, strict=True)):
    for u in range(n):
      strides = 2 if u == 0 else 1
      mid = c // 4
      g1 = 1 if s == u == 0 else g
      out = c - c_in if strides == 2 else c
      h_out = h // strides
      params += c_in * mid // g1 + 2 * mid  # gconv1 + BN
      params += 9 * mid + 2 * mid  # depthwise 3x3 + BN
      params += mid * out // g + 2 * out  # gconv2 + BN
      macs += h * h * c_in * mid // g1
      macs += h_out * h_out * (9 * mid + mid * out // g)
      c_in, h = c, h_out
  params += c_in * classes + classes
  macs += c_in * classes
  return params, macs


NAMES = sorted(n for n in shufflenet.MODELS if 'tiny' not in n)
# Traced in the fast suite: Table 1's default (g = 3, 1x); every other
# variant, published figures included, in the slow tier (the raised stem of
# g = 8, 0.5x is also checked fast, in test_scales_and_bad_arguments).
FAST = {'shufflenet_v1_g3_x1_0'}
COVERED = tuple(NAMES)  # every registered ImageNet ShuffleNet


@pytest.mark.parametrize(
  'name',
  [n if n in FAST else pytest.param(n, marks=pytest.mark.slow) for n in NAMES],
)
@pytest.mark.slow
def test_params_and_macs_hand_count_and_published(name):
  g, scale = _variant(name)
  stem, channels = CHANNELS[g, scale]
  assert shufflenet.stage_channels(g, scale) == channels
  assert shufflenet.default_stem_channels(g, scale, channels[0]) == stem
  model = nets.create(name)
  n, out = nets_testing.trace(model, (2, 224, 224, 3), train=False)
  assert out.shape == (2, 1000)
  s = nets.summarize(model, (224, 224, 3))
  assert s.params == n
  assert (n, s.macs) == _hand_cost(g, stem, channels)
  if (g, scale) in PUBLISHED:
    mflops, mparams = PUBLISHED[g, scale]
    assert s.macs / 1e6 == pytest.approx(mflops, rel=0.02)
    if mparams is not None:
      assert abs((n - 1000) / 1e6 - mparams) <= 0.05


@pytest.mark.slow
def test_shufflenet_tiny_forward_with_stochastic_depth():
  # No dropout: train outputs differ between keys through drop-path only.
  # Only unit 2 has an identity shortcut: rate 2/4 * 0.9 per example.
  model = nets.create('shufflenet_v1_tiny', drop_path_rate=0.9)
  x = nets_testing.normal((8, 32, 32, 3), 0)
  nets_testing.check_train_eval(model, x, 10)


def test_table1_stage_output_sizes():
  s = nets.summarize(nets.create('shufflenet_v1_g3'), (224, 224, 3))
  rows = {r.name: r for r in s.rows}
  stage_out = [
    rows[f'stage{k}_unit{u}/bn3'].output_shape
    for k, u in ((2, 4), (3, 8), (4, 4))
  ]
  assert stage_out == [(28, 28, 240), (14, 14, 480), (7, 7, 960)]
  assert rows['maxpool'].output_shape == (56, 56, 24)
  # The stride-2 unit's pooled shortcut keeps the input's channels.
  assert rows['stage3_unit1/shortcut_pool'].output_shape == (14, 14, 240)


def test_grouping_of_pointwise_convs():
  model = nets.create('shufflenet_v1_g3')
  x = jax.ShapeDtypeStruct((1, 224, 224, 3), jnp.float32)
  p = jax.eval_shape(lambda x: model.init({'params': jax.random.key(0)}, x), x)[
    'params'
  ]
  # Stage 2's first pointwise conv is not grouped: 24 -> 60 in full.
  assert p['stage2_unit1']['gconv1']['kernel'].shape == (1, 1, 24, 60)
  # Later ones are: 240 / 3 inputs per group; stride-2 branch makes 240 - 24.
  assert p['stage2_unit2']['gconv1']['kernel'].shape == (1, 1, 80, 60)
  assert p['stage2_unit1']['gconv2']['kernel'].shape == (1, 1, 20, 216)


def test_scales_and_bad_arguments():
  # Nearest multiple of 4g, ties up: 200 * 0.5 / 8 = 12.5 -> 13 * 8.
  assert shufflenet.stage_channels(2, 0.5) == (104, 200, 400)
  # 12 + 4 = 16: 192 - 16 splits into 8 groups, 192 - 12 does not.
  assert shufflenet.default_stem_channels(8, 0.5, 192) == 16
  assert shufflenet.default_stem_channels(3, 0.75, 180) == 18
  with pytest.raises(ValueError, match='groups'):
    shufflenet.stage_channels(5, 1.0)
  with pytest.raises(ValueError, match='scale'):
    shufflenet.stage_channels(3, 0.0)
  x = jax.ShapeDtypeStruct((1, 32, 32, 3), jnp.float32)
  with pytest.raises(ValueError, match='drop_path_rate'):
    nets_testing.trace(
      nets.create('shufflenet_v1_tiny', drop_path_rate=1.0), x.shape
    )
  with pytest.raises(ValueError, match='norm'):
    nets_testing.trace(nets.create('shufflenet_v1_tiny', norm='layer'), x.shape)


def test_drop_path_rates_follow_linear_rule():
  rates = []

  def record(next_fun, args, kwargs, context):
    if isinstance(context.module, layers.DropPath):
      rates.append((context.module.path[0], context.module.rate))
    return next_fun(*args, **kwargs)

  model = shufflenet.ShuffleNetV1(
    groups=2,
    channels=(16, 32),
    stage_units=(3, 2),
    stem_channels=8,
    drop_path_rate=0.5,
  )
  x = jax.ShapeDtypeStruct((1, 16, 16, 3), jnp.float32)
  v = jax.eval_shape(lambda x: model.init({'params': jax.random.key(0)}, x), x)
  with nn.intercept_methods(record):  # the apply pass only
    jax.eval_shape(lambda v, x: model.apply(v, x), v, x)
  # Units l = 1..5: l / 5 * 0.5; only the stride-1 units (2, 3, 5) have an
  # identity shortcut to fall back on.
  assert rates == [
    ('stage2_unit2', pytest.approx(0.2)),
    ('stage2_unit3', pytest.approx(0.3)),
    ('stage3_unit2', pytest.approx(0.5)),
  ]


def test_group_norm_option():
  bn = nets.create('shufflenet_v1_tiny')
  gn = nets.create('shufflenet_v1_tiny', norm='group')
  x = jax.ShapeDtypeStruct((2, 32, 32, 3), jnp.float32)
  struct = jax.eval_shape(
    lambda x: gn.init({'params': jax.random.key(0)}, x), x
  )
  assert set(struct) == {'params'}  # no running statistics
  assert (
    nets_testing.trace(gn, x.shape)[0] == nets_testing.trace(bn, x.shape)[0]
  )
  kinds = {r.kind for r in nets.summarize(gn, (32, 32, 3)).rows}
  assert 'GroupNorm' in kinds and 'BatchNorm' not in kinds
