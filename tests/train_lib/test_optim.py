"""Tests for train_lib/optim.py: optax chains vs hand-written numpy updates."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments.configs import common
from train_lib import optim

LR = 0.1
PARAMS = {
  'w': np.array([[1.0, -2.0], [0.5, 3.0]], np.float32),  # ndim 2: decayed
  'b': np.array([0.1, -0.2], np.float32),  # ndim 1: not decayed by default
}
GRADS = [
  {'w': np.array([[0.3, -0.1], [0.2, 0.4]]), 'b': np.array([0.5, -0.3])},
  {'w': np.array([[-0.2, 0.3], [0.1, 0.0]]), 'b': np.array([0.1, 0.2])},
  {'w': np.array([[0.05, 0.2], [-0.4, 0.1]]), 'b': np.array([-0.3, 0.4])},
]


def _config(**kw):
  config = common.get_config()
  config.update(optimizer='sgd', lr=LR, schedule='constant', total_steps=100)
  common.set_keys(config, **kw)
  return config


def _run_optax(config):
  tx, _ = optim.create_optimizer(config)
  params = jax.tree.map(jnp.asarray, PARAMS)
  opt_state = tx.init(params)
  update = tx.update
  for grads in GRADS:
    grads = jax.tree.map(lambda g: jnp.asarray(g, jnp.float32), grads)
    updates, opt_state = update(grads, opt_state, params)
    params = jax.tree.map(jnp.add, params, updates)
  return params


def _run_numpy(c, lrs=None):
  """Independent per-step reference of the update rules in optim.py."""
  p = {k: v.astype(np.float64) for k, v in PARAMS.items()}
  mask = {
    k: 1.0 if (c.decay_all_params or v.ndim > 1) else 0.0 for k, v in p.items()
  }
  v = {k: np.zeros_like(x) for k, x in p.items()}
  m = {k: np.zeros_like(x) for k, x in p.items()}
  s = {k: np.zeros_like(x) for k, x in p.items()}
  for t, grads in enumerate(GRADS, start=1):
    lr = LR if lrs is None else lrs[t - 1]
    g = {k: np.asarray(x, np.float64) for k, x in grads.items()}
    if c.grad_clip_norm > 0:
      norm = np.sqrt(sum(np.sum(x**2) for x in g.values()))
      g = {k: x * min(1.0, c.grad_clip_norm / norm) for k, x in g.items()}
    if c.weight_decay_mode == 'l2':
      g = {k: g[k] + c.weight_decay * mask[k] * p[k] for k in p}
    u = {}
    for k in p:
      if c.optimizer == 'sgd':
        u[k] = g[k]
      elif c.optimizer in ('momentum', 'nesterov'):
        v[k] = c.optimizer_kw.momentum * v[k] + g[k]
        u[k] = (
          v[k]
          if c.optimizer == 'momentum'
          else g[k] + c.optimizer_kw.momentum * v[k]
        )
      else:
        m[k] = c.optimizer_kw.b1 * m[k] + (1 - c.optimizer_kw.b1) * g[k]
        s[k] = c.optimizer_kw.b2 * s[k] + (1 - c.optimizer_kw.b2) * g[k] ** 2
        m_hat = m[k] / (1 - c.optimizer_kw.b1**t)
        s_hat = s[k] / (1 - c.optimizer_kw.b2**t)
        u[k] = m_hat / (np.sqrt(s_hat) + c.optimizer_kw.eps)
      if c.weight_decay_mode == 'decoupled':
        u[k] = u[k] + c.weight_decay * mask[k] * p[k]
      p[k] = p[k] - lr * u[k]
  return p


CASES = [
  dict(optimizer='sgd'),
  dict(optimizer='momentum'),
  dict(optimizer='nesterov', momentum=0.8),
  dict(optimizer='adam'),
  dict(optimizer='adam', b1=0.5, b2=0.9, eps=1e-3),
  dict(optimizer='adamw', weight_decay=0.05),
  dict(optimizer='adam', weight_decay=0.05, weight_decay_mode='l2'),
  dict(optimizer='momentum', weight_decay=0.01, weight_decay_mode='l2'),
  dict(optimizer='momentum', weight_decay=0.01),
  dict(optimizer='nesterov', weight_decay=0.01, decay_all_params=True),
  dict(optimizer='sgd', grad_clip_norm=0.2),  # active every step
  dict(optimizer='momentum', grad_clip_norm=10.0),  # never active
  dict(optimizer='adamw', weight_decay=0.1, grad_clip_norm=0.3),
]


@pytest.mark.parametrize(
  'kw', CASES, ids=lambda kw: '-'.join(map(str, kw.values()))
)
@pytest.mark.slow
def test_chain_matches_hand_updates(kw):
  config = _config(**kw)
  got = _run_optax(config)
  want = _run_numpy(config)
  for k in PARAMS:
    np.testing.assert_allclose(got[k], want[k], rtol=2e-5, atol=2e-6)


def test_schedule_drives_the_step_size():
  config = _config(optimizer='momentum', warmup_steps=2)  # lr: 0, 0.05, 0.1
  got = _run_optax(config)
  want = _run_numpy(config, lrs=[0.0, 0.05, 0.1])
  for k in PARAMS:
    np.testing.assert_allclose(got[k], want[k], rtol=2e-5, atol=2e-6)


def test_l2_equals_decoupled_for_plain_sgd_but_not_for_adam():
  # For SGD, p - lr (g + wd p) is the same in both modes; with Adam the L2
  # term is rescaled by the preconditioner (Loshchilov & Hutter 2019).
  l2 = _run_optax(_config(weight_decay=0.1, weight_decay_mode='l2'))
  dec = _run_optax(_config(weight_decay=0.1))
  np.testing.assert_allclose(l2['w'], dec['w'], rtol=1e-6)
  adam_l2 = _run_optax(
    _config(optimizer='adam', weight_decay=0.1, weight_decay_mode='l2')
  )
  adam_dec = _run_optax(_config(optimizer='adam', weight_decay=0.1))
  assert np.max(np.abs(adam_l2['w'] - adam_dec['w'])) > 1e-3


def test_mask_leaves_biases_alone():
  with_decay = _run_optax(_config(weight_decay=0.5))
  without = _run_optax(_config())
  np.testing.assert_array_equal(with_decay['b'], without['b'])
  assert np.max(np.abs(with_decay['w'] - without['w'])) > 1e-3
  mask = optim.decay_mask(
    {'kernel': jnp.ones((3, 3, 2, 4)), 'scale': jnp.ones(4)}
  )
  assert mask == {'kernel': True, 'scale': False}


def test_unknown_optimizer_lists_choices():
  with pytest.raises(ValueError, match='nesterov') as err:
    optim.create_optimizer(_config(optimizer='rmsprop'))
  assert 'rmsprop' in str(err.value)


@pytest.mark.parametrize(
  'kw',
  [
    dict(optimizer='adamw', weight_decay=0.1, weight_decay_mode='l2'),
    dict(weight_decay_mode='coupled'),
    dict(weight_decay=-1.0),
    dict(grad_clip_norm=-1.0),
  ],
)
def test_bad_settings_raise(kw):
  with pytest.raises(ValueError):
    optim.create_optimizer(_config(**kw))


def test_create_optimizer_returns_its_schedule():
  _, schedule = optim.create_optimizer(
    _config(schedule='cosine', total_steps=10)
  )
  assert abs(float(schedule(0)) - LR) < 1e-7
  assert abs(float(schedule(10))) < 1e-7
