"""95% intervals against independent references.

Student's t quantiles from the tables (t_{0.975,2} = 4.3027, t_{0.975,1} =
12.7062) and scipy.stats, an independent implementation (t intervals, the
exact binomial interval, binomial tails); bootstrap intervals against the
normal interval of a mean and their coverage.
"""

import math

import numpy as np
import pytest
from scipy import stats

from experiments.studies import intervals
from experiments.studies import verdict

T_975_DF2 = 4.3027  # Student's t, 97.5% quantile, 2 degrees of freedom.
T_975_DF1 = 12.7062  # ... 1 degree of freedom.


def test_t_interval_three_values_by_hand():
  # Mean 2, sample sd 1, standard error 1 / sqrt(3).
  mean, low, high = intervals.t_interval([1.0, 2.0, 3.0])
  half = T_975_DF2 / math.sqrt(3)
  assert mean == 2.0
  assert low == pytest.approx(2.0 - half, abs=1e-4)
  assert high == pytest.approx(2.0 + half, abs=1e-4)


def test_t_interval_of_one_value_is_the_point():
  assert intervals.t_interval([5.0]) == (5.0, 5.0, 5.0)


def test_t_interval_rejects_empty_and_non_finite():
  with pytest.raises(ValueError, match='finite'):
    intervals.t_interval([])
  with pytest.raises(ValueError, match='finite'):
    intervals.t_interval([1.0, math.nan])


def test_log_t_interval_two_ratios_by_hand():
  # logs ln 2 and ln 8: mean ln 4, sd sqrt(2) ln 2, standard error ln 2; the
  # interval is 4 * 2^(+-t).
  gmean, low, high = intervals.log_t_interval([2.0, 8.0])
  assert gmean == pytest.approx(4.0)
  assert low == pytest.approx(4.0 * 2.0**-T_975_DF1, rel=1e-4)
  assert high == pytest.approx(4.0 * 2.0**T_975_DF1, rel=1e-4)
  with pytest.raises(ValueError, match='positive'):
    intervals.log_t_interval([2.0, -1.0])


def _mean_diff(a, b):
  return float(np.mean(a - b))


def test_bootstrap_interval_is_reproducible_and_paired():
  rng = np.random.default_rng(0)
  a = rng.normal(size=100)
  b = a + 0.5 + 0.1 * rng.normal(size=100)
  first = intervals.bootstrap_interval(_mean_diff, b, a, n_resamples=300)
  assert first == intervals.bootstrap_interval(
    _mean_diff, b, a, n_resamples=300
  )
  other = intervals.bootstrap_interval(
    _mean_diff, b, a, n_resamples=300, seed=1
  )
  assert other != first and other[0] == first[0]
  # Paired: the rows move together, so the interval is about the 0.1 noise
  # (half-width ~ 1.96 * 0.1 / 10), not the unit spread of a and b.
  estimate, low, high = first
  assert low < estimate < high and high - low < 0.06
  assert intervals.bootstrap_interval(_mean_diff, a, a, n_resamples=50) == (
    0.0,
    0.0,
    0.0,
  )
  with pytest.raises(ValueError, match='same, non-zero length'):
    intervals.bootstrap_interval(_mean_diff, a, a[:5])


def test_bootstrap_interval_matches_the_normal_interval_of_a_mean():
  # 400 draws of N(0, 1): the 95% interval of the mean is +-1.96 / 20.
  x = np.random.default_rng(3).normal(size=400)
  estimate, low, high = intervals.bootstrap_interval(np.mean, x)
  assert (high - low) / 2 == pytest.approx(1.96 / 20, rel=0.15)
  assert low < estimate < high


def test_bootstrap_interval_covers_the_true_mean_about_95_percent():
  rng = np.random.default_rng(7)
  trials, covered = 50, 0
  for i in range(trials):
    x = rng.normal(loc=1.0, size=50)
    _, low, high = intervals.bootstrap_interval(
      np.mean, x, n_resamples=300, seed=i
    )
    covered += low <= 1.0 <= high
  # Percentile bootstrap at n = 50: about 0.93; 50 trials, sd 0.035.
  assert 0.8 <= covered / trials <= 1.0


