"""Checkpoints of the training state with orbax (the only orbax user here).

A checkpoint is the whole `TrainState` (step, params, batch statistics,
optimizer state, EMA), so restoring it resumes the run exactly (the resume
contract is in train_lib/trainer.py). Checkpoints live in
`<workdir>/checkpoints/<step>/` and saving is asynchronous (orbax copies the
arrays to host memory before `save` returns, then writes them in a
background thread).

The newest `keep` checkpoints are kept, and besides them the best-evaluated
one (`prune`), so that a run that diverges slowly cannot rotate out its last
healthy state. `restore_latest` resumes from the newest intact checkpoint:
one that cannot be read (a truncated file, a missing folder or metadata) is
reported in one short line (the damage, not orbax's message, which embeds the
whole TensorStore spec) and moved aside to `<workdir>/corrupt_checkpoints/`
(never deleted), and the next older one is tried.

A failed read leaves work behind. orbax reads the arrays in coroutines on an
event loop of its own, which it closes as soon as one read fails; the reads
still in flight then end in leftovers that Python reports through
`sys.unraisablehook` or asyncio's logger, long after the error was handled:
tensorstore's completion callbacks find the loop closed (`RuntimeError:
Event loop is closed` in `call_soon_threadsafe`), and the abandoned
coroutines, closed when collected, raise their error again (`Exception ignored
in: <coroutine object _read_array_index_and_device_put>`). A failed write
(a full disk) leaves the same behind, and its futures, whose exception
nobody read, are reported by asyncio when collected ('Future exception was
never retrieved', with tensorstore's error about a file of the checkpoint).
While the checkpointer is open, and for good once a read or a write failed,
`_OrbaxLeftovers` drops exactly those reports (logged at debug level,
`--verbosity=1`); every other unraisable exception and log record still
reaches the terminal.

A checkpoint is written into a temporary folder that orbax renames to
`<step>` once every array is on disk, so a failed or interrupted save never
looks complete. Older checkpoints are pruned only after the newer one is
complete, so a save that fails (a full disk, a quota, an I/O error) loses
nothing: it raises `WriteError` naming the folder, the file and the cause,
and orbax's own error logs of that failure (four tracebacks) are dropped.

Restoring always uses an abstract target (shapes, dtypes and shardings of the
state the trainer built), which is what orbax needs to give back the optax
state as the right named tuples instead of plain lists. Before reading any
array, the checkpoint's metadata is compared leaf by leaf with that target; a
checkpoint of a different model raises one `ValueError` naming the workdir
and the first differences, and nothing on disk is touched.
"""

from collections.abc import Iterator
import gc
import inspect
import logging
import os
import re
import shutil
import sys
import time
import traceback
from typing import Any

from absl import logging as absl_logging
import jax
import orbax.checkpoint as ocp

from train_lib import workdir as workdir_lib

_MAX_REPORTED = 3
_ORBAX_DIR = os.path.dirname(os.path.abspath(ocp.__file__))


class CorruptCheckpointError(Exception):
  """A checkpoint whose files cannot be read."""


def _leaf_name(path: Any) -> str:
  return jax.tree_util.keystr(path, simple=True, separator='.')


def _leaf_specs(tree: Any) -> dict[str, tuple[tuple[int, ...], str]]:
  """Maps 'params.Dense_0.kernel'-style names to (shape, dtype)."""
  leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
  specs = {}
  for path, leaf in leaves:
    shape = tuple(getattr(leaf, 'shape', ()))
    dtype = str(getattr(leaf, 'dtype', type(leaf).__name__))
    specs[_leaf_name(path)] = (shape, dtype)
  return specs


def _priority(name: str) -> tuple[int, str]:
  # Parameters first: they name the layer; optimizer slots repeat them.
  order = ('params', 'batch_stats', 'step')
  head = name.split('.', 1)[0]
  return (order.index(head) if head in order else len(order), name)


def describe_mismatch(stored: Any, expected: Any) -> list[str]:
  """Lists how two trees of arrays (or array metadata) differ.

  Args:
    stored: the tree read from a checkpoint's metadata.
    expected: the abstract state the trainer wants to restore into.

  Returns:
    One short sentence per difference (missing or extra leaves, shapes,
    dtypes); empty when the trees are compatible.
  """
  have, want = _leaf_specs(stored), _leaf_specs(expected)
  changed, missing, extra = [], [], []
  for name in sorted(want.keys() & have.keys(), key=_priority):
    (have_shape, have_dtype), (want_shape, want_dtype) = have[name], want[name]
    if have_shape != want_shape:
      changed.append(
        f'{name} has shape {have_shape} in the checkpoint but '
        f'{want_shape} in the model'
      )
    elif have_dtype != want_dtype:
      changed.append(
        f'{name} has dtype {have_dtype} in the checkpoint but '
        f'{want_dtype} in the model'
      )
  for name in sorted(want.keys() - have.keys(), key=_priority):
    missing.append(f'{name} is missing from the checkpoint')
  for name in sorted(have.keys() - want.keys(), key=_priority):
    extra.append(f'{name} is in the checkpoint but not in the model')
  # Shape changes first: they name the layer that differs most directly.
  return changed + missing + extra


