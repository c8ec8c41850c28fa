"""The three-way verdict: the rule, its combination and the 95% intervals.

Reference values are computed by hand: Student's t quantiles from the
tables (t_{0.975,2} = 4.3027, t_{0.975,1} = 12.7062), the rule on intervals
drawn on paper.
"""

import math

import numpy as np
import pytest

from experiments.studies import verdict

T_975_DF2 = 4.3027  # Student's t, 97.5% quantile, 2 degrees of freedom.
T_975_DF1 = 12.7062  # ... 1 degree of freedom.


@pytest.mark.parametrize(
  ('low', 'high', 'direction', 'want'),
  [
    (1.0, 2.0, 'above', 'holds'),
    (-2.0, -1.0, 'above', 'does not hold'),
    (-1.0, 1.0, 'above', 'inconclusive'),
    (-2.0, -1.0, 'below', 'holds'),
    (1.0, 2.0, 'below', 'does not hold'),
    (-1.0, 1.0, 'below', 'inconclusive'),
    # Touching the threshold counts as containing it.
    (0.0, 1.0, 'above', 'inconclusive'),
    (-1.0, 0.0, 'above', 'inconclusive'),
    (-1.0, 0.0, 'below', 'inconclusive'),
    (0.0, 1.0, 'below', 'inconclusive'),
    (0.0, 0.0, 'above', 'inconclusive'),
  ],
)
def test_decide_hand_cases_around_threshold_zero(low, high, direction, want):
  assert verdict.decide(low, high, 0.0, direction) == want


def test_decide_uses_the_threshold_not_zero():
  # "e.g. 6x": an interval [4, 5.9] of speed-ups is below 6.
  assert verdict.decide(4.0, 5.9, 6.0, 'above') == 'does not hold'
  assert verdict.decide(6.1, 9.0, 6.0, 'above') == 'holds'
  assert verdict.decide(5.0, 9.0, 6.0, 'above') == 'inconclusive'


def test_decide_rejects_bad_input():
  with pytest.raises(ValueError, match='direction'):
    verdict.decide(0.0, 1.0, 0.5, 'sideways')
  with pytest.raises(ValueError, match='not ordered'):
    verdict.decide(2.0, 1.0, 0.5, 'above')


@pytest.mark.parametrize(
  ('verdicts', 'want'),
  [
    (['holds'], 'holds'),
    (['holds', 'holds', 'holds'], 'holds'),
    (['holds', 'inconclusive'], 'inconclusive'),
    (['inconclusive', 'inconclusive'], 'inconclusive'),
    (['holds', 'does not hold'], 'does not hold'),
    (['inconclusive', 'does not hold', 'holds'], 'does not hold'),
  ],
)
def test_combine_hand_cases(verdicts, want):
  assert verdict.combine(verdicts) == want


def test_combine_rejects_no_or_unknown_verdicts():
  with pytest.raises(ValueError, match='at least one'):
    verdict.combine([])
  with pytest.raises(ValueError, match='unknown'):
    verdict.combine(['holds', 'maybe'])


def test_t_interval_three_values_by_hand():
  # Mean 2, sample sd 1, standard error 1 / sqrt(3).
  mean, low, high = verdict.t_interval([1.0, 2.0, 3.0])
  half = T_975_DF2 / math.sqrt(3)
  assert mean == 2.0
  assert low == pytest.approx(2.0 - half, abs=1e-4)
  assert high == pytest.approx(2.0 + half, abs=1e-4)


def test_t_interval_of_one_value_is_the_point():
  assert verdict.t_interval([5.0]) == (5.0, 5.0, 5.0)


def test_t_interval_rejects_empty_and_non_finite():
  with pytest.raises(ValueError, match='finite'):
    verdict.t_interval([])
  with pytest.raises(ValueError, match='finite'):
    verdict.t_interval([1.0, math.nan])


def test_log_t_interval_two_ratios_by_hand():
  # logs ln 2 and ln 8: mean ln 4, sd sqrt(2) ln 2, standard error ln 2; the
  # interval is 4 * 2^(+-t).
  gmean, low, high = verdict.log_t_interval([2.0, 8.0])
  assert gmean == pytest.approx(4.0)
  assert low == pytest.approx(4.0 * 2.0**-T_975_DF1, rel=1e-4)
  assert high == pytest.approx(4.0 * 2.0**T_975_DF1, rel=1e-4)
  with pytest.raises(ValueError, match='positive'):
    verdict.log_t_interval([2.0, -1.0])


def _mean_diff(a, b):
  return float(np.mean(a - b))


