r"""Runs the studies: the notes' claims, each shown happening.

Usage:
  python -m experiments.studies --list
  python -m experiments.studies NAME [--out_dir DIR] [--quick]
  python -m experiments.studies --all [--out_dir DIR] [--quick]
  python -m experiments.studies --gallery_only [--out_dir DIR]

Each study writes DIR/NAME.png, DIR/NAME.md and DIR/NAME.json and prints its
verdict. `--all` also writes the gallery, DIR.md (for `--out_dir docs/studies`:
docs/studies.md), built from the jsons it wrote: every claim, verdict,
sub-claim and figure, and the total wall time. `--gallery_only` rebuilds
DIR.md from the jsons already in DIR, running nothing.
`--quick` (fewer steps, smaller nets, under 30 s each) is what the tests run.
An unknown study name, a bad flag, a failing check (a bug, not a finding:
the study writes nothing), or (for `--gallery_only`) a missing json or one
that breaks its format's rules prints one `error:` line and exits 1.
"""

import collections
from collections.abc import Sequence
import functools
import time

from absl import app
from absl import flags

from experiments import cli
from experiments import compile_cache
from experiments import studies
from experiments.studies import gallery
from experiments.studies import verdict

_OUT_DIR = flags.DEFINE_string(
  'out_dir', 'runs/studies', 'Folder for NAME.png, NAME.md and NAME.json.'
)
_QUICK = flags.DEFINE_bool(
  'quick', False, 'Fewer steps and smaller nets (under 30 s per study).'
)
_LIST = flags.DEFINE_bool('list', False, 'List the studies and their claims.')
_ALL = flags.DEFINE_bool('all', False, 'Run every study and write DIR.md.')
_GALLERY_ONLY = flags.DEFINE_bool(
  'gallery_only',
  False,
  'Rebuild DIR.md from the jsons in DIR without running any study.',
)
_COMPILE_CACHE_DIR = flags.DEFINE_string(
  'compile_cache_dir',
  compile_cache.default_directory(),
  "JAX's persistent compilation cache (as experiments.main): seeds and "
  'reruns of an arm load its compiled step. Empty turns it off.',
)


def _run(name: str, out_dir: str, quick: bool) -> dict:
  print(f'{name}: running{" (quick)" if quick else ""}...', flush=True)
  try:
    record = studies.run_study(name, out_dir, quick=quick)
  except verdict.CheckFailedError as e:
    # Raised before the study writes anything: its last good files stay.
    cli.fail(f'{name}: {e} (a bug, not a finding; nothing written)')
  print(
    f'{name}: {record["verdict"]} ({record["wall_time_s"]:.1f} s): '
    f'{record["summary"]}\n  -> {record["paths"]["md"]}',
    flush=True,
  )
  return record


def main(argv: Sequence[str]) -> None:
  cli.quiet_library_logs()
  names = list(argv[1:])
  if _LIST.value:
    if names or _ALL.value or _GALLERY_ONLY.value:
      cli.fail('--list takes no study name, no --all and no --gallery_only')
    print(gallery.list_studies())
    return
  if _GALLERY_ONLY.value:
    if names or _ALL.value or _QUICK.value:
      cli.fail('--gallery_only takes no study name, no --all and no --quick')
    try:
      path = gallery.write_gallery(_OUT_DIR.value)
    except gallery.GalleryError as e:
      cli.fail(e)
    print(f'gallery {path}: {len(studies.STUDIES)} studies from their jsons')
    return
  if _ALL.value == bool(names):
    cli.fail(
      'give one study name or --all (python -m experiments.studies --list '
      'names them)'
    )
  if names:
    try:
      studies.get(names[0])
    except ValueError as e:
      cli.fail(e)
  if status := compile_cache.enable(_COMPILE_CACHE_DIR.value):
    print(status, flush=True)
  start = time.perf_counter()
  records = [
    _run(name, _OUT_DIR.value, _QUICK.value)
    for name in (studies.STUDIES if _ALL.value else names)
  ]
  if _ALL.value:
    path = gallery.write_gallery(_OUT_DIR.value)
    counts = collections.Counter(r['verdict'] for r in records)
    words = ', '.join(f'{n} {word}' for word, n in sorted(counts.items()))
    print(
      f'{len(records)} studies: {words}; gallery {path} '
      f'({(time.perf_counter() - start) / 60:.1f} min)'
    )
  if line := compile_cache.summary():
    print(line, flush=True)


if __name__ == '__main__':
  app.run(
    main, flags_parser=functools.partial(cli.parse_flags, max_positional=1)
  )