def _is_orbax_leftover(unraisable: Any) -> bool:
  """Whether an unraisable exception is the remains of a failed orbax read."""
  obj, error = unraisable.object, unraisable.exc_value
  if inspect.iscoroutine(obj):  # Closed when collected, while suspended.
    return obj.cr_code.co_filename.startswith(_ORBAX_DIR)
  if isinstance(error, RuntimeError) and str(error) == 'Event loop is closed':
    frames = traceback.extract_tb(error.__traceback__)
    return bool(frames) and frames[0].name == 'call_soon_threadsafe'
  return False


class _OrbaxLeftovers(logging.Filter):
  """Keeps the leftovers of failed orbax reads off the terminal (see above)."""

  def __init__(self):
    super().__init__()
    self.active = False
    self._previous_hook = None

  def start(self) -> None:
    if not self.active:
      self.active = True
      self._previous_hook = sys.unraisablehook
      sys.unraisablehook = self._hook
      logging.getLogger('asyncio').addFilter(self)

  def stop(self) -> None:
    """Collects abandoned coroutines (reported here), then stops filtering."""
    if self.active:
      gc.collect()
      if sys.unraisablehook == self._hook:
        sys.unraisablehook = self._previous_hook
      logging.getLogger('asyncio').removeFilter(self)
      self.active = False

  def _hook(self, unraisable: Any) -> None:
    # Inactive but still chained (another hook was installed after this
    # one): a plain pass-through.
    if self.active and _is_orbax_leftover(unraisable):
      absl_logging.debug(
        'dropped after a failed checkpoint read: %r', unraisable.exc_value
      )
    else:
      self._previous_hook(unraisable)

  def filter(self, record: logging.LogRecord) -> bool:
    return not _is_orbax_asyncio_report(record)


def _is_orbax_asyncio_report(record: logging.LogRecord) -> bool:
  """Whether an asyncio log record reports an orbax task or future.

  asyncio logs 'Task was destroyed but it is pending!' and 'Task exception
  was never retrieved' for tasks that run orbax's coroutines (the message
  names the coroutine, so orbax's folder), and 'Future exception was never
  retrieved' / '_GatheringFuture exception was never retrieved' for the
  futures of a failed write: their exception is tensorstore's error about a
  file of an OCDBT checkpoint, raised from orbax's code or from C++ (then
  with no Python frames at all).
  """
  if _ORBAX_DIR in record.getMessage():
    return True
  for error in _chain(record.exc_info[1] if record.exc_info else None):
    frames = traceback.extract_tb(error.__traceback__)
    if any(frame.filename.startswith(_ORBAX_DIR) for frame in frames):
      return True
    if 'in OCDBT database at local file' in str(error):
      return True
  return False


def _chain(error: BaseException | None) -> Iterator[BaseException]:
  """`error`, then the error it was raised from or during, and so on."""
  while error is not None:
    yield error
    error = error.__cause__ or error.__context__


def _is_write_failure(error: BaseException | None) -> bool:
  """Whether an error (or one it was raised from) is a failed file write."""
  return any(
    isinstance(e, OSError) or 'Error writing' in str(e) for e in _chain(error)
  )


def _write_cause(error: BaseException) -> str:
  """'FILE: No space left on device' from tensorstore's or the OS's error."""
  if isinstance(error, OSError):
    return f'{error.filename or ""}: {error.strerror or error}'.lstrip(': ')
  text = ' '.join(str(error).split())
  failed = re.search(
    r'Failed writing: "([^"]+)".*\[os_error_code=\W?(\d+)', text
  )
  if failed:
    return f'{failed.group(1)}: {os.strerror(int(failed.group(2)))}'
  text = re.sub(r' ?\[(tensorstore_spec|source locations)=.*', '', text)
  return text if len(text) <= 200 else text[:197] + '...'


def _not_a_repeated_write_failure(record: logging.LogRecord) -> bool:
  """A log filter: False for orbax's error logs of a failed write.

  The failure itself is raised as a WriteError, in one line.
  """
  if record.levelno < logging.ERROR or not record.pathname.startswith(
    _ORBAX_DIR
  ):
    return True
  error = record.exc_info[1] if record.exc_info else None
  return not (
    'Error writing' in record.getMessage() or _is_write_failure(error)
  )


