"""The committed gallery: docs/studies/*.json, their .md and docs/studies.md.

Every committed NAME.json follows its format's rules (`gallery.check_record`).
The old format: `verdict` one of holds / does not hold / inconclusive,
`subclaims` with claim, estimate, interval, threshold, direction, seeds and
verdict, every sub-claim's verdict by the rule from its interval, threshold
and direction, the headline by `verdict.combine` of them all. Format 2 (the
rule extended, `"format": 2`): a `kind` on every sub-claim, a
`preconditions` list, every claim over >= 5 seeds with its `seeds_why`, no
check counted as a claim, the headline by `verdict.rule` of the claims and
preconditions; hand-made jsons that each break one of these rules are
rejected. NAME.md must show the same sub-claims, results and the protocol
table with the six aspects. docs/studies.md must be exactly what `python -m
experiments.studies --gallery_only --out_dir docs/studies` builds from those
jsons, and the README's verdict table what `gallery.readme_table` makes of
them.
"""

import copy
import glob
import json
import os

import pytest

from experiments import studies
from experiments.studies import gallery
from experiments.studies import verdict
from tests.experiments.studies import studies_testing

_ROOT = os.path.dirname(
  os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
)
DOCS = os.path.join(_ROOT, 'docs')
STUDIES_DIR = os.path.join(DOCS, 'studies')
COMMITTED = sorted(
  os.path.basename(p)[: -len('.json')]
  for p in glob.glob(os.path.join(STUDIES_DIR, '*.json'))
)


def _load(name: str) -> dict:
  with open(os.path.join(STUDIES_DIR, f'{name}.json')) as f:
    return json.load(f)


FORMAT_2 = [name for name in COMMITTED if 'format' in _load(name)]


def test_every_registered_study_is_committed():
  assert set(COMMITTED) == set(studies.STUDIES)


@pytest.mark.parametrize('name', COMMITTED)
def test_committed_study_follows_the_rule_and_its_md_agrees(name):
  record = studies_testing.check_files(STUDIES_DIR, name)
  assert record['quick'] is False
  if 'format' in record:
    return  # Its rules: test_committed_format_2_record_follows_the_rule.
  assert record['verdict'] in verdict.VERDICTS
  for sub in record['subclaims']:
    assert sub['direction'] in verdict.DIRECTIONS
    assert sub['ci_low'] <= sub['estimate'] <= sub['ci_high']
    assert sub['seeds'] >= 1
    assert sub['verdict'] == verdict.decide(
      sub['ci_low'], sub['ci_high'], sub['threshold'], sub['direction']
    )
  assert record['verdict'] == verdict.combine(
    [s['verdict'] for s in record['subclaims']]
  )


def test_committed_index_is_what_the_gallery_builds_from_the_jsons():
  with open(os.path.join(DOCS, 'studies.md')) as f:
    text = f.read()
  records = gallery.load_records(STUDIES_DIR)
  assert text == gallery.render(records, 'docs/studies')
  rows = studies_testing.parse_markdown_table(text)
  names = [row[0].partition(']')[0].lstrip('[') for row in rows[1:]]
  assert names == list(studies.STUDIES)
  assert [row[2].strip('*') for row in rows[1:]] == [
    r['verdict'] for r in records
  ]


def test_readme_verdict_table_is_the_galleries():
  with open(os.path.join(_ROOT, 'README.md')) as f:
    readme = f.read()
  records = gallery.load_records(STUDIES_DIR)
  assert gallery.readme_table(records) in readme
  assert gallery.total_line(records) in readme


def test_softmax_temperature_is_committed_in_format_2():
  assert 'softmax_temperature' in FORMAT_2


@pytest.mark.parametrize('name', FORMAT_2)
def test_committed_format_2_record_follows_the_rule(name):
  record = _load(name)
  gallery.check_record(record, name)
  assert record['format'] == verdict.FORMAT
  claims = [s for s in record['subclaims'] if s['kind'] == 'claim']
  for sub in claims:
    assert sub['seeds'] >= verdict.MIN_SEEDS and sub['seeds_why']
  assert record['verdict'] == verdict.rule(
    [s['verdict'] for s in claims],
    [p['met'] for p in record['preconditions']],
  )


# Hand-made format-2 records: one that follows every rule, built with the
# constructors, and copies that each break one rule.

