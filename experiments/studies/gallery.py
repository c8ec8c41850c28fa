"""The studies' listing and their gallery, the page `--all` writes.

Kept apart from `__main__` (which defines the CLI's absl flags) so that
tests and notebooks can import them.
"""

from collections.abc import Sequence
import os

from experiments import studies
from experiments.studies import report


def list_studies() -> str:
  """One line per study: its name and the claim it tests."""
  width = max(len(name) for name in studies.STUDIES)
  return '\n'.join(
    f'{name:<{width}}  {studies.get(name).CLAIM}' for name in studies.STUDIES
  )


def write_gallery(records: Sequence[dict], out_dir: str) -> str:
  """Writes OUT_DIR.md: each study's claim, verdict, figure and numbers."""
  path = os.path.normpath(out_dir) + '.md'
  folder = os.path.basename(os.path.normpath(out_dir))
  lines = [
    "# Studies: the notes' claims, reproduced",
    '',
    'Regenerate with `python -m experiments.studies --all --out_dir '
    f'{out_dir}` (`python -m experiments.studies --list` names them).',
    '',
    '| study | claim | verdict | wall time |',
    '|---|---|---|---|',
  ]
  for r in records:
    module = studies.get(r['name'])
    word = r['verdict'] if r['verdict'] == 'holds' else f'**{r["verdict"]}**'
    lines.append(
      f'| [{r["name"]}](#{r["name"]}) | {report.format_cell(module.CLAIM)} | '
      f'{word} | '
      f'{r["wall_time_s"]:.0f} s |'
    )
  for r in records:
    module = studies.get(r['name'])
    lines += [
      '',
      f'## {r["name"]}',
      '',
      f'**Claim** ({module.SOURCE}): {module.CLAIM}',
      '',
      f'**Verdict: {r["verdict"]}.** {r["summary"]}',
      '',
      f'![{r["name"]}]({folder}/{r["name"]}.png)',
      '',
      f'Numbers, command and machine: [{folder}/{r["name"]}.md]'
      f'({folder}/{r["name"]}.md).',
    ]
  total = sum(r['wall_time_s'] for r in records)
  lines += [
    '',
    f'All {len(records)} studies: {total / 60:.1f} min on {report.machine()}.',
    '',
  ]
  with open(path, 'w') as f:
    f.write('\n'.join(lines))
  return path