def _describe_damage(error: BaseException, root: str) -> str:
  """A short account of why the checkpoint in folder `root` cannot be read.

  orbax wraps the error of tensorstore or of the file system in messages that
  embed the whole TensorStore spec; the innermost error says what is wrong.
  """
  while error.__cause__ is not None:
    error = error.__cause__
  text = ' '.join(str(error).split())
  truncated = re.search(
    r'local file "([^"]+)": Requested byte range \[\d+, (\d+)\) is not '
    r'valid for value of size (\d+)',
    text,
  )
  if truncated:
    path, wanted, size = truncated.groups()
    array = re.search(r'Error reading "([^"/]+)[^"]*" in OCDBT', text)
    where = os.path.relpath(path, root)
    if path.endswith('/'):  # An OCDBT database: the file is not named.
      where = f'a data file in {where}/'
    return (
      f'{where} is truncated ({size} bytes where at '
      f'least {wanted} are needed'
      + (f', reading {array.group(1)})' if array else ')')
    )
  text = re.sub(r' ?\[(tensorstore_spec|source locations)=.*', '', text)
  text = re.sub(r'<bound method .*', '...', text)
  text = text.replace(root + os.sep, '')
  return text if len(text) <= 200 else text[:197] + '...'


class Checkpointer:
  """Saves and restores `TrainState`s under `<workdir>/checkpoints`."""

  def __init__(self, workdir: str, *, keep: int, async_save: bool = True):
    """Opens (creating if needed) the checkpoint directory of `workdir`.

    Args:
      workdir: the run's directory.
      keep: how many of the newest checkpoints to keep (>= 1).
      async_save: write checkpoints in a background thread.
    """
    if keep < 1:
      raise ValueError(f'keep_checkpoints must be >= 1, got {keep}')
    self.workdir = workdir
    self.keep = keep
    self.directory = os.path.join(os.path.abspath(workdir), 'checkpoints')
    # Rotation is `prune`'s job (it also keeps the best checkpoint).
    options = ocp.CheckpointManagerOptions(
      create=True, enable_async_checkpointing=async_save
    )
    self._manager = ocp.CheckpointManager(
      self.directory,
      options=options,
      item_handlers=ocp.StandardCheckpointHandler(),
    )
    self._leftovers = _OrbaxLeftovers()
    self._leftovers.start()  # A read or a write may fail: see above.
    self._pending = None  # (step, protect) of a save not known complete.
    self._failed = False  # Whether a read or a write failed.
    logging.getLogger('absl').addFilter(_not_a_repeated_write_failure)

  def latest_step(self) -> int | None:
    """The newest saved step, or None when there is no checkpoint."""
    return self._manager.latest_step()

  def all_steps(self) -> list[int]:
    """All saved steps, oldest first."""
    return sorted(self._manager.all_steps())

  def save(self, step: int, state: Any, *, protect: int | None = None) -> bool:
    """Saves `state` as checkpoint `step` unless that step already exists.

    Then keeps only the newest `keep` checkpoints and step `protect` (the
    best-evaluated one).

    Returns:
      Whether a checkpoint was written.
    """
    if step in self._manager.all_steps():
      return False
    self.wait()  # The previous save: complete (then pruned), or an error.
    self._pending = (step, protect)
    try:
      saved = self._manager.save(step, args=ocp.args.StandardSave(state))
    except Exception as e:
      raise self._write_error(e) from e
    return saved

  def _write_error(self, error: Exception) -> Exception:
    """A WriteError naming the failed save, or `error` if it is no write."""
    if not _is_write_failure(error):
      return error
    step, _ = self._pending
    self._pending = None
    self._failed = True
    kept = self.all_steps()
    newest = (
      f'the newest complete checkpoint, {self.directory}/{kept[-1]}, is intact'
      if kept
      else 'no checkpoint was complete yet'
    )
    return workdir_lib.WriteError(
      f'cannot write checkpoint {self.directory}/{step}: '
      f'{_write_cause(error)}; {newest}; free space or fix the cause, then '
      'relaunch to resume'
    )

  def prune(self, protect: int | None = None) -> None:
    """Deletes all but the newest `keep` checkpoints and step `protect`."""
    steps = self.all_steps()
    for step in steps[: -self.keep]:
      if step != protect:
        self._manager.delete(step)

  def check_compatible(self, step: int, abstract_state: Any) -> None:
    """Raises ValueError when checkpoint `step` does not fit the state.

    Raises:
      CorruptCheckpointError: its metadata cannot be read.
      ValueError: it was written for a different state (model or config).
    """
    try:
      metadata = self._manager.item_metadata(step)
    except Exception as e:  # noqa: BLE001 - any read failure is corruption.
      raise CorruptCheckpointError(
        'unreadable metadata: '
        + _describe_damage(e, os.path.join(self.directory, str(step)))
      ) from e
    stored = getattr(metadata, 'tree', metadata)
    if stored is None:
      raise CorruptCheckpointError('its metadata is missing')
    problems = describe_mismatch(stored, abstract_state)
    if problems:
      more = len(problems) - _MAX_REPORTED
      text = '; '.join(problems[:_MAX_REPORTED])
      if more > 0:
        text += f'; and {more} more difference(s)'
      raise ValueError(
        f'incompatible checkpoint in {self.workdir} (step {step}, written '
        f'by a different model or config): {text}. Use a new --workdir or '
        'the config that wrote it'
      )

  def restore(self, step: int | None, abstract_state: Any) -> Any:
    """Restores checkpoint `step` into the target, as orbax's `restore`.

    Args:
      step: which checkpoint; None for the latest.
      abstract_state: `jax.ShapeDtypeStruct` tree of the state, with
        shardings; the restored arrays get these shapes and shardings.

    Returns:
      The restored state, same tree structure as `abstract_state`.
    """
    step = self.latest_step() if step is None else step
    if step is None:
      raise ValueError(f'no checkpoint to restore in {self.directory}')
    self.check_compatible(step, abstract_state)
    return self._manager.restore(
      step, args=ocp.args.StandardRestore(abstract_state)
    )

  def restore_latest(self, abstract_state: Any) -> tuple[int, Any] | None:
    """Restores the newest intact checkpoint; None when there is none at all.

    A checkpoint that cannot be read is reported in one line and moved to
    `<workdir>/corrupt_checkpoints/`; the next older one is tried.

    Raises:
      ValueError: a readable checkpoint written for a different state, or
        checkpoints exist but none of them is intact.
    """
    steps = self.all_steps()
    for step in reversed(steps):
      try:
        self.check_compatible(step, abstract_state)
        state = self._manager.restore(
          step, args=ocp.args.StandardRestore(abstract_state)
        )
        return step, state
      except CorruptCheckpointError as e:
        reason = str(e)
      except ValueError:
        raise  # Readable, but written for another model or config.
      except Exception as e:  # noqa: BLE001 - tensorstore, file errors...
        reason = _describe_damage(e, os.path.join(self.directory, str(step)))
      self._failed = True
      gc.collect()  # Abandoned reads are reported now, while filtered.
      moved = self._move_aside(step)
      print(
        f'warning: checkpoint {self.directory}/{step} is unreadable '
        f'({reason}); kept as {moved}; trying an older one',
        flush=True,
      )
    if steps:
      raise ValueError(
        f'none of the checkpoints {steps} in {self.directory} is intact '
        f'(they were moved to {self._corrupt_dir()}); use a new --workdir '
        'to start afresh'
      )
    return None

  def _corrupt_dir(self) -> str:
    return os.path.join(os.path.abspath(self.workdir), 'corrupt_checkpoints')

  def _move_aside(self, step: int) -> str:
    target = os.path.join(
      self._corrupt_dir(), f'{step}-{time.strftime("%Y%m%d-%H%M%S")}'
    )
    if jax.process_index() == 0:
      os.makedirs(self._corrupt_dir(), exist_ok=True)
      shutil.move(os.path.join(self.directory, str(step)), target)
    self._manager.reload()
    return target

  def wait(self) -> None:
    """Blocks until pending saves are on disk, then prunes.

    Raises:
      WriteError: the pending save failed (nothing older was pruned).
    """
    if self._pending is None:
      return
    try:
      self._manager.wait_until_finished()
    except Exception as e:
      raise self._write_error(e) from e
    _, protect = self._pending
    self._pending = None
    self.prune(protect)

  def close(self) -> None:
    """Waits for pending saves and releases the manager."""
    try:
      self.wait()
      self._manager.close()
    finally:
      # After a failed read or write, orbax's abandoned tasks may be
      # collected as late as at exit: the filters then stay for good.
      if not self._failed:
        self._leftovers.stop()
        logging.getLogger('absl').removeFilter(_not_a_repeated_write_failure)


def abstract_like(state: Any, sharding: jax.sharding.Sharding) -> Any:
  """The restore target of `state`: ShapeDtypeStructs carrying `sharding`.

  Args:
    state: a tree of arrays or `jax.ShapeDtypeStruct`s (e.g. from
      `jax.eval_shape`).
    sharding: the sharding every leaf gets (the state is replicated).
  """
  return jax.tree.map(
    lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding), state
  )
