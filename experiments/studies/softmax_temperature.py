"""Softmax with a base (or a temperature) sharpens to the arg max.

Notes (lecture 4, "Softmax with temperature"): `sm_beta(s)_i = e^{beta s_i} /
sum_j e^{beta s_j}`, a softmax whose base is `e^beta`; for s = [1, 1.1] the
notes tabulate beta = 1, 2, 5, 100 -> [0.475 0.524], [0.451 0.550],
[0.378 0.622], [4.5e-05 9.9e-01], and state that as beta -> infinity the
softmax converges to the arg max (temperature T = 1/beta -> 0).

The study evaluates `ops.losses.softmax_beta` on the notes' scores over
beta in [0.01, 1000], checks the table to the notes' printed digits (the
notes truncate 0.52498 to 0.524: a value agrees within one unit of the last
printed digit) and
measures the distance to the one-hot arg max as beta grows.

The notes contradict themselves on the temperature: "Increase T = decrease
beta = decrease the peak around the largest value", and, two lines on,
"Higher T yields more confident (may be over confident) probability
distribution". The formula, the table and the notes' own use (raising T for
diversity when sampling) agree with the first; the study tests the first
reading (a lower T, a higher beta, is peakier) and reports in a note the
largest probability at T = 0.5, 1 and 2, which contradicts the second.

Every number here is an exact, deterministic computation of the formula (no
training, no data sample, no seeds): each sub-claim is a check (`verdict.
check`), which passes or stops the run as a bug, and none is a statistical
claim. The study has no preconditions (there is no regime to reach) and its
headline is 'checks pass': it verifies the formula, it is not evidence
about training.
"""

import numpy as np

from experiments.studies import report
from experiments.studies import verdict as verdict_lib
from ops import losses

CLAIM = (
  'Raising beta (lowering the temperature T = 1/beta) makes the softmax '
  'peakier, and as beta -> infinity it converges to the one-hot arg max.'
)
SOURCE = 'notes, lecture 4, "softmax with temperature": sm_beta([1, 1.1])'

SCORES = (1.0, 1.1)
# The notes' table, as printed: beta -> (sm_1, sm_2).
NOTES_TABLE = {
  1.0: ('0.475', '0.524'),
  2.0: ('0.451', '0.550'),
  5.0: ('0.378', '0.622'),
  100.0: ('4.5e-05', '9.9e-01'),
}
# The checks' thresholds, fixed before the run. Agreement: the notes truncate
# (0.52498 is printed 0.524), so a value agrees within one unit of the last
# printed digit; the estimate is the worst entry in those units.
TABLE_UNITS = 1.0
# "Peakier": the larger probability never falls as beta grows, up to float32
# round-off (one unit of float32 at 1 is 1.2e-7).
ROUND_OFF = -1e-7
# "Converges to the arg max": at beta = 1000 (T = 0.001) the distance to the
# one-hot vector is below 1e-6 (a difference of 0.1 in the scores, times
# 1000, puts the smaller probability at e^-100).
ARGMAX_DISTANCE = 1e-6
PROTOCOL = (
  (
    'architecture',
    'none: the function sm_beta (notes, lecture 4)',
    'ops.losses.softmax_beta, float32',
    '-',
  ),
  (
    'data',
    "the notes' scores s = [1, 1.1]",
    'the same scores',
    '-',
  ),
  (
    'optimizer and learning-rate selection',
    'none (no training)',
    'none',
    '-',
  ),
  (
    'metric',
    "probabilities at beta = 1, 2, 5, 100 (the notes' table); the limit "
    'beta -> infinity',
    'the table to its printed digits; the larger probability over a grid '
    'of beta in [0.01, 1000]; the L-infinity distance to the one-hot arg '
    'max at beta = 1000',
    'the limit is read at a finite beta',
  ),
  (
    'budget',
    '-',
    'a grid of 101 betas (--quick: 26)',
    '-',
  ),
  (
    'runs/seeds',
    '-',
    'one exact computation: three checks, no statistical claim',
    'deterministic: no seeds',
  ),
)


def last_digit_unit(printed: str) -> float:
  """One unit of the last printed digit: '0.524' -> 1e-3, '9.9e-01' -> 1e-2."""
  mantissa, _, exponent = printed.partition('e')
  decimals = len(mantissa.partition('.')[2])
  return 10.0 ** (int(exponent or 0) - decimals)


