"""Tests for mobilenet.py, shufflenet.py and ensemble.py.

Published references: MobileNet Table 6 (Howard et al. 2017), ShuffleNet
Tables 1-2 (Zhang et al. 2018), the notes' depthwise separable cost example.
"""

from fractions import Fraction

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import nets
from nets import shufflenet
from ops import cost
from tests.nets import nets_testing

# Howard et al. Table 6: (million params, million mult-adds), 224x224.
MOBILENET = {
  'mobilenet_v1': (4.2, 569),
  'mobilenet_v1_075': (2.6, 325),
  'mobilenet_v1_050': (1.3, 149),
  'mobilenet_v1_025': (0.5, 41),
}
# Zhang et al. Table 2, ShuffleNet 1x complexity (MFLOPs = mult-adds).
SHUFFLENET_MACS = {1: 143e6, 2: 140e6, 3: 137e6, 4: 133e6, 8: 137e6}


def _params_and_output(name, shape=(224, 224, 3)):
  return nets_testing.trace(nets.create(name), (2, *shape), train=False)


def check_train_eval_bn(model, x, num_classes):
  """Eval deterministic and read-only; train updates every BN statistic."""
  variables = nets_testing.fake_variables(model, x, train=False)
  evaluate = jax.jit(
    lambda v, x: model.apply(v, x, train=False, mutable=['batch_stats'])
  )
  train = jax.jit(
    lambda v, x: model.apply(
      v, x, train=True, rngs={'dropout': jax.random.key(1)},
      mutable=['batch_stats'],
    )
  )  # fmt: skip
  y, eval_state = evaluate(variables, x)
  chex.assert_shape(y, (x.shape[0], num_classes))
  chex.assert_tree_all_finite(y)
  np.testing.assert_array_equal(y, evaluate(variables, x)[0])
  chex.assert_trees_all_equal(
    eval_state['batch_stats'], variables['batch_stats']
  )
  t, state = train(variables, x)
  chex.assert_tree_all_finite(t)
  nets_testing.assert_every_var_updated(variables, state)
  return variables, y


@pytest.mark.parametrize('name', sorted(MOBILENET))
def test_mobilenet_table6(name):
  want_params, want_macs = MOBILENET[name]
  n, out = _params_and_output(name)
  assert out.shape == (2, 1000)
  assert round(n / 1e6, 1) == want_params
  macs = nets.summarize(nets.create(name), (224, 224, 3)).macs
  assert abs(macs / 1e6 - want_macs) / want_macs < 0.02


def test_mobilenet_exact_count():
  # TF-Slim's MobileNet v1 1.0 checkpoint holds 4,231,976 parameters.
  assert _params_and_output('mobilenet_v1')[0] == 4_231_976


def test_depthwise_separable_cost_ratio_on_a_mobilenet_layer():
  # On a 256x256 input, block 3 runs on the notes' example: M = N = 128,
  # D_K = 3, D_F = 64.
  s = nets.summarize(nets.create('mobilenet_v1'), (256, 256, 3))
  rows = {r.name: r for r in s.rows}
  assert rows['dw3'].output_shape == (64, 64, 128)
  assert rows['pw3'].output_shape == (64, 64, 128)
  separable = rows['dw3'].macs + rows['pw3'].macs
  standard = cost.conv_macs(3, 3, 128, 128, 64, 64)
  assert separable == 71_827_456 and standard == 603_979_776
  assert Fraction(separable, standard) == Fraction(1, 128) + Fraction(1, 9)


@pytest.mark.parametrize('groups', sorted(SHUFFLENET_MACS))
def test_shufflenet_table2_complexity(groups):
  name = f'shufflenet_v1_g{groups}'
  n, out = _params_and_output(name)
  assert out.shape == (2, 1000)
  s = nets.summarize(nets.create(name), (224, 224, 3))
  # Our counts: 143.1, 140.8, 137.5, 134.3, 138.4 M; within 1% of Table 2.
  assert abs(s.macs - SHUFFLENET_MACS[groups]) / SHUFFLENET_MACS[groups] < 0.02
  rows = {r.name: r for r in s.rows}
  stage_out = [
    rows[f'stage{k}_unit{u}/bn3'].output_shape
    for k, u in ((2, 4), (3, 8), (4, 4))
  ]
  c2, c3, c4 = shufflenet.STAGE_CHANNELS[groups]
  want = [(28, 28, c2), (14, 14, c3), (7, 7, c4)]
  assert stage_out == want  # Table 1's output sizes and channels


def test_shufflenet_grouping_of_pointwise_convs():
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


def test_shufflenet_scales():
  assert shufflenet.stage_channels(3, 0.5) == (120, 240, 480)
  assert shufflenet.stage_channels(8, 2.0) == (768, 1536, 3072)
  n_half, out = _params_and_output('shufflenet_v1_g3_x0_5')
  assert out.shape == (2, 1000)
  assert n_half < _params_and_output('shufflenet_v1_g3')[0]
  with pytest.raises(ValueError, match='groups'):
    shufflenet.stage_channels(5, 1.0)


def test_mobilenet_tiny_forward():
  x = jax.random.normal(jax.random.key(0), (2, 32, 32, 3))
  check_train_eval_bn(nets.create('mobilenet_v1_tiny'), x, 10)


def test_shufflenet_tiny_forward():
  x = jax.random.normal(jax.random.key(0), (2, 32, 32, 3))
  check_train_eval_bn(nets.create('shufflenet_v1_tiny'), x, 10)


def test_ensemble_averages_member_probabilities():
  model = nets.create('ensemble_tiny')
  x = jax.random.normal(jax.random.key(0), (2, 32, 32, 3))
  variables, log_p = check_train_eval_bn(model, x, 10)
  probs = []
  for i, member in enumerate(model.members):
    v = {c: t[f'members_{i}'] for c, t in variables.items()}
    logits = jax.jit(member.apply)(v, x)
    probs.append(jax.nn.softmax(logits, axis=-1))
  want = np.mean(np.stack(probs), axis=0)
  np.testing.assert_allclose(np.exp(log_p), want, rtol=1e-4, atol=1e-6)
  np.testing.assert_allclose(np.exp(log_p).sum(-1), 1.0, rtol=1e-5)


def test_ensemble_weights():
  model = nets.create(
    'ensemble', members=('vgg_tiny', 'alexnet_tiny'), weights=(1.0, 0.0)
  )
  x = jax.random.normal(jax.random.key(0), (2, 32, 32, 3))
  variables = nets_testing.fake_variables(model, x, train=False)
  log_p = jax.jit(model.apply)(variables, x)
  member = nets.create('vgg_tiny')
  v = {'params': variables['params']['members_0']}
  want = jax.nn.log_softmax(jax.jit(member.apply)(v, x))
  np.testing.assert_allclose(log_p, want, rtol=1e-4, atol=1e-5)
  bad = nets.create('ensemble', members=('vgg_tiny',), weights=(1.0, 2.0))
  with pytest.raises(ValueError, match='weight'):
    bad.init({'params': jax.random.key(0)}, x)