def test_bootstrap_seeds_examples_hand_cases():
  # Every difference 1: the interval is the point.
  assert intervals.bootstrap_seeds_examples(np.ones((3, 20))) == (1.0, 1.0, 1.0)
  # Seeds disagree wholesale (one seed +1 everywhere, two seeds 0): the
  # resampled seeds carry the spread, from 0 (no +1 seed drawn) to 1.
  d = np.zeros((3, 50))
  d[0] = 1.0
  mean, low, high = intervals.bootstrap_seeds_examples(d, n_resamples=500)
  assert mean == pytest.approx(1 / 3)
  assert low == 0.0 and high >= 2 / 3
  # Examples disagree within seeds alike: the example resampling carries
  # it; near a normal interval of the mean, +-1.96 sd / sqrt(n).
  rng = np.random.default_rng(0)
  row = rng.choice([-1.0, 0.0, 1.0], size=2000, p=[0.1, 0.7, 0.2])
  mean, low, high = intervals.bootstrap_seeds_examples(
    np.tile(row, (3, 1)), n_resamples=500
  )
  half = 1.96 * row.std() / np.sqrt(row.size)
  assert (high - low) / 2 == pytest.approx(half, rel=0.2)
  assert intervals.bootstrap_seeds_examples(
    np.tile(row, (3, 1)), n_resamples=500
  ) == (mean, low, high)
  with pytest.raises(ValueError, match='seeds, examples'):
    intervals.bootstrap_seeds_examples(np.ones(5))


def test_t_interval_matches_scipy():
  x = [0.3, 1.9, 2.2, 0.8, 1.4, 2.6]
  mean, low, high = intervals.t_interval(x)
  want = stats.t.interval(0.95, len(x) - 1, loc=np.mean(x), scale=stats.sem(x))
  assert mean == pytest.approx(np.mean(x))
  assert (low, high) == pytest.approx(want)


@pytest.mark.parametrize(('k', 'n'), [(0, 5), (3, 10), (5, 5), (7, 8)])
def test_clopper_pearson_matches_scipy_exact(k, n):
  p, low, high = intervals.clopper_pearson(k, n)
  want = stats.binomtest(k, n).proportion_ci(method='exact')
  assert p == k / n
  assert (low, high) == pytest.approx((want.low, want.high), abs=1e-12)
  assert 0.0 <= low <= p <= high <= 1.0


def test_clopper_pearson_hand_values():
  # 0 of n: the upper end solves (1 - p)^n = 0.025.
  assert intervals.clopper_pearson(0, 5)[2] == pytest.approx(
    1 - 0.025 ** (1 / 5)
  )
  with pytest.raises(ValueError, match='successes'):
    intervals.clopper_pearson(6, 5)


def test_sign_interval_order_statistics_and_coverage():
  x = np.arange(1.0, 11.0)[::-1]  # 10 values, any order.
  median, low, high = intervals.sign_interval(x)
  # n = 10: [x_(2), x_(9)] covers 1 - 2 P(Bin(10, 1/2) <= 1) = 0.9785;
  # [x_(3), x_(8)] only 1 - 2 * 56/1024 = 0.891.
  assert 1 - 2 * stats.binom.cdf(1, 10, 0.5) == pytest.approx(0.978515625)
  assert 1 - 2 * stats.binom.cdf(2, 10, 0.5) < 0.95
  assert (median, low, high) == (5.5, 2.0, 9.0)
  # Six values: the range, at 1 - 2 / 64 = 0.969.
  assert intervals.sign_interval([3, 1, 2, 6, 5, 4]) == (3.5, 1.0, 6.0)
  # Five values cannot give 95%: 1 - 2 / 32 = 0.9375.
  with pytest.raises(ValueError, match='at least 6 values'):
    intervals.sign_interval([1, 2, 3, 4, 5])


def test_censored_sign_interval_is_a_lower_bound():
  lower = [2.0, 3.0, 4.0, 5.0, 6.0, 7.0]
  upper = [2.0, 3.0, 4.0, np.inf, np.inf, np.inf]
  assert intervals.censored_sign_interval(lower, upper) == (4.5, 2.0, np.inf)


def test_clip_keeps_an_interval_inside_its_bounds():
  assert intervals.clip(-4.6, 32.2, (0.0, 100.0)) == (0.0, 32.2)
  with pytest.raises(ValueError, match='not ordered'):
    intervals.clip(0.0, 1.0, (1.0, 0.0))


def test_verdict_re_exports_the_interval_helpers():
  assert verdict.t_interval is intervals.t_interval
  assert verdict.bootstrap_seeds_examples is intervals.bootstrap_seeds_examples
  assert verdict.CONFIDENCE == intervals.CONFIDENCE == 0.95
