"""The studies CLI: listing, one study, the gallery, and its error lines."""

import json
import os

import pytest

from experiments import studies
from experiments.studies import gallery
from experiments.studies import report
from tests.experiments.studies import studies_testing


def test_every_registered_study_has_a_claim_a_source_and_a_run():
  for name in studies.STUDIES:
    module = studies.get(name)
    assert module.CLAIM.endswith('.') and len(module.CLAIM) > 20, name
    assert module.SOURCE, name
    assert callable(module.run), name


def test_unknown_study_is_a_value_error_naming_the_studies():
  with pytest.raises(ValueError, match='unknown study .*softmax_temperature'):
    studies.get('softmax')


def _second_record(out_dir):
  """A copy of softmax_temperature.json posing as `gradients`, not holding.

  Its first check, and a claim (format 2: 5 seeds, its seeds_why) that
  does not hold.
  """
  with open(out_dir / 'softmax_temperature.json') as f:
    record = json.load(f)
  sub = dict(record['subclaims'][0])
  sub.update(
    claim='A sub-claim | that fails.',
    estimate=-1.0,
    ci_low=-2.0,
    ci_high=-0.5,
    threshold=0.0,
    direction='above',
    seeds=5,
    kind='claim',
    seeds_why='a pilot',
    verdict='does not hold',
  )
  record.update(
    name='gradients',
    verdict='does not hold',
    subclaims=[record['subclaims'][0], sub],
    wall_time_s=120.0,
    machine='Another CPU, 4 cores',
  )
  with open(out_dir / 'gradients.json', 'w') as f:
    json.dump(record, f)
  return record


def test_gallery_is_built_from_the_jsons(tmp_path):
  out_dir = tmp_path / 'studies'
  record = studies.run_study('softmax_temperature', str(out_dir), quick=True)
  assert record['verdict'] == 'checks pass' and record['summary']
  _second_record(out_dir)
  names = ['softmax_temperature', 'gradients']
  path = gallery.write_gallery(str(out_dir), names)
  assert path == str(tmp_path / 'studies.md')
  text = (tmp_path / 'studies.md').read_text()
  assert '![softmax_temperature](studies/softmax_temperature.png)' in text
  assert os.path.exists(out_dir / 'softmax_temperature.png')
  tables = studies_testing.parse_markdown_tables(text)
  index = tables[0]
  assert index[0] == list(gallery.INDEX_COLUMNS)
  assert [row[2] for row in index[1:]] == ['checks pass', '**does not hold**']
  assert index[2][3] == '1 does not hold; 1 check passes'
  # Each study's checks and claims apart, with their verdicts.
  assert tables[1][0] == list(gallery.CHECK_COLUMNS)
  assert tables[3][0] == list(gallery.CLAIM_COLUMNS)
  assert tables[3][1][0] == 'A sub-claim | that fails.'
  assert tables[3][1][5] == '**does not hold**'
  # The total wall time, split by machine when the jsons name two.
  assert 'All 2 studies (1 does not hold, 1 checks pass):' in text
  assert 'min on Another CPU, 4 cores (gradients)' in text
  assert gallery.render(gallery.load_records(str(out_dir), names), str(out_dir))


def test_gallery_refuses_old_missing_or_inconsistent_jsons(tmp_path):
  out_dir = tmp_path / 'studies'
  out_dir.mkdir()
  with pytest.raises(gallery.GalleryError, match='does not exist'):
    gallery.write_gallery(str(out_dir), ['gradients'])
  (out_dir / 'gradients.json').write_text(
    json.dumps({'name': 'gradients', 'holds': True})
  )
  with pytest.raises(gallery.GalleryError, match='old format'):
    gallery.write_gallery(str(out_dir), ['gradients'])
  studies.run_study('softmax_temperature', str(out_dir), quick=True)
  record = _second_record(out_dir)
  record['subclaims'][1]['verdict'] = 'holds'  # Its interval says otherwise.
  (out_dir / 'gradients.json').write_text(json.dumps(record))
  with pytest.raises(gallery.GalleryError, match='interval and threshold say'):
    gallery.write_gallery(str(out_dir), ['gradients'])
  record['subclaims'][1]['verdict'] = 'does not hold'
  record['verdict'] = 'inconclusive'  # Its sub-claims combine otherwise.
  (out_dir / 'gradients.json').write_text(json.dumps(record))
  with pytest.raises(gallery.GalleryError, match='combine to'):
    gallery.write_gallery(str(out_dir), ['gradients'])
  assert not (tmp_path / 'studies.md').exists()  # Nothing written.


def test_markdown_table_parser_rejects_ragged_rows():
  with pytest.raises(ValueError, match='different widths'):
    studies_testing.parse_markdown_table('| a | b |\n|---|---|\n| 1 |\n')


@pytest.mark.slow
def test_list_names_every_study_with_its_claim():
  result = studies_testing.run_cli('--list')
  assert result.returncode == 0, result.stderr
  lines = result.stdout.strip().splitlines()
  assert [line.split()[0] for line in lines] == list(studies.STUDIES)
  for line, name in zip(lines, studies.STUDIES, strict=True):
    assert studies.get(name).CLAIM in line


@pytest.mark.slow
@pytest.mark.parametrize(
  ('args', 'message'),
  [
    (('softmax',), "unknown study 'softmax'"),
    ((), 'give one study name or --all'),
    (('--all', 'depth'), 'give one study name or --all'),
    (('--list', 'depth'), '--list takes no study name'),
    (('depth', 'gradients'), 'unexpected arguments: gradients'),
    (('--quick=maybe', 'depth'), '--quick'),
    (('--gallery_only', 'depth'), '--gallery_only takes no study name'),
    (('--gallery_only', '--quick'), '--gallery_only takes no study name'),
    (('--gallery_only',), '.json does not exist'),
  ],
)
def test_bad_command_lines_end_in_one_error_line(tmp_path, args, message):
  result = studies_testing.run_cli(*args, '--out_dir', str(tmp_path))
  assert result.returncode == 1
  lines = result.stderr.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith('error: '), result.stderr
  assert message in lines[0]
  assert not os.listdir(tmp_path)  # Nothing written.


def test_markdown_table_escapes_pipes_both_ways():
  text = report.markdown_table(['|theta|', 'n'], [['2|x|', 3]])
  assert '\\|theta\\|' in text
  assert studies_testing.parse_markdown_table(text) == [
    ['|theta|', 'n'],
    ['2|x|', '3'],
  ]
