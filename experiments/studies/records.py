"""The studies' NAME.json records: their keys, their rules, their loading.

Two formats live side by side while the studies migrate to the rule of
`verdict.py`. The old one (no `format` key) counts every sub-claim: each
sub-claim's verdict is `verdict.decide` of its interval and threshold, the
headline `verdict.combine` of them all. Format 2 (`"format": 2`) gives each
sub-claim a `kind`, check or claim, and the record a `preconditions` list;
`check_format_2` states its rules. `check_record` applies the record's own
format; the gallery and the tests call it on every json they read.
"""

from collections.abc import Sequence
import json
import os

from experiments import studies
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
# Format 2: the keys added to the record and to each sub-claim.
RECORD_KEYS_2 = (*RECORD_KEYS, 'format', 'preconditions')
PRECONDITION_KEYS = ('name', 'measured', 'required', 'met')
CLAIM_KEYS = (*SUBCLAIM_KEYS, 'kind', 'seeds_why')


class GalleryError(ValueError):
  """A study's json is missing, unreadable or breaks its format's rules."""


def check_record(record: dict, path: str = 'record') -> None:
  """Raises GalleryError unless `record` is a NAME.json record by the rule.

  A record with `"format": 2` is checked by `check_format_2`; one without
  is the old three-way format: its keys, the verdict words, and that every
  sub-claim's verdict is the rule's (`verdict.decide`) and the headline
  their combination.
  """
  if 'format' in record:
    check_format_2(record, path)
    return
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


def check_format_2(record: dict, path: str = 'record') -> None:
  """Raises GalleryError unless `record` follows the rule of `verdict.py`.

  The rules: every record key, `preconditions` a list of {name, measured,
  required, met: bool}; every sub-claim has a `kind`, 'check' or 'claim',
  and its estimate inside its interval; a check is one exact value on its
  side of its threshold, with the verdict 'passes' (a failing check is a
  bug and is never written); a claim is over at least `verdict.MIN_SEEDS`
  seeds, states its `seeds_why`, has a verdict by its interval and
  threshold and an interval wider than a point (a point interval is an
  exact computation: a check counted as a claim); the headline is
  `verdict.rule` of the claims alone and the preconditions; the summary
  names every unmet precondition.
  """

  def fail(message: str):
    raise GalleryError(f'{path}: {message}')

  if record['format'] != verdict_lib.FORMAT:
    fail(f'unknown format {record["format"]!r}')
  missing = [k for k in RECORD_KEYS_2 if k not in record]
  if missing:
    fail(f'lacks {", ".join(missing)}')
  if not isinstance(record['preconditions'], list):
    fail('preconditions must be a list')
  for i, pre in enumerate(record['preconditions']):
    if sorted(pre) != sorted(PRECONDITION_KEYS) or not pre['name']:
      fail(f'precondition {i} needs exactly {", ".join(PRECONDITION_KEYS)}')
    if not isinstance(pre['met'], bool):
      fail(f'precondition {i}: met must be true or false')
  if not record['subclaims']:
    fail('has no sub-claims')
  for i, sub in enumerate(record['subclaims']):
    _check_subclaim_2(sub, f'sub-claim {i}', fail)
  claims = [s['verdict'] for s in record['subclaims'] if s['kind'] == 'claim']
  met = [p['met'] for p in record['preconditions']]
  headline = verdict_lib.rule(claims, met)
  if record['verdict'] != headline:
    fail(
      f'verdict {record["verdict"]!r}, its claims and preconditions '
      f'combine to {headline!r}'
    )
  for pre in record['preconditions']:
    if not pre['met'] and pre['name'] not in record['summary']:
      fail(f'the summary does not say why: {pre["name"]!r} is unmet')


def _check_subclaim_2(sub: dict, where: str, fail) -> None:
  if sub.get('kind') not in verdict_lib.KINDS:
    fail(f'{where} needs a kind, one of {verdict_lib.KINDS}')
  keys = CLAIM_KEYS if sub['kind'] == 'claim' else (*SUBCLAIM_KEYS, 'kind')
  lacking = [k for k in keys if k not in sub]
  if lacking:
    fail(f'{where} lacks {", ".join(lacking)}')
  rule = verdict_lib.decide(
    sub['ci_low'], sub['ci_high'], sub['threshold'], sub['direction']
  )
  if not sub['ci_low'] <= sub['estimate'] <= sub['ci_high']:
    fail(f'{where}: its estimate lies outside its interval')
  if sub['kind'] == 'check':
    if not sub['ci_low'] == sub['estimate'] == sub['ci_high']:
      fail(f'{where}: a check has one exact value, not an interval')
    if rule != 'holds':
      fail(f'{where}: a failing check (a bug) in a written record')
    if sub['verdict'] != verdict_lib.PASSES:
      fail(f'{where}: a check says {verdict_lib.PASSES!r}, not evidence')
    return
  if sub['seeds'] < verdict_lib.MIN_SEEDS:
    fail(f'{where}: a claim over {sub["seeds"]} seeds (at least 5)')
  if not str(sub['seeds_why']).strip():
    fail(f'{where}: a claim states its seeds_why')
  if not sub['ci_low'] < sub['ci_high']:
    fail(f'{where}: a point interval is exact: a check counted as a claim')
  if sub['verdict'] != rule:
    fail(
      f'{where} says {sub["verdict"]!r}, its interval and threshold say '
      f'{rule!r}'
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
