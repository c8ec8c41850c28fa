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


def run_cli(*args: str, timeout: int = 240) -> subprocess.CompletedProcess:
  """`python -m experiments.studies ARGS` in a child process."""
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


def parse_markdown_table(text: str) -> list[list[str]]:
  """The first markdown table in `text`: header then rows, as cells."""
  lines = [line for line in text.splitlines() if line.startswith('|')]
  if len(lines) < 3 or not set(lines[1]) <= set('|-: '):
    raise ValueError('no markdown table (header, rule, rows) found')
  # Cells split at unescaped pipes; a backslash-escaped pipe is part of a cell.
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


def run_quick(name: str, out_dir: str) -> dict:
  """Runs study `name` with --quick; checks its files; returns NAME.json.

  Checks: exit status 0, the PNG is a valid image of `report.FIGURE_PX`, the
  .md holds the claim, a verdict and a table whose width matches the json's
  columns, the json's rows match the table.
  """
  result = run_cli(name, '--quick', '--out_dir', str(out_dir))
  assert result.returncode == 0, result.stdout + result.stderr
  png = os.path.join(out_dir, f'{name}.png')
  assert png_size(png) == report.FIGURE_PX
  with open(os.path.join(out_dir, f'{name}.json')) as f:
    record = json.load(f)
  with open(os.path.join(out_dir, f'{name}.md')) as f:
    md = f.read()
  assert '**Claim**' in md and '**Verdict: the claim' in md
  table = parse_markdown_table(md)
  assert table[0] == record['columns']
  assert len(table) - 1 == len(record['rows']) > 0
  assert record['quick'] is True and record['name'] == name
  return record
