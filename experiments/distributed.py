"""Several processes, one run: bounded waits and one-line failures.

`python -m experiments.main --jax_distributed ...` joins this process to the
others of a run with `jax.distributed.initialize`. jax then aborts a process
whose peer died: the coordination service (in process 0) misses the peer's
heartbeats for `--peer_timeout_s` and tells every other process, which
stops with a C++ fatal error and a stack dump of every thread; a process that
loses process 0 itself stops at once the same way. A peer that never starts
leaves the others waiting `--join_timeout_s` in `initialize`.

To turn that into one line, the launch runs as two processes (`supervise`):
the launched one stays small (no jax) and runs the same command again as a
child, the worker, which trains. The worker sends its native output (jax's
C++ logs, gloo's, the fatal dump, library logs) to
`<workdir>/logs/process_<i>.log` and keeps the terminal for the progress lines,
the one-line errors and the tracebacks of real bugs (`redirect_native_logs`).
When the worker is aborted, the supervisor reads that log and prints which
process died or could not be reached, then exits 1. The worker dies with the
supervisor (`kill -9` of the launched process, a lost host): Linux's
parent-death signal.

No process writes a partial checkpoint as if complete: each writes its
shards into orbax's temporary folder, which process 0 renames to the step
only after every process has finished (a barrier that a dead peer fails), so
relaunching all processes resumes from the newest complete checkpoint
(tests/experiments/test_faults_peers.py).
"""

import ctypes
import os
import re
import signal
import socket
import subprocess
import sys
import time

from experiments import cli

# Set in the worker's environment: the path of its log.
WORKER_LOG_ENV = 'CONVNETS_JAX_WORKER_LOG'
_TASK = r'(?:/job:[\w_]+/replica:\d+/task:)?(\d+)'


def log_path(workdir: str, process_id: int | None) -> str:
  """`<workdir>/logs/process_<i>.log`, this process's native log.

  Without --process_id (a cluster jax detects), `process_<host>-<pid>.log`.
  """
  name = process_id
  if name is None:
    name = f'{socket.gethostname()}-{os.getpid()}'
  return os.path.join(os.path.abspath(workdir), 'logs', f'process_{name}.log')


def _die_with_parent() -> None:
  """In the worker, before exec: SIGKILL when the supervisor dies (Linux)."""
  if sys.platform.startswith('linux'):
    pr_set_pdeathsig = 1
    ctypes.CDLL(None).prctl(pr_set_pdeathsig, signal.SIGKILL)


def supervise(
  log: str,
  *,
  process_id: int | None,
  num_processes: int | None,
  peer_timeout_s: int,
  join_timeout_s: int,
):
  """Runs this command again as the worker; reports how it ended; exits.

  Args:
    log: the worker's native log (created, with its folder).
    process_id: this process (None: detected by jax), for the messages.
    num_processes: the run's process count (None: detected by jax).
    peer_timeout_s: the heartbeat timeout, for the messages.
    join_timeout_s: the initialization timeout, for the messages.
  """
  try:
    os.makedirs(os.path.dirname(log), exist_ok=True)
    with open(log, 'a') as f:
      f.write(f'--- launch at {time.strftime("%Y-%m-%d %H:%M:%S")}\n')
  except OSError as e:
    cli.fail(f'cannot write {log}: {e.strerror or e}')
  worker = subprocess.Popen(
    [sys.executable, '-m', 'experiments.main', *sys.argv[1:]],
    env=dict(os.environ, **{WORKER_LOG_ENV: log}),
    preexec_fn=_die_with_parent,  # noqa: PLW1509 - no threads here yet.
    process_group=0,  # Ctrl-C reaches it once: forwarded below.
  )
  for signum in (signal.SIGINT, signal.SIGTERM):
    signal.signal(signum, lambda s, _: worker.send_signal(s))
  code = worker.wait()
  if code >= 0:
    sys.exit(code)
  with open(log, errors='replace') as f:
    text = f.read()[-200_000:].rpartition('--- launch at')[2]  # This launch.
  if process_id is not None and num_processes is not None:
    others = [str(i) for i in range(num_processes) if i != process_id]
  else:
    others = []
  reason = why_aborted(
    text,
    others=others,
    num_processes=num_processes,
    peer_timeout_s=peer_timeout_s,
    join_timeout_s=join_timeout_s,
  )
  if reason == 'stopped by a signal':
    reason = f'this process was stopped by {signal.Signals(-code).name}'
  print(f'error: {reason} (details: {log})', file=sys.stderr, flush=True)
  sys.exit(1)


