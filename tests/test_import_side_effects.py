"""Importing a library module leaves the process as it found it.

Every module of ops/, nets/ and train_lib/ (found by walking the packages)
and the modules of experiments/ that notebooks import as a library (the
studies and their report, plot.py) are imported one at a time in a child
process, which records what each import changed of the state that belongs
to the program, not to a library: the hooks of `sys` and `threading`, the
root and absl loggers' handlers, filters and level, matplotlib's backend
(set to 'svg' first, with MPLBACKEND unset, as a notebook sets its own),
absl's parsed-flags state, and `sys.modules` entries set to None, which
make `import NAME` fail: both those left behind and those that existed
only while the module imported (an audit hook sees every import that
found one), since another thread importing then would fail.

Reference: the state itself, read before and after each import. The
third-party modules in `_THIRD_PARTY` are imported before the first
reading: their own import-time changes are theirs, not a module's here.
"""

import json
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow  # one child importing jax, flax, orbax: ~5 s
_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Imported before the first reading, each with the change it makes.
_THIRD_PARTY = (
  # Logs through absl.logging at import, and absl's log() outside an absl
  # app calls logging.basicConfig(): a StreamHandler on the root logger.
  'orbax.checkpoint',
)

_CHILD = r"""
import importlib
import importlib.util
import json
import logging
import pkgutil
import sys
import threading
import traceback

from absl import flags
from absl import logging as absl_logging
import matplotlib

matplotlib.use('svg')  # Not the default: a module that sets one shows.
for name in sys.argv[2:]:
  importlib.import_module(name)

hidden = []


def audit(event, args):
  # An import that finds None in sys.modules is refused without a search.
  if event == 'import' and sys.modules.get(args[0], 0) is None:
    hidden.append(args[0])


sys.addaudithook(audit)


def state():
  root, absl_logger = logging.getLogger(), absl_logging.get_absl_logger()
  return {
    'sys.unraisablehook': repr(sys.unraisablehook),
    'sys.excepthook': repr(sys.excepthook),
    'threading.excepthook': repr(threading.excepthook),
    'root logger handlers': repr(root.handlers),
    'root logger filters': repr(root.filters),
    'root logger level': root.level,
    'absl logger handlers': repr(absl_logger.handlers),
    'absl logger filters': repr(absl_logger.filters),
    'matplotlib backend': matplotlib.get_backend(),
    'absl flags parsed': flags.FLAGS.is_parsed(),
    'sys.modules None entries': sorted(
      k for k, v in list(sys.modules.items()) if v is None
    ),
  }


def library_modules():
  names = []
  for package in sys.argv[1].split(','):
    path = importlib.util.find_spec(package).submodule_search_locations
    names.append(package)
    for info in pkgutil.walk_packages(path or [], package + '.'):
      spec = info.module_finder.find_spec(info.name)
      # Compiled extensions are loaded by their own loader (ops/native).
      if spec.origin.endswith('.py') and not info.name.endswith('__main__'):
        names.append(info.name)
  return names


changes = {}
names = library_modules()
for name in names:
  before, hidden[:] = state(), []
  try:
    importlib.import_module(name)
  except Exception:
    changes[name] = ['import failed: ' + traceback.format_exc()]
    continue
  after = state()
  found = [
    f'{key}: {before[key]!r} -> {after[key]!r}'
    for key in before
    if before[key] != after[key]
  ]
  found += [
    f'sys.modules[{hid!r}] was None during the import'
    for hid in sorted(set(hidden) - set(before['sys.modules None entries']))
  ]
  if found:
    changes[name] = found
print(json.dumps({'modules': names, 'changes': changes}))
"""


def _import_each(packages, third_party=_THIRD_PARTY):
  """{'modules': [names imported], 'changes': {name: [what changed]}}."""
  env = {k: v for k, v in os.environ.items() if k != 'MPLBACKEND'}
  result = subprocess.run(
    [sys.executable, '-c', _CHILD, ','.join(packages), *third_party],
    cwd=_ROOT,
    env=env,
    capture_output=True,
    text=True,
    timeout=300,
  )
  assert result.returncode == 0, result.stderr
  return json.loads(result.stdout.splitlines()[-1])


def test_importing_a_library_module_changes_no_process_state():
  got = _import_each(
    ['ops', 'nets', 'train_lib', 'experiments.studies', 'experiments.plot']
  )
  # Every module of the walk was imported (not an empty list that passes).
  for name in ('ops.native.conv', 'nets.resnet', 'train_lib.metrics'):
    assert name in got['modules']
  assert 'experiments.studies.report' in got['modules']
  assert got['changes'] == {}, '\n'.join(
    f'{name}: {change}'
    for name, found in got['changes'].items()
    for change in found
  )
