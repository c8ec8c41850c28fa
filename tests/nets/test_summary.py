"""Tests for nets/summary.py (the CLI: tests/experiments/test_summary.py)."""

import logging
import math

import jax
from jax import lax
import jax.numpy as jnp
import numpy as np
import pytest

import nets
from ops import cost
from tests.nets import nets_testing

# The notes' VGG-16 table (seed 002): conv params without biases, then FCs.
NOTES_VGG16_CONV = (
  1_728,
  36_864,
  73_728,
  147_456,
  294_912,
  589_824,
  589_824,
  1_179_648,
  2_359_296,
  2_359_296,
  2_359_296,
  2_359_296,
  2_359_296,
)
NOTES_VGG16_FC = (102_760_448, 16_777_216, 4_096_000)


@pytest.fixture(scope='module')
def vgg16_summary():
  return nets.summarize(nets.create('vgg16'), (224, 224, 3))


def _weights_without_bias(row):
  return row.params - row.output_shape[-1]


def test_vgg16_matches_the_notes_table(vgg16_summary):
  rows = {r.kind: [] for r in vgg16_summary.rows}
  for r in vgg16_summary.rows:
    rows[r.kind].append(r)
  convs = tuple(_weights_without_bias(r) for r in rows['Conv'])
  fcs = tuple(_weights_without_bias(r) for r in rows['Dense'])
  assert convs == NOTES_VGG16_CONV
  assert fcs == NOTES_VGG16_FC
  assert vgg16_summary.params == 138_357_544  # "138M parameters"
  assert [r.output_shape for r in rows['MaxPool']] == [
    (112, 112, 64),
    (56, 56, 128),
    (28, 28, 256),
    (14, 14, 512),
    (7, 7, 512),
  ]


def test_vgg16_activation_count_is_the_notes_memory_column(vgg16_summary):
  # The notes' per-layer "memory" column (input, convs, pools, FCs), summed
  # by ops.cost. It adds up to 15.2M values; the slide's "TOTAL memory: 24M"
  # does not equal its own column, so the column is the reference.
  column = sum(row.memory for row in cost.vgg16_table())
  assert vgg16_summary.activations == column == 15_237_608
  assert vgg16_summary.output_shape == (1000,)


def test_macs_are_output_positions_times_kernel_size():
  model = nets.create('shufflenet_v1_tiny')
  s = nets.summarize(model, (32, 32, 3))
  variables = jax.eval_shape(
    lambda: model.init(
      {'params': jax.random.key(0)}, jnp.ones((1, 32, 32, 3)), train=False
    )
  )
  total = 0
  for r in s.rows:
    sub = variables['params']
    for part in r.name.split('/'):
      sub = sub.get(part, {})
    if r.kind in ('Conv', 'DepthwiseConv'):
      h, w = r.output_shape[:2]
      assert r.macs == h * w * math.prod(sub['kernel'].shape), r.name
    elif r.kind == 'Dense':
      assert r.macs == math.prod(sub['kernel'].shape)
    else:
      assert r.macs == 0
    total += r.macs
  assert s.macs == total
  assert type(s.params) is int and type(s.macs) is int  # exact, not floats
  n_params = sum(
    math.prod(p.shape) for p in jax.tree.leaves(variables['params'])
  )
  assert s.params == n_params
  kinds = {r.kind for r in s.rows}
  assert {'Conv', 'DepthwiseConv', 'BatchNorm', 'MaxPool', 'Dense'} <= kinds


def test_table_text(vgg16_summary):
  text = str(vgg16_summary)
  assert text == vgg16_summary.table()
  for piece in ('conv1_1', 'fc6', '224x224x64', '102,764,544', '138,357,544'):
    assert piece in text
  assert '15.470 G' in text


def test_summarize_handles_vectors_and_rejects_bad_shapes():
  s = nets.summarize(nets.create('cnn1d'), (40,))
  assert s.output_shape == (10,)
  assert s.macs > 0
  with pytest.raises(ValueError, match='input_shape'):
    nets.summarize(nets.create('cnn1d'), (0, 3))


def test_capture_intermediates_by_name_and_pattern():
  model = nets.create('lenet5')
  x = nets_testing.normal((2, 28, 28, 1), 1)
  # Random params from numpy: a jitted init would compile threefry (slow).
  struct = jax.eval_shape(
    lambda x: model.init({'params': jax.random.key(0)}, x), x
  )
  rng = np.random.default_rng(0)
  variables = jax.tree.map(
    lambda s: jnp.asarray(0.3 * rng.standard_normal(s.shape), s.dtype), struct
  )
  out, acts = nets.capture_intermediates(model, variables, x, ['c1', 'f5'])
  assert set(acts) == {'c1', 'f5'}
  p = variables['params']['c1']
  want = lax.conv_general_dilated(
    x,
    p['kernel'],
    (1, 1),
    ((2, 2), (2, 2)),
    dimension_numbers=('NHWC', 'HWIO', 'NHWC'),
  )
  np.testing.assert_allclose(acts['c1'], want + p['bias'], atol=1e-5)
  np.testing.assert_allclose(out, jax.jit(model.apply)(variables, x), atol=1e-5)
  _, pools = nets.capture_intermediates(model, variables, x, 's[0-9]')
  assert {k: v.shape for k, v in pools.items()} == {
    's2': (2, 14, 14, 6),
    's4': (2, 5, 5, 16),
  }


def test_summarize_compiles_nothing(caplog):
  # jax logs every XLA compilation under log_compiles; summarize only traces.
  caplog.set_level(logging.WARNING, logger='jax')
  with jax.log_compiles(True):
    nets.summarize(nets.create('resnet_tiny', num_classes=3), (9, 9, 3))
  assert not [r for r in caplog.records if 'Compiling' in r.getMessage()]
  with jax.log_compiles(True):  # the detector sees a real compilation
    jax.jit(lambda x: x * 3.0 - 1.0)(jnp.ones((3, 5)))
  assert [r for r in caplog.records if 'Compiling' in r.getMessage()]


def test_resnet_table_rows_read_like_the_paper():
  # He et al. Table 1 for ResNet-18: conv1 112x112x64, 3x3/2 max pool to
  # 56x56, then conv2_x..conv5_x at 56, 28, 14, 7; a norm chosen by name
  # shows as the layer it is.
  s = nets.summarize(nets.create('resnet18'), (224, 224, 3))
  rows = {r.name: r for r in s.rows}
  assert rows['stem_conv'].output_shape == (112, 112, 64)
  assert rows['stem_pool'].kind == 'MaxPool'
  assert rows['stem_pool'].output_shape == (56, 56, 64)
  assert rows['stem_norm'].kind == 'BatchNorm'
  assert rows['stem_norm'].params == 128 and rows['stem_norm'].macs == 0
  assert [
    rows[f'stage{i}_block2/conv2'].output_shape[0] for i in (1, 2, 3, 4)
  ] == [56, 28, 14, 7]
  gn = nets.summarize(nets.create('resnet18', norm='group'), (64, 64, 3))
  assert {r.kind for r in gn.rows if 'norm' in r.name} == {'GroupNorm'}
  assert 'stem_pool' in gn.table()
