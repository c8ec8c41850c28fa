"""Tests of train_lib/orbax_quirks.py against real orbax failures.

Each failure is produced for real in a child process (a full disk, as a file
size limit, during an asynchronous save; a truncated checkpoint file during
a restore), with the pinned orbax-checkpoint and tensorstore: the short
accounts must name the file and the cause, and what orbax leaves behind
must be dropped inside `QuietLeftovers` while unrelated reports (a real
`__del__` error, a real unretrieved asyncio future) still get through. A
new orbax or tensorstore that words its errors or leaves its leftovers
differently fails here. References: the file names and sizes of the
checkpoint on disk, and `os.strerror(errno.EFBIG)`.
"""

import errno
import gc
import json
import logging
import os
import sys

import pytest

from tests.train_lib import child_testing
from train_lib import orbax_quirks

_REPO = os.path.dirname(os.path.dirname(os.path.dirname(__file__)))
# The launch's leftovers seen in the fault campaign, as they are dropped.
_LEFTOVER_KINDS = (
  "RuntimeError('Event loop is closed')",  # A completion on a closed loop.
  'Encountered error while reading array index',  # An abandoned read.
  '_SignalingThread.run() raised an exception',  # orbax's logs of a failed
  'Failed to run 3 Handler Commit operations',  # write (four tracebacks
  'Save Finalize thread (save_finalize) failed',  # the caller never needs).
  'exception was never retrieved',  # asyncio: a failed write's futures.
  'Task was destroyed but it is pending',
)


def _state(num_arrays: int = 20):
  """Enough arrays that some writes are in flight when the first fails."""
  import jax  # noqa: PLC0415

  return {
    f'a{i}': jax.random.normal(jax.random.key(i), (64, 512))
    for i in range(num_arrays)
  }


def _unrelated_reports() -> None:
  """A real unraisable error and a real unretrieved asyncio future."""
  import asyncio  # noqa: PLC0415

  class Resource:
    def __del__(self):
      raise KeyError('a real bug in a __del__')

  Resource()
  loop = asyncio.new_event_loop()
  future = loop.create_future()
  future.set_exception(ValueError('a real bug in a callback'))
  del future
  gc.collect()
  loop.close()


def _full_disk(workdir: str, quiet: bool) -> None:
  """Saves past a file size limit until orbax leaves leftovers; in a child.

  Prints one JSON line: the errors raised, what was dropped, and whether
  the hook and the filters were put back.
  """
  import resource  # noqa: PLC0415
  import signal  # noqa: PLC0415

  from train_lib import checkpoint  # noqa: PLC0415
  from train_lib import workdir as workdir_lib  # noqa: PLC0415

  signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG, not a kill.
  _, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
  previous_hook = sys.unraisablehook
  filters = {n: list(logging.getLogger(n).filters) for n in ('absl', 'asyncio')}
  quiet_block = orbax_quirks.QuietLeftovers()
  errors = []
  if quiet:
    quiet_block.start()
  # In flight writes do not always outlive the first failure: a few tries.
  for step in range(1, 6):
    ckpt = checkpoint.Checkpointer(os.path.join(workdir, str(step)), keep=2)
    resource.setrlimit(resource.RLIMIT_FSIZE, (3000, hard))
    try:
      ckpt.save(1, _state())
      ckpt.close()
    except workdir_lib.WriteError as e:
      errors.append(str(e))
    resource.setrlimit(resource.RLIMIT_FSIZE, (hard, hard))
    gc.collect()
    if any('Event loop' in line for line in quiet_block.dropped) or not quiet:
      break
  _unrelated_reports()
  quiet_block.stop()
  restored = sys.unraisablehook is previous_hook and filters == {
    n: list(logging.getLogger(n).filters) for n in filters
  }
  print(
    json.dumps(
      {'errors': errors, 'dropped': quiet_block.dropped, 'restored': restored}
    ),
    flush=True,
  )
  # Leftovers can surface until exit: quiet to the end, as the launcher.
  orbax_quirks.QuietLeftovers().start()


