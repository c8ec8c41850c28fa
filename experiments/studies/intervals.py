"""95% intervals suited to the quantity, each from raw values.

The studies' sub-claims (`verdict.py`) take their intervals from here:

* `t_interval`: Student's t over independent values (over seeds; pass the
  per-seed differences of two arms that share seeds for a paired one);
* `log_t_interval`: the same on the log scale, for ratios of positive
  quantities (speed-ups, factors), whose spread is multiplicative;
* `sign_interval`: the median's order-statistic interval (the sign test
  inverted), distribution-free and inside the values' range, so it respects
  any bound they have; 95% needs 6 values or more. `censored_sign_interval`
  is the same for values known only as bounds (a target never reached);
* `clopper_pearson`: the exact binomial interval of a count (k of n);
* `clip`: an interval cut to the quantity's bounds (its coverage unchanged);
* `bootstrap_interval`: the percentile bootstrap of any statistic over
  paired rows, with a fixed resampling seed so the json is reproducible;
  `bootstrap_seeds_examples` resamples seeds and test examples both.

An interval from one value is the point itself.
"""

from collections.abc import Callable, Sequence
import math

import numpy as np
from scipy import stats

CONFIDENCE = 0.95


def t_interval(
  values: Sequence[float], confidence: float = CONFIDENCE
) -> tuple[float, float, float]:
  """(mean, low, high): Student's t interval of the mean of `values`.

  For two arms that share seeds, pass the per-seed differences (a paired
  interval). One value gives the degenerate interval (v, v, v).
  """
  x = np.asarray(values, np.float64)
  if x.ndim != 1 or x.size == 0 or not np.all(np.isfinite(x)):
    raise ValueError(f'need a non-empty 1-D list of finite values: {values}')
  mean = float(x.mean())
  if x.size == 1:
    return mean, mean, mean
  half = float(stats.t.ppf(0.5 + confidence / 2, x.size - 1))
  half *= float(x.std(ddof=1)) / math.sqrt(x.size)
  return mean, mean - half, mean + half


def log_t_interval(
  ratios: Sequence[float], confidence: float = CONFIDENCE
) -> tuple[float, float, float]:
  """(geometric mean, low, high) of positive ratios: t interval of logs."""
  r = np.asarray(ratios, np.float64)
  if np.any(r <= 0):
    raise ValueError(f'ratios must be positive: {ratios}')
  mean, low, high = t_interval(np.log(r), confidence)
  return math.exp(mean), math.exp(low), math.exp(high)


def _sign_rank(n: int, confidence: float) -> int:
  """The largest k with [x_(k), x_(n+1-k)] covering the median at `confidence`.

  Its coverage is 1 - 2 P(Binomial(n, 1/2) <= k - 1).
  """
  k = 0
  while k + 1 <= n // 2 and 1 - 2 * stats.binom.cdf(k, n, 0.5) >= confidence:
    k += 1
  if k == 0:
    need = next(m for m in range(1, 64) if 1 - 2 * 0.5**m >= confidence)
    raise ValueError(
      f'a {confidence:.0%} sign-test interval needs at least {need} values, '
      f'got {n}'
    )
  return k


def sign_interval(
  values: Sequence[float], confidence: float = CONFIDENCE
) -> tuple[float, float, float]:
  """(median, low, high): the distribution-free interval of the median.

  The order statistics [x_(k), x_(n+1-k)] (the sign test inverted); it
  stays inside the values' range, so it respects any bounds they have.
  """
  x = np.sort(np.asarray(values, np.float64))
  if x.ndim != 1 or not np.all(np.isfinite(x)):
    raise ValueError(f'need a 1-D list of finite values: {values}')
  k = _sign_rank(x.size, confidence)
  return float(np.median(x)), float(x[k - 1]), float(x[x.size - k])


def censored_sign_interval(
  lower: Sequence[float],
  upper: Sequence[float],
  confidence: float = CONFIDENCE,
) -> tuple[float, float, float]:
  """The sign interval of values known only between `lower` and `upper`.

  For censored values (upper = inf: a target never reached): the median's
  lower bound (the median of `lower`) and an interval that holds whatever
  the censored values are: low from `lower`, high from `upper`.
  """
  lo, hi = np.sort(np.asarray(lower, float)), np.sort(np.asarray(upper, float))
  if lo.shape != hi.shape or np.any(lo > hi):
    raise ValueError('need lower <= upper, of one length')
  k = _sign_rank(lo.size, confidence)
  return float(np.median(lo)), float(lo[k - 1]), float(hi[hi.size - k])


