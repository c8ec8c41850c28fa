"""The gradients study: counts and agreement as checks, slopes as claims."""

import jax
from jax.flatten_util import ravel_pytree
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
import pytest

from experiments.studies import gradients
from experiments.studies import verdict
from ops import backprop
from tests.experiments.studies import studies_testing
from train_lib.data import small

_PRECONDITION = "fixed cost's share of one loss evaluation at the largest net"


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


def test_repeats_come_from_the_pilot():
  # t_4 = 2.776: twice the pilot's errors, 0.097 and 0.17, give half-widths
  # 0.12 and 0.21 at 5 repeats, inside the distances 0.23 and 0.71.
  assert gradients.REPEATS == verdict.MIN_SEEDS == 5
  assert 'seeds_for' in gradients.SEEDS_WHY and '= 5 repeats' in (
    gradients.SEEDS_WHY
  )


def _digits(n=16):
  (x, labels), _ = small.load_digits()
  return jnp.asarray(x[:n].reshape(n, -1), jnp.float64), labels[:n]


@pytest.mark.slow
def test_numerical_gradient_counts_and_agrees_with_jax_grad():
  with jax.enable_x64(True):
    _, theta, _, loss = gradients.mlp_problem(2, *_digits())
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
    x, labels = _digits()
    params, theta, _, loss = gradients.mlp_problem(2, x, labels)
    wrong = backprop.mlp_backward(params, x, labels, 'sigmoid', gradients.LOSS)
    wrong = ravel_pytree(wrong[1])[0]
    numerical = backprop.numerical_grad(jax.jit(loss), theta)
    assert gradients.max_abs_diff(numerical, wrong) > gradients.NUMERICAL_TOL
    with pytest.raises(ValueError, match='shapes differ'):
      gradients.max_abs_diff(numerical, wrong[:-1])


def test_size_counts_compares_and_times_one_size():
  with jax.enable_x64(True):
    size = gradients.Size(1, *_digits(32))
    row = size.exact()
    size.time()
    size.time()
  assert row['params'] == 64 + 1 + 10 + 10
  assert row['evaluations'] == [2 * row['params']] * 3  # Every pass counted.
  assert row['backprop_evaluations'] == 1
  assert row['numerical_vs_jax_grad'] <= gradients.NUMERICAL_TOL
  assert row['hand_vs_jax_grad'] <= gradients.HAND_TOL
  assert len(row['numerical_s']) == len(row['jax_grad_s']) == 2
  assert all(t > 0 for t in row['numerical_s'] + row['jax_grad_s'])


def _rows(fixed=1e-6, per_param=1e-8, power=1.0, auto_power=1.0, extra=0):
  """Made-up measurements over 8 doubling sizes and 5 repeats.

  One loss call costs `fixed` + `per_param` * |theta|^`power` seconds, the
  numerical gradient 2 |theta| of them; jax.grad ~ |theta|^`auto_power`;
  each repeat has its own few-percent noise.
  """
  rng = np.random.default_rng(0)
  rows = []
  for k in range(8):
    p = 100 * 2**k
    noise = rng.lognormal(0.0, 0.03, (2, 5))
    call = fixed + per_param * p**power
    rows.append(
      {
        'hidden': k,
        'params': p,
        'evaluations': [2 * p + extra] * 6,
        'backprop_evaluations': 1,
        'numerical_vs_jax_grad': 1e-9,
        'hand_vs_jax_grad': 1e-16,
        'numerical_s': list(2 * p * call * noise[0]),
        'jax_grad_s': list(1e-7 * p**auto_power * noise[1]),
      }
    )
  return rows


def _summarize(rows):
  result = gradients.summarize(rows, quick=False)
  plt.close(result.figure)
  return result


