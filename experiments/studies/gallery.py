"""The studies' listing and their gallery, the index page DIR.md.

The gallery is built from the studies' own records, DIR/NAME.json, and from
nothing else: `--all` runs every study and then builds it, and
`--gallery_only` rebuilds it from the jsons already in DIR without running
anything, so the committed index always says what the studies wrote. It
opens each study's section with the claim, the headline verdict and the
figure as a thumbnail linked to the study's page (NAME.md), then lists
every sub-claim with its estimate, 95% interval, threshold and verdict; at
the end, the total wall time (the sum of the jsons' `wall_time_s`) and the
machine(s) the jsons name.

Two json formats live side by side while the studies migrate to the rule of
`verdict.py`: the old one (every sub-claim counted, no `format` key) and
format 2 (`"format": 2`: each sub-claim's `kind`, check or claim, and the
`preconditions`). A format-2 study shows its checks apart (exact: they pass,
they are not evidence), then its preconditions, then its claims; its
headline may be 'not tested' (a precondition unmet) or 'checks pass' (checks
only), with its numbers in plain words (`readable.py`), as on its page
(the cells come from `page.py`'s row builders). `records.check_record`
enforces each format's rules.

Kept apart from `__main__` (which defines the CLI's absl flags) so that
tests and notebooks can import it.
"""

import collections
from collections.abc import Sequence
import os

from experiments import studies
from experiments.studies import page
from experiments.studies import records as records_lib
from experiments.studies import verdict as verdict_lib

# The records' errors, rules and loading (records.py), where the gallery's
# callers have always found them.
GalleryError = records_lib.GalleryError
check_record = records_lib.check_record
load_records = records_lib.load_records

INDEX_COLUMNS = ('study', 'claim', 'verdict', 'sub-claims', 'wall time')
GALLERY_SUBCLAIM_COLUMNS = (
  'sub-claim',
  'estimate',
  '95% interval',
  'threshold (claim side)',
  'verdict',
)
CHECK_COLUMNS = page.CHECK_COLUMNS[:3]
PRECONDITION_COLUMNS = page.PRECONDITION_COLUMNS
CLAIM_COLUMNS = (*GALLERY_SUBCLAIM_COLUMNS[:4], 'seeds', 'verdict')


def list_studies() -> str:
  """One line per study: its name and the claim it tests."""
  width = max(len(name) for name in studies.STUDIES)
  return '\n'.join(
    f'{name:<{width}}  {studies.get(name).CLAIM}' for name in studies.STUDIES
  )


def _subclaim_cells(sub: dict) -> list[str]:
  """An old-format sub-claim's cells (format 2: `page.claim_row`)."""
  side = '> ' if sub['direction'] == 'above' else '< '
  estimate = page.format_cell(float(sub['estimate']))
  return [
    sub['claim'],
    f'> {estimate}' if sub.get('censored') else estimate,
    f'[{page.format_cell(float(sub["ci_low"]))}, '
    f'{page.format_cell(float(sub["ci_high"]))}]',
    side + page.format_cell(float(sub['threshold'])),
    f'**{sub["verdict"]}**',
  ]


def _counts(verdicts: Sequence[str]) -> str:
  counts = collections.Counter(verdicts)
  return ', '.join(
    f'{counts[word]} {word}' for word in verdict_lib.HEADLINES if counts[word]
  )


def _tally(record: dict) -> str:
  """The sub-claims in words: claims' verdicts, checks, unmet preconditions."""
  subs = record['subclaims']
  if 'format' not in record:
    return _counts([s['verdict'] for s in subs])
  parts = [_counts([s['verdict'] for s in subs if s['kind'] == 'claim'])]
  checks = sum(s['kind'] == 'check' for s in subs)
  if checks:
    parts.append(f'{checks} check{"s pass" if checks > 1 else " passes"}')
  unmet = sum(not p['met'] for p in record['preconditions'])
  if unmet:
    parts.append(f'{unmet} precondition{"s" if unmet > 1 else ""} unmet')
  return '; '.join(part for part in parts if part)


