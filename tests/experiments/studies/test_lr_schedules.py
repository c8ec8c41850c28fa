"""The lr_schedules study: its arms' schedules by hand, the logged-lr check."""

import numpy as np
import pytest

from experiments.studies import lr_schedules
from tests.experiments.studies import studies_testing
from train_lib import schedules

T = 200


def _schedule(name, lr=0.1):
  config = lr_schedules.arm_config(name, lr=lr, steps=T, seed=0, log_every=10)
  return config, schedules.create_schedule(config)


@pytest.mark.parametrize(
  'name, step, want',
  [
    ('constant', 0, 0.1),
    ('constant', T - 1, 0.1),
    ('step', T // 2 - 1, 0.1),
    ('step', T // 2, 0.01),  # x0.1 at half the run
    ('step', 3 * T // 4, 0.001),  # and again at three quarters
    ('exponential', T // 2, 0.01),  # x0.1 per half run
    ('exponential', T, 0.001),  # 1/100 of the peak at the end
    ('cosine', 0, 0.1),
    ('cosine', T // 2, 0.05),  # (0.1 + 0) / 2 * (1 + cos(pi / 2))
    ('cosine', T, 0.0),
    ('cosine+warmup', 0, 0.0),  # the ramp starts at 0
    ('cosine+warmup', T // 20, 0.05),  # half-way up the 20-step ramp
    ('cosine+warmup', T // 10, 0.1),  # the peak, then cosine over 180 steps
    ('cosine+warmup', T // 10 + 90, 0.05),
  ],
)
def test_arms_follow_the_notes_formulas(name, step, want):
  _, schedule = _schedule(name)
  assert float(schedule(step)) == pytest.approx(want, rel=1e-5, abs=1e-8)


def test_arms_share_the_budget_and_differ_only_in_schedule():
  configs = [_schedule(n)[0] for n in lr_schedules.SCHEDULE_NAMES]
  for c in configs:
    assert c.total_steps == T and c.optimizer == 'momentum' and c.lr == 0.1
    assert c.weight_decay == 0.0 and c.augment.crop_padding == 0
  assert len({(c.schedule, c.warmup_steps) for c in configs}) == 5


def test_logged_lr_error_is_zero_for_the_trainers_convention():
  config, schedule = _schedule('step')
  steps = np.arange(10, T + 1, 10)  # train lines after updates 10, 20, ...
  logged = np.asarray(schedule(steps - 1))  # rate of the last update
  assert lr_schedules.logged_lr_error(config, steps, logged) == 0.0
  # Off by one step (the rate of the next update) is caught at the decay.
  shifted = np.asarray(schedule(steps))
  assert lr_schedules.logged_lr_error(config, steps, shifted) == (
    pytest.approx(0.09)
  )


def test_still_falling_and_spread_by_hand():
  # 20 logs: the last four average 1.0, the four before 1.25: a 20% drop.
  losses = [2.0] * 12 + [1.25] * 4 + [1.0] * 4
  assert lr_schedules.still_falling(losses) == pytest.approx(20.0)
  assert lr_schedules.still_falling([1.0] * 20) == 0.0
  assert lr_schedules.spread([0.5, 2.0, 1.0]) == pytest.approx(np.log(4))


def test_mean_rate_is_the_schedules_average_over_the_run():
  assert lr_schedules.mean_rate('constant', T) == pytest.approx(1.0)
  assert lr_schedules.mean_rate('cosine', T) == pytest.approx(0.5, abs=3e-3)
  # 0.01 ** (t / T) for t = 0 .. T - 1, averaged: a geometric sum.
  want = 0.99 / (T * (1 - 0.01 ** (1 / T)))  # ~0.2175, ~(1 - 0.01) / ln 100
  assert lr_schedules.mean_rate('exponential', T) == pytest.approx(want, 1e-5)


def _runs(final, sweep, falling=True):
  """Stand-in runs: {(name, lr, seed): record} for the sub-claims."""
  seeds, peak = (1, 2, 3), 0.1
  runs = {}
  for s in seeds:
    jitter = 1 + 0.01 * s
    for name, value in final.items():
      tail = [1.0] * 4 + [0.9] * 4 if falling else [0.9] * 7 + [0.9 * jitter]
      runs[(name, peak, s)] = {
        'final': value * jitter,
        'losses': [2.0] * 12 + tail,
      }
    for lr, value in sweep.items():
      runs.setdefault(
        ('cosine', lr, s), {'final': value * jitter, 'losses': []}
      )
  sizes = {'names': tuple(final), 'sweep': tuple(sweep), 'seeds': seeds}
  return runs, peak, sizes


def test_subclaims_follow_the_rule_and_flip_with_the_data():
  final = {'constant': 0.5, 'step': 0.3, 'cosine': 0.25}
  sweep = {0.1: 0.25, 0.01: 0.6, 0.0001: 2.2}
  verdicts = [s.verdict for s in lr_schedules.subclaims(*_runs(final, sweep))]
  assert verdicts == ['holds'] * 4
  worse = {'constant': 0.3, 'step': 0.5, 'cosine': 0.25}
  subs = lr_schedules.subclaims(*_runs(worse, sweep, falling=False))
  assert subs[0].verdict != 'holds'  # the budget does not bind
  assert subs[1].verdict == 'does not hold'  # step ends worse
  flat = {0.1: 0.25, 0.01: 0.26, 0.0001: 0.27}
  assert lr_schedules.subclaims(*_runs(final, flat))[-1].verdict == (
    'does not hold'
  )


@pytest.mark.slow
def test_quick_cli_writes_the_files(tmp_path):
  record = studies_testing.run_quick('lr_schedules', tmp_path)
  values = record['values']
  # The trainer logs the schedule's rate (float32, to rounding).
  assert values['max_logged_lr_error'] < 1e-7
  assert set(values['final_loss']) == set(lr_schedules.QUICK_NAMES)
  # 1e-4 with SGD barely moves in 200 steps: magnitude matters most.
  sweep = values['sweep_final_loss']
  assert sweep['0.0001'][0] > sweep['0.1'][0] + 0.5  # nats
  assert record['subclaims'][-1]['verdict'] == 'holds'
