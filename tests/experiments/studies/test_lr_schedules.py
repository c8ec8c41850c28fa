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


@pytest.mark.slow
def test_quick_cli_writes_the_files(tmp_path):
  record = studies_testing.run_quick('lr_schedules', tmp_path)
  values = record['values']
  # The trainer logs the schedule's rate (float32, to rounding).
  assert values['max_logged_lr_error'] < 1e-7
  assert set(values['logged_lr_error']) == set(lr_schedules.QUICK_NAMES)
  # 1e-4 with SGD barely moves in 150 steps: magnitude matters most.
  sweep = values['sweep_accuracy']
  assert sweep['0.0001'] < max(sweep.values()) - 0.1
  assert values['magnitude_first'] is True