def _sections_2(r: dict) -> list[str]:
  """A format-2 study's checks, preconditions and claims, each apart."""
  checks = [s for s in r['subclaims'] if s['kind'] == 'check']
  claims = [s for s in r['subclaims'] if s['kind'] == 'claim']
  lines = []
  if checks:
    # check, value, required: a check always passes; why is on its page.
    rows = [page.check_row(s, why=False)[:3] for s in checks]
    lines += [
      page.CHECKS_HEADING,
      '',
      page.markdown_table(CHECK_COLUMNS, rows),
      '',
    ]
  pres = r['preconditions']
  if pres:
    rows = [page.precondition_row(p) for p in pres]
    lines += [
      page.PRECONDITIONS_HEADING,
      '',
      page.markdown_table(PRECONDITION_COLUMNS, rows),
      '',
    ]
  elif claims:
    lines += ['**Preconditions:** none declared.', '']
  if claims:
    rows = [page.claim_row(s, why=False) for s in claims]
    lines += [
      page.CLAIMS_HEADING,
      '',
      page.markdown_table(CLAIM_COLUMNS, rows),
      '',
    ]
  else:
    lines += [
      f'No statistical claim: the study checks a formula, so its headline '
      f'is **{verdict_lib.CHECKS_PASS}**, a check and not evidence.',
      '',
    ]
  return lines


def _machines(records: Sequence[dict]) -> str:
  """'X min on M' for one machine, else the minutes per machine."""
  minutes = collections.defaultdict(float)
  names = collections.defaultdict(list)
  for r in records:
    minutes[r['machine']] += r['wall_time_s'] / 60
    names[r['machine']].append(r['name'])
  if len(minutes) == 1:
    ((machine, total),) = minutes.items()
    return f'{total:.1f} min on {machine}'
  return '; '.join(
    f'{minutes[m]:.1f} min on {m} ({", ".join(names[m])})' for m in minutes
  )


_PLAIN = ('holds', verdict_lib.CHECKS_PASS)
_LEAD = (
  'Each claim is split into sub-claims. A **check** is an exact computation '
  '(an identity, a count, a formula): it passes, or the study stops as a '
  'bug; it is shown apart and never counted as evidence. A **claim** is '
  'statistical, over at least 5 seeds, with a 95% interval and the '
  "threshold the claim's words imply: it **holds** when its interval lies "
  "wholly on the claim's side of the threshold, **does not hold** when it "
  'lies wholly on the other side, and is **inconclusive** when it touches '
  'or straddles it. **Preconditions**, measured in the same run, say '
  'whether the regime the claim is about was reached. A study is **not '
  'tested** if any precondition is unmet; otherwise it holds if every '
  'claim holds, does not hold if any does not, and is inconclusive else; '
  'a study of checks alone says **checks pass**. Studies not yet moved to '
  'this rule (no checks or preconditions shown) count every sub-claim as '
  'a claim. The rule, thresholds, seeds and budgets are fixed in each '
  'study module before the run.'
)


