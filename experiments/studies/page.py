"""A study's page, DIR/NAME.md: its text and its markdown tables.

`study_page` writes the page of a `report.Result` in its format. A study in
the old format (sub-claims without a kind) keeps its page as it always was:
claim, verdict and summary, one sub-claim table, the figure, the results
table, the protocol, notes, command and machine. A format-2 study (the rule
of `verdict.py`: checks, preconditions and claims) reads, in this order:

1. the lead: two or three plain sentences (what was tested, what came out,
   what it means for the claim), the Result's `lead` or, without one,
   sentences made from its verdict and counts (`readable.fallback_lead`);
2. the claim with its source, the verdict with the summary;
3. **Checks** (check | value | required | passes), **Preconditions** (name
   | measured | required | met) and **Claims** (claim | estimate | 95%
   interval | threshold | interval from, seeds | verdict), each shown even
   when empty, so every page has the same skeleton;
4. the figure and its caption, the measured table, the protocol table, the
   notes, the command, the machine and the wall time.

A format-2 page prints its numbers for a student (`readable.py`): plain
decimals, words for huge or tiny ratios, no scientific notation. The row
builders take the sub-claims' and preconditions' json records (`record()`),
so the gallery (`gallery.py`) shows the same cells from the NAME.json files.
"""

from collections.abc import Sequence
import re
from typing import Any

from experiments.studies import readable
from experiments.studies import verdict as verdict_lib

# The rows every protocol table has, in this order ("| aspect | paper (cite)
# | this study | why it differs |"); a study may add rows after them.
PROTOCOL_ASPECTS = (
  'architecture',
  'data',
  'optimizer and learning-rate selection',
  'metric',
  'budget',
  'runs/seeds',
)
PROTOCOL_COLUMNS = ('aspect', 'paper (cite)', 'this study', 'why it differs')
# The old format's one table of sub-claims.
SUBCLAIM_COLUMNS = (
  'sub-claim',
  'estimate',
  '95% interval',
  'threshold (claim side)',
  'interval from',
  'verdict',
)
# A format-2 page's three tables.
CHECK_COLUMNS = ('check', 'value', 'required', 'passes')
PRECONDITION_COLUMNS = ('precondition', 'measured', 'required', 'met')
CLAIM_COLUMNS = (
  'claim',
  'estimate',
  '95% interval',
  'threshold',
  'interval from, seeds',
  'verdict',
)
CHECKS_HEADING = (
  '**Checks** (exact computations: each passes, or the run stops as a bug; '
  'not evidence):'
)
PRECONDITIONS_HEADING = (
  '**Preconditions** (the regime the claims are about, measured in the '
  'same run; one unmet makes the study **not tested**):'
)
CLAIMS_HEADING = '**Claims** (statistical: 95% intervals over seeds):'
PROTOCOL_HEADING = '**Protocol: the paper scaled down.**'


def format_cell(value: Any) -> str:
  """A table cell: floats with 4 significant digits, the rest as str.

  numpy and JAX scalars count as the Python number they hold, so a cell
  reads the same in NAME.md as its value does in NAME.json. (The old
  format's cells; a format-2 page uses `plain_cell`.)
  """
  if getattr(value, 'ndim', None) == 0 and hasattr(value, 'item'):
    value = value.item()
  if isinstance(value, bool):
    return str(value)
  if isinstance(value, float):
    return f'{value:.4g}'
  return str(value).replace('|', '\\|')


def plain_cell(value: Any) -> str:
  """A format-2 table cell: numbers by `readable.number`, bools yes / no."""
  if getattr(value, 'ndim', None) == 0 and hasattr(value, 'item'):
    value = value.item()
  if isinstance(value, bool):
    return 'yes' if value else 'no'
  if isinstance(value, int):
    return f'{value:,}' if abs(value) >= 10_000 else str(value)
  if isinstance(value, float):
    return readable.number(value)
  return str(value)


def markdown_table(columns: Sequence[str], rows: Sequence[Sequence[Any]]):
  """A GitHub markdown table (cells by `format_cell`: pipes escaped)."""
  lines = [
    '| ' + ' | '.join(format_cell(c) for c in columns) + ' |',
    '|' + '---|' * len(columns),
  ]
  for row in rows:
    if len(row) != len(columns):
      raise ValueError(f'row {row} has {len(row)} cells, not {len(columns)}')
    lines.append('| ' + ' | '.join(format_cell(v) for v in row) + ' |')
  return '\n'.join(lines)


def subclaim_rows(subclaims: Sequence[verdict_lib.Subclaim]) -> list[list]:
  """The old format's sub-claims table rows."""
  return [
    [
      s.claim,
      float(s.estimate),
      f'[{format_cell(float(s.ci_low))}, {format_cell(float(s.ci_high))}]',
      f'{"> " if s.direction == "above" else "< "}'
      f'{format_cell(float(s.threshold))} ({s.threshold_why})',
      f'{s.interval}; {s.seeds} seed(s)',
      f'**{s.verdict}**',
    ]
    for s in subclaims
  ]


# A format-2 page's rows, from the json records of sub-claims and
# preconditions (`Subclaim.record()`, `Precondition.record()`).


def is_ratio(sub: dict) -> bool:
  """Whether a sub-claim's number is a ratio (its interval says so)."""
  return 'ratio' in sub.get('interval', '')


def threshold_cell(sub: dict, *, why: bool = True) -> str:
  """'> 2' or '< 0.000001', with '(where it comes from)' when `why`."""
  side = '> ' if sub['direction'] == 'above' else '< '
  say = readable.ratio if is_ratio(sub) else readable.number
  reason = f' ({sub["threshold_why"]})' if why else ''
  return side + say(sub['threshold']) + reason


