"""What guards a work directory: one run at a time, and one config per run.

* `WorkdirLock`: `<workdir>/lock` holds the process id, host and start time
  of the launch that owns the workdir; a second launch is refused with one
  line. A lock whose process is gone (same host, no such pid) is stale: it is
  reported and taken over.
* `check_config_change`: `config.json` is written once, by the launch that
  starts the run. A relaunch is compared with it key by key: changing a key
  that alters what the run computes (model, data, optimizer, schedule, batch
  size, seed, ...) is refused with the list of differing keys, unless the user
  asks for it (`allow_changes`, the launcher's `--allow_config_change`);
  reporting keys (`total_steps`, cadences, `keep_checkpoints`, the eval batch,
  the data directory) may change freely. Every accepted change is appended to
  `config_history.jsonl` (`record_config_change`, once the run has resumed),
  so what trained each stretch of steps stays known.
* `append_line`: the JSON-lines files of a run (these, metrics.jsonl) are
  appended one whole line at a time; a write that fails (a full disk) cuts
  the file back and raises `WriteError` naming the file and the cause.
* `record_launch`: every launch that passed these checks and restored its
  state appends one line to `launches.jsonl` (time, the command that
  launched it, start step, host), never rewritten, so the command that
  reproduces a run stays in its workdir (`python -m experiments.results`).

* `StopSignals`: SIGINT and SIGTERM ask the training loop to stop after its
  current step (which then saves a checkpoint), instead of killing it.

Only process 0 reads and writes these files.
"""

import json
import os
import signal
import socket
import threading
import time
from typing import Any

import jax
import ml_collections

LOCK_FILE = 'lock'
CONFIG_FILE = 'config.json'
HISTORY_FILE = 'config_history.jsonl'
LAUNCHES_FILE = 'launches.jsonl'
# Keys that change how a run is reported or how long it goes on, not what
# any of its steps computes.
REPORTING_KEYS = frozenset(
  {
    'total_steps',
    'log_every_steps',
    'eval_every_steps',
    'checkpoint_every_steps',
    'keep_checkpoints',
    'profile_steps',
    'eval_batch_size',
    'data.data_dir',
    # Who computes, not what: the batches are the same for any worker count,
    # and the convolution backends differ only in rounding.
    'data.num_workers',
    'conv_impl',
  }
)


class WorkdirError(RuntimeError):
  """The workdir cannot be used: not a directory, not writable, or busy."""


class WorkdirBusyError(WorkdirError):
  """Another live launch holds the workdir's lock."""


class WriteError(WorkdirError):
  """A file of the workdir could not be written (full disk, quota, I/O).

  The message names the file and the cause; what was written before (the
  previous checkpoints, the complete lines of metrics.jsonl) is intact.
  """


def write_error(path: str, error: OSError) -> WriteError:
  """The WriteError of a failed write of `path`: one line, path and cause."""
  return WriteError(
    f'cannot write {path}: {error.strerror or error}; the run stopped (its '
    'last checkpoint is intact: free space or fix the cause, then relaunch '
    'to resume)'
  )


def append_line(path: str, line: str) -> None:
  """Appends `line` whole, or leaves the file as it was.

  One `write` call per line (continued after a short write), and on a
  failure (a full disk) the file is cut back to its former length, so a
  JSON-lines file never holds a torn line.

  Raises:
    WriteError: the line could not be written.
  """
  data = line.encode()
  try:
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
  except OSError as e:
    raise write_error(path, e) from e
  try:
    size = os.fstat(fd).st_size
    try:
      while data:
        data = data[os.write(fd, data) :]
    except OSError as e:
      os.ftruncate(fd, size)  # Cutting back needs no space.
      raise write_error(path, e) from e
  finally:
    os.close(fd)


def _pid_alive(pid: int) -> bool:
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:  # Alive, but another user's.
    return True
  return True


class WorkdirLock:
  """Context manager: holds `<workdir>/lock` for the duration of a run."""

  def __init__(self, workdir: str):
    self.path = os.path.join(workdir, LOCK_FILE)
    self.enabled = jax.process_index() == 0
    self.held = False

  def __enter__(self) -> 'WorkdirLock':
    if not self.enabled:
      return self
    directory = os.path.dirname(self.path) or '.'
    if os.path.exists(directory) and not os.path.isdir(directory):
      raise WorkdirError(f'--workdir {directory} is a file, not a directory')
    try:
      os.makedirs(directory, exist_ok=True)
      probe = os.path.join(directory, f'.write-test-{os.getpid()}')
      with open(probe, 'w'):
        pass
      os.remove(probe)
    except OSError as e:
      raise WorkdirError(
        f'cannot use --workdir {directory}: {e.strerror or e}'
      ) from e
    owner = {'pid': os.getpid(), 'host': socket.gethostname(), 'since': None}
    for _ in range(2):
      owner['since'] = time.strftime('%Y-%m-%d %H:%M:%S')
      try:
        fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
      except FileExistsError:
        self._take_over_if_stale()
        continue
      with os.fdopen(fd, 'w') as f:
        json.dump(owner, f)
      self.held = True
      return self
    raise WorkdirBusyError(f'could not take the lock {self.path}')

  def _take_over_if_stale(self) -> None:
    try:
      with open(self.path) as f:
        other = json.load(f)
    except (OSError, ValueError):
      other = {}
    pid, host = other.get('pid'), other.get('host')
    here = socket.gethostname()
    if isinstance(pid, int) and host == here and not _pid_alive(pid):
      print(
        f'warning: removing the stale lock {self.path} of process {pid} '
        f'(started {other.get("since")}), which no longer runs',
        flush=True,
      )
      os.remove(self.path)
      return
    raise WorkdirBusyError(
      f'{os.path.dirname(self.path)} is in use by process {pid} on host '
      f'{host!r} since {other.get("since")}; wait for it to finish, or if '
      f'that process is gone, delete {self.path}'
    )

  def __exit__(self, *exc_info: Any) -> None:
    if self.held:
      os.remove(self.path)
      self.held = False