def _run_child(function: str, *args) -> tuple[dict, str]:
  """The JSON report of `function(*args)` run in a child, and its stderr."""
  result = child_testing.run(__file__, function, *args)
  return json.loads(result.stdout.strip().splitlines()[-1]), result.stderr


@pytest.mark.slow
def test_a_full_disk_is_one_line_and_its_leftovers_are_dropped(tmp_path):
  report, stderr = _run_child('_full_disk', str(tmp_path), True)
  # One short line naming the file and the cause, whatever the try.
  assert report['errors'], 'no save failed'
  for line in report['errors']:
    assert '\n' not in line and len(line) < 600, line
    assert f'cannot write checkpoint {tmp_path}/' in line
    assert '.orbax-checkpoint-tmp/default.orbax-checkpoint-tmp/' in line
    assert f': {os.strerror(errno.EFBIG)}; ' in line
    assert 'tensorstore_spec' not in line and 'OCDBT' not in line
  # orbax's leftovers were there, and dropped; nothing else was.
  dropped = report['dropped']
  assert any('Event loop is closed' in line for line in dropped), dropped
  assert any('_SignalingThread' in line for line in dropped), dropped
  for line in dropped:
    assert any(kind in line for kind in _LEFTOVER_KINDS), line
  for noise in ('Event loop is closed', 'OCDBT', '_SignalingThread'):
    assert noise not in stderr, stderr[-3000:]
  assert 'a real bug in a __del__' in stderr, stderr[-3000:]
  assert 'a real bug in a callback' in stderr, stderr[-3000:]
  assert report['restored']


@pytest.mark.slow
def test_without_the_filter_a_full_disk_floods_the_terminal(tmp_path):
  # The reference for the test above: the same failure, unfiltered.
  report, stderr = _run_child('_full_disk', str(tmp_path), False)
  assert report['errors'] and not report['dropped']
  assert stderr.count('Traceback') >= 4, stderr[-3000:]
  assert '_SignalingThread.run() raised' in stderr


def test_quiet_leftovers_restores_the_hook_and_passes_other_reports(
  monkeypatch,
):
  seen = []
  monkeypatch.setattr(sys, 'unraisablehook', seen.append)
  before = list(logging.getLogger('asyncio').filters)
  with orbax_quirks.QuietLeftovers() as quiet:
    assert sys.unraisablehook != seen.append
    with orbax_quirks.QuietLeftovers():  # Nested: each puts its own back.
      pass
    _unrelated_reports()
  assert sys.unraisablehook == seen.append
  assert logging.getLogger('asyncio').filters == before
  assert [type(u.exc_value) for u in seen] == [KeyError]
  assert quiet.dropped == []
  # A hook installed inside the block stays, and ours passes all to it.
  with orbax_quirks.QuietLeftovers():
    inner = sys.unraisablehook
    monkeypatch.setattr(sys, 'unraisablehook', lambda u: inner(u))
  assert sys.unraisablehook is not seen.append
  _unrelated_reports()
  assert [type(u.exc_value) for u in seen] == [KeyError, KeyError]


def test_chain_walks_each_error_once():
  error = RuntimeError('a bug')
  error.__cause__ = error  # What `raise e from e` makes.
  assert list(orbax_quirks._chain(error)) == [error]
  assert not orbax_quirks.is_write_failure(error)
  assert orbax_quirks.describe_damage(error, '/w') == 'a bug'
  disk = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), '/w/f')
  wrapped = RuntimeError('commit failed')
  wrapped.__context__ = disk
  assert orbax_quirks.is_write_failure(wrapped)
  assert orbax_quirks.write_cause(wrapped) == '/w/f: No space left on device'


def test_written_for_the_pinned_orbax_and_tensorstore():
  # The regexes are tensorstore's wording in these versions: a new pin
  # means rerunning the tests above and updating the module doc.
  with open(os.path.join(_REPO, 'constraints.txt')) as f:
    pins = dict(
      line.strip().split('==') for line in f if '==' in line.split('#')[0]
    )
  for package in ('orbax-checkpoint', 'tensorstore'):
    assert f'{package} {pins[package]}' in orbax_quirks.__doc__, package
