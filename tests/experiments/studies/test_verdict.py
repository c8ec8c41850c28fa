"""The verdict rule: checks, claims, preconditions and the 95% intervals.

Reference values are computed by hand (the rule on intervals drawn on
paper, censored bounds) or taken from scipy.stats, an independent
implementation (paired t, t of log ratios, the exact binomial interval, t
quantiles for the seeds). The intervals themselves: test_intervals.py.
"""

import math

import numpy as np
import pytest
from scipy import stats

from experiments.studies import verdict


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


# The rule extended: checks, claims, preconditions; independent references


# from scipy.stats (t, binomial) and by hand.


SEEDS_WHY = 'pilot: sd 1 over 3 seeds, effect 3: seeds_for(3, 1) = 5'


def test_seeds_for_is_the_smallest_n_that_resolves():
  # The normalization pilot: +4.5 / +14.0 / +8.2 points, threshold 0.
  d = [4.5, 14.0, 8.2]
  n = verdict.seeds_for(np.mean(d), np.std(d, ddof=1))
  assert n == 5  # t_3 * 4.79 / 2 = 7.6 < 8.9 already; the floor is 5.
  # Brute force with scipy: the first n with t_{n-1} sd / sqrt(n) < margin.
  for margin, sd in [(1.0, 2.0), (0.5, 2.0), (3.0, 1.0)]:
    want = next(
      m
      for m in range(5, 1000)
      if stats.t.ppf(0.975, m - 1) * sd / math.sqrt(m) < margin
    )
    assert verdict.seeds_for(margin, sd) == want
  assert verdict.seeds_for(0.5, 2.0) > verdict.seeds_for(1.0, 2.0) > 5


def test_check_passes_and_records_its_kind():
  sub = verdict.check(
    'An identity.', 2e-8, threshold=1e-6, direction='below', why='round-off'
  )
  assert sub.kind == 'check' and sub.verdict == verdict.PASSES
  record = sub.record()
  assert record['kind'] == 'check' and record['verdict'] == 'passes'
  assert record['ci_low'] == record['estimate'] == record['ci_high']
  assert 'seeds_why' not in record


def test_a_failing_check_raises():
  with pytest.raises(verdict.CheckFailedError, match='An identity'):
    verdict.check(
      'An identity.', 2e-3, threshold=1e-6, direction='below', why='round-off'
    )
  # On the threshold is not strictly on its side: it fails too.
  with pytest.raises(verdict.CheckFailedError):
    verdict.check('A count.', 0.0, threshold=0.0, direction='above', why='>0')


A = [1.2, 2.9, 2.1, 3.3, 1.8, 2.5]


B = [0.4, 0.8, 0.3, 1.1, 0.9, 0.6]


def _difference(a=A, b=B, **kwargs):
  kwargs = {
    'threshold': 0.0,
    'direction': 'above',
    'threshold_why': '"better": a positive difference',
    'seeds_why': SEEDS_WHY,
    **kwargs,
  }
  return verdict.paired_difference('A beats B.', a, b, **kwargs)


def test_paired_difference_is_scipys_paired_t():
  sub = _difference()
  want = stats.ttest_rel(A, B).confidence_interval(0.95)
  assert (sub.ci_low, sub.ci_high) == pytest.approx((want.low, want.high))
  assert sub.estimate == pytest.approx(np.mean(np.subtract(A, B)))
  assert sub.kind == 'claim' and sub.seeds == 6 and sub.verdict == 'holds'
  record = sub.record()
  assert record['kind'] == 'claim' and record['seeds_why'] == SEEDS_WHY
  assert record['censored'] == 0
  assert 'paired t over 6 seeds' in record['interval']


def test_a_claim_over_three_seeds_is_refused():
  with pytest.raises(ValueError, match='at least 5 seeds'):
    _difference(A[:3], B[:3])
  with pytest.raises(ValueError, match='at least 5 seeds'):
    verdict.Subclaim(
      claim='c',
      estimate=1.0,
      ci_low=0.5,
      ci_high=1.5,
      threshold=0.0,
      direction='above',
      seeds=3,
      interval='paired t over 3 seeds',
      threshold_why='w',
      kind='claim',
      seeds_why=SEEDS_WHY,
    )


