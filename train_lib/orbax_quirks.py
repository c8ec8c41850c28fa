"""Workarounds for how orbax and tensorstore report failed reads and writes.

Written for orbax-checkpoint 0.12.8 and tensorstore 0.1.86 (constraints.txt).
Everything here depends on what those versions happen to do: the wording of
tensorstore's errors (the regexes below), the folder orbax's code lives in,
and what a failed read or write leaves behind. A new version may change any
of it: tests/train_lib/test_orbax_quirks.py produces each failure for real
(a full disk, a corrupt checkpoint) in a child process and fails when the
text or the leftovers change.

Short accounts. orbax wraps the error of tensorstore or of the file system in
messages that embed the whole TensorStore spec; `describe_damage` (a read)
and `write_cause` (a write) give the part that says what is wrong.

Leftovers. orbax reads and writes the arrays in coroutines on an event loop
of its own, which it closes as soon as one of them fails; the operations
still in flight then end in leftovers that Python reports through
`sys.unraisablehook` or asyncio's logger, long after the error was handled
and as late as at exit: tensorstore's completion callbacks find the loop
closed (`RuntimeError: Event loop is closed` in `call_soon_threadsafe`),
abandoned coroutines, closed when collected, raise their error again
(`Exception ignored in: <coroutine object _read_array_index_and_device_put>`),
and the tasks and futures of a failed write, whose exception nobody read,
are reported by asyncio when collected ('Task exception was never
retrieved', 'Future exception was never retrieved', with tensorstore's error
about a file of the checkpoint). orbax also logs a failed write four times
with its traceback, although the caller gets the error itself. Inside
`QuietLeftovers()` those reports are dropped (logged at debug level,
`--verbosity=1`); every other unraisable exception and log record still
reaches the terminal.
"""

from collections.abc import Iterator
import gc
import inspect
import logging
import os
import re
import sys
import traceback
from typing import Any

from absl import logging as absl_logging
import orbax.checkpoint as ocp

_ORBAX_DIR = os.path.dirname(os.path.abspath(ocp.__file__))
# tensorstore's error text (0.1.86), whitespace collapsed.
_SPEC_TAIL = re.compile(r' ?\[(tensorstore_spec|source locations)=.*')
_BOUND_METHOD = re.compile(r'<bound method .*')
_FAILED_WRITE = re.compile(
  r'Failed writing: "([^"]+)".*\[os_error_code=\W?(\d+)'
)
_TRUNCATED = re.compile(
  r'local file "([^"]+)": Requested byte range \[\d+, (\d+)\) is not '
  r'valid for value of size (\d+)'
)
_ARRAY_READ = re.compile(r'Error reading "([^"/]+)[^"]*" in OCDBT')
_WRITE_ERROR = 'Error writing'
_OCDBT_FILE = 'in OCDBT database at local file'


def _chain(
  error: BaseException | None, *, context: bool = True
) -> Iterator[BaseException]:
  """`error`, then the error it was raised from (or during), and so on.

  Each error once: a chain may loop (`raise e from e` makes one).
  """
  seen = set()
  while error is not None and id(error) not in seen:
    seen.add(id(error))
    yield error
    error = error.__cause__ or (error.__context__ if context else None)


def _shorten(text: str, root: str | None = None, limit: int = 200) -> str:
  """One line of `text`, without the TensorStore spec, paths under `root`."""
  text = _SPEC_TAIL.sub('', ' '.join(text.split()))
  text = _BOUND_METHOD.sub('...', text)
  if root:
    text = text.replace(root + os.sep, '')
  return text if len(text) <= limit else text[: limit - 3] + '...'


def is_write_failure(error: BaseException | None) -> bool:
  """Whether an error (or one it was raised from) is a failed file write."""
  return any(
    isinstance(e, OSError) or _WRITE_ERROR in str(e) for e in _chain(error)
  )


def write_cause(error: BaseException) -> str:
  """'FILE: No space left on device' from tensorstore's or the OS's error."""
  for e in _chain(error):
    if isinstance(e, OSError):
      return f'{e.filename or ""}: {e.strerror or e}'.lstrip(': ')
    failed = _FAILED_WRITE.search(' '.join(str(e).split()))
    if failed:
      return f'{failed.group(1)}: {os.strerror(int(failed.group(2)))}'
  return _shorten(str(error))


