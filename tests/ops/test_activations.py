"""Tests for ops/activations.py: closed forms against autodiff, hand values."""

import functools
import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ops import activations

# Points away from the kinks at 0, where one-sided derivatives differ.
X = jnp.array([-6.0, -2.5, -1.0, -0.3, -1e-2, 2e-2, 0.4, 1.0, 2.0, 7.5])
EXTREME = jnp.array([-1e4, -1e3, -90.0, 90.0, 1e3, 1e4], jnp.float32)

# Every registered activation (via get / get_grad, so the registry is
# exercised) plus the non-default parameters that appear in the notes.
ELEMENTWISE = [
  (name, activations.get(name), activations.get_grad(name))
  for name in activations.NAMES
  if name != 'silu'  # The same function as swish.
] + [
  (
    'leaky_relu_0.1',
    functools.partial(activations.leaky_relu, negative_slope=0.1),
    functools.partial(activations.leaky_relu_grad, negative_slope=0.1),
  ),
  (
    'prelu',
    functools.partial(activations.prelu, alpha=0.25),
    functools.partial(activations.prelu_grad, alpha=0.25),
  ),
  (
    'elu_0.5',
    functools.partial(activations.elu, alpha=0.5),
    functools.partial(activations.elu_grad, alpha=0.5),
  ),
]
IDS = [name for name, _, _ in ELEMENTWISE]


@pytest.mark.parametrize(('name', 'f', 'df'), ELEMENTWISE, ids=IDS)
@pytest.mark.slow
def test_grad_matches_autodiff_and_finite_at_extremes(name, f, df):
  del name
  # One compiled call per activation keeps the test cheap.
  both = jax.jit(lambda x: (f(x), df(x), jax.vmap(jax.grad(f))(x)))
  _, hand, auto = both(X)
  np.testing.assert_allclose(hand, auto, rtol=1e-5, atol=1e-6)
  chex.assert_tree_all_finite(both(EXTREME))


def test_hand_values():
  x = jnp.array([-2.0, 0.0, 3.0])
  e = math.exp
  np.testing.assert_allclose(
    activations.sigmoid(x), [1 / (1 + e(2)), 0.5, 1 / (1 + e(-3))], rtol=1e-6
  )
  np.testing.assert_allclose(activations.relu(x), [0.0, 0.0, 3.0])
  np.testing.assert_allclose(activations.leaky_relu(x), [-0.02, 0.0, 3.0])
  np.testing.assert_allclose(
    activations.leaky_relu(x, negative_slope=0.1), [-0.2, 0.0, 3.0], rtol=1e-6
  )
  np.testing.assert_allclose(
    activations.elu(x, alpha=2.0), [2 * (e(-2) - 1), 0.0, 3.0], rtol=1e-6
  )
  np.testing.assert_allclose(
    activations.softplus(x),
    [math.log1p(e(-2)), math.log(2), math.log1p(e(3))],
    rtol=1e-6,
  )
  np.testing.assert_allclose(
    activations.gelu_sigmoid(x),
    [-2 / (1 + e(2 * 1.702)), 0.0, 3 / (1 + e(-3 * 1.702))],
    rtol=1e-6,
  )
  phi = lambda v: 0.5 * (1 + math.erf(v / math.sqrt(2)))
  np.testing.assert_allclose(
    activations.gelu(x), [-2 * phi(-2), 0.0, 3 * phi(3)], rtol=1e-6
  )
  np.testing.assert_allclose(
    activations.gelu(x), jax.nn.gelu(x, approximate=False), rtol=1e-6
  )
  np.testing.assert_allclose(
    activations.swish(x), [-2 / (1 + e(2)), 0.0, 3 / (1 + e(-3))], rtol=1e-6
  )
  np.testing.assert_allclose(
    activations.tanh(x),
    [(e(-2) - e(2)) / (e(-2) + e(2)), 0.0, (e(3) - e(-3)) / (e(3) + e(-3))],
    rtol=1e-6,
  )
  np.testing.assert_allclose(
    activations.sine(x), [math.sin(-2), 0.0, math.sin(3)], rtol=1e-6
  )
  np.testing.assert_allclose(
    activations.prelu(x, 0.25), [-0.5, 0.0, 3.0], rtol=1e-6
  )
  # Per-channel slopes broadcast over the last axis.
  np.testing.assert_allclose(
    activations.prelu(
      jnp.array([[-1.0, -1.0, 2.0]]), jnp.array([0.1, 0.2, 0.3])
    ),
    [[-0.1, -0.2, 2.0]],
    rtol=1e-6,
  )


def test_gelu_sigmoid_approximates_exact_gelu():
  # The notes' x sigmoid(1.702 x) is the paper's approximation of x Phi(x).
  x = jnp.linspace(-8.0, 8.0, 1601)
  gap = np.max(np.abs(activations.gelu(x) - activations.gelu_sigmoid(x)))
  assert 1e-3 < gap < 0.025