SEEDS_WHY = 'pilot: sd 0.8 over 3 seeds, margin 1.7: seeds_for gives 5'


def _good() -> dict:
  subclaims = [
    verdict.check(
      'An identity.', 0.0, threshold=1e-6, direction='below', why='round-off'
    ),
    verdict.paired_difference(
      'A beats B.',
      [1.2, 2.9, 2.1, 3.3, 1.8],
      [0.4, 0.8, 0.3, 1.1, 0.9],
      threshold=0.0,
      direction='above',
      threshold_why='"better": a positive difference',
      seeds_why=SEEDS_WHY,
    ),
  ]
  preconditions = [
    verdict.Precondition.compare(
      'B trained', 0.04, threshold=0.1, direction='below'
    )
  ]
  record = {
    'name': 'made_up',
    'claim': 'A beats B.',
    'source': 'a test',
    'verdict': verdict.headline(subclaims, preconditions),
    'summary': 'A beats B.',
    **verdict.study_fields(subclaims, preconditions),
    'protocol': [],
    'columns': ['a'],
    'rows': [[1]],
    'wall_time_s': 1.0,
    'quick': False,
    'machine': 'a machine',
  }
  return json.loads(json.dumps(record))


def _not_tested() -> dict:
  record = _good()
  record['preconditions'][0].update(measured=0.5, met=False)
  record['verdict'] = verdict.NOT_TESTED
  record['summary'] = 'Not tested: B trained measured 0.5, required < 0.1.'
  return record


def _checks_only() -> dict:
  record = _good()
  del record['subclaims'][1]
  record['preconditions'] = []
  record['verdict'] = verdict.CHECKS_PASS
  return record


def test_hand_made_records_that_follow_the_rule_pass():
  good = _good()
  assert good['verdict'] == 'holds' and good['format'] == 2
  for record in (good, _not_tested(), _checks_only()):
    gallery.check_record(record)


def _set(path, value):
  def change(record):
    *keys, last = path
    target = record
    for key in keys:
      target = target[key]
    if value is _DELETE:
      del target[last]
    else:
      target[last] = value

  return change


_DELETE = object()


def _point_claim(record):
  claim = record['subclaims'][1]
  claim['ci_low'] = claim['ci_high'] = claim['estimate']


CLAIM = ('subclaims', 1)
CHECK = ('subclaims', 0)

# (what it breaks, the record to start from, the change, the error's words)
BROKEN = [
  ('no kind', _good, _set((*CLAIM, 'kind'), _DELETE), 'needs a kind'),
  ('unknown kind', _good, _set((*CHECK, 'kind'), 'fact'), 'needs a kind'),
  ('no preconditions', _good, _set(('preconditions',), _DELETE), 'lacks'),
  ('preconditions not a list', _good, _set(('preconditions',), {}), 'a list'),
  (
    'a precondition without met',
    _good,
    _set(('preconditions', 0, 'met'), _DELETE),
    'exactly',
  ),
  ('met not a bool', _good, _set(('preconditions', 0, 'met'), 1), 'true or'),
  ('a claim over 3 seeds', _good, _set((*CLAIM, 'seeds'), 3), '3 seeds'),
  ('no seeds_why', _good, _set((*CLAIM, 'seeds_why'), _DELETE), 'seeds_why'),
  ('empty seeds_why', _good, _set((*CLAIM, 'seeds_why'), ' '), 'seeds_why'),
  (
    "a claim's verdict not by its interval",
    _good,
    _set((*CLAIM, 'verdict'), 'inconclusive'),
    'interval and threshold say',
  ),
  (
    'a headline not by the rule',
    _good,
    _set(('verdict',), 'inconclusive'),
    'combine to',
  ),
  (
    'an unmet precondition as does not hold',
    _not_tested,
    _set(('verdict',), 'does not hold'),
    "combine to 'not tested'",
  ),
  (
    'not tested without the reason',
    _not_tested,
    _set(('summary',), 'Not tested.'),
    'does not say why',
  ),
  (
    'a check counted as a claim (its verdict)',
    _good,
    _set((*CHECK, 'verdict'), 'holds'),
    'not evidence',
  ),
  (
    'checks alone as evidence (the headline)',
    _checks_only,
    _set(('verdict',), 'holds'),
    "combine to 'checks pass'",
  ),
  (
    'a check with an interval',
    _good,
    _set((*CHECK, 'ci_high'), 1e-7),
    'one exact value',
  ),
  (
    'a failing check written',
    _checks_only,
    _set((*CHECK, 'threshold'), -1.0),
    'a failing check',
  ),
  (
    'an exact result as a claim (a point interval)',
    _good,
    _point_claim,
    'point interval',
  ),
  (
    'an estimate outside its interval',
    _good,
    _set((*CLAIM, 'estimate'), 10.0),
    'outside its interval',
  ),
  ('an unknown format', _good, _set(('format',), 3), 'unknown format'),
  ('no sub-claims', _good, _set(('subclaims',), []), 'no sub-claims'),
]


