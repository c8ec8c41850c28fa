"""The normalization study: its configs, sub-claims and stand-in arms."""

import math

import pytest

from experiments.studies import lr_grid
from experiments.studies import normalization
from experiments.studies import report
from tests.experiments.studies import studies_testing
from train_lib import trainer

GRID = normalization.GRID


def test_configs_differ_only_in_the_norm():
  kw = dict(lr=0.1, seed=0, steps=10)
  plain = normalization.config_for('none', **kw).to_dict()
  bn = normalization.config_for('batch:2', **kw).to_dict()
  assert bn['model_kw'].pop('norm') == 'batch:2'
  assert plain['model_kw'].pop('norm') == 'none'
  assert plain == bn
  assert plain['batch_size'] == 32 and plain['data']['name'] == 'mnist1d'
  assert plain['model_kw']['widths'] == (8, 16, 32)


def test_a_divergence_is_a_miss_at_chance_error(monkeypatch):
  def diverge(config):
    raise trainer.DivergedError('loss is nan at step 12: training stopped')

  monkeypatch.setattr(report, 'train', diverge)
  run, error = normalization.train_run('none', lr=1.0, seed=0, steps=10)
  assert run.diverged and run.reach(0.25) == math.inf
  assert error == normalization.CHANCE_ERROR


@pytest.mark.parametrize(
  'bn_max, plain_max, verdict, low, high',
  [
    (0.3, 0.03, 'holds', 10.0, 10.0),
    (0.1, 0.1, 'does not hold', 1.0, 1.0),  # touching 1: inconclusive
    (0.03, 0.3, 'does not hold', 0.1, 0.1),
    (1.0, 0.1, 'holds', 10.0, math.inf),  # BN at the top edge: a bound
    (0.1, 1.0, 'does not hold', 0.0, 0.1),  # plain at the edge: a bound
    (0.03, None, 'holds', 3.0, math.inf),  # plain trains at no rate
  ],
)
def test_stability_ratio_and_its_bounds(bn_max, plain_max, verdict, low, high):
  sub = normalization.stability_subclaim(bn_max, plain_max, GRID)
  assert (sub.ci_low, sub.ci_high) == pytest.approx((low, high))
  want = 'inconclusive' if low <= 1.0 <= high else verdict
  assert sub.verdict == want


def _tuned(reach, grid=None):
  """A measured arm whose seeds reach 25% error at `reach` (inf: never)."""
  runs = {
    s: lr_grid.Run(steps=[r], values=[0.2])
    if math.isfinite(r)
    else lr_grid.Run(steps=[10], values=[0.9])
    for s, r in enumerate(reach, start=1)
  }
  return lr_grid.Tuned(grid=grid or {}, best_lr=0.1, runs=runs, target=0.25)


def test_speed_and_batch_subclaims_flip_with_the_data():
  bn, slow = _tuned([100, 120, 110]), _tuned([300, 330, 360])
  assert normalization.speed_subclaim(bn, slow, 600).verdict == 'holds'
  same = _tuned([105, 115, 112])
  assert normalization.speed_subclaim(bn, same, 600).verdict != 'holds'
  grid = {lr: lr_grid.Run([20], [0.1 if lr <= 0.1 else 0.9]) for lr in GRID}
  assert normalization.largest_trainable(_tuned([1], grid)) == 0.1
  worse = normalization.difference_subclaim(
    'c', [0.30, 0.35, 0.33], [0.10, 0.12, 0.11], 'w'
  )
  assert worse.verdict == 'holds' and worse.estimate == pytest.approx(
    21.67, 1e-3
  )
  flat = normalization.difference_subclaim(
    'c', [0.10, 0.13, 0.11], [0.11, 0.12, 0.12], 'w'
  )
  assert flat.verdict == 'inconclusive'


def _fake_train(config):
  """report.train stand-in: BN trains at rates up to 0.3, plain up to 0.03;
  BN's test error grows as its statistics see fewer examples."""
  norm, lr = config.model_kw.norm, config.lr
  if lr > (0.03 if norm == 'none' else 0.3):
    raise trainer.DivergedError('loss is nan at step 5')
  reach = 300 if norm == 'none' else 100
  records = [
    {'step': s, 'split': 'train', 'accuracy': 0.9 if s >= reach else 0.5}
    for s in range(20, config.total_steps + 1, 20)
  ]
  group = norm.partition(':')[2]
  test = {'2': 0.6, '4': 0.8, '8': 0.85}.get(group, 0.88)
  records.append(
    {'step': config.total_steps, 'split': 'eval', 'accuracy': test}
  )
  return report.TrainRun(records=records, state=None)


@pytest.mark.slow  # ~5 s idle: 25 configs and a figure
def test_the_protocol_on_stand_in_arms(monkeypatch):
  monkeypatch.setattr(report, 'train', _fake_train)
  result = normalization.run(quick=False)
  values = result.values
  assert values['best_lr'] == {'batch': 0.03, 'none': 0.03}
  assert values['test_error']['batch:2'] == pytest.approx([0.4] * 3)
  assert [s.verdict for s in result.subclaims] == ['holds'] * 4
  assert result.subclaims[1].estimate == pytest.approx(10.0)  # 0.3 / 0.03


@pytest.mark.slow
def test_quick_cli(tmp_path):
  record = studies_testing.run_quick('normalization', tmp_path)
  assert set(record['values']['test_error']) == {'batch:2', 'batch:32'}
  assert len(record['subclaims']) == 3