def test_extreme_limits():
  ends = np.array([0, -1])
  np.testing.assert_allclose(activations.sigmoid(EXTREME)[ends], [0.0, 1.0])
  np.testing.assert_allclose(activations.softplus(EXTREME)[ends], [0, 1e4])
  np.testing.assert_allclose(activations.swish(EXTREME)[ends], [0, 1e4])


def test_tanh_is_rescaled_sigmoid():
  x = jnp.linspace(-20.0, 20.0, 81)
  np.testing.assert_allclose(
    activations.tanh(x), 2 * activations.sigmoid(2 * x) - 1, atol=1e-6
  )


def test_softplus_derivative_is_sigmoid():
  auto = jax.vmap(jax.grad(activations.softplus))(X)
  np.testing.assert_allclose(auto, activations.sigmoid(X), rtol=1e-6)


def test_relu_grad_at_zero_matches_autodiff():
  assert activations.relu_grad(0.0) == jax.grad(activations.relu)(0.0) == 0.0


def test_prelu_grad_alpha_per_channel():
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.normal(size=(2, 3, 4)), jnp.float32)
  alpha = jnp.array([0.1, 0.2, 0.3, 0.4])
  g = jnp.asarray(rng.normal(size=x.shape), jnp.float32)
  loss = lambda v, a: jnp.sum(g * activations.prelu(v, a))

  @jax.jit
  def hand_and_auto(x, alpha):
    hand_a = jnp.sum(g * activations.prelu_grad_alpha(x, alpha), axis=(0, 1))
    hand_x = g * activations.prelu_grad(x, alpha)
    return (hand_x, hand_a), jax.grad(loss, (0, 1))(x, alpha)

  hand, auto = hand_and_auto(x, alpha)
  np.testing.assert_allclose(hand[0], auto[0], rtol=1e-6)
  np.testing.assert_allclose(hand[1], auto[1], rtol=1e-5)


def _maxout_params(k=3, d_in=5, d_out=4):
  rng = np.random.default_rng(2)
  w = rng.normal(size=(k, d_in, d_out))
  b = rng.normal(size=(k, d_out))
  x = rng.normal(size=(6, d_in))
  return tuple(jnp.asarray(a, jnp.float32) for a in (x, w, b))


def test_maxout_values_and_relu_special_case():
  x, w, b = _maxout_params()
  pieces = [x @ w[i] + b[i] for i in range(3)]
  expected = jnp.maximum(jnp.maximum(pieces[0], pieces[1]), pieces[2])
  np.testing.assert_allclose(activations.maxout(x, w, b), expected, rtol=1e-6)
  # ReLU is maxout with pieces (w, b) and (0, 0).
  w2 = jnp.stack([w[0], jnp.zeros_like(w[0])])
  b2 = jnp.stack([b[0], jnp.zeros_like(b[0])])
  np.testing.assert_allclose(
    activations.maxout(x, w2, b2), activations.relu(pieces[0]), rtol=1e-6
  )


def test_maxout_grad_and_vjp_match_autodiff():
  x, w, b = _maxout_params()
  g = jnp.asarray(np.random.default_rng(3).normal(size=(6, 4)), jnp.float32)

  @jax.jit
  def hand_and_auto(x, w, b):
    jac = jax.vmap(jax.jacobian(lambda v: activations.maxout(v, w, b)))(x)
    vjp = jax.vjp(activations.maxout, x, w, b)[1](g)
    hand = (
      activations.maxout_grad(x, w, b),
      *activations.maxout_vjp(x, w, b, g),
    )
    return hand, (jac, *vjp)

  hand, auto = hand_and_auto(x, w, b)
  for h, a in zip(hand, auto, strict=True):
    np.testing.assert_allclose(h, a, rtol=1e-5, atol=1e-6)


def test_maxout_bad_shapes():
  x, w, b = _maxout_params()
  with pytest.raises(ValueError, match='features'):
    activations.maxout(x[:, :3], w, b)
  with pytest.raises(ValueError, match='w \\[k, in, out\\]'):
    activations.maxout(x, w[0], b)


def test_registry():
  assert set(activations.NAMES) >= {
    'relu', 'sigmoid', 'tanh', 'leaky_relu', 'elu', 'softplus', 'swish',
    'silu', 'gelu', 'gelu_sigmoid', 'sine', 'identity',
  }  # fmt: skip
  assert activations.get('silu') is activations.swish
  assert activations.get_grad('silu') is activations.swish_grad
  assert activations.get('gelu_sigmoid') is activations.gelu_sigmoid
  with pytest.raises(ValueError, match='known activations: relu'):
    activations.get('relu6')
  with pytest.raises(ValueError, match='unknown activation'):
    activations.get_grad('')


def test_jit():
  for name in activations.NAMES:
    f = activations.get(name)
    np.testing.assert_allclose(jax.jit(f)(X), f(X), rtol=1e-6)
  x, w, b = _maxout_params()
  np.testing.assert_allclose(
    jax.jit(activations.maxout)(x, w, b), activations.maxout(x, w, b)
  )
