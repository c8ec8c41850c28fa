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


def test_gallery_links_each_figure_and_states_each_verdict(tmp_path):
  out_dir = tmp_path / 'studies'
  record = studies.run_study('softmax_temperature', str(out_dir), quick=True)
  failed = dict(record, name='softmax_temperature', holds=False)
  path = gallery.write_gallery([record, failed], str(out_dir))
  assert path == str(tmp_path / 'studies.md')
  text = (tmp_path / 'studies.md').read_text()
  assert '![softmax_temperature](studies/softmax_temperature.png)' in text
  assert os.path.exists(out_dir / 'softmax_temperature.png')
  rows = studies_testing.parse_markdown_table(text)
  assert rows[0] == ['study', 'claim', 'verdict', 'wall time']
  assert [row[2] for row in rows[1:]] == ['holds', '**does not hold**']


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
  ],
)
def test_bad_command_lines_end_in_one_error_line(tmp_path, args, message):
  result = studies_testing.run_cli(*args, '--out_dir', str(tmp_path))
  assert result.returncode == 1
  lines = result.stderr.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith('error: '), result.stderr
  assert message in lines[0]
  assert not os.listdir(tmp_path)  # Nothing written.


def test_committed_gallery_shows_every_study_with_a_valid_figure():
  """docs/studies.md (python -m experiments.studies --all) is complete."""
  root = os.path.dirname(
    os.path.dirname(os.path.dirname(os.path.dirname(__file__)))
  )
  docs = os.path.join(root, 'docs')
  with open(os.path.join(docs, 'studies.md')) as f:
    rows = studies_testing.parse_markdown_table(f.read())
  names = [row[0].partition(']')[0].lstrip('[') for row in rows[1:]]
  assert names == list(studies.STUDIES)
  for name in names:
    png = os.path.join(docs, 'studies', f'{name}.png')
    assert studies_testing.png_size(png) == report.FIGURE_PX
    with open(os.path.join(docs, 'studies', f'{name}.md')) as f:
      table = studies_testing.parse_markdown_table(f.read())
    with open(os.path.join(docs, 'studies', f'{name}.json')) as f:
      record = json.load(f)
    assert table[0] == record['columns'] and record['quick'] is False


def test_markdown_table_escapes_pipes_both_ways():
  text = report.markdown_table(['|theta|', 'n'], [['2|x|', 3]])
  assert '\\|theta\\|' in text
  assert studies_testing.parse_markdown_table(text) == [
    ['|theta|', 'n'],
    ['2|x|', '3'],
  ]
