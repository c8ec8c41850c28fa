"""The warmup study: its measures by hand and its verdicts on stand-ins."""

import math

import pytest

from experiments.studies import warmup
from tests.experiments.studies import studies_testing


def test_diverged_step_reads_the_trainers_message():
  message = (
    'loss is nan at step 17: training stopped without saving this state; '
    'no checkpoint was saved yet'
  )
  assert warmup.diverged_step(message) == 17
  assert warmup.diverged_step('parameters are not finite') == -1


def test_summarize_by_hand():
  steps = [5, 10, 15, 20, 25, 30, 35, 40]
  losses = [2.3, 4.0, 1.0, 0.5, 0.4, 0.3, 0.2, 0.1]
  got = warmup.summarize(steps, losses, total=40, early=10)
  assert got['early_peak'] == 4.0  # the largest at steps 5 and 10
  assert got['late_loss'] == pytest.approx(0.15)  # steps 35, 40 (> 30)


def test_arms_differ_only_in_rate_and_warmup():
  a = warmup.arm_config(lr=2.0, warmup_steps=0, seed=1, steps=100)
  b = warmup.arm_config(lr=2.0, warmup_steps=35, seed=1, steps=100)
  assert a.model_kw.norm == 'batch' and a.schedule == 'constant'
  assert b.warmup_steps == 35
  b.warmup_steps = 0
  assert a.to_dict() == b.to_dict()


def _run(early_peak, late_loss):
  return {'early_peak': early_peak, 'late_loss': late_loss}


def test_subclaims_follow_the_stand_in_numbers():
  without = [_run(4.3, 0.07), _run(5.0, 0.1), _run(4.0, 0.05)]
  with_ = [_run(2.1, 0.007), _run(2.2, 0.01), _run(2.0, 0.006)]
  assert [s.verdict for s in warmup.subclaims(without, with_)] == [
    'holds',
    'holds',
  ]
  # Swapped arms: warmup would be the worse one.
  swapped = warmup.subclaims(with_, without)
  assert [s.verdict for s in swapped] == ['does not hold'] * 2
  # A diverged run (chance loss) against a trained one is far above 2x.
  diverged = [_run(math.inf, warmup.CHANCE_LOSS)] * 3
  assert warmup.subclaims(diverged, with_)[1].verdict == 'holds'


@pytest.mark.slow
def test_quick_cli_writes_the_files(tmp_path):
  record = studies_testing.run_quick('warmup', tmp_path)
  results = record['values']['results']
  # The baseline rate trains at any size: its loss falls below chance.
  baseline = results[f'lr {warmup.NORMAL_LR:g}, no warmup'][0]
  assert baseline['late_loss'] < warmup.CHANCE_LOSS / 2
  assert len(record['subclaims']) == 2
