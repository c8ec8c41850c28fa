"""The gradients study: evaluation counts, agreement, slopes (seed 004)."""

import jax
from jax.flatten_util import ravel_pytree
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
import pytest

from experiments.studies import gradients
from ops import backprop
from tests.experiments.studies import studies_testing


def test_call_counter_counts_calls_and_passes_results():
  counted = gradients.CallCounter(lambda a, b=1: a + b)
  assert counted.calls == 0
  assert counted(2) == 3 and counted(2, b=5) == 7
  assert counted.calls == 2


def test_fit_slope_recovers_a_power_law():
  x = np.array([10.0, 100.0, 1000.0])
  assert gradients.fit_slope(x, 3 * x**2) == pytest.approx(2.0)
  assert gradients.fit_slope(x, 7 * x) == pytest.approx(1.0)
  assert gradients.fit_slope(x, np.full(3, 5.0)) == pytest.approx(0.0)
  with pytest.raises(ValueError, match='positive'):
    gradients.fit_slope(x, [1.0, 0.0, 2.0])


def _small_problem(hidden=2, n=16):
  x, labels = gradients.digits_batch()
  return gradients.mlp_problem(hidden, x[:n], labels[:n])


@pytest.mark.slow
def test_numerical_gradient_counts_and_agrees_with_jax_grad():
  with jax.enable_x64(True):
    _, theta, _, loss = _small_problem()
    counted = gradients.CallCounter(jax.jit(loss))
    numerical = backprop.numerical_grad(counted, theta, eps=gradients.EPS)
    assert theta.size == 64 * 2 + 2 + 2 * 10 + 10
    assert counted.calls == 2 * theta.size  # Counted, not computed.
    auto = jax.grad(loss)(theta)
    assert gradients.max_abs_diff(numerical, auto) <= gradients.NUMERICAL_TOL
    # The gradient entries are far above the tolerance: a wrong gradient
    # cannot hide under it.
    assert float(jnp.max(jnp.abs(auto))) > 1e4 * gradients.NUMERICAL_TOL


@pytest.mark.slow
def test_the_agreement_check_catches_a_wrong_gradient():
  # A classic bug: the backward pass uses the wrong activation derivative
  # (sigmoid's instead of tanh's).
  with jax.enable_x64(True):
    params, theta, unravel, loss = _small_problem()
    x, labels = gradients.digits_batch()
    wrong = backprop.mlp_backward(
      params, x[:16], labels[:16], 'sigmoid', gradients.LOSS
    )[1]
    wrong = ravel_pytree(wrong)[0]
    numerical = backprop.numerical_grad(jax.jit(loss), theta)
    assert gradients.max_abs_diff(numerical, wrong) > gradients.NUMERICAL_TOL
    with pytest.raises(ValueError, match='shapes differ'):
      gradients.max_abs_diff(numerical, wrong[:-1])


def test_measure_one_size():
  with jax.enable_x64(True):
    x, labels = gradients.digits_batch()
    row = gradients.measure(1, x[:32], labels[:32])
  assert row['params'] == 64 + 1 + 10 + 10
  assert row['evaluations'] == 2 * row['params']
  assert row['backprop_evaluations'] == 1
  assert row['numerical_vs_jax_grad'] <= gradients.NUMERICAL_TOL
  assert row['hand_vs_jax_grad'] <= gradients.HAND_TOL


def _rows(numerical_power, extra_evaluation=0):
  """Made-up measurements: numerical time ~ p^power, backprop ~ p."""
  rows = []
  for p in (100, 200, 400, 800, 1600, 3200):
    rows.append(
      {
        'hidden': p // 10,
        'params': p,
        'evaluations': 2 * p + extra_evaluation,
        'backprop_evaluations': 1,
        'numerical_s': 1e-7 * p**numerical_power,
        'numerical_wall_s': 2e-7 * p**numerical_power,
        'jax_grad_s': 1e-6 * p,
        'hand_s': 1e-6 * p,
        'numerical_vs_jax_grad': 1e-10,
        'hand_vs_jax_grad': 1e-16,
      }
    )
  return rows


def test_slope_interval_by_hand():
  # log x = 1, 2, 3 and log y = 1, 3, 2: slope 0.5, residuals -0.5, 1,
  # -0.5, s^2 = 1.5 / 1, Sxx = 2, standard error sqrt(0.75); t_{0.975,1}
  # = 12.7062.
  x, y = np.exp([1.0, 2.0, 3.0]), np.exp([1.0, 3.0, 2.0])
  slope, low, high = gradients.slope_interval(x, y)
  half = 12.7062 * np.sqrt(0.75)
  assert slope == pytest.approx(0.5)
  assert (low, high) == pytest.approx((0.5 - half, 0.5 + half), rel=1e-4)
  # An exact power law: the interval is the point.
  p = np.array([10.0, 100.0, 1000.0])
  assert gradients.slope_interval(p, p**2) == pytest.approx((2.0, 2.0, 2.0))


@pytest.mark.parametrize(
  ('power', 'extra', 'verdicts'),
  [
    (2.0, 0, ['holds'] * 6),
    (1.0, 0, ['holds', 'holds', 'does not hold', 'holds', 'holds', 'holds']),
    (2.0, 1, ['does not hold'] + ['holds'] * 5),
  ],
)
def test_verdict_follows_the_measurements(power, extra, verdicts):
  result = gradients.summarize(_rows(power, extra), quick=False)
  plt.close(result.figure)
  assert [s.verdict for s in result.subclaims] == verdicts
  assert result.verdict == (
    'holds' if extra == 0 and power == 2 else 'does not hold'
  )
  assert result.values['slope_numerical_s'] == pytest.approx(power)
  assert result.values['counts_exact'] is (extra == 0)


def test_noisy_timings_make_the_slope_inconclusive():
  rows = _rows(1.5)
  for r, noise in zip(rows, (1.0, 1.0, 1.0, 1.0, 3.0, 0.6), strict=True):
    r['numerical_s'] *= noise
  result = gradients.summarize(rows, quick=False)
  plt.close(result.figure)
  assert result.subclaims[2].verdict == 'inconclusive'
  assert result.verdict == 'inconclusive'


@pytest.mark.slow
def test_quick_cli_counts_exactly_2_theta_evaluations(tmp_path):
  record = studies_testing.run_quick('gradients', tmp_path)
  values = record['values']
  assert values['evaluations'] == [2 * p for p in values['params']]
  assert values['counts_exact'] is True
  assert values['backprop_evaluations'] == [1] * len(values['params'])
  assert values['slope_evaluations'] == pytest.approx(1.0, abs=1e-9)
  assert values['max_abs_diff_numerical'] <= gradients.NUMERICAL_TOL
  assert values['max_abs_diff_hand'] <= gradients.HAND_TOL
  verdicts = [s['verdict'] for s in record['subclaims']]
  # Counts, backprop's single call and both agreements are exact at any
  # size; the slopes on the small --quick nets are not asserted.
  assert [verdicts[i] for i in (0, 1, 4, 5)] == ['holds'] * 4