def clopper_pearson(
  successes: int, trials: int, confidence: float = CONFIDENCE
) -> tuple[float, float, float]:
  """(k / n, low, high): the exact binomial interval of a proportion."""
  if trials <= 0 or not 0 <= successes <= trials:
    raise ValueError(
      f'need 0 <= successes <= trials, trials > 0: {successes}, {trials}'
    )
  tail = (1 - confidence) / 2
  k, n = successes, trials
  low = 0.0 if k == 0 else float(stats.beta.ppf(tail, k, n - k + 1))
  high = 1.0 if k == n else float(stats.beta.ppf(1 - tail, k + 1, n - k))
  return k / n, low, high


def clip(
  low: float, high: float, bounds: tuple[float, float]
) -> tuple[float, float]:
  """An interval cut to the quantity's bounds (its coverage is unchanged:
  the true value lies inside the bounds)."""
  lo, hi = bounds
  if not lo < hi:
    raise ValueError(f'bounds {bounds} are not ordered')
  return max(low, lo), min(high, hi)


def bootstrap_interval(
  statistic: Callable[..., float],
  *arrays: np.ndarray,
  n_resamples: int = 2000,
  seed: int = 0,
  confidence: float = CONFIDENCE,
) -> tuple[float, float, float]:
  """(estimate, low, high): percentile bootstrap over paired rows.

  Args:
    statistic: `statistic(*arrays) -> float`, e.g. the accuracy gain of an
      ensemble over its best member from per-example correctness arrays.
    *arrays: arrays with the same first axis (the rows resampled together:
      examples, so the arms stay paired).
    n_resamples: bootstrap resamples.
    seed: the resampling seed (fixed, so the interval is reproducible).
    confidence: the interval's coverage.

  Returns:
    The statistic on the full data and the percentile interval.
  """
  arrays = tuple(np.asarray(a) for a in arrays)
  n = len(arrays[0])
  if n == 0 or any(len(a) != n for a in arrays):
    raise ValueError('bootstrap arrays need the same, non-zero length')
  rng = np.random.default_rng(seed)
  draws = np.empty(n_resamples)
  for i in range(n_resamples):
    idx = rng.integers(0, n, n)
    draws[i] = statistic(*(a[idx] for a in arrays))
  tail = (1 - confidence) / 2 * 100
  low, high = np.percentile(draws, [tail, 100 - tail])
  estimate = float(statistic(*arrays))
  return estimate, float(min(low, estimate)), float(max(high, estimate))


def bootstrap_seeds_examples(
  diff: np.ndarray,
  *,
  n_resamples: int = 2000,
  seed: int = 0,
  confidence: float = CONFIDENCE,
) -> tuple[float, float, float]:
  """(mean, low, high): percentile bootstrap over seeds and examples.

  For paired per-(seed, example) differences of two arms scored on one
  test set (e.g. ensemble minus best member correctness, -1, 0 or 1), each
  resample draws seeds with replacement and, independently, examples with
  replacement (the same examples for every seed, which share the test set),
  so the interval covers both the training seeds and the test sample.

  Args:
    diff: ``[seeds, examples]`` paired differences.
    n_resamples: bootstrap resamples.
    seed: the resampling seed (fixed, so the interval is reproducible).
    confidence: the interval's coverage.

  Returns:
    The mean difference and its percentile interval.
  """
  d = np.asarray(diff, np.float64)
  if d.ndim != 2 or 0 in d.shape or not np.all(np.isfinite(d)):
    raise ValueError(f'need a finite [seeds, examples] array: {d.shape}')
  rng = np.random.default_rng(seed)
  n_seeds, n_examples = d.shape
  draws = np.empty(n_resamples)
  for i in range(n_resamples):
    rows = rng.integers(0, n_seeds, n_seeds)
    cols = rng.integers(0, n_examples, n_examples)
    # Mean over the resampled grid: the per-example sums over the drawn
    # seeds, gathered at the drawn examples.
    draws[i] = d[rows].sum(axis=0)[cols].mean() / n_seeds
  tail = (1 - confidence) / 2 * 100
  low, high = np.percentile(draws, [tail, 100 - tail])
  mean = float(d.mean())
  return mean, float(min(low, mean)), float(max(high, mean))
