"""The studies' listing and their gallery, the index page DIR.md.

The gallery is built from the studies' own records, DIR/NAME.json, and from
nothing else: `--all` runs every study and then builds it, and
`--gallery_only` rebuilds it from the jsons already in DIR without running
anything, so the committed index always says what the studies wrote. It
lists, per study, the claim, the headline verdict, every sub-claim with its
estimate, 95% interval, threshold and verdict, and the figure; at the end,
the total wall time (the sum of the jsons' `wall_time_s`) and the machine(s)
the jsons name.

Kept apart from `__main__` (which defines the CLI's absl flags) so that
tests and notebooks can import it.
"""

import collections
from collections.abc import Sequence
import json
import os

from experiments import studies
from experiments.studies import report
from experiments.studies import verdict as verdict_lib

# The keys of a NAME.json record in the three-way format, and of each of its
# sub-claims; a json without them (the old format's bool `holds`) is refused.
RECORD_KEYS = (
  'name',
  'claim',
  'source',
  'verdict',
  'summary',
  'subclaims',
  'protocol',
  'columns',
  'rows',
  'wall_time_s',
  'quick',
  'machine',
)
SUBCLAIM_KEYS = (
  'claim',
  'estimate',
  'ci_low',
  'ci_high',
  'threshold',
  'direction',
  'seeds',
  'verdict',
)
INDEX_COLUMNS = ('study', 'claim', 'verdict', 'sub-claims', 'wall time')
GALLERY_SUBCLAIM_COLUMNS = (
  'sub-claim',
  'estimate',
  '95% interval',
  'threshold (claim side)',
  'verdict',
)


class GalleryError(ValueError):
  """A study's json is missing, unreadable or not in the three-way format."""


def list_studies() -> str:
  """One line per study: its name and the claim it tests."""
  width = max(len(name) for name in studies.STUDIES)
  return '\n'.join(
    f'{name:<{width}}  {studies.get(name).CLAIM}' for name in studies.STUDIES
  )


def check_record(record: dict, path: str = 'record') -> None:
  """Raises GalleryError unless `record` is a three-way NAME.json record.

  Checks the keys, the verdict words, and that every sub-claim's verdict is
  the rule's (`verdict.decide`) and the headline their combination.
  """
  missing = [k for k in RECORD_KEYS if k not in record]
  if missing:
    old = ' (the old format with a bool "holds")' if 'holds' in record else ''
    raise GalleryError(
      f'{path} lacks {", ".join(missing)}{old}: rerun the study '
      '(python -m experiments.studies NAME --out_dir DIR)'
    )
  if not record['subclaims']:
    raise GalleryError(f'{path} has no sub-claims')
  for i, sub in enumerate(record['subclaims']):
    lacking = [k for k in SUBCLAIM_KEYS if k not in sub]
    if lacking:
      raise GalleryError(f'{path}: sub-claim {i} lacks {", ".join(lacking)}')
    rule = verdict_lib.decide(
      sub['ci_low'], sub['ci_high'], sub['threshold'], sub['direction']
    )
    if sub['verdict'] != rule:
      raise GalleryError(
        f'{path}: sub-claim {i} says {sub["verdict"]!r}, its interval '
        f'and threshold say {rule!r}'
      )
  headline = verdict_lib.combine([s['verdict'] for s in record['subclaims']])
  if record['verdict'] != headline:
    raise GalleryError(
      f'{path}: verdict {record["verdict"]!r}, its sub-claims combine to '
      f'{headline!r}'
    )


def load_records(out_dir: str, names: Sequence[str] | None = None) -> list:
  """The checked NAME.json records in `out_dir`, in the studies' order."""
  records = []
  for name in studies.STUDIES if names is None else names:
    path = os.path.join(out_dir, f'{name}.json')
    try:
      with open(path) as f:
        record = json.load(f)
    except FileNotFoundError:
      raise GalleryError(
        f'{path} does not exist: run python -m experiments.studies {name} '
        f'--out_dir {out_dir}'
      ) from None
    except json.JSONDecodeError as e:
      raise GalleryError(f'{path} is not valid json: {e}') from None
    check_record(record, path)
    records.append(record)
  return records


def _subclaim_cells(sub: dict) -> list[str]:
  side = '> ' if sub['direction'] == 'above' else '< '
  return [
    sub['claim'],
    report.format_cell(float(sub['estimate'])),
    f'[{report.format_cell(float(sub["ci_low"]))}, '
    f'{report.format_cell(float(sub["ci_high"]))}]',
    side + report.format_cell(float(sub['threshold'])),
    f'**{sub["verdict"]}**',
  ]


def _counts(verdicts: Sequence[str]) -> str:
  counts = collections.Counter(verdicts)
  return ', '.join(
    f'{counts[word]} {word}' for word in verdict_lib.VERDICTS if counts[word]
  )


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


def render(records: Sequence[dict], out_dir: str) -> str:
  """The gallery page's text for `records` (the NAME.json records)."""
  folder = os.path.basename(os.path.normpath(out_dir))
  index = []
  for r in records:
    word = r['verdict'] if r['verdict'] == 'holds' else f'**{r["verdict"]}**'
    index.append(
      [
        f'[{r["name"]}](#{r["name"]})',
        r['claim'],
        word,
        _counts([s['verdict'] for s in r['subclaims']]),
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
    'Each claim is split into sub-claims, each with a 95% interval and the '
    "threshold the claim's words imply. A sub-claim **holds** when its "
    "interval lies wholly on the claim's side of the threshold, **does not "
    'hold** when it lies wholly on the other side, and is **inconclusive** '
    'when it touches or straddles it; a study holds only if every '
    'sub-claim holds. The rule, thresholds, seeds and budgets are fixed in '
    'each study module before the run.',
    '',
    report.markdown_table(INDEX_COLUMNS, index),
  ]
  for r in records:
    rows = [_subclaim_cells(s) for s in r['subclaims']]
    lines += [
      '',
      f'## {r["name"]}',
      '',
      f'**Claim** ({r["source"]}): {r["claim"]}',
      '',
      f'**Verdict: {r["verdict"]}.** {r["summary"]}',
      '',
      report.markdown_table(GALLERY_SUBCLAIM_COLUMNS, rows),
      '',
      f'![{r["name"]}]({folder}/{r["name"]}.png)',
      '',
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
  page = os.path.normpath(out_dir) + '.md'
  rows = [
    [
      f'[`{r["name"]}`]({page}#{r["name"]})',
      SHORT_CLAIMS[r['name']],
      r['verdict'],
      _counts([s['verdict'] for s in r['subclaims']]),
    ]
    for r in records
  ]
  return report.markdown_table(README_COLUMNS, rows)


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
