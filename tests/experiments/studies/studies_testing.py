"""Runs a study with --quick in a child process and checks its files.

The child gets one CPU device (the suite's 8 fake devices are for the
sharding tests; XLA:CPU's all-reduce rendezvous of 8 fake devices on 2 cores
can deadlock) and XLA's most optimisations off, like the suite.
"""

import json
import os
import re
import struct
import subprocess
import sys

from experiments.studies import gallery
from experiments.studies import page
from experiments.studies import report

_ROOT = os.path.dirname(
  os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
)


def child_env() -> dict[str, str]:
  env = dict(os.environ)
  env['XLA_FLAGS'] = '--xla_force_host_platform_device_count=1'
  env['JAX_PLATFORMS'] = 'cpu'
  env['JAX_DISABLE_MOST_OPTIMIZATIONS'] = '1'
  return env


def run_cli(*args: str, timeout: int = 900) -> subprocess.CompletedProcess:
  """`python -m experiments.studies ARGS` in a child process.

  The timeout only stops a hung child: a --quick study takes under 30 s on
  2 idle cores, and several times that on a shared machine.
  """
  return subprocess.run(
    [sys.executable, '-m', 'experiments.studies', *args],
    cwd=_ROOT,
    env=child_env(),
    capture_output=True,
    text=True,
    timeout=timeout,
  )


def png_size(path: str) -> tuple[int, int]:
  """(width, height) from a PNG's IHDR chunk; ValueError if not a PNG."""
  with open(path, 'rb') as f:
    head = f.read(24)
  if head[:8] != b'\x89PNG\r\n\x1a\n' or head[12:16] != b'IHDR':
    raise ValueError(f'{path} is not a PNG file')
  return struct.unpack('>II', head[16:24])


def parse_markdown_tables(text: str) -> list[list[list[str]]]:
  """Every markdown table in `text`, in order: each header then rows.

  A table is a run of consecutive lines starting with '|' whose second line
  is the rule ('|---|...'); cells split at unescaped pipes, and a
  backslash-escaped pipe is part of its cell.
  """
  tables, block = [], []
  for line in [*text.splitlines(), '']:
    if line.startswith('|'):
      block.append(line)
      continue
    if block:
      tables.append(_parse_block(block))
      block = []
  if not tables:
    raise ValueError('no markdown table (header, rule, rows) found')
  return tables


def _parse_block(lines: list[str]) -> list[list[str]]:
  if len(lines) < 3 or not set(lines[1]) <= set('|-: '):
    raise ValueError('no markdown table (header, rule, rows) found')
  table = [
    [
      cell.strip().replace('\\|', '|')
      for cell in re.split(r'(?<!\\)\|', line.strip()[1:-1])
    ]
    for line in lines[:1] + lines[2:]
  ]
  widths = {len(row) for row in table}
  if len(widths) != 1:
    raise ValueError(f'rows of different widths {sorted(widths)}')
  return table


def parse_markdown_table(text: str) -> list[list[str]]:
  """The first markdown table in `text`: header then rows, as cells."""
  return parse_markdown_tables(text)[0]


def check_files(out_dir: str, name: str) -> dict:
  """Checks NAME.{png,md,json} in `out_dir` against each other; the json.

  The json is in the three-way format and its verdicts follow from its
  intervals by the rule (`gallery.check_record`); the PNG is a valid image
  of `report.FIGURE_PX`; the .md states the claim and the verdict. An old
  record's page: its first table is the sub-claims table of the json's
  `subclaims` (text, estimate, interval, verdict), its second the results
  table of `columns` / `rows`, its third the protocol table, starting with
  the six aspects. A format-2 page (`check_page_2`): the lead, the checks,
  preconditions and claims tables, the figure, the results and protocol
  tables, in that order, each cell as `page` prints the json's values.
  """
  png = os.path.join(out_dir, f'{name}.png')
  assert png_size(png) == report.FIGURE_PX
  with open(os.path.join(out_dir, f'{name}.json')) as f:
    record = json.load(f)
  gallery.check_record(record, f'{name}.json')
  assert record['name'] == name
  with open(os.path.join(out_dir, f'{name}.md')) as f:
    md = f.read()
  assert f'**Claim** ({record["source"]}): {record["claim"]}' in md
  assert f'**Verdict: {record["verdict"]}.**' in md
  if 'format' in record:
    results, protocol = check_page_2(md, record)
    cell = page.plain_cell
  else:
    subclaims, results, protocol = parse_markdown_tables(md)[:3]
    _check_subclaims_table(subclaims, record)
    cell = report.format_cell
  assert results[0] == record['columns']
  assert len(results) - 1 == len(record['rows']) > 0
  for row, want in zip(results[1:], record['rows'], strict=True):
    assert row == [cell(v).replace('\\|', '|') for v in want], (row, want)
  assert protocol[0] == list(report.PROTOCOL_COLUMNS)
  aspects = [row[0] for row in protocol[1 : 1 + len(report.PROTOCOL_ASPECTS)]]
  assert aspects == list(report.PROTOCOL_ASPECTS)
  assert protocol[1:] == record['protocol']
  return record