def describe_damage(error: BaseException, root: str) -> str:
  """A short account of why the checkpoint in folder `root` cannot be read.

  The innermost error (the last `__cause__`) says what is wrong.
  """
  *_, innermost = _chain(error, context=False)
  text = ' '.join(str(innermost).split())
  truncated = _TRUNCATED.search(text)
  if not truncated:
    return _shorten(text, root)
  path, wanted, size = truncated.groups()
  array = _ARRAY_READ.search(text)
  where = os.path.relpath(path, root)
  if path.endswith('/'):  # An OCDBT database: the file is not named.
    where = f'a data file in {where}/'
  return (
    f'{where} is truncated ({size} bytes where at least {wanted} are needed'
    + (f', reading {array.group(1)})' if array else ')')
  )


def _is_leftover(unraisable: Any) -> bool:
  """Whether an unraisable exception is the remains of a failed operation."""
  obj, error = unraisable.object, unraisable.exc_value
  if inspect.iscoroutine(obj):  # Closed when collected, while suspended.
    return obj.cr_code.co_filename.startswith(_ORBAX_DIR)
  if isinstance(error, RuntimeError) and str(error) == 'Event loop is closed':
    frames = traceback.extract_tb(error.__traceback__)
    return bool(frames) and frames[0].name == 'call_soon_threadsafe'
  return False


def _is_asyncio_report(record: logging.LogRecord) -> bool:
  """Whether an asyncio log record reports an orbax task or future.

  'Task was destroyed but it is pending!' and 'Task exception was never
  retrieved' name the coroutine, so orbax's folder; 'Future exception was
  never retrieved' carries tensorstore's error about a file of an OCDBT
  checkpoint, raised from orbax's code or set from C++ (no Python frames).
  """
  if _ORBAX_DIR in record.getMessage():
    return True
  for error in _chain(record.exc_info[1] if record.exc_info else None):
    frames = traceback.extract_tb(error.__traceback__)
    if any(frame.filename.startswith(_ORBAX_DIR) for frame in frames):
      return True
    if _OCDBT_FILE in str(error):
      return True
  return False


def _is_write_failure_log(record: logging.LogRecord) -> bool:
  """Whether a log record is one of orbax's error logs of a failed write."""
  if record.levelno < logging.ERROR or not record.pathname.startswith(
    _ORBAX_DIR
  ):
    return False
  error = record.exc_info[1] if record.exc_info else None
  return _WRITE_ERROR in record.getMessage() or is_write_failure(error)


class _Filter(logging.Filter):
  """A log filter that drops the records `drop` picks, noting them."""

  def __init__(self, drop, dropped: list[str]):
    super().__init__()
    self._drop, self._dropped = drop, dropped

  def filter(self, record: logging.LogRecord) -> bool:
    if not self._drop(record):
      return True
    self._dropped.append(_shorten(record.getMessage()))
    return False


class QuietLeftovers:
  """Keeps orbax's leftovers and repeated write errors off the terminal.

  `with QuietLeftovers() as quiet:` installs a `sys.unraisablehook` and
  filters on the 'asyncio' and 'absl' loggers; on the way out it collects
  garbage (abandoned coroutines are reported then, still filtered) and puts
  the previous hook and filters back. A hook installed by someone else in
  the meantime stays; ours then passes everything on. `quiet.dropped` lists
  what was dropped, one short line each. Leftovers can surface as late as
  at exit: a process of its own (the launcher) calls `start()` alone.
  """

  def __init__(self):
    self.dropped: list[str] = []
    self._active = False
    self._previous = sys.__unraisablehook__
    self._filters = {
      'asyncio': _Filter(_is_asyncio_report, self.dropped),
      'absl': _Filter(_is_write_failure_log, self.dropped),
    }

  def _hook(self, unraisable: Any) -> None:
    if self._active and _is_leftover(unraisable):
      self.dropped.append(_shorten(repr(unraisable.exc_value)))
      absl_logging.debug('dropped an orbax leftover: %s', self.dropped[-1])
    else:  # Stopped but still chained (a later hook calls this one).
      self._previous(unraisable)

  def start(self) -> 'QuietLeftovers':
    if not self._active:
      self._active = True
      self._previous = sys.unraisablehook
      sys.unraisablehook = self._hook
      for name, log_filter in self._filters.items():
        logging.getLogger(name).addFilter(log_filter)
    return self

  def stop(self) -> None:
    if self._active:
      gc.collect()  # Abandoned coroutines are reported now, still dropped.
      self._active = False
      if sys.unraisablehook == self._hook:
        sys.unraisablehook = self._previous
      for name, log_filter in self._filters.items():
        logging.getLogger(name).removeFilter(log_filter)

  __enter__ = start

  def __exit__(self, *exc_info: Any) -> None:
    self.stop()