def _flatten(tree: Any, prefix: str = '') -> dict[str, Any]:
  if not isinstance(tree, dict):
    return {prefix.rstrip('.'): tree}
  flat = {}
  for key, value in tree.items():
    flat.update(_flatten(value, f'{prefix}{key}.'))
  return flat


def _as_json(config: ml_collections.ConfigDict) -> dict[str, Any]:
  return json.loads(config.to_json_best_effort(sort_keys=True))


def config_changes(
  old: dict[str, Any], new: dict[str, Any]
) -> dict[str, tuple[Any, Any]]:
  """{key: (old value, new value)} for every flattened key that differs."""
  before, after = _flatten(old), _flatten(new)
  keys = sorted(set(before) | set(after))
  return {
    k: (before.get(k), after.get(k))
    for k in keys
    if before.get(k) != after.get(k)
  }


def check_config_change(
  config: ml_collections.ConfigDict,
  workdir: str,
  *,
  resuming: bool,
  allow_changes: bool,
) -> dict[str, Any] | None:
  """Writes config.json at the start of a run; checks relaunches.

  Args:
    config: this launch's config.
    workdir: the run's directory.
    resuming: whether the workdir holds a checkpoint to resume from (without
      one, nothing trained is kept and config.json is simply rewritten).
    allow_changes: accept changes of keys outside REPORTING_KEYS.

  Returns:
    The record of an accepted change, for `record_config_change` once the
    run has resumed (None when nothing changed).

  Raises:
    ValueError: a computing key differs and `allow_changes` is False.
  """
  if jax.process_index() != 0:
    return None
  path = os.path.join(workdir, CONFIG_FILE)
  new = _as_json(config)
  if not resuming or not os.path.exists(path):
    os.makedirs(workdir, exist_ok=True)
    try:
      with open(path, 'w') as f:
        f.write(json.dumps(new, indent=2, sort_keys=True) + '\n')
    except OSError as e:
      raise write_error(path, e) from e
    return None
  with open(path) as f:
    old = json.load(f)
  history = os.path.join(workdir, HISTORY_FILE)
  if os.path.exists(history):  # Compare with the latest accepted config.
    with open(history) as f:
      for line in f:
        if line.strip():
          old = json.loads(line)['config']
  changes = config_changes(old, new)
  computing = [k for k in changes if k not in REPORTING_KEYS]
  if computing and not allow_changes:
    listed = '; '.join(
      f'{k}: {changes[k][0]!r} -> {changes[k][1]!r}' for k in computing
    )
    raise ValueError(
      f'this launch changes what the run in {workdir} computes ({listed}); '
      'relaunch with the config that started it, use a new --workdir, or '
      'pass --allow_config_change to resume with the change on purpose'
    )
  if not changes:
    return None
  return {
    'time': time.strftime('%Y-%m-%d %H:%M:%S'),
    'changes': {k: list(v) for k, v in changes.items()},
    'forced': bool(computing),
    'config': new,
  }


def record_config_change(workdir: str, record: dict[str, Any] | None) -> None:
  """Appends an accepted change to `config_history.jsonl` (None: nothing)."""
  if record is None or jax.process_index() != 0:
    return
  line = json.dumps(record, sort_keys=True) + '\n'
  append_line(os.path.join(workdir, HISTORY_FILE), line)


def record_launch(
  workdir: str, *, command: str, start_step: int, total_steps: int
) -> None:
  """Appends this launch's line to `launches.jsonl` (process 0 only)."""
  if jax.process_index() != 0:
    return
  record = {
    'time': time.strftime('%Y-%m-%d %H:%M:%S'),
    'command': command,
    'start_step': int(start_step),
    'total_steps': int(total_steps),
    'host': socket.gethostname(),
    'processes': jax.process_count(),
    'devices': jax.device_count(),
  }
  append_line(os.path.join(workdir, LAUNCHES_FILE), json.dumps(record) + '\n')


def read_launches(workdir: str) -> list[dict[str, Any]]:
  """The records of `launches.jsonl`, oldest first ([] if none)."""
  path = os.path.join(workdir, LAUNCHES_FILE)
  if not os.path.exists(path):
    return []
  records = []
  with open(path) as f:
    for line in f:
      try:
        records.append(json.loads(line))
      except json.JSONDecodeError:  # A launch killed mid-write.
        continue
  return [r for r in records if isinstance(r, dict)]


class StopSignals:
  """While active, SIGINT and SIGTERM ask the loop to stop after its step.

  A second signal gets the default behaviour (Ctrl-C twice stops at once).
  Installed only in the main thread (Python's rule for signal handlers).
  """

  SIGNALS = (signal.SIGINT, signal.SIGTERM)

  def __enter__(self) -> 'StopSignals':
    self.signum = None
    self.previous = {}
    if threading.current_thread() is threading.main_thread():
      for signum in self.SIGNALS:
        self.previous[signum] = signal.signal(signum, self._handle)
    return self

  def _handle(self, signum, frame) -> None:
    del frame
    self.signum = signum
    for other, handler in self.previous.items():
      signal.signal(other, handler)

  def __exit__(self, *exc_info: Any) -> None:
    for signum, handler in self.previous.items():
      signal.signal(signum, handler)