def test_bootstrap_interval_is_reproducible_and_paired():
  rng = np.random.default_rng(0)
  a = rng.normal(size=100)
  b = a + 0.5 + 0.1 * rng.normal(size=100)
  first = verdict.bootstrap_interval(_mean_diff, b, a, n_resamples=300)
  assert first == verdict.bootstrap_interval(_mean_diff, b, a, n_resamples=300)
  other = verdict.bootstrap_interval(_mean_diff, b, a, n_resamples=300, seed=1)
  assert other != first and other[0] == first[0]
  # Paired: the rows move together, so the interval is about the 0.1 noise
  # (half-width ~ 1.96 * 0.1 / 10), not the unit spread of a and b.
  estimate, low, high = first
  assert low < estimate < high and high - low < 0.06
  assert verdict.bootstrap_interval(_mean_diff, a, a, n_resamples=50) == (
    0.0,
    0.0,
    0.0,
  )
  with pytest.raises(ValueError, match='same, non-zero length'):
    verdict.bootstrap_interval(_mean_diff, a, a[:5])


def test_bootstrap_interval_matches_the_normal_interval_of_a_mean():
  # 400 draws of N(0, 1): the 95% interval of the mean is +-1.96 / 20.
  x = np.random.default_rng(3).normal(size=400)
  estimate, low, high = verdict.bootstrap_interval(np.mean, x)
  assert (high - low) / 2 == pytest.approx(1.96 / 20, rel=0.15)
  assert low < estimate < high


def test_bootstrap_interval_covers_the_true_mean_about_95_percent():
  rng = np.random.default_rng(7)
  trials, covered = 50, 0
  for i in range(trials):
    x = rng.normal(loc=1.0, size=50)
    _, low, high = verdict.bootstrap_interval(
      np.mean, x, n_resamples=300, seed=i
    )
    covered += low <= 1.0 <= high
  # Percentile bootstrap at n = 50: about 0.93; 50 trials, sd 0.035.
  assert 0.8 <= covered / trials <= 1.0


def _subclaim(estimate=1.5, low=1.0, high=2.0, direction='above'):
  return verdict.Subclaim(
    claim='ReLU trains faster than tanh.',
    estimate=estimate,
    ci_low=low,
    ci_high=high,
    threshold=1.0 if direction == 'above' else 3.0,
    direction=direction,
    seeds=3,
    interval='paired t over 3 seeds',
    threshold_why='"faster": a ratio above 1',
  )


def test_subclaim_verdict_and_record():
  sub = _subclaim(low=1.1)
  assert sub.verdict == 'holds'
  record = sub.record()
  assert record['verdict'] == 'holds' and record['seeds'] == 3
  assert set(record) >= {
    'claim',
    'estimate',
    'ci_low',
    'ci_high',
    'threshold',
    'direction',
    'seeds',
    'verdict',
  }
  # The interval touches the threshold 1: inconclusive.
  assert _subclaim().verdict == 'inconclusive'
  assert _subclaim(direction='below').verdict == 'holds'


def test_subclaim_rejects_an_estimate_outside_its_interval():
  with pytest.raises(ValueError, match='outside its interval'):
    _subclaim(estimate=2.5)
  with pytest.raises(ValueError, match='direction'):
    _subclaim(direction='up')


def test_bootstrap_seeds_examples_hand_cases():
  # Every difference 1: the interval is the point.
  assert verdict.bootstrap_seeds_examples(np.ones((3, 20))) == (1.0, 1.0, 1.0)
  # Seeds disagree wholesale (one seed +1 everywhere, two seeds 0): the
  # resampled seeds carry the spread, from 0 (no +1 seed drawn) to 1.
  d = np.zeros((3, 50))
  d[0] = 1.0
  mean, low, high = verdict.bootstrap_seeds_examples(d, n_resamples=500)
  assert mean == pytest.approx(1 / 3)
  assert low == 0.0 and high >= 2 / 3
  # Examples disagree within seeds alike: the example resampling carries
  # it; near a normal interval of the mean, +-1.96 sd / sqrt(n).
  rng = np.random.default_rng(0)
  row = rng.choice([-1.0, 0.0, 1.0], size=2000, p=[0.1, 0.7, 0.2])
  mean, low, high = verdict.bootstrap_seeds_examples(
    np.tile(row, (3, 1)), n_resamples=500
  )
  half = 1.96 * row.std() / np.sqrt(row.size)
  assert (high - low) / 2 == pytest.approx(half, rel=0.2)
  assert verdict.bootstrap_seeds_examples(
    np.tile(row, (3, 1)), n_resamples=500
  ) == (mean, low, high)
  with pytest.raises(ValueError, match='seeds, examples'):
    verdict.bootstrap_seeds_examples(np.ones(5))