def test_quadratic_numerical_and_linear_backprop_hold():
  result = _summarize(_rows())
  assert [s.kind for s in result.subclaims] == ['check'] * 4 + ['claim'] * 2
  assert [s.verdict for s in result.subclaims] == ['passes'] * 4 + ['holds'] * 2
  assert [p.met for p in result.preconditions] == [True]
  assert result.verdict == 'holds'
  numerical = result.subclaims[4]
  slopes = result.values['slopes_numerical_s']
  assert len(slopes) == numerical.seeds == 5
  assert numerical.estimate == pytest.approx(np.mean(slopes))
  assert numerical.estimate == pytest.approx(2.0, abs=0.05)
  assert numerical.seeds_why == gradients.SEEDS_WHY
  # (fixed + 1e-8 * 100) / (fixed + 1e-8 * 12,800): about 1/64.
  assert result.values['fixed_share_at_largest'] == pytest.approx(
    2e-6 / 129e-6, rel=0.1
  )
  assert 'e-' not in result.summary  # Plain numbers for a student.


def test_a_fixed_cost_that_rules_is_not_tested():
  # Every loss call costs about the same: the numerical time grows like
  # |theta| and the asymptotic regime is never reached.
  result = _summarize(_rows(fixed=1e-4, per_param=1e-12))
  assert result.values['fixed_share_at_largest'] > 0.9
  assert [p.met for p in result.preconditions] == [False]
  assert result.verdict == 'not tested'
  assert result.summary.startswith(f'Not tested: {_PRECONDITION}')


def test_slow_growth_past_the_overhead_does_not_hold():
  # Per-call cost ~ |theta|^0.4 (share (1/128)^0.4 = 0.14, met), so the
  # numerical time grows as |theta|^1.4; backprop as |theta|^2.
  result = _summarize(_rows(fixed=0.0, per_param=1e-6, power=0.4))
  assert result.preconditions[0].met
  assert result.subclaims[4].verdict == 'does not hold'
  assert result.verdict == 'does not hold'
  result = _summarize(_rows(auto_power=2.0))
  assert result.subclaims[5].verdict == 'does not hold'


def test_a_miscount_stops_the_run():
  with pytest.raises(verdict.CheckFailedError, match='2\\|theta\\| times'):
    _summarize(_rows(extra=1))


def test_noisy_timings_make_the_slope_inconclusive():
  rows = _rows(fixed=0.0, per_param=1e-6, power=0.5)  # Slope 1.5.
  rows[-1]['numerical_s'] = [
    t * f
    for t, f in zip(
      rows[-1]['numerical_s'], (0.5, 2.0, 1.0, 0.7, 1.4), strict=True
    )
  ]
  result = _summarize(rows)
  assert result.subclaims[4].verdict == 'inconclusive'
  assert result.verdict == 'inconclusive'


@pytest.mark.slow
def test_quick_cli_records_checks_claims_and_the_precondition(tmp_path):
  record = studies_testing.run_quick('gradients', tmp_path)
  assert record['format'] == 2
  subclaims = record['subclaims']
  assert [s['kind'] for s in subclaims] == ['check'] * 4 + ['claim'] * 2
  assert [s['verdict'] for s in subclaims[:4]] == ['passes'] * 4
  assert all(s['seeds'] == gradients.REPEATS for s in subclaims[4:])
  assert all(s['seeds_why'] == gradients.SEEDS_WHY for s in subclaims[4:])
  values = record['values']
  assert values['evaluations'] == [2 * p for p in values['params']]
  assert values['counts_exact'] is True
  assert values['backprop_evaluations'] == [1] * len(values['params'])
  assert values['max_abs_diff_numerical'] <= gradients.NUMERICAL_TOL
  assert values['max_abs_diff_hand'] <= gradients.HAND_TOL
  # The slopes of the small --quick nets are not asserted; whether their
  # fixed costs rule is measured, and the headline follows the rule.
  (pre,) = record['preconditions']
  assert pre['name'] == _PRECONDITION and pre['required'] == '< 0.25'
  assert pre['met'] == (pre['measured'] < gradients.FIXED_SHARE_MAX)
  claims = [s['verdict'] for s in subclaims[4:]]
  assert record['verdict'] == verdict.rule(claims, [pre['met']])
  assert 'load average' not in (tmp_path / 'gradients.md').read_text()
