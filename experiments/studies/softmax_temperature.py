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
"""

import numpy as np

from experiments.studies import report
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
  rows, agree = [], True
  for beta, printed in NOTES_TABLE.items():
    ours = np.asarray(losses.softmax_beta(SCORES, beta))
    values = np.asarray([float(p) for p in printed])
    units = np.asarray([last_digit_unit(p) for p in printed])
    ok = bool(np.all(np.abs(ours - values) <= units))
    agree &= ok
    rows.append(
      (
        beta,
        f'[{printed[0]} {printed[1]}]',
        f'[{ours[0]:.4g} {ours[1]:.5g}]',
        'yes' if ok else 'NO',
      )
    )
  monotone = bool(np.all(np.diff(probs[:, 1]) >= -1e-7))
  at_1000 = float(distance[-1])
  holds = agree and monotone and at_1000 < 1e-6

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

  verdict = (
    f"Our values {'agree' if agree else 'DISAGREE'} with the notes' table "
    'to its printed digits; '
    f'the larger probability rises monotonically with beta, and at '
    f'beta = 1000 the distance to the one-hot arg max is {at_1000:.1e}.'
  )
  return report.Result(
    figure=fig,
    columns=('beta', 'notes', 'ops.losses.softmax_beta', 'agree'),
    rows=rows,
    holds=holds,
    verdict=verdict,
    values={
      'table_agrees': agree,
      'monotone': monotone,
      'distance_to_argmax_at_beta_1000': at_1000,
    },
    notes=(
      'Scores s = [1, 1.1]. "agree": within one unit of the last digit the '
      'notes print (they truncate: 0.52498 is printed 0.524).',
    ),
  )