def render(records: Sequence[dict], out_dir: str) -> str:
  """The gallery page's text for `records` (the NAME.json records)."""
  folder = os.path.basename(os.path.normpath(out_dir))
  index = []
  for r in records:
    word = r['verdict'] if r['verdict'] in _PLAIN else f'**{r["verdict"]}**'
    index.append(
      [
        f'[{r["name"]}](#{r["name"]})',
        r['claim'],
        word,
        _tally(r),
        f'{r["wall_time_s"]:.0f} s',
      ]
    )
  lines = [
    "# Studies: the notes' claims, reproduced",
    '',
    f'Regenerate with `python -m experiments.studies --all --out_dir '
    f'{out_dir}`; rebuild this page from the jsons in {out_dir} without '
    'running anything with `python -m experiments.studies --gallery_only '
    f'--out_dir {out_dir}` (`--list` names the studies).',
    '',
    _LEAD,
    '',
    page.markdown_table(INDEX_COLUMNS, index),
  ]
  for r in records:
    if 'format' in r:
      tables = _sections_2(r)
    else:
      rows = [_subclaim_cells(s) for s in r['subclaims']]
      tables = [page.markdown_table(GALLERY_SUBCLAIM_COLUMNS, rows), '']
    lines += [
      '',
      f'## {r["name"]}',
      '',
      f'**Claim** ({r["source"]}): {r["claim"]}',
      '',
      f'**Verdict: {r["verdict"]}.** {r["summary"]}',
      '',
      f'[![{r["name"]}]({folder}/{r["name"]}.png)]({folder}/{r["name"]}.md)',
      '',
      *tables,
      f'Protocol, intervals, numbers, command and machine: '
      f'[{folder}/{r["name"]}.md]({folder}/{r["name"]}.md)'
      f'{" (--quick)" if r["quick"] else ""}.',
    ]
  lines += ['', total_line(records), '']
  return '\n'.join(lines)


README_COLUMNS = ('study', 'the claim, in short', 'verdict', 'sub-claims')

# The README's one-line form of each study's claim (the whole claim, with
# its thresholds, is in the study's json and section of the gallery).
SHORT_CLAIMS = {
  'activations': 'ReLU nets train much faster than tanh or sigmoid nets',
  'dead_relu': 'at a large rate ReLU units die; Leaky ReLU and ELU do not',
  'depth': 'a deeper plain net trains worse; a residual one does not',
  'ensemble': 'an ensemble beats its best member',
  'gradients': 'backprop costs O(n), numerical gradients O(n^2)',
  'initialization': "zero init never breaks symmetry; He's init trains "
  'deep ReLU nets',
  'input_standardization': 'standardised inputs speed up gradient descent',
  'lr_schedules': 'the rate matters most; decaying it beats a constant',
  'normalization': 'BatchNorm speeds training; it depends on the batch, '
  'GroupNorm does not',
  'regularization': 'dropout and augmentation reduce overfitting',
  'saturation': 'sigmoid units saturate and the gradient vanishes',
  'separable': 'separable convolutions cost 1/N + 1/D_K^2, losing little',
  'shuffled_pixels': "shuffled pixels erase the CNN's edge, not the MLP's",
  'softmax_temperature': 'as beta grows the softmax tends to the arg max',
  'warmup': 'warmup lets a large rate train where it would diverge',
}


def readme_table(records: Sequence[dict], out_dir: str = 'docs/studies') -> str:
  """The README's verdict table: one row per study, linked to its section.

  The README copies this table from the gallery's jsons (a test compares
  them), so it never says what the committed studies did not.
  """
  index = os.path.normpath(out_dir) + '.md'
  rows = [
    [
      f'[`{r["name"]}`]({index}#{r["name"]})',
      SHORT_CLAIMS[r['name']],
      r['verdict'],
      _tally(r),
    ]
    for r in records
  ]
  return page.markdown_table(README_COLUMNS, rows)


def total_line(records: Sequence[dict]) -> str:
  """'All N studies (counts): X min on M' from the jsons."""
  verdicts = [r['verdict'] for r in records]
  return (
    f'All {len(records)} studies ({_counts(verdicts)}): {_machines(records)} '
    "(the sum of the studies' wall times, from their jsons)."
  )


def write_gallery(out_dir: str, names: Sequence[str] | None = None) -> str:
  """Writes OUT_DIR.md from OUT_DIR/NAME.json; returns its path.

  Raises:
    GalleryError: a json is missing or not in the three-way format (nothing
      is written then).
  """
  text = render(load_records(out_dir, names), out_dir)
  path = os.path.normpath(out_dir) + '.md'
  with open(path, 'w') as f:
    f.write(text)
  return path