def why_aborted(
  text: str,
  *,
  others: list[str],
  num_processes: int | None,
  peer_timeout_s: int,
  join_timeout_s: int,
) -> str:
  """One sentence: why jax stopped the worker whose native log is `text`.

  Args:
    text: the end of the worker's log, from the start of this launch.
    others: the ids of the other processes (empty when unknown).
    num_processes: the run's process count (None: unknown).
    peer_timeout_s: the heartbeat timeout.
    join_timeout_s: the initialization timeout.
  """
  of = f' of {num_processes}' if num_processes else ''
  relaunch = (
    'this process stopped too; relaunch all processes to resume from the '
    'newest complete checkpoint'
  )
  if re.search(r'DEADLINE_EXCEEDED.*\s*RPC: \S+/RegisterTask', text):
    if len(others) == 1:
      missing = f'process {others[0]}{of} did not join'
    elif others:
      missing = f'one or more of processes {", ".join(others)}{of} did not join'
    else:
      missing = 'not all processes joined'
    return (
      f'{missing} within --join_timeout_s={join_timeout_s} s (not started, '
      'or started with another --coordinator_address)'
    )
  dead = re.search(
    r'tasks are unhealthy \(stopped sending heartbeats\):\s*((?:'
    + _TASK
    + r'\s*)+)',
    text,
  ) or re.search(r'Task (\d+) heartbeat timeout', text)
  if dead:
    ids = ', '.join(sorted(set(re.findall(_TASK, dead.group(1))), key=int))
    return (
      f'process {ids}{of} stopped answering (no heartbeat for '
      f'{peer_timeout_s} s: killed, crashed or preempted); {relaunch}'
    )
  if 'JAX distributed service detected fatal errors' in text:
    return (
      f'lost process 0{of}, the coordinator (killed, crashed or '
      f'preempted); {relaunch}'
    )
  fatal = re.findall(r'^F\d{4} [\d:.]+\s+\d+ \S+\] (.*)$', text, re.M)
  if fatal:
    return f'aborted: {fatal[-1][:200]}'
  return 'stopped by a signal'


def redirect_native_logs(log: str) -> None:
  """In the worker: fds 1 and 2 to `log`; Python's stdout, stderr stay.

  C++ writes to the file descriptors directly (gloo's '[Gloo] Rank 0 is
  connected' lines on 1, jax's logs and the fatal stack dump on 2), and so
  does absl's log handler, which holds the original `sys.stderr`: all of
  them go to the log. Python's `print`, warnings and uncaught tracebacks
  (bugs) stay on the terminal.
  """
  fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
  sys.stdout.flush()
  terminal_out, terminal_err = os.dup(1), os.dup(2)
  os.dup2(fd, 1)
  os.dup2(fd, 2)
  os.close(fd)
  sys.stdout = os.fdopen(terminal_out, 'w', buffering=1)
  sys.stderr = os.fdopen(terminal_err, 'w', buffering=1)


def join_error(error: Exception, process_id: int | None, timeout_s: int) -> str:
  """One sentence for a failed `jax.distributed.initialize`."""
  text = str(error)
  missing = re.search(
    r'timed out task names?:\s*((?:' + _TASK + r'\s*)+)', text
  )
  if missing:
    ids = ', '.join(sorted(set(re.findall(_TASK, missing.group(1))), key=int))
    return (
      f'process {ids} did not join within --join_timeout_s={timeout_s} s '
      '(not started, or started with another --coordinator_address)'
    )
  if process_id != 0 and re.search(
    r'DEADLINE_EXCEEDED|UNAVAILABLE|connect', text
  ):
    return (
      f'process 0, the coordinator, could not be reached within '
      f'--join_timeout_s={timeout_s} s (not started, or at another '
      '--coordinator_address)'
    )
  lines = [line.strip() for line in text.splitlines() if line.strip()]
  return f'jax.distributed.initialize failed: {lines[0] if lines else text}'
