"""Tests for ops/regularization.py: inverted dropout and stochastic depth."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ops import regularization


@pytest.mark.parametrize('rate', [-0.1, 1.0, 1.5])
def test_bad_rates_raise(rate):
  x = jnp.ones((2, 3))
  with pytest.raises(ValueError, match=f'rate={float(rate)}'):
    regularization.dropout(jax.random.key(0), x, rate=rate)
  with pytest.raises(ValueError, match='rate'):
    regularization.drop_path(jax.random.key(0), x, rate=rate)


def test_rate_zero_is_identity():
  x = jnp.arange(6.0).reshape(2, 3)
  key = jax.random.key(0)
  np.testing.assert_array_equal(regularization.dropout(key, x, rate=0.0), x)
  np.testing.assert_array_equal(regularization.drop_path(key, x, rate=0.0), x)


def test_dropout_scaling_and_expectation():
  rate = 0.3
  x = jnp.full((200_000,), 2.0)
  out = jax.jit(functools.partial(regularization.dropout, rate=rate))(
    jax.random.key(1), x
  )
  out = np.asarray(out)
  # Survivors are scaled by 1/(1 - rate); the rest are exactly zero.
  kept = out != 0
  np.testing.assert_allclose(out[kept], 2.0 / (1.0 - rate), rtol=1e-6)
  # Drop fraction ~ rate and E[out] = x, within 5 standard errors.
  n = x.size
  assert abs((1 - kept.mean()) - rate) < 5 * np.sqrt(rate * (1 - rate) / n)
  sem = 2.0 * np.sqrt(rate / (1 - rate) / n)
  assert abs(out.mean() - 2.0) < 5 * sem


def test_dropout_keys_and_dtype():
  x = jnp.ones((64, 8), jnp.bfloat16)
  a = regularization.dropout(jax.random.key(3), x, rate=0.5)
  b = regularization.dropout(jax.random.key(3), x, rate=0.5)
  c = regularization.dropout(jax.random.key(4), x, rate=0.5)
  np.testing.assert_array_equal(a, b)
  assert np.any(np.asarray(a) != np.asarray(c))
  assert a.dtype == jnp.bfloat16


def test_drop_path_keys_and_dtype():
  x = jnp.ones((64, 2, 2, 3), jnp.bfloat16)
  draw = jax.jit(lambda k: regularization.drop_path(k, x, rate=0.5))
  a, b, c = (
    draw(jax.random.key(3)),
    draw(jax.random.key(3)),
    draw(jax.random.key(4)),
  )
  np.testing.assert_array_equal(a, b)
  assert np.any(np.asarray(a) != np.asarray(c))
  assert a.dtype == jnp.bfloat16


def test_drop_path_zeroes_whole_examples():
  rate = 0.25
  x = np.random.default_rng(5).standard_normal((256, 3, 3, 2), np.float32)
  out = np.asarray(regularization.drop_path(jax.random.key(6), x, rate=rate))
  x = np.asarray(x)
  dropped = np.all(out == 0, axis=(1, 2, 3))
  np.testing.assert_allclose(out[~dropped], x[~dropped] / (1 - rate), rtol=1e-6)
  assert 0 < dropped.sum() < 256
  assert abs(dropped.mean() - rate) < 5 * np.sqrt(rate * 0.75 / 256)


def test_drop_path_expectation_is_eval_identity():
  rate = 0.4
  x = jnp.array([[1.0, -2.0], [0.5, 3.0]])
  keys = jax.random.split(jax.random.key(7), 20_000)
  samples = jax.jit(
    jax.vmap(lambda k: regularization.drop_path(k, x, rate=rate))
  )(keys)
  sem = np.abs(np.asarray(x)) * np.sqrt(rate / (1 - rate) / keys.shape[0])
  assert np.all(np.abs(samples.mean(axis=0) - x) < 5 * sem + 1e-6)


def test_residual_block_with_stochastic_depth_matches_eval_in_expectation():
  # Inverted convention: train x + f(x) b / p, eval x + f(x); the paper's
  # x + b f(x) / x + p f(x) has the same expectation ratio.
  p = 0.75
  rng = np.random.default_rng(8)
  w = jnp.asarray(rng.standard_normal((3, 3), np.float32))
  x = jnp.asarray(rng.standard_normal((4, 3), np.float32))

  def branch(h):
    return jnp.tanh(h @ w)

  def train_block(key):
    return x + regularization.drop_path(key, branch(x), rate=1 - p)

  keys = jax.random.split(jax.random.key(10), 20_000)
  mean = jax.jit(jax.vmap(train_block))(keys).mean(axis=0)
  eval_block = x + branch(x)
  sem = np.abs(np.asarray(branch(x))) * np.sqrt((1 - p) / p / keys.shape[0])
  assert np.all(np.abs(mean - eval_block) < 5 * sem + 1e-6)
  # The paper's test-time rule x + p f(x) is a different (non-inverted) block.
  assert not np.allclose(mean, x + p * branch(x), atol=1e-2)


def test_survival_probabilities_hand_values():
  np.testing.assert_allclose(
    regularization.survival_probabilities(4, p_last=0.5),
    [0.875, 0.75, 0.625, 0.5],
  )
  np.testing.assert_allclose(
    regularization.survival_probabilities(2, p_last=0.8), [0.9, 0.8]
  )
  np.testing.assert_allclose(
    regularization.survival_probabilities(3, p_last=1.0), [1.0, 1.0, 1.0]
  )


def test_drop_path_rates_hand_values():
  rates = regularization.drop_path_rates(4, max_rate=0.5)
  assert isinstance(rates, list) and all(isinstance(r, float) for r in rates)
  np.testing.assert_allclose(rates, [0.125, 0.25, 0.375, 0.5])
  assert regularization.drop_path_rates(3, max_rate=0.0) == [0.0, 0.0, 0.0]


def test_schedule_bad_args():
  with pytest.raises(ValueError, match='num_blocks'):
    regularization.survival_probabilities(0)
  with pytest.raises(ValueError, match='p_last'):
    regularization.survival_probabilities(4, p_last=0.0)
  with pytest.raises(ValueError, match='rate'):
    regularization.drop_path_rates(4, max_rate=1.0)
