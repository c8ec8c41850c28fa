"""The dead_relu study: the death test by hand, the verdicts on stand-ins."""

import numpy as np
import pytest

from experiments.studies import dead_relu
from tests.experiments.studies import studies_testing


def test_unit_stats_by_hand():
  inputs = np.array([[1.0, 2.0], [3.0, -1.0]])  # [N=2, D=2]
  # z = inputs @ kernel + bias: unit 0 is -1, -3 (never positive);
  # unit 1 is 1, 3; unit 2 is -20, -20 (ELU slope e^-20 < 1e-6).
  kernel = np.array([[-1.0, 1.0, 0.0], [0.0, 0.0, 0.0]])
  bias = np.array([0.0, 0.0, -20.0])
  relu = dead_relu.unit_stats('relu', kernel, bias, inputs)
  np.testing.assert_array_equal(relu['dead'], [True, False, True])
  np.testing.assert_array_equal(relu['negative'], [True, False, True])
  leaky = dead_relu.unit_stats('leaky_relu', kernel, bias, inputs)
  np.testing.assert_array_equal(leaky['dead'], [False, False, False])
  np.testing.assert_array_equal(leaky['negative'], [True, False, True])
  # ELU at z = -1: slope e^-1, alive; at z = -20: e^-20 = 2e-9, dead.
  elu = dead_relu.unit_stats('elu', kernel, bias, inputs)
  np.testing.assert_array_equal(elu['dead'], [False, False, True])


def test_revived_share_counts_units_that_left_the_flag():
  before = np.array([True, True, False, False])
  after = np.array([True, False, False, True])
  assert dead_relu.revived_share(before, after) == 25.0


def test_arm_config_is_one_hidden_layer_at_a_constant_rate():
  config = dead_relu.arm_config('elu', lr=0.3, seed=2, steps=40)
  assert tuple(config.model_kw.hidden_sizes) == (dead_relu.HIDDEN,)
  assert config.model_kw.activation == 'elu'
  assert config.lr == 0.3 and config.schedule == 'constant'
  assert config.warmup_steps == 0 and config.weight_decay == 0.0
  assert config.seed == 2 and config.total_steps == 40


def _results(relu_large_dead, elu_dead, leaky_back):
  def arm(dead, revived_dead=0.0, revived_negative=0.0):
    return [
      {
        'dead': [d / 2, d],
        'negative': [d, d],
        'revived_dead': revived_dead,
        'revived_negative': revived_negative,
      }
      for d in dead
    ]

  return {
    'relu lr 0.1': arm([0.0, 0.4, 0.8]),
    'relu lr 0.3': arm(relu_large_dead),
    'leaky_relu lr 0.3': arm([0.0, 0.0, 0.0], revived_negative=leaky_back),
    'elu lr 0.3': arm(elu_dead),
  }


def test_subclaims_follow_the_stand_in_numbers():
  good = dead_relu.subclaims(_results([40.0, 55.0, 62.0], [0.0] * 3, 1.2), 3)
  assert [s.verdict for s in good] == ['holds'] * 5
  # ELU units dying everywhere, and ReLU at the large rate no worse: flips.
  bad = dead_relu.subclaims(_results([0.0, 0.4, 0.8], [8.0, 9.0, 10.0], 0), 3)
  assert bad[0].verdict == 'inconclusive'  # a zero difference
  assert bad[3].verdict == 'does not hold'
  assert bad[4].verdict == 'inconclusive'


@pytest.mark.slow
def test_quick_cli_writes_the_files(tmp_path):
  record = studies_testing.run_quick('dead_relu', tmp_path)
  results = record['values']['results']
  # At 0.3 a visible share of ReLUs die within 60 steps; Leaky ReLU cannot
  # (its slope is at least 0.01); a dead ReLU never comes back.
  assert np.mean([r['dead'][-1] for r in results['relu lr 0.3']]) > 5.0
  assert all(r['dead'][-1] == 0.0 for r in results['leaky_relu lr 0.3'])
  assert all(r['revived_dead'] == 0.0 for r in results['relu lr 0.3'])
  verdicts = [s['verdict'] for s in record['subclaims']]
  assert verdicts[:3] == ['holds'] * 3
