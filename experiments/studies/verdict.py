"""The verdict rule: checks, preconditions, claims and their 95% intervals.

A study splits the notes' claim into sub-claims, one sentence each, of two
kinds (`KINDS`):

* a **check** is exact or deterministic (an identity, a count, a formula's
  value): it passes or fails, is shown apart, and is never counted as
  evidence. A failing check is a bug in the study or the code under test,
  not a finding: constructing one raises `CheckFailedError`, so the run stops
  before it writes anything and the CLI exits non-zero;
* a **claim** is a statistical statement about training or data, over at
  least `MIN_SEEDS` seeds, with a 95% interval and a `seeds_why` (the pilot
  calculation that set the number of seeds; `seeds_for` does it).

Each claim names one number (the estimate), its 95% interval, the threshold
the claim's own words imply ("much faster" = 2x) and the side of the
threshold the claim puts the number on (`direction`: 'above' or 'below').
The rule, fixed before any run:

* **holds**: the whole interval lies on the claim's side of the threshold;
* **does not hold**: the whole interval lies on the other side;
* **inconclusive**: the interval contains the threshold (touching it counts
  as containing it).

A check passes when its value lies strictly on its side of its threshold.

**Preconditions** (`Precondition`), measured in the same run, say whether
the regime the claim is about was reached (the shallow net trained, the
no-warmup arm diverged). The study's headline (`headline`):

* **not tested** if any precondition is unmet (the summary says which, see
  `unmet_reason`): never 'does not hold' for a regime never reached;
* else, from the claims only: **holds** if every claim holds, **does not
  hold** if any does not, otherwise **inconclusive**;
* **checks pass** for a study with checks and no claim: it verifies a
  formula or an identity and is shown as a check, not as evidence.

Intervals suit the quantity (`intervals.py`, whose helpers are re-exported
here): paired t over seeds, log scale for ratios of positive quantities,
bounded ones for shares (exact binomial, sign test, bootstrap), seeds and
test examples resampled together, and censoring: a target never reached
within the budget is a lower bound ('> x'), never an imputed value.

The constructors `check`, `paired_difference`, `paired_ratio` and
`proportion` build `Subclaim`s with their kind and interval from raw
per-seed values; the claim constructors take, besides the values, the
keywords `threshold` (the value the claim's words imply), `direction`
('above' or 'below': the claim's side), `threshold_why` (where the
threshold comes from) and `seeds_why` (the pilot calculation), and refuse
fewer than `MIN_SEEDS` seeds. A claim whose interval is a single point is
refused too: it is an exact result, so it is a check (or a count, for
`proportion`). `study_fields` turns a study's sub-claims and preconditions
into its json fields (`"format": 2`). A `Subclaim` built without a kind is
the old format (every sub-claim counted, no preconditions), kept while the
studies migrate.
"""

from collections.abc import Sequence
import dataclasses
import math
from typing import Any

import numpy as np
from scipy import stats

from experiments.studies import intervals

VERDICTS = ('holds', 'does not hold', 'inconclusive')
KINDS = ('check', 'claim')
PASSES = 'passes'  # A check's verdict (a failing one never gets written).
NOT_TESTED = 'not tested'
CHECKS_PASS = 'checks pass'
HEADLINES = (*VERDICTS, NOT_TESTED, CHECKS_PASS)
DIRECTIONS = ('above', 'below')
CONFIDENCE = intervals.CONFIDENCE
MIN_SEEDS = 5
FORMAT = 2  # The json format of studies built from kinds and preconditions.

# The interval helpers, where the studies have always found them.
t_interval = intervals.t_interval
log_t_interval = intervals.log_t_interval
sign_interval = intervals.sign_interval
censored_sign_interval = intervals.censored_sign_interval
clopper_pearson = intervals.clopper_pearson
clip = intervals.clip
bootstrap_interval = intervals.bootstrap_interval
bootstrap_seeds_examples = intervals.bootstrap_seeds_examples


class CheckFailedError(Exception):
  """A check failed: a bug in the study or in the code it checks."""


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
  """The claims' combined verdict: holds / does not hold / inconclusive."""
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


def rule(claim_verdicts: Sequence[str], met: Sequence[bool]) -> str:
  """The headline from the claims' verdicts and the preconditions' `met`.

  Any unmet precondition: 'not tested'; no claims (checks only): 'checks
  pass'; else `combine` of the claims. Checks never enter it.
  """
  if not all(met):
    return NOT_TESTED
  return combine(claim_verdicts) if claim_verdicts else CHECKS_PASS


