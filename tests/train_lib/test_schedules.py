"""Tests for train_lib/schedules.py against the notes' formulas."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments.configs import common
from train_lib import schedules


def _config(**kw):
  config = common.get_config()
  config.update(schedule='constant', lr=0.1, total_steps=110)
  config.schedule_kw.decay_steps = 10
  common.set_keys(config, **kw)
  return config


def _at(schedule, steps):
  return np.asarray([float(schedule(jnp.int32(s))) for s in steps])


def test_constant_no_warmup():
  sched = schedules.create_schedule(_config())
  np.testing.assert_allclose(_at(sched, [0, 1, 50, 10**6]), 0.1, rtol=1e-7)


def test_linear_warmup_from_zero():
  sched = schedules.create_schedule(_config(warmup_steps=10))
  got = _at(sched, [0, 1, 5, 9, 10, 11, 100])
  want = [0.0, 0.01, 0.05, 0.09, 0.1, 0.1, 0.1]
  np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-9)


def test_step_decay_at_absolute_boundaries():
  sched = schedules.create_schedule(
    _config(schedule='step', warmup_steps=5, boundaries=(30, 60))
  )
  steps = [0, 2, 5, 29, 30, 31, 59, 60, 1000]
  want = [0.0, 0.04, 0.1, 0.1, 0.01, 0.01, 0.01, 0.001, 0.001]
  np.testing.assert_allclose(_at(sched, steps), want, rtol=1e-6, atol=1e-9)


def test_step_decay_every_k_steps_after_warmup():
  sched = schedules.create_schedule(
    _config(schedule='step', warmup_steps=5, every_steps=10, decay_factor=0.5)
  )
  steps = [0, 5, 14, 15, 24, 25, 45]
  want = [0.0, 0.1, 0.1, 0.05, 0.05, 0.025, 0.1 * 0.5**4]
  np.testing.assert_allclose(_at(sched, steps), want, rtol=1e-6, atol=1e-9)


def test_exponential_decay_formula():
  sched = schedules.create_schedule(
    _config(
      schedule='exponential', warmup_steps=4, decay_factor=0.5, decay_steps=8
    )
  )
  steps = [0, 2, 4, 8, 12, 20, 100]
  want = [0.0, 0.05] + [0.1 * 0.5 ** ((t - 4) / 8) for t in steps[2:]]
  np.testing.assert_allclose(_at(sched, steps), want, rtol=1e-5, atol=1e-9)


def test_cosine_formula_with_warmup():
  lr, lr_end, warmup, total = 0.1, 0.001, 10, 110
  sched = schedules.create_schedule(
    _config(
      schedule='cosine',
      lr=lr,
      lr_end=lr_end,
      warmup_steps=warmup,
      total_steps=total,
    )
  )
  T = total - warmup

  def formula(t):
    t = min(max(t - warmup, 0), T)
    return lr_end + (lr - lr_end) / 2 * (1 + math.cos(math.pi * t / T))

  steps = [0, 5, 10, 37, 60, 109, 110, 500]
  want = [0.0, 0.05] + [formula(t) for t in steps[2:]]
  np.testing.assert_allclose(_at(sched, steps), want, rtol=1e-5, atol=1e-8)
  # Hand values: start of decay, half-way (T/2) and end (T).
  assert abs(float(sched(10)) - lr) < 1e-7
  assert abs(float(sched(60)) - (lr + lr_end) / 2) < 1e-7
  assert abs(float(sched(110)) - lr_end) < 1e-7


def test_schedule_jits_and_vectorises():
  sched = schedules.create_schedule(
    _config(schedule='cosine', warmup_steps=3, total_steps=13)
  )
  steps = jnp.arange(14)
  got = jax.jit(sched)(steps)
  assert got.dtype == jnp.float32
  np.testing.assert_allclose(got, _at(sched, range(14)), rtol=1e-5, atol=1e-8)
  assert float(got[0]) == 0.0 and abs(float(got[13])) < 1e-8


def test_unknown_schedule_lists_choices():
  with pytest.raises(ValueError, match='cosine') as err:
    schedules.create_schedule(_config(schedule='linear'))
  assert 'linear' in str(err.value) and 'exponential' in str(err.value)


@pytest.mark.parametrize(
  'kw',
  [
    dict(schedule='step'),  # neither boundaries nor period
    dict(schedule='step', boundaries=(50, 20)),
    dict(schedule='cosine', warmup_steps=110),
    dict(schedule='exponential', decay_steps=0),
    dict(warmup_steps=-1),
  ],
)
def test_bad_settings_raise(kw):
  with pytest.raises(ValueError):
    schedules.create_schedule(_config(**kw))