def test_a_claim_needs_seeds_why_and_more_than_a_point():
  with pytest.raises(ValueError, match='seeds_why'):
    _difference(seeds_why=' ')
  # Every seed the same difference: a point interval is an exact result.
  with pytest.raises(ValueError, match='make it a check'):
    _difference([2.0] * 5, [1.0] * 5)


def test_paired_difference_sign_bounds_and_bootstrap():
  sub = _difference(method='sign')
  d = np.sort(np.subtract(A, B))
  assert (sub.estimate, sub.ci_low, sub.ci_high) == (
    np.median(d),
    d[0],
    d[-1],
  )
  # A share in points against none (the ELU dead share of the issue, t
  # [-4.6, 32.2]): the t interval cut to the bounds, never below 0.
  a = [0.0, 0.0, 0.0, 0.0, 60.0]
  raw = verdict.t_interval(a)
  cut = _difference(a, [0.0] * 5, bounds=(0.0, 100.0))
  assert raw[1] < 0.0
  assert (cut.estimate, cut.ci_low, cut.ci_high) == (12.0, 0.0, raw[2])
  assert 'cut to [0, 100]' in cut.interval
  # [seeds, examples]: seeds and examples resampled together.
  rng = np.random.default_rng(0)
  a2, b2 = rng.integers(0, 2, (5, 200)), rng.integers(0, 2, (5, 200))
  boot = _difference(a2, b2, method='bootstrap')
  assert (boot.estimate, boot.ci_low, boot.ci_high) == (
    verdict.bootstrap_seeds_examples(a2 - b2)
  )
  with pytest.raises(ValueError, match="need 'bootstrap'"):
    _difference(a2, b2)


def _ratio(a, b, **kwargs):
  kwargs = {
    'threshold': 2.0,
    'direction': 'above',
    'threshold_why': '"much faster": 2x',
    'seeds_why': SEEDS_WHY,
    **kwargs,
  }
  return verdict.paired_ratio('ReLU is much faster.', a, b, **kwargs)


def test_paired_ratio_is_a_t_interval_of_log_ratios():
  a, b = [400, 620, 510, 700, 450], [100, 110, 90, 120, 95]
  sub = _ratio(a, b)
  logs = np.log(np.divide(a, b))
  want = stats.t.interval(0.95, 4, loc=logs.mean(), scale=stats.sem(logs))
  assert (sub.ci_low, sub.ci_high) == pytest.approx(np.exp(want))
  assert sub.estimate == pytest.approx(np.exp(logs.mean()))
  assert sub.verdict == 'holds' and sub.censored == 0


def test_a_target_never_reached_is_censored_not_imputed():
  a = [400, math.inf, 510, math.inf, 450, 600]
  b = [100, 100, 100, 100, 100, 100]
  sub = _ratio(a, b, budget=800)
  # Lower bounds 4, 8, 5.1, 8, 4.5, 6: median 5.55, low x_(1) = 4, high inf.
  assert sub.censored == 2
  assert (sub.estimate, sub.ci_low, sub.ci_high) == (5.55, 4.0, math.inf)
  assert '2 never reached the target: > budget 800' in sub.interval
  assert sub.record()['censored'] == 2 and sub.verdict == 'holds'
  with pytest.raises(ValueError, match='budget'):
    _ratio(a, b)


