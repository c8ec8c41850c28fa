"""Tests for ops/backprop.py: MLP hand backprop vs jax.grad, numerical grads.

The conv-layer backprop is tested in tests/ops/test_conv_reference.py.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ops import activations
from ops import backprop

RNG = np.random.default_rng(0)


def _normal(*shape):
  return jnp.asarray(RNG.normal(size=shape))


def _mlp_params(sizes):
  return [
    (_normal(n_in, n_out) / np.sqrt(n_in), _normal(n_out) * 0.1)
    for n_in, n_out in zip(sizes[:-1], sizes[1:], strict=True)
  ]


def _autodiff_loss(params, x, y, activation, loss, output_activation):
  out = backprop.mlp_forward(
    params, x, activation, output_activation=output_activation
  )
  if loss == 'squared':
    return 0.5 * jnp.sum((out - y) ** 2) / x.shape[0]
  logp = jax.nn.log_softmax(out)
  return -jnp.mean(jnp.take_along_axis(logp, y[:, None], axis=1))


@pytest.mark.parametrize(
  ('activation', 'loss', 'output_activation'),
  [
    ('sigmoid', 'squared', 'sigmoid'),
    ('tanh', 'squared', 'identity'),
    ('relu', 'softmax_cross_entropy_with_integer_labels', 'identity'),
    ('elu', 'squared', 'tanh'),
    ('gelu', 'softmax_cross_entropy_with_integer_labels', 'identity'),
  ],
)
@pytest.mark.slow
def test_mlp_backward_matches_jax_grad(activation, loss, output_activation):
  with jax.enable_x64(True):
    params = _mlp_params((5, 7, 6, 3))  # L = 3 layers.
    x = _normal(4, 5)
    y = jnp.array([0, 2, 1, 2]) if loss != 'squared' else _normal(4, 3)
    ref = functools.partial(
      _autodiff_loss, x=x, y=y, activation=activation, loss=loss,
      output_activation=output_activation,
    )  # fmt: skip
    hand = functools.partial(
      backprop.mlp_backward, x=x, y=y, activation=activation, loss=loss,
      output_activation=output_activation,
    )  # fmt: skip
    # One compiled call for both keeps the test cheap.
    both = jax.jit(lambda p: (hand(p), jax.value_and_grad(ref)(p)))
    (value, grads), (ref_value, ref_grads) = both(params)
    assert grads[0][0].dtype == jnp.float64
    np.testing.assert_allclose(value, ref_value, rtol=1e-12)
    for (dw, db), (rw, rb) in zip(grads, ref_grads, strict=True):
      np.testing.assert_allclose(dw, rw, rtol=1e-5, atol=1e-12)
      np.testing.assert_allclose(db, rb, rtol=1e-5, atol=1e-12)


@pytest.mark.slow
def test_mlp_backward_every_activation():
  # The delta recurrence with each registered activation (and its
  # closed-form derivative) as hidden and output activation; one compile.
  names = [n for n in activations.NAMES if n != 'silu']  # silu is swish.
  with jax.enable_x64(True):
    params = _mlp_params((4, 5, 3))
    x, y = _normal(3, 4), _normal(3, 3)

    @jax.jit
    def all_pairs(p):
      return {
        n: (
          backprop.mlp_backward(p, x, y, n, output_activation=n),
          jax.value_and_grad(_autodiff_loss)(p, x, y, n, 'squared', n),
        )
        for n in names
      }

    for name, ((value, grads), (ref_value, ref_grads)) in all_pairs(
      params
    ).items():
      np.testing.assert_allclose(value, ref_value, rtol=1e-12, err_msg=name)
      for got, ref in zip(
        jax.tree.leaves(grads), jax.tree.leaves(ref_grads), strict=True
      ):
        np.testing.assert_allclose(
          got, ref, rtol=1e-5, atol=1e-12, err_msg=name
        )


@pytest.mark.slow
def test_mlp_backward_jit_float32_and_errors():
  params = [(w.astype(jnp.float32), b.astype(jnp.float32))
            for w, b in _mlp_params((5, 8, 3))]  # fmt: skip
  x, y = _normal(6, 5).astype(jnp.float32), _normal(6, 3).astype(jnp.float32)
  step = jax.jit(backprop.mlp_backward, static_argnums=(3, 4))
  value, grads = step(params, x, y, 'leaky_relu', 'squared')
  ref_value, ref_grads = jax.value_and_grad(_autodiff_loss)(
    params, x, y, 'leaky_relu', 'squared', 'identity'
  )
  np.testing.assert_allclose(value, ref_value, rtol=1e-5)
  for got, ref in zip(
    jax.tree.leaves(grads), jax.tree.leaves(ref_grads), strict=True
  ):
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-6)
  with pytest.raises(ValueError, match='loss must be'):
    backprop.mlp_backward(params, x, y, 'relu', 'hinge')
  with pytest.raises(ValueError, match='unknown activation'):
    backprop.mlp_backward(params, x, y, 'relu7')


def test_numerical_grad_matches_jax_grad_and_counts_evaluations():
  with jax.enable_x64(True):
    x, t = _normal(8, 6), _normal(8)
    calls = {'n': 0}

    def loss(theta):  # A linear model: one evaluation costs O(|theta|).
      calls['n'] += 1
      return jnp.sum((jnp.tanh(x[:, : theta.size] @ theta) - t) ** 2) / 8

    work = {}
    for size in (3, 6):
      theta = _normal(size)
      calls['n'] = 0
      num = backprop.numerical_grad(loss, theta, eps=1e-6)
      assert calls['n'] == 2 * size  # 2 |theta| evaluations.
      numerical_work = calls['n'] * size  # Each evaluation costs O(|theta|).
      calls['n'] = 0
      value, vjp = jax.vjp(loss, theta)
      auto = vjp(jnp.ones_like(value))[0]
      assert calls['n'] == 1  # Backprop: one forward (traced) + one backward.
      work[size] = (numerical_work, calls['n'] * size)
      np.testing.assert_allclose(num, auto, rtol=1e-7, atol=1e-9)
    # Doubling |theta|: numerical work x4 (O(|theta|^2)), backprop x2.
    assert work[6][0] == 4 * work[3][0]
    assert work[6][1] == 2 * work[3][1]


def test_numerical_grad_shapes():
  theta = jnp.arange(6.0).reshape(2, 3)
  num = backprop.numerical_grad(lambda v: jnp.sum(v**2), theta, eps=1e-2)
  np.testing.assert_allclose(num, 2 * theta, rtol=1e-4)


def test_two_layer_net_hand_grads():
  with jax.enable_x64(True):
    x, y = _normal(6, 9), _normal(6, 2)
    w1, w2 = _normal(9, 4), _normal(4, 2)

    def ref(w1_, w2_):
      h = 1 / (1 + jnp.exp(-x @ w1_))
      return jnp.sum((h @ w2_ - y) ** 2)

    both = jax.jit(
      lambda a, b: (
        backprop.two_layer_net_grads(a, b, x, y),
        jax.value_and_grad(ref, (0, 1))(a, b),
      )
    )
    (loss, g1, g2), (ref_loss, (r1, r2)) = both(w1, w2)
    np.testing.assert_allclose(loss, ref_loss, rtol=1e-12)
    np.testing.assert_allclose(g1, r1, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(g2, r2, rtol=1e-10)


@pytest.mark.slow
def test_two_layer_net_training_reduces_loss():
  # The notes' recipe at a smaller input size (D_in = 100, H = 50);
  # experiments/two_layer_net.py runs the full size.
  history = backprop.train_two_layer_net(
    jax.random.key(0), 300, d_in=100, hidden=50
  )
  assert len(history) == 300
  assert all(np.isfinite(history))
  assert history[-1] < history[0] / 10
