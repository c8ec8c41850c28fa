"""The activations study: the lr grid rule, paired ratios, the verdicts."""

import math

import pytest

from experiments.studies import activations
from experiments.studies import lr_grid
from experiments.studies import report
from tests.experiments.studies import studies_testing


def _run(values, step=10):
  return lr_grid.Run(
    steps=[step * (i + 1) for i in range(len(values))], values=values
  )


def test_run_reach_is_the_first_logged_step_at_or_below_the_target():
  run = _run([0.9, 0.25, 0.3, 0.1])
  assert run.reach(0.25) == 20 and run.reach(0.1) == 40
  assert run.reach(0.05) == math.inf and run.final() == 0.1
  gone = lr_grid.Run(steps=[], values=[], diverged=True)
  assert gone.reach(0.25) == math.inf and gone.final() == math.inf


def test_best_rate_fewest_steps_then_lowest_final_then_smaller_lr():
  grid = {0.1: _run([0.5, 0.2]), 0.3: _run([0.2, 0.1]), 1.0: _run([0.2])}
  assert lr_grid.best_rate(grid, 0.25) == 0.3  # reached at 10; tie -> 0.3
  missed = {0.1: _run([0.9, 0.6]), 0.3: _run([0.9, 0.5])}
  assert lr_grid.best_rate(missed, 0.25) == 0.3  # lowest final error
  ladder = (0.01, 0.03, 0.1, 0.3, 1.0)
  assert lr_grid.next_rate([0.03, 0.1, 0.3], 0.3, ladder) == 1.0
  assert lr_grid.next_rate([0.03, 0.1, 0.3], 0.03, ladder) == 0.01
  assert lr_grid.next_rate([0.03, 0.1, 0.3], 0.1, ladder) is None
  assert lr_grid.next_rate([0.3, 1.0], 1.0, ladder) is None


def test_tune_extends_past_a_best_edge_and_measures_fresh_seeds():
  # Steps to target fall with the rate up to 1.0, then it diverges.
  speed = {0.03: 300, 0.1: 100, 0.3: 50, 1.0: 30}
  calls = []

  def train(lr, seed):
    calls.append((lr, seed))
    if lr not in speed:
      return lr_grid.Run(steps=[], values=[], diverged=True)
    return lr_grid.Run(steps=[speed[lr]], values=[0.2])

  tuned = lr_grid.tune_and_measure(
    train,
    start=(0.03, 0.1, 0.3),
    ladder=activations.LADDER,
    extensions=3,
    select_seed=0,
    seeds=(1, 2),
    target=0.25,
  )
  assert tuned.best_lr == 1.0 and sorted(tuned.grid) == [0.03, 0.1, 0.3, 1, 3]
  assert calls[-2:] == [(1.0, 1), (1.0, 2)] and tuned.reach == [30, 30]


def test_ratio_interval_is_paired_and_a_miss_is_a_bound():
  est, low, high = lr_grid.ratio_interval([100, 200], [500, 1000], 1200)
  assert (est, low, high) == pytest.approx((5.0, 5.0, 5.0))
  est, low, high = lr_grid.ratio_interval([100, 200], [500, math.inf], 1200)
  assert est == pytest.approx(math.sqrt(5 * 6)) and high == math.inf
  est, low, high = lr_grid.ratio_interval([math.inf], [600], 1200)
  assert est == pytest.approx(0.5) and low == 0.0


@pytest.mark.parametrize(
  'tanh, verdict',
  [
    ([500, 640, 560, 590], 'holds'),  # ~5.7x, tight
    ([110, 130, 120, 125], 'does not hold'),  # ~1.2x, tight
    ([150, 400, 260, 900], 'inconclusive'),  # straddles 2x
    ([150, math.inf, 160, 170], 'inconclusive'),  # a miss: no upper end
    ([math.inf] * 4, 'holds'),  # 12x at least: the bound clears 2x
  ],
)
def test_speedup_subclaim_follows_the_rule(tanh, verdict):
  sub = activations.speedup_subclaim('c', [100, 100, 100, 100], tanh, 1200)
  assert sub.verdict == verdict


def _fake_train(config):
  """report.train stand-in: ReLU reaches 25% error 5x sooner than tanh."""
  act = config.model_kw.activation
  lr, steps = config.lr, config.total_steps
  fast = {'relu': 40, 'tanh': 200, 'sigmoid': 10**9}[act] / min(lr, 1.0)
  records = [
    {'step': s, 'split': 'train', 'accuracy': 1.0 if s >= fast else 0.5}
    for s in range(10, steps + 1, 10)
  ]
  return report.TrainRun(records=records, state=None)


@pytest.mark.slow  # ~5 s idle: 50 configs and a figure
def test_the_full_protocol_on_stand_in_arms(monkeypatch):
  monkeypatch.setattr(report, 'train', _fake_train)
  result = activations.run(quick=False)
  main = result.values[activations.MAIN]
  # Faster up to lr 1: the grid climbs past 0.3 to 1 and 3 (a tie: 1).
  assert main['relu']['best_lr'] == 1.0
  assert list(main['relu']['grid_steps']) == ['0.03', '0.1', '0.3', '1', '3']
  assert main['sigmoid']['steps_to_target'] == [None] * 4
  assert [s.verdict for s in result.subclaims] == ['holds'] * 4
  assert result.subclaims[0].estimate == pytest.approx(5.0, rel=0.1)
  assert result.rows[0][0] == activations.MAIN and len(result.rows) == 6


@pytest.mark.slow
def test_quick_cli_relu_reaches_25_percent_error_before_tanh(tmp_path):
  record = studies_testing.run_quick('activations', tmp_path)
  main = record['values'][activations.MAIN]
  relu = main['relu']['steps_to_target'][0]
  tanh = main['tanh']['steps_to_target'][0]
  # Probed at lr 0.1, seed 0: ReLU at step ~110, tanh ~570 (> 400 steps).
  assert relu is not None and (tanh is None or tanh > relu)
