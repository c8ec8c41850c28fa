"""Numbers and sentences as a student reads them: no scientific notation.

A study's page and its summary are read by students, not parsers: no
scientific notation ('6.7e-06', '3.913e+07'), no ten-digit floats. The
rules (the exact values stay in NAME.json):

* `number`: `digits` (3) significant digits as a plain decimal, trailing
  zeros dropped (0.9954 -> '0.995', 6.703e-06 -> '0.0000067', 2.0 -> '2');
  from 1,000 a whole number with thousands separators (1234.5 -> '1,235');
  from a million in words (39127076.5 -> '39.1 million'); under 10^-12 in
  size '0 (within a trillionth)'; infinity as 'infinity'.
* `ratio`: a factor with an 'x' (5.708 -> '5.71x'); a huge one in words,
  as a power of ten it exceeds (1,500 -> 'more than 1,000x', 3.9e7 ->
  'more than 10 million times'); a tiny one as the fraction it stays under
  (6.7e-06 -> 'less than 1/100,000').
* `interval`: '[low, high]' of either.
* `beside`: as many digits as it takes (3 to 12) to tell a value from the
  threshold it is compared with (0.99995 beside 1 reads '0.99995', not '1').

`fallback_lead` writes a format-2 page's opening when the study gives none:
what was tested (claims and checks), what came out (the verdicts in words,
or the unmet preconditions) and what that means for the claim (`MEANINGS`).
"""

from collections.abc import Sequence
import decimal
import math

from experiments.studies import verdict as verdict_lib

_WORDS = ((1e12, 'trillion'), (1e9, 'billion'), (1e6, 'million'))
_TINY = 1e-12
_HUGE_RATIO = 1e3


def _grouped(text: str) -> str:
  """'1234567.5' -> '1,234,567.5' (the integer part grouped by three)."""
  sign = '-' if text.startswith('-') else ''
  whole, dot, fraction = text.lstrip('-').partition('.')
  return f'{sign}{int(whole):,}{dot}{fraction}'


def _fixed(x: float, digits: int) -> str:
  """`x` to `digits` significant digits, as a decimal without exponent."""
  text = format(decimal.Decimal(f'{x:.{digits - 1}e}'), 'f')
  if '.' in text:
    text = text.rstrip('0').rstrip('.')
  return _grouped(text)


def _power_words(power: float) -> str:
  """A power of ten: '1,000', '100,000', '1 million', '10 billion'."""
  for size, word in _WORDS:
    if power >= size:
      return f'{round(power / size):,} {word}'
  return f'{round(power):,}'


def number(x: float, digits: int = 3) -> str:
  """`x` in plain words and decimals (see the module doc)."""
  x = float(x)
  if math.isnan(x):
    return 'not a number'
  if math.isinf(x):
    return 'infinity' if x > 0 else 'minus infinity'
  size = abs(x)
  if size == 0:
    return '0'
  if size < _TINY:
    return '0 (within a trillionth)'
  sign = '-' if x < 0 else ''
  for scale, word in _WORDS:
    if size >= scale:
      if size >= 1000 * _WORDS[0][0]:
        return f'{sign}more than 1,000 trillion'
      return f'{sign}{_fixed(size / scale, digits)} {word}'
  if size >= 1000:
    whole = decimal.Decimal(size).quantize(1, decimal.ROUND_HALF_UP)
    return f'{sign}{int(whole):,}'
  return sign + _fixed(size, digits)


def ratio(r: float, digits: int = 3) -> str:
  """A factor `r` (a ratio of positive quantities) in words (module doc)."""
  r = float(r)
  if math.isnan(r) or math.isinf(r) or r <= 0:
    return number(r, digits) + ('x' if r == 0 else '')
  if r >= _HUGE_RATIO:
    power = 10.0 ** math.floor(math.log10(r))
    words = _power_words(power)
    return f'more than {words}' + ('x' if power < 1e6 else ' times')
  if r <= 1 / _HUGE_RATIO:
    power = 10.0 ** math.floor(math.log10(1 / r))
    return f'less than 1/{_power_words(power)}'
  return number(r, digits) + 'x'