@dataclasses.dataclass(frozen=True)
class Precondition:
  """A measured condition for the claim's regime (see the module doc).

  Attributes:
    name: what must be true, e.g. 'plain-20 trained (final training error)'.
    measured: the measured value (a number, or words such as '> 800 steps').
    required: the requirement in the same units, e.g. '< 10%'.
    met: whether `measured` meets `required`.
  """

  name: str
  measured: float | str
  required: str
  met: bool

  @classmethod
  def compare(
    cls, name: str, measured: float, *, threshold: float, direction: str
  ) -> 'Precondition':
    """Met when `measured` lies strictly on `direction`'s side."""
    if direction not in DIRECTIONS:
      raise ValueError(f'direction must be one of {DIRECTIONS}: {direction!r}')
    above = direction == 'above'
    met = measured > threshold if above else measured < threshold
    sign = '>' if above else '<'
    return cls(name, float(measured), f'{sign} {threshold:g}', bool(met))

  def record(self) -> dict[str, Any]:
    measured = self.measured
    if not isinstance(measured, str):
      measured = float(measured)
    return {
      'name': self.name,
      'measured': measured,
      'required': self.required,
      'met': bool(self.met),
    }


def unmet_reason(preconditions: Sequence[Precondition]) -> str:
  """'Not tested: NAME measured M, required R; ...' ('' if all are met)."""
  unmet = [p for p in preconditions if not p.met]
  if not unmet:
    return ''
  parts = [
    f'{p.name} measured {_words(p.measured)}, required {p.required}'
    for p in unmet
  ]
  return 'Not tested: ' + '; '.join(parts) + '.'


def _words(value: float | str) -> str:
  return value if isinstance(value, str) else f'{value:.4g}'