def _beside(sub: dict, value: float) -> str:
  return readable.beside(value, sub['threshold'], is_ratio=is_ratio(sub))


def check_row(sub: dict, *, why: bool = True) -> list[str]:
  """check | value | required | passes (a written check always passes)."""
  return [
    sub['claim'],
    _beside(sub, sub['estimate']),
    threshold_cell(sub, why=why),
    'yes',
  ]


def claim_row(sub: dict, *, why: bool = True) -> list[str]:
  """claim | estimate | 95% interval | threshold | interval from | verdict.

  A censored estimate (a target some seeds never reached) is a lower
  bound: 'more than X'. Without `why`, the fifth cell is the seeds alone.
  """
  estimate = _beside(sub, sub['estimate'])
  if sub.get('censored'):
    estimate = f'more than {estimate}'
  how = (
    f'{sub["interval"]}; {sub["seeds"]} seeds: {sub.get("seeds_why", "")}'
    if why
    else str(sub['seeds'])
  )
  return [
    sub['claim'],
    estimate,
    f'[{_beside(sub, sub["ci_low"])}, {_beside(sub, sub["ci_high"])}]',
    threshold_cell(sub, why=why),
    how,
    f'**{sub["verdict"]}**',
  ]


_REQUIRED = re.compile(r'^([<>]=?) ?(\S+)$')


def plain_required(required: str) -> str:
  """A requirement such as '< 1e-06' with its number made plain."""
  match = _REQUIRED.match(required.strip())
  if not match:
    return required
  try:
    value = float(match.group(2))
  except ValueError:
    return required
  return f'{match.group(1)} {readable.number(value)}'


def precondition_row(pre: dict) -> list[str]:
  """precondition | measured | required | met."""
  measured = pre['measured']
  return [
    pre['name'],
    measured if isinstance(measured, str) else readable.number(measured),
    plain_required(pre['required']),
    'yes' if pre['met'] else '**no**',
  ]


def lead(result: Any) -> str:
  """A format-2 `report.Result`'s opening sentences: its own or made up."""
  if result.lead:
    return result.lead
  return readable.fallback_lead(
    result.verdict,
    [s.record() for s in result.subclaims],
    [p.record() for p in result.preconditions],
  )


def is_format_2(result: Any) -> bool:
  """Whether a `report.Result`'s sub-claims have kinds (format 2)."""
  return result.subclaims[0].kind is not None


def study_page(
  result: Any,
  *,
  name: str,
  claim: str,
  source: str,
  command: str,
  wall_time_s: float,
  quick: bool,
  machine: str,
) -> str:
  """NAME.md's text for `result` (a `report.Result`), in its format."""
  size = 'quick (--quick: fewer steps, smaller nets)' if quick else 'full'
  head = [
    f'**Claim** ({source}): {claim}',
    '',
    f'**Verdict: {result.verdict}.** {result.summary}',
    '',
  ]
  if is_format_2(result):
    body = [
      *_sections(result),
      f'![{name}]({name}.png)',
      '',
      *([f'*{result.caption}*', ''] if result.caption else []),
      '**Measured** (the numbers behind the figure):',
      '',
      markdown_table(
        result.columns, [[plain_cell(v) for v in row] for row in result.rows]
      ),
      '',
    ]
    head = [lead(result), '', *head]
    notes = ['**Notes.**', ''] if result.notes else []
    wall = _duration(wall_time_s)
  else:
    body = [
      markdown_table(SUBCLAIM_COLUMNS, subclaim_rows(result.subclaims)),
      '',
      f'![{name}]({name}.png)',
      '',
      markdown_table(result.columns, result.rows),
      '',
    ]
    notes, wall = [], f'{wall_time_s:.1f} s'
  lines = [
    f'# {name}',
    '',
    *head,
    *body,
    PROTOCOL_HEADING,
    '',
    markdown_table(PROTOCOL_COLUMNS, result.protocol),
    '',
    *notes,
    *[f'- {note}' for note in result.notes],
    *([''] if result.notes else []),
    *(
      [f'**Design changed after a result was seen:** {result.redesign}', '']
      if result.redesign
      else []
    ),
    f'Command: `{command}`',
    '',
    f'Size: {size}. Wall time: {wall} on {machine}.',
    '',
  ]
  return '\n'.join(lines)


def _duration(seconds: float) -> str:
  """'12.3 s' below two minutes, else '34.5 min'."""
  return f'{seconds:.1f} s' if seconds < 120 else f'{seconds / 60:.1f} min'


def _sections(result: Any) -> list[str]:
  """A format-2 page's checks, preconditions and claims, in that order."""
  subs = [s.record() for s in result.subclaims]
  checks = [check_row(s) for s in subs if s['kind'] == 'check']
  claims = [claim_row(s) for s in subs if s['kind'] == 'claim']
  pres = [precondition_row(p.record()) for p in result.preconditions]
  return [
    *_section(CHECKS_HEADING, CHECK_COLUMNS, checks, '**Checks:** none.'),
    *_section(
      PRECONDITIONS_HEADING,
      PRECONDITION_COLUMNS,
      pres,
      '**Preconditions:** none declared.',
    ),
    *_section(
      CLAIMS_HEADING,
      CLAIM_COLUMNS,
      claims,
      '**Claims:** none. No statistical claim: the study checks a formula, '
      f'so its headline is **{verdict_lib.CHECKS_PASS}**, a check and not '
      'evidence.',
    ),
  ]


def _section(heading: str, columns, rows, empty: str) -> list[str]:
  if not rows:
    return [empty, '']
  return [heading, '', markdown_table(columns, rows), '']
