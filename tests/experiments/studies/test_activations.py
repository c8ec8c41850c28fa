"""The activations study: steps-to-target, speed-up ratios, the verdict."""

import math

import pytest

from experiments.studies import activations
from experiments.studies import report
from tests.experiments.studies import studies_testing


def test_steps_to_target_is_the_first_logged_step_at_or_below():
  steps, loss = [10, 20, 30, 40], [0.5, 0.1, 0.05, 0.2]
  assert activations.steps_to_target(steps, loss, 0.1) == 20
  assert activations.steps_to_target(steps, loss, 0.06) == 30
  assert activations.steps_to_target(steps, loss, 0.01) == math.inf
  assert activations.steps_to_target([], [], 0.1) == math.inf


def test_speedup_is_a_ratio_of_means_and_a_bound_when_missed():
  ratio, bound = activations.speedup([100, 200], [600, 900], budget=1000)
  assert ratio == pytest.approx(5.0) and not bound
  # A missed seed counts as the budget: (1000 + 600) / 2 / 150 at least.
  ratio, bound = activations.speedup([100, 200], [600, math.inf], 1000)
  assert ratio == pytest.approx(1600 / 2 / 150) and bound
  assert activations.format_ratio(ratio, bound) == '> 5.3x'
  ratio, _ = activations.speedup([100, math.inf], [600, 900], 1000)
  assert math.isnan(ratio) and activations.format_ratio(ratio, False) == 'n/a'
  assert activations.format_steps([math.inf, 10], 500) == (
    '> 500 (1/2 seeds missed)'
  )
  assert activations.format_steps([10, 30], 500) == '20 +- 10'
  assert activations.format_steps([math.inf] * 2, 9, diverged=1) == (
    '> 9 (2/2 seeds missed, 1 diverged)'
  )


def _verdict(reach):
  ratios = {
    a: activations.speedup(reach['relu'], r, 1000) for a, r in reach.items()
  }
  fig, _ = report.new_figure()
  return activations._result(
    fig, [], list(reach), reach, ratios, {}, 1000, (0, 1), (8,)
  )


def test_the_verdict_can_fail_when_relu_is_not_much_faster():
  holds = _verdict(
    {'relu': [100, 100], 'sigmoid': [700, 900], 'tanh': [300, 300]}
  )
  assert holds.holds and holds.values['relu_vs_sigmoid'] == pytest.approx(8.0)
  fails = _verdict(
    {'relu': [100, 100], 'sigmoid': [700, 900], 'tanh': [110, 130]}
  )
  assert not fails.holds and 'does NOT hold' in fails.verdict
  assert fails.values['relu_vs_tanh'] == pytest.approx(1.2)
  missed = _verdict(
    {'relu': [100, 100], 'sigmoid': [math.inf] * 2, 'tanh': [400] * 2}
  )
  assert missed.values['relu_vs_sigmoid_lower_bound'] is True
  assert missed.values['steps_to_target']['sigmoid'] == [None, None]


@pytest.mark.slow
def test_quick_cli_relu_reaches_the_target_before_sigmoid(tmp_path):
  record = studies_testing.run_quick('activations', tmp_path)
  steps = record['values']['steps_to_target']
  relu, sigmoid = steps['relu'][0], steps['sigmoid'][0]
  assert relu is not None
  assert sigmoid is None or sigmoid > relu
  assert record['values']['relu_vs_sigmoid'] > 1.5