def interval(low: float, high: float, *, is_ratio: bool = False) -> str:
  """'[low, high]', each end by `ratio` or `number`."""
  say = ratio if is_ratio else number
  return f'[{say(low)}, {say(high)}]'


def beside(value: float, threshold: float, *, is_ratio: bool = False) -> str:
  """`value` with the fewest digits (3 to 12) that tell it from `threshold`.

  A value equal to its threshold reads as the threshold does.
  """
  say = ratio if is_ratio else number
  for digits in range(3, 13):
    text = say(value, digits)
    if float(value) == float(threshold) or text != say(threshold, digits):
      return text
  return text


# A page's lead when its study gives none: sentences from the verdict.


def _n(count: int, noun: str) -> str:
  return f'{count} {noun}{"" if count == 1 else "s"}'


def fallback_lead(
  verdict: str, subclaims: Sequence[dict], preconditions: Sequence[dict]
) -> str:
  """Three plain sentences from a format-2 study's verdict and counts.

  What was tested (how many claims and checks), what came out (the
  verdicts, or the unmet preconditions), and what that means for the
  claim: used when the study gives no `lead` of its own.
  """
  checks = sum(s['kind'] == 'check' for s in subclaims)
  claims = [s['verdict'] for s in subclaims if s['kind'] == 'claim']
  unmet = [p['name'] for p in preconditions if not p['met']]
  made = f'{_n(checks, "exact check")}' if checks else ''
  if claims:
    tested = f'The study tested {_n(len(claims), "statistical claim")}'
    tested += f' over seeds{f" and made {made}" if made else ""}.'
  else:
    tested = f'The study made {made} and no statistical claim.'
  if verdict == verdict_lib.NOT_TESTED:
    came = f'{_n(len(unmet), "precondition")} of {len(preconditions)} '
    came += f'{"was" if len(unmet) == 1 else "were"} not met: '
    came += '; '.join(unmet) + '.'
  elif verdict == verdict_lib.CHECKS_PASS:
    came = 'Every check passes.'
  else:
    counts = [(claims.count(w), w) for w in verdict_lib.VERDICTS if w in claims]
    if len(counts) == 1:  # One verdict for every claim.
      came = f'{_every(len(claims), counts[0][1])}.'
    else:
      said = [f'{n} {_verb(n, word)}' for n, word in counts]
      came = f'Of its {len(claims)} claims, {", ".join(said[:-1])} and '
      came += f'{said[-1]}.'
  return f'{tested} {came} {MEANINGS[verdict]}'


def _every(n: int, verdict: str) -> str:
  """'The claim holds', 'Both claims hold', 'None of the 3 claims holds'."""
  if verdict == 'does not hold' and n > 1:
    return 'Neither claim holds' if n == 2 else f'None of the {n} claims holds'
  whole = {1: 'The claim', 2: 'Both claims'}.get(n, f'All {n} claims')
  return f'{whole} {_verb(n, verdict)}'


def _verb(count: int, verdict: str) -> str:
  """A verdict as the verb of `count` claims: 'hold', 'is inconclusive'."""
  one = count == 1
  return {
    'holds': 'holds' if one else 'hold',
    'does not hold': 'does not hold' if one else 'do not hold',
    'inconclusive': 'is inconclusive' if one else 'are inconclusive',
  }[verdict]


# What each headline means for the claim, in one sentence.
MEANINGS = {
  'holds': 'At this scale the evidence supports the claim: every 95% '
  "interval lies on the claim's side of its threshold.",
  'does not hold': 'At this scale the evidence goes against the claim: an '
  'interval lies wholly on the wrong side of its threshold.',
  'inconclusive': 'The evidence does not decide the claim either way at this '
  'scale: an interval straddles its threshold.',
  verdict_lib.NOT_TESTED: 'The run never reached the regime the claim is '
  'about, so it says nothing about the claim either way.',
  verdict_lib.CHECKS_PASS: 'The formula is computed as the notes state it; '
  'an exact check confirms the arithmetic and is not evidence about '
  'training.',
}
