"""Tests for ops/initializers.py: fans, sample moments, keys, dtypes."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ops import initializers as inits

KEY = jax.random.key(0)
DENSE = (512, 512)
CONV = (3, 3, 64, 256)  # HWIO: fan_in = 576, fan_out = 2304.


def test_compute_fans():
  assert inits.compute_fans((784, 100)) == (784, 100)
  assert inits.compute_fans(CONV) == (576, 2304)
  assert inits.compute_fans((5, 16, 32)) == (80, 160)  # 1-D conv [kw, in, out]
  assert inits.compute_fans((3, 3, 3, 8, 16)) == (216, 432)  # 3-D conv
  # Grouped conv: 32 groups, 4 input channels per group, 128 filters: each
  # input channel feeds only the 128 / 32 = 4 filters of its group.
  assert inits.compute_fans((3, 3, 4, 128), groups=32) == (36, 36)
  # Depthwise (groups = channels, multiplier 2).
  assert inits.compute_fans((3, 3, 1, 64), groups=32) == (9, 18)


@pytest.mark.parametrize(
  ('shape', 'groups', 'match'),
  [
    ((10,), 1, 'rank >= 2'),
    ((3, 3, 4, 10), 4, 'divisible'),
    ((4, 4), 0, 'groups'),
  ],
)
def test_compute_fans_errors(shape, groups, match):
  with pytest.raises(ValueError, match=match):
    inits.compute_fans(shape, groups)


def test_bad_arguments():
  with pytest.raises(ValueError, match='mode'):
    inits.he_normal(mode='fan_sideways')
  with pytest.raises(ValueError, match='mode'):
    inits.lecun_normal(mode='average')
  with pytest.raises(ValueError, match='rank'):
    inits.xavier_normal()(KEY, (16,))
  with pytest.raises(ValueError, match='stddev'):
    inits.normal(-0.1)
  with pytest.raises(ValueError, match='scale'):
    inits.uniform(-1.0)
  with pytest.raises(ValueError, match='distribution'):
    inits.variance_scaling(1.0, 'fan_in', 'truncated_normal')
  with pytest.raises(ValueError, match='divisible by groups=3'):
    inits.he_normal(groups=3)(KEY, (3, 3, 4, 8))


def _std(fan_in, fan_out, name, **kw):
  """Reference standard deviations, written from the formulas in the notes."""
  gain = kw.get('gain', 1.0)
  mode_fan = fan_in if kw.get('mode', 'fan_in') == 'fan_in' else fan_out
  a = kw.get('negative_slope', 0.0)
  return {
    'xavier': gain * math.sqrt(2.0 / (fan_in + fan_out)),
    'he': math.sqrt(2.0 / ((1 + a * a) * mode_fan)),
    'lecun': math.sqrt(1.0 / mode_fan),
  }[name]


CASES = [
  ('xavier', inits.xavier_normal, inits.xavier_uniform, {}),
  ('xavier', inits.xavier_normal, inits.xavier_uniform, {'gain': 2.0}),
  ('he', inits.he_normal, inits.he_uniform, {}),
  ('he', inits.he_normal, inits.he_uniform, {'mode': 'fan_out'}),
  ('he', inits.he_normal, inits.he_uniform, {'negative_slope': 0.1}),
  ('lecun', inits.lecun_normal, inits.lecun_uniform, {}),
]


@pytest.mark.parametrize('shape', [DENSE, CONV], ids=['dense', 'conv'])
@pytest.mark.parametrize(('name', 'normal', 'uniform', 'kw'), CASES)
@pytest.mark.slow
def test_sample_std_matches_formula(shape, name, normal, uniform, kw):
  fan_in, fan_out = inits.compute_fans(shape)
  std = _std(fan_in, fan_out, name, **kw)
  w = np.asarray(normal(**kw)(KEY, shape))
  assert abs(w.mean()) < 0.01 * std
  np.testing.assert_allclose(w.std(), std, rtol=0.02)
  u = np.asarray(uniform(**kw)(KEY, shape))
  np.testing.assert_allclose(u.std(), std, rtol=0.02)
  bound = math.sqrt(3.0) * std
  assert np.abs(u).max() <= bound
  assert np.abs(u).max() > 0.99 * bound  # The whole interval is used.


def test_grouped_fans_change_the_scale():
  shape = (3, 3, 8, 64)  # 8 groups: 8 inputs per group, 8 filters per group.
  w = np.asarray(inits.he_normal(mode='fan_out', groups=8)(KEY, shape))
  np.testing.assert_allclose(w.std(), math.sqrt(2.0 / (9 * 64 / 8)), rtol=0.03)


def test_normal_uniform_constant():
  w = np.asarray(inits.normal(0.5)(KEY, DENSE))
  np.testing.assert_allclose(w.std(), 0.5, rtol=0.02)
  u = np.asarray(inits.uniform(0.2)(KEY, DENSE))
  assert u.min() >= -0.2 and u.max() <= 0.2 and u.min() < -0.19
  np.testing.assert_allclose(u.std(), 0.2 / math.sqrt(3), rtol=0.02)
  np.testing.assert_array_equal(
    inits.constant(0.3)(KEY, (2, 3)), np.float32(0.3)
  )
  np.testing.assert_array_equal(inits.zeros(KEY, (2, 3)), 0.0)
  np.testing.assert_array_equal(inits.ones()(KEY, (4,)), 1.0)
  assert inits.zeros() is inits.zeros


def test_standard_uniform_is_glorot_and_bengios_heuristic():
  # U[-1/sqrt(n), 1/sqrt(n)] with n the fan-in (400 here): bound 0.05.
  w = np.asarray(inits.standard_uniform()(KEY, (400, 300)))
  assert w.max() <= 0.05 and w.min() >= -0.05 and w.max() > 0.0499
  np.testing.assert_allclose(w.std(), 0.05 / math.sqrt(3), rtol=0.02)


FACTORIES = {
  'normal': inits.normal(1.0),
  'uniform': inits.uniform(1.0),
  'xavier_normal': inits.xavier_normal(),
  'xavier_uniform': inits.xavier_uniform(),
  'he_normal': inits.he_normal(),
  'he_uniform': inits.he_uniform(),
  'lecun_normal': inits.lecun_normal(),
  'lecun_uniform': inits.lecun_uniform(),
}


def test_keys_and_dtypes():
  shape = (4, 6)
  for name, factory in FACTORIES.items():
    a = factory(jax.random.key(1), shape)
    np.testing.assert_array_equal(a, factory(jax.random.key(1), shape), name)
    assert not np.allclose(a, factory(jax.random.key(2), shape)), name
    assert a.dtype == jnp.float32 and a.shape == shape, name
    b = factory(jax.random.key(1), shape, jnp.bfloat16)
    assert b.dtype == jnp.bfloat16, name


def test_jit():
  shape = (4, 6)
  draw_all = lambda key: {n: f(key, shape) for n, f in FACTORIES.items()}
  jitted = jax.jit(draw_all)(jax.random.key(3))
  for name, value in draw_all(jax.random.key(3)).items():
    np.testing.assert_allclose(jitted[name], value, rtol=1e-6, err_msg=name)


def _two_layer_grads(w1, w2, x):
  """Gradients of a 2-layer net ``z = tanh(x W1) W2`` with a squared loss."""
  target = jnp.array([[1.0], [-1.0]])
  loss = lambda p: 0.5 * jnp.sum((jnp.tanh(x @ p[0]) @ p[1] - target) ** 2)
  return jax.grad(loss)((w1, w2))


@pytest.mark.parametrize('value', [0.0, 0.5])
def test_zero_or_constant_init_does_not_break_symmetry(value):
  x = jnp.array([[1.0, -2.0], [0.5, 3.0]])  # [B, D_in = 2]
  init = inits.constant(value)
  w1, w2 = init(KEY, (2, 3)), init(KEY, (3, 1))  # Dense layout [in, out].
  g1, g2 = _two_layer_grads(w1, w2, x)
  # All hidden units see the same gradient: the columns of dW1 (one per
  # hidden unit, rows of the notes' W) are identical, so they stay equal.
  np.testing.assert_allclose(g1, np.repeat(g1[:, :1], 3, axis=1), rtol=1e-6)
  np.testing.assert_allclose(g2, np.full_like(g2, g2[0, 0]), rtol=1e-6)
  if value == 0.0:  # The notes: with zero init every gradient is zero.
    np.testing.assert_array_equal(g1, 0.0)
    np.testing.assert_array_equal(g2, 0.0)
  # Random init breaks the symmetry.
  w = inits.normal(0.5)(KEY, (4, 6))
  g1r, _ = _two_layer_grads(w[:2, :3], w[2, 3:][:, None], x)
  assert not np.allclose(g1r[:, 0], g1r[:, 1])
