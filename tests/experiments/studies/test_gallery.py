"""The committed gallery: docs/studies/*.json, their .md and docs/studies.md.

Every committed NAME.json must be in the three-way format (`verdict` one of
holds / does not hold / inconclusive, `subclaims` with claim, estimate,
interval, threshold, direction, seeds and verdict), every sub-claim's
verdict must follow from its interval, threshold and direction by the rule,
the headline from the sub-claims by `verdict.combine`, and NAME.md must show
the same sub-claims, results and the protocol table with the six aspects.
docs/studies.md must be exactly what `python -m experiments.studies
--gallery_only --out_dir docs/studies` builds from those jsons, and the
README's verdict table what `gallery.readme_table` makes of them.
"""

import glob
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


def test_every_registered_study_is_committed():
  assert set(COMMITTED) == set(studies.STUDIES)


@pytest.mark.parametrize('name', COMMITTED)
def test_committed_study_follows_the_rule_and_its_md_agrees(name):
  record = studies_testing.check_files(STUDIES_DIR, name)
  assert record['quick'] is False
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