@pytest.mark.parametrize(
  ('start', 'change', 'words'),
  [case[1:] for case in BROKEN],
  ids=[case[0] for case in BROKEN],
)
def test_a_record_that_breaks_one_rule_is_rejected(start, change, words):
  record = start()
  gallery.check_record(copy.deepcopy(record))  # It passed before the change.
  change(record)
  with pytest.raises(gallery.GalleryError, match=words):
    gallery.check_record(record, 'made_up.json')


def test_format_2_sections_show_checks_preconditions_and_not_tested():
  records = [_good(), _not_tested(), _checks_only()]
  for r, name in zip(records, ('good', 'untested', 'checked'), strict=True):
    r['name'] = name
  text = gallery.render(records, 'docs/studies')
  tables = studies_testing.parse_markdown_tables(text)
  index = tables[0]
  assert [row[2] for row in index[1:]] == [
    'holds',
    '**not tested**',
    'checks pass',
  ]
  assert [row[3] for row in index[1:]] == [
    '1 holds; 1 check passes',
    '1 holds; 1 check passes; 1 precondition unmet',
    '1 check passes',
  ]
  # good: checks, preconditions, claims, each its own table.
  checks, pres, claims = tables[1:4]
  assert checks[0] == list(gallery.CHECK_COLUMNS)
  assert checks[1] == ['An identity.', '0', '< 0.000001']
  assert pres[0] == list(gallery.PRECONDITION_COLUMNS)
  assert pres[1] == ['B trained', '0.04', '< 0.1', 'yes']
  assert claims[0] == list(gallery.CLAIM_COLUMNS)
  assert claims[1][0] == 'A beats B.' and claims[1][4:] == ['5', '**holds**']
  assert tables[5][1][3] == '**no**'  # untested: its precondition.
  assert 'No statistical claim' in text.split('## checked')[1]
  assert 'All 3 studies (1 holds, 1 not tested, 1 checks pass)' in text


def _section(text: str, name: str) -> str:
  return text.split(f'\n## {name}\n')[1].split('\n## ')[0]


def test_each_section_opens_with_claim_verdict_and_thumbnail():
  records = gallery.load_records(STUDIES_DIR)
  text = gallery.render(records, 'docs/studies')
  for r in records:
    section = _section(text, r['name'])
    thumbnail = (
      f'[![{r["name"]}](studies/{r["name"]}.png)](studies/{r["name"]}.md)'
    )
    landmarks = [
      f'**Claim** ({r["source"]}): {r["claim"]}',
      f'**Verdict: {r["verdict"]}.**',
      thumbnail,
      '\n|',  # The first table: checks, preconditions, claims or sub-claims.
      'Protocol, intervals, numbers, command and machine:',
    ]
    positions = [section.find(mark) for mark in landmarks]
    assert -1 not in positions and positions == sorted(positions), r['name']


def test_a_format_2_section_prints_a_huge_ratio_in_words():
  record = _good()
  ratio = verdict.paired_ratio(
    'The slow arm takes far more steps.',
    [2000.0, 2600.0, 3100.0, 2200.0, 2900.0],
    [1.0, 1.0, 1.0, 1.0, 1.0],
    threshold=2.0,
    direction='above',
    threshold_why='"much slower": 2x',
    seeds_why=SEEDS_WHY,
  )
  record['subclaims'][1] = json.loads(json.dumps(ratio.record()))
  gallery.check_record(record)
  claims = studies_testing.parse_markdown_tables(
    gallery.render([record], 'docs/studies')
  )[3]  # After the index, the checks and the preconditions.
  assert claims[0] == list(gallery.CLAIM_COLUMNS)
  assert claims[1][1:4] == [
    'more than 1,000x',
    '[more than 1,000x, more than 1,000x]',
    '> 2x',
  ]