def _check_subclaims_table(table: list[list[str]], record: dict) -> None:
  assert table[0] == list(report.SUBCLAIM_COLUMNS)
  assert len(table) - 1 == len(record['subclaims'])
  for row, sub in zip(table[1:], record['subclaims'], strict=True):
    assert row[0] == sub['claim']
    assert row[1] == report.format_cell(float(sub['estimate']))
    assert row[2] == (
      f'[{report.format_cell(float(sub["ci_low"]))}, '
      f'{report.format_cell(float(sub["ci_high"]))}]'
    )
    assert row[5] == f'**{sub["verdict"]}**'


# A format-2 page's landmarks, in the order the page must show them: the
# empty-section lines stand in for a table a study does not have.
def page_2_landmarks(name: str) -> list[tuple[str, ...]]:
  """[(alternatives for one landmark), ...] in page order."""
  return [
    (f'# {name}\n',),
    ('**Claim** (',),
    ('**Verdict: ',),
    (page.CHECKS_HEADING, '**Checks:** none.'),
    (page.PRECONDITIONS_HEADING, '**Preconditions:** none declared.'),
    (page.CLAIMS_HEADING, '**Claims:** none.'),
    (f'![{name}]({name}.png)',),
    ('**Measured**',),
    (page.PROTOCOL_HEADING,),
    ('Command: `',),
    ('Size: ',),
  ]


def landmark_positions(md: str, name: str) -> list[int]:
  """Where each of `page_2_landmarks` first appears in `md` (-1: absent)."""
  positions = []
  for alternatives in page_2_landmarks(name):
    found = [md.find(a) for a in alternatives if a in md]
    positions.append(min(found) if found else -1)
  return positions


def check_page_2(md: str, record: dict) -> tuple[list, list]:
  """A format-2 page against its json; returns its results, protocol tables.

  The page opens with the title and the lead (the json's, when it has
  one), then shows its landmarks in order, and its checks, preconditions
  and claims tables are the json's, cell for cell.
  """
  name = record['name']
  positions = landmark_positions(md, name)
  assert -1 not in positions, positions
  assert positions == sorted(positions), positions
  lead = md.split('\n\n')[1]
  assert not lead.startswith(('**', '|', '!')) and lead.count('.') >= 2
  if 'lead' in record:
    assert lead == record['lead']
  tables = {tuple(t[0]): t[1:] for t in parse_markdown_tables(md)}
  subs = record['subclaims']
  want = {
    page.CHECK_COLUMNS: [
      page.check_row(s) for s in subs if s['kind'] == 'check'
    ],
    page.PRECONDITION_COLUMNS: [
      page.precondition_row(p) for p in record['preconditions']
    ],
    page.CLAIM_COLUMNS: [
      page.claim_row(s) for s in subs if s['kind'] == 'claim'
    ],
  }
  for columns, rows in want.items():
    assert tables.get(columns, []) == rows, columns
  results, protocol = parse_markdown_tables(md)[-2:]
  return results, protocol


def run_quick(name: str, out_dir: str) -> dict:
  """Runs study `name` with --quick; checks its files; returns NAME.json.

  Checks: exit status 0, then `check_files` (figure, .md tables against the
  json, verdicts by the rule), and that the json says --quick.
  """
  result = run_cli(name, '--quick', '--out_dir', str(out_dir))
  assert result.returncode == 0, result.stdout + result.stderr
  record = check_files(str(out_dir), name)
  assert record['quick'] is True
  return record
