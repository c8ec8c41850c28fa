"""The three-way verdict: sub-claims, their 95% intervals and the rule.

A study splits the notes' claim into sub-claims, one sentence each. Every
sub-claim names one number (the estimate), a 95% interval around it, the
threshold that the claim's own words imply ("much faster" = 2x, "does not
degrade" = within a margin set from the seed spread) and the side of the
threshold the claim puts the number on (`direction`: 'above' or 'below').
The rule, fixed before any run:

* **holds**: the whole interval lies on the claim's side of the threshold;
* **does not hold**: the whole interval lies on the other side;
* **inconclusive**: the interval contains the threshold (touching it counts
  as containing it).

A study's headline verdict is 'holds' only if every sub-claim holds; it is
'does not hold' if any sub-claim does not hold; otherwise 'inconclusive'.

Intervals. `t_interval` is Student's t over independent values: over seeds,
or over per-seed differences of two arms that share the seeds (paired).
`log_t_interval` is the same on the log scale, for ratios (speed-ups,
factors), whose spread is multiplicative. `bootstrap_interval` is the
percentile bootstrap of any statistic over paired rows (examples, or
examples x seeds), with a fixed resampling seed so the json is reproducible;
`bootstrap_seeds_examples` resamples seeds and examples both, for paired
differences of two arms over several seeds on one test set.
An interval from one value (one seed, one exact count) is the point itself;
a study that has only that says so in its `interval` text.
"""

from collections.abc import Callable, Sequence
import dataclasses
import math
from typing import Any

import numpy as np
from scipy import stats

VERDICTS = ('holds', 'does not hold', 'inconclusive')
DIRECTIONS = ('above', 'below')
CONFIDENCE = 0.95


def decide(
  ci_low: float, ci_high: float, threshold: float, direction: str
) -> str:
  """The verdict of one sub-claim from its interval (see the module doc).

  Args:
    ci_low: lower end of the 95% interval.
    ci_high: upper end.
    threshold: the value the claim's words imply.
    direction: 'above' if the claim says the quantity exceeds the threshold,
      'below' if it says the quantity stays under it.

  Returns:
    'holds', 'does not hold' or 'inconclusive'.
  """
  if direction not in DIRECTIONS:
    raise ValueError(f'direction must be one of {DIRECTIONS}: {direction!r}')
  if not ci_low <= ci_high:
    raise ValueError(f'interval ({ci_low}, {ci_high}) is not ordered')
  if direction == 'above':
    if ci_low > threshold:
      return 'holds'
    return 'does not hold' if ci_high < threshold else 'inconclusive'
  if ci_high < threshold:
    return 'holds'
  return 'does not hold' if ci_low > threshold else 'inconclusive'


def combine(verdicts: Sequence[str]) -> str:
  """A study's headline from its sub-claims' verdicts."""
  if not verdicts:
    raise ValueError('a study needs at least one sub-claim')
  unknown = set(verdicts) - set(VERDICTS)
  if unknown:
    raise ValueError(f'unknown verdicts {sorted(unknown)}')
  if 'does not hold' in verdicts:
    return 'does not hold'
  if 'inconclusive' in verdicts:
    return 'inconclusive'
  return 'holds'


@dataclasses.dataclass(frozen=True)
class Subclaim:
  """One sentence of a claim, its number, interval, threshold and verdict.

  Attributes:
    claim: the sub-claim, one sentence, in the notes' words where possible.
    estimate: the measured number.
    ci_low: lower end of its 95% interval.
    ci_high: upper end.
    threshold: the value the claim's words imply.
    direction: 'above' or 'below': where the claim puts `estimate`.
    seeds: how many seeds (or runs) the interval is over.
    interval: how the interval was made, e.g. 'paired t over 5 seeds',
      'percentile bootstrap over 10,000 test examples x 3 seeds', 'exact
      (deterministic count)'.
    threshold_why: the claim's words that set the threshold, e.g.
      '"much faster": 2x'.
  """

  claim: str
  estimate: float
  ci_low: float
  ci_high: float
  threshold: float
  direction: str
  seeds: int
  interval: str
  threshold_why: str

  def __post_init__(self):
    decide(self.ci_low, self.ci_high, self.threshold, self.direction)
    if not self.ci_low <= self.estimate <= self.ci_high:
      raise ValueError(
        f'{self.claim!r}: estimate {self.estimate} outside its interval '
        f'({self.ci_low}, {self.ci_high})'
      )

  @property
  def verdict(self) -> str:
    return decide(self.ci_low, self.ci_high, self.threshold, self.direction)

  def record(self) -> dict[str, Any]:
    """The NAME.json entry (every key the gallery test reads)."""
    return {
      'claim': self.claim,
      'estimate': float(self.estimate),
      'ci_low': float(self.ci_low),
      'ci_high': float(self.ci_high),
      'threshold': float(self.threshold),
      'direction': self.direction,
      'seeds': int(self.seeds),
      'interval': self.interval,
      'threshold_why': self.threshold_why,
      'verdict': self.verdict,
    }


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