def test_proportion_exact_binomial_and_bootstrap():
  diverged = [True, True, False, True, True]
  sub = verdict.proportion(
    'Without warmup most seeds diverge.',
    diverged,
    threshold=50.0,
    direction='above',
    threshold_why='"most": more than half',
    seeds_why=SEEDS_WHY,
    scale=100.0,
  )
  want = stats.binomtest(4, 5).proportion_ci(method='exact')
  assert sub.estimate == 80.0
  assert (sub.ci_low, sub.ci_high) == pytest.approx(
    (100 * want.low, 100 * want.high)
  )
  assert sub.verdict == 'inconclusive'  # 4 of 5: [28.4, 99.5].
  # Per unit: a bootstrap of 0/1 values stays inside [0, 1].
  dead = np.zeros((5, 64))
  dead[0, :3] = 1
  share = verdict.proportion(
    'Few units die.',
    dead,
    threshold=0.5,
    direction='below',
    threshold_why='"few"',
    seeds_why=SEEDS_WHY,
  )
  assert 0.0 <= share.ci_low <= share.estimate <= share.ci_high <= 1.0
  with pytest.raises(ValueError, match='0 or 1'):
    verdict.proportion(
      'x',
      [0.5] * 5,
      threshold=0.5,
      direction='below',
      threshold_why='w',
      seeds_why=SEEDS_WHY,
    )


def test_precondition_compare_and_unmet_reason():
  met = verdict.Precondition.compare(
    'plain-20 trained', 0.04, threshold=0.1, direction='below'
  )
  unmet = verdict.Precondition.compare(
    'no-warmup arm diverges', 0.2, threshold=0.5, direction='above'
  )
  assert met.met and not unmet.met and unmet.required == '> 0.5'
  assert unmet.record() == {
    'name': 'no-warmup arm diverges',
    'measured': 0.2,
    'required': '> 0.5',
    'met': False,
  }
  assert verdict.unmet_reason([met]) == ''
  assert verdict.unmet_reason([met, unmet]) == (
    'Not tested: no-warmup arm diverges measured 0.2, required > 0.5.'
  )


def _check():
  return verdict.check(
    'An identity.', 0.0, threshold=1e-6, direction='below', why='round-off'
  )


def test_headline_from_claims_only():
  holds, fails = _difference(), _difference(threshold=5.0)
  inconclusive = _difference(threshold=1.5)
  assert fails.verdict == 'does not hold'
  assert inconclusive.verdict == 'inconclusive'
  assert verdict.headline([_check(), holds]) == 'holds'
  assert verdict.headline([_check(), holds, inconclusive]) == 'inconclusive'
  assert verdict.headline([holds, inconclusive, fails]) == 'does not hold'
  # Checks alone: a check, not evidence.
  assert verdict.headline([_check(), _check()]) == verdict.CHECKS_PASS


def test_an_unmet_precondition_gives_not_tested():
  unmet = verdict.Precondition('the regime', 0.2, '> 0.5', False)
  met = verdict.Precondition('the other', 0.9, '> 0.5', True)
  fails = _difference(threshold=5.0)
  assert verdict.headline([fails], [met]) == 'does not hold'
  assert verdict.headline([fails], [met, unmet]) == verdict.NOT_TESTED
  assert verdict.headline([_difference()], [unmet]) == verdict.NOT_TESTED
  assert verdict.rule([], [False]) == verdict.NOT_TESTED


def test_old_and_new_sub_claims_do_not_mix():
  legacy = _subclaim(low=1.1)
  assert verdict.headline([legacy]) == 'holds'
  with pytest.raises(ValueError, match='a kind, or none'):
    verdict.headline([legacy, _check()])
  with pytest.raises(ValueError, match='preconditions need'):
    verdict.headline([legacy], [verdict.Precondition('p', 1.0, '> 0', True)])


def test_study_fields_carry_the_format():
  pre = verdict.Precondition('p', '> 800 steps', '< 800 steps', False)
  fields = verdict.study_fields([_check(), _difference()], [pre])
  assert fields['format'] == verdict.FORMAT == 2
  assert fields['preconditions'] == [pre.record()]
  assert [s['kind'] for s in fields['subclaims']] == ['check', 'claim']
  assert verdict.study_fields([_subclaim()]) == {
    'subclaims': [_subclaim().record()]
  }