@dataclasses.dataclass(frozen=True)
class Subclaim:
  """One sentence of a claim, its number, interval, threshold and verdict.

  Build one with `check`, `paired_difference`, `paired_ratio` or
  `proportion`, which set the kind and the interval.

  Attributes:
    claim: the sub-claim, one sentence, in the notes' words where possible.
    estimate: the measured number (a lower bound when `censored`).
    ci_low: lower end of its 95% interval (a check: the value itself).
    ci_high: upper end.
    threshold: the value the claim's words imply.
    direction: 'above' or 'below': where the claim puts `estimate`.
    seeds: how many seeds (or runs) the interval is over.
    interval: how the interval was made, e.g. 'paired t over 5 seeds'.
    threshold_why: the claim's words that set the threshold, e.g.
      '"much faster": 2x'.
    kind: 'check' or 'claim'; None for the old format.
    seeds_why: a claim's pilot calculation of its number of seeds.
    censored: how many seeds never reached the target (then `estimate` and
      `ci_low` are lower bounds).
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
  kind: str | None = None
  seeds_why: str = ''
  censored: int = 0

  def __post_init__(self):
    rule_verdict = decide(
      self.ci_low, self.ci_high, self.threshold, self.direction
    )
    if not self.ci_low <= self.estimate <= self.ci_high:
      raise ValueError(
        f'{self.claim!r}: estimate {self.estimate} outside its interval '
        f'({self.ci_low}, {self.ci_high})'
      )
    if self.kind not in (None, *KINDS):
      raise ValueError(f'kind must be one of {KINDS}: {self.kind!r}')
    if self.kind == 'check':
      if not self.ci_low == self.estimate == self.ci_high:
        raise ValueError(f'{self.claim!r}: a check has one exact value')
      if rule_verdict != 'holds':
        side = '>' if self.direction == 'above' else '<'
        raise CheckFailedError(
          f'check failed: {self.claim!r} gave {self.estimate:.6g}, required '
          f'{side} {self.threshold:g} ({self.threshold_why})'
        )
    if self.kind == 'claim':
      _check_claim(self)

  @property
  def verdict(self) -> str:
    if self.kind == 'check':
      return PASSES
    return decide(self.ci_low, self.ci_high, self.threshold, self.direction)

  def record(self) -> dict[str, Any]:
    """The NAME.json entry (every key the gallery test reads)."""
    record = {
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
    if self.kind is not None:
      record['kind'] = self.kind
    if self.kind == 'claim':
      record['seeds_why'] = self.seeds_why
      record['censored'] = int(self.censored)
    return record


def _check_claim(sub: Subclaim) -> None:
  if sub.seeds < MIN_SEEDS:
    raise ValueError(
      f'{sub.claim!r}: a claim needs at least {MIN_SEEDS} seeds, got '
      f'{sub.seeds} (three give t(2) = 4.30: inconclusive by construction)'
    )
  if not sub.seeds_why.strip():
    raise ValueError(f'{sub.claim!r}: a claim states its seeds_why')
  if not sub.ci_low < sub.ci_high:
    raise ValueError(
      f'{sub.claim!r}: a claim with a point interval is exact: make it a '
      'check, or a count with proportion()'
    )


def headline(
  subclaims: Sequence[Subclaim], preconditions: Sequence[Precondition] = ()
) -> str:
  """A study's headline (see the module doc and `rule`).

  Sub-claims without a kind (the old format) all count, as before, and take
  no preconditions; kinds and no kinds do not mix in one study.
  """
  if not subclaims:
    raise ValueError('a study needs at least one sub-claim')
  kinds = {s.kind is None for s in subclaims}
  if kinds == {True}:
    if preconditions:
      raise ValueError('preconditions need sub-claims with a kind')
    return combine([s.verdict for s in subclaims])
  if len(kinds) > 1:
    raise ValueError('every sub-claim needs a kind, or none (old format)')
  claims = [s.verdict for s in subclaims if s.kind == 'claim']
  return rule(claims, [p.met for p in preconditions])


def study_fields(
  subclaims: Sequence[Subclaim], preconditions: Sequence[Precondition] = ()
) -> dict[str, Any]:
  """The json fields of a study's sub-claims, in their format.

  Format 2 (sub-claims with kinds): 'format', 'preconditions', 'subclaims';
  the old format: 'subclaims' only.
  """
  headline(subclaims, preconditions)  # Refuses a mix of formats.
  records = [s.record() for s in subclaims]
  if subclaims[0].kind is None:
    return {'subclaims': records}
  return {
    'format': FORMAT,
    'preconditions': [p.record() for p in preconditions],
    'subclaims': records,
  }


# The constructors.


def check(
  claim: str,
  value: float,
  *,
  threshold: float,
  direction: str,
  why: str,
  runs: int = 1,
) -> Subclaim:
  """An exact check: `value` strictly on `direction`'s side of `threshold`.

  Args:
    claim: the sentence checked.
    value: the computed value (over several runs: the worst of them).
    threshold: the bound, e.g. a round-off tolerance.
    direction: 'above' or 'below'.
    why: where the bound comes from.
    runs: how many runs (seeds, cases) the value is the worst of.

  Raises:
    CheckFailedError: the value is not on its side of the threshold.
  """
  value = float(value)
  over = f' (the worst of {runs} runs)' if runs > 1 else ''
  return Subclaim(
    claim=claim,
    estimate=value,
    ci_low=value,
    ci_high=value,
    threshold=threshold,
    direction=direction,
    seeds=runs,
    interval=f'check: exact, a deterministic computation{over}',
    threshold_why=why,
    kind='check',
  )


def _seeds(values: np.ndarray, name: str) -> int:
  if values.ndim == 0 or values.shape[0] < MIN_SEEDS:
    raise ValueError(
      f'{name!r}: a claim needs at least {MIN_SEEDS} seeds, got '
      f'{values.shape[:1]}'
    )
  return values.shape[0]


def _claim(claim: str, interval, seeds: int, how: str, **rule) -> Subclaim:
  estimate, low, high = interval
  return Subclaim(
    claim=claim,
    estimate=estimate,
    ci_low=low,
    ci_high=high,
    seeds=seeds,
    interval=how,
    kind='claim',
    **rule,
  )


def paired_difference(
  claim: str,
  a: Sequence[float] | np.ndarray,
  b: Sequence[float] | np.ndarray,
  *,
  threshold: float,
  direction: str,
  threshold_why: str,
  seeds_why: str,
  method: str = 't',
  bounds: tuple[float, float] | None = None,
) -> Subclaim:
  """A claim on arm a minus arm b, paired over the seeds they share.

  Args:
    claim: the sentence.
    a: per-seed values [seeds], or per-(seed, example) values [seeds, N]
      scored on one test set (method 'bootstrap').
    b: the same for the other arm.
    threshold, direction, threshold_why, seeds_why: see the module doc.
    method: 't' (mean, paired t), 'sign' (median, sign-test interval: for
      bounded or skewed differences; 6 seeds or more) or 'bootstrap'
      (mean, resampling seeds and examples).
    bounds: (low, high) the difference cannot leave (e.g. (-100, 100) for
      points of an error rate): the interval is cut to them.
  """
  d = np.asarray(a, np.float64) - np.asarray(b, np.float64)
  n = _seeds(d, claim)
  if method == 'bootstrap':
    interval = bootstrap_seeds_examples(d)
    how = f'bootstrap over {n} seeds x {d.shape[1]} examples'
  elif d.ndim != 1:
    raise ValueError(f"{claim!r}: [seeds, examples] values need 'bootstrap'")
  elif method == 't':
    interval, how = t_interval(d), f'paired t over {n} seeds'
  elif method == 'sign':
    interval = sign_interval(d)
    how = f'median, sign-test interval over {n} seeds'
  else:
    raise ValueError(f"method must be 't', 'sign' or 'bootstrap': {method!r}")
  if bounds is not None:
    interval = (interval[0], *clip(*interval[1:], bounds))
    how += f', cut to [{bounds[0]:g}, {bounds[1]:g}]'
  return _claim(
    claim,
    interval,
    n,
    how,
    threshold=threshold,
    direction=direction,
    threshold_why=threshold_why,
    seeds_why=seeds_why,
  )


def paired_ratio(
  claim: str,
  a: Sequence[float],
  b: Sequence[float],
  *,
  threshold: float,
  direction: str,
  threshold_why: str,
  seeds_why: str,
  method: str = 't',
  budget: float | None = None,
) -> Subclaim:
  """A claim on the per-seed ratio a / b of two positive quantities.

  Args:
    claim: the sentence.
    a: per-seed values of one arm, e.g. steps to a target; `math.inf` for
      a seed that never reached it within `budget` (censored).
    b: per-seed values of the other arm, all finite.
    threshold, direction, threshold_why, seeds_why: see the module doc.
    method: 't' (geometric mean, t interval of the log ratios) or 'sign'
      (median ratio, sign-test interval). Censored values always take
      'sign': a never-reached target is a bound, not a number to average.
    budget: the budget a censored arm ran out of; its ratio is > budget/b.
  """
  ra, rb = np.asarray(a, np.float64), np.asarray(b, np.float64)
  if ra.shape != rb.shape or ra.ndim != 1:
    raise ValueError(f'{claim!r}: a and b need the same [seeds] shape')
  n = _seeds(ra, claim)
  if np.any(ra <= 0) or np.any(rb <= 0) or not np.all(np.isfinite(rb)):
    raise ValueError(f'{claim!r}: ratios need positive values, b finite')
  censored = int(np.isinf(ra).sum())
  if censored:
    if budget is None:
      raise ValueError(f'{claim!r}: censored values need the budget')
    lower = np.where(np.isinf(ra), budget / rb, ra / rb)
    interval = censored_sign_interval(lower, ra / rb)
    how = (
      f'median ratio, sign-test interval over {n} seeds; {censored} never '
      f'reached the target: > budget {budget:g}'
    )
  elif method == 't':
    interval = log_t_interval(ra / rb)
    how = f'geometric mean, t interval of log ratios over {n} seeds'
  elif method == 'sign':
    interval = sign_interval(ra / rb)
    how = f'median ratio, sign-test interval over {n} seeds'
  else:
    raise ValueError(f"method must be 't' or 'sign': {method!r}")
  return _claim(
    claim,
    interval,
    n,
    how,
    threshold=threshold,
    direction=direction,
    threshold_why=threshold_why,
    seeds_why=seeds_why,
    censored=censored,
  )


def proportion(
  claim: str,
  outcomes: Sequence[bool] | np.ndarray,
  *,
  threshold: float,
  direction: str,
  threshold_why: str,
  seeds_why: str,
  scale: float = 1.0,
) -> Subclaim:
  """A claim on a share, with an interval inside [0, scale].

  Args:
    claim: the sentence.
    outcomes: one 0/1 outcome per seed (e.g. diverged), for an exact
      Clopper-Pearson interval of k in n seeds; or [seeds, items] 0/1
      outcomes (e.g. each unit dead or not), for a bootstrap over seeds
      and items.
    threshold, direction, threshold_why, seeds_why: see the module doc
      (the threshold in units of `scale`).
    scale: 1 for a fraction, 100 for percentage points.
  """
  x = np.asarray(outcomes, np.float64)
  if not np.all((x == 0) | (x == 1)):
    raise ValueError(f'{claim!r}: outcomes must be 0 or 1')
  n = _seeds(x, claim)
  if x.ndim == 1:
    k = int(x.sum())
    interval = clopper_pearson(k, n)
    how = f'exact binomial (Clopper-Pearson), {k} of {n} seeds'
  elif x.ndim == 2:
    interval = bootstrap_seeds_examples(x)
    how = f'bootstrap over {n} seeds x {x.shape[1]} items'
  else:
    raise ValueError(f'{claim!r}: outcomes are [seeds] or [seeds, items]')
  return _claim(
    claim,
    tuple(v * scale for v in interval),
    n,
    how,
    threshold=threshold,
    direction=direction,
    threshold_why=threshold_why,
    seeds_why=seeds_why,
  )


def seeds_for(margin: float, sd: float, confidence: float = CONFIDENCE) -> int:
  """Seeds for a t interval of half-width below `margin` (at least 5).

  The pilot calculation: with per-seed spread `sd` (of the values or the
  paired differences) and the estimate `margin` away from the threshold,
  the smallest n with t_{n-1} * sd / sqrt(n) < margin.
  """
  if margin <= 0 or sd < 0:
    raise ValueError(f'need margin > 0 and sd >= 0: {margin}, {sd}')
  n = MIN_SEEDS
  while float(stats.t.ppf(0.5 + confidence / 2, n - 1)) * sd >= (
    margin * math.sqrt(n)
  ):
    n += 1
  return n