def run(quick: bool = False) -> report.Result:
  """Evaluates sm_beta on the notes' scores; `quick` uses fewer betas."""
  betas = np.logspace(-2, 3, 26 if quick else 101)
  probs = np.stack([np.asarray(losses.softmax_beta(SCORES, b)) for b in betas])
  argmax = np.eye(len(SCORES))[int(np.argmax(SCORES))]
  distance = np.abs(probs - argmax).max(axis=1)  # L-infinity to one-hot

  # The notes truncate (0.52498 is printed 0.524): a value agrees if it is
  # within one unit of the last printed digit.
  rows, worst = [], 0.0
  for beta, printed in NOTES_TABLE.items():
    ours = np.asarray(losses.softmax_beta(SCORES, beta))
    values = np.asarray([float(p) for p in printed])
    units = np.asarray([last_digit_unit(p) for p in printed])
    off = float(np.max(np.abs(ours - values) / units))
    worst = max(worst, off)
    rows.append(
      (
        beta,
        f'[{printed[0]} {printed[1]}]',
        f'[{ours[0]:.4g} {ours[1]:.5g}]',
        off,
        'yes' if off < TABLE_UNITS else 'NO',
      )
    )
  smallest_step = float(np.min(np.diff(probs[:, 1])))
  at_1000 = float(distance[-1])
  peaks = {
    t: float(np.max(np.asarray(losses.softmax_beta(SCORES, 1 / t))))
    for t in (0.5, 1.0, 2.0)
  }
  subclaims = [
    verdict_lib.check(
      "sm_beta([1, 1.1]) gives the notes' table (beta = 1, 2, 5, 100).",
      worst,
      threshold=TABLE_UNITS,
      direction='below',
      why='the notes print truncated digits: within one unit of the last '
      'printed digit (value: the worst entry, in those units)',
    ),
    verdict_lib.check(
      'Raising beta (lowering T) never lowers the largest probability.',
      smallest_step,
      threshold=ROUND_OFF,
      direction='above',
      why='"increase T = decrease the peak": the smallest step of the '
      'larger probability between neighbouring betas is >= 0 up to float32 '
      'round-off (-1e-7)',
    ),
    verdict_lib.check(
      'As beta -> infinity the softmax converges to the one-hot arg max '
      '(read at beta = 1000).',
      at_1000,
      threshold=ARGMAX_DISTANCE,
      direction='below',
      why='"converges to arg max": L-infinity distance below 1e-6 at '
      'beta = 1000',
    ),
  ]

  fig, ax = report.new_figure()
  ax.semilogx(betas, probs[:, 1], label='sm_beta(s)_2 (s_2 = 1.1, the max)')
  ax.semilogx(betas, probs[:, 0], label='sm_beta(s)_1 (s_1 = 1.0)')
  table_betas = list(NOTES_TABLE)
  ax.scatter(
    table_betas,
    [float(NOTES_TABLE[b][1]) for b in table_betas],
    marker='x',
    color='k',
    zorder=3,
    label="the notes' table",
  )
  ax.scatter(
    table_betas,
    [float(NOTES_TABLE[b][0]) for b in table_betas],
    marker='x',
    color='k',
    zorder=3,
  )
  ax.axhline(1.0, ls=':', color='grey', label='arg max (one-hot)')
  ax.set_xlabel('beta = 1 / temperature (log scale)')
  ax.set_ylabel('softmax probability')
  ax.set_title('sm_beta([1, 1.1]) sharpens to the arg max as beta grows')
  ax.legend(loc='upper left')

  # The checks passed (a failing one raises above), so the summary can
  # state them; their exact values are in the .md and the json.
  summary = (
    'Three checks pass and no statistical claim is made: every number is '
    "an exact computation of the formula. sm_beta([1, 1.1]) gives the notes' "
    f'table to within {worst:.3f} of a unit of its last printed digit (the '
    'notes truncate), the larger probability never falls as beta grows '
    'from 0.01 to 1000, and at beta = 1000 (T = 0.001) the softmax is the '
    'one-hot arg max to better than one part in a million.'
  )
  return report.Result(
    figure=fig,
    columns=(
      'beta',
      'notes',
      'ops.losses.softmax_beta',
      'worst difference (units of the last printed digit)',
      'agree',
    ),
    rows=rows,
    subclaims=subclaims,
    summary=summary,
    protocol=PROTOCOL,
    values={
      'table_worst_units': worst,
      'smallest_step': smallest_step,
      'distance_to_argmax_at_beta_1000': at_1000,
      'largest_probability_by_temperature': {
        str(t): p for t, p in peaks.items()
      },
    },
    notes=(
      'Scores s = [1, 1.1]. "agree": within one unit of the last digit the '
      'notes print (they truncate: 0.52498 is printed 0.524).',
      'Which reading of the temperature: the largest probability is '
      + ', '.join(f'{p:.4f} at T = {t:g}' for t, p in peaks.items())
      + ': a higher T is LESS confident, as "increase T = decrease the '
      'peak" says; the notes\' next line, "Higher T yields more confident '
      '(may be over confident) probability distribution", has it backwards '
      '(it holds for a lower T). The study tests the first reading.',
    ),
  )
