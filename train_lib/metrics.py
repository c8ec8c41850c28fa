"""Run outputs: `metrics.jsonl`, its TensorBoard copy, the progress line.

`metrics.jsonl` holds one JSON object per line, e.g.

  {"step": 200, "split": "train", "loss": 0.31, "accuracy": 0.91, "lr": 1e-3,
   "l2_grads": 0.8, "l2_params": 31.2, "l2_updates": 0.05,
   "steps_averaged": 100, "images_per_sec": 5120.0, "wall_time_s": 12.3}

with `split` 'train' (averages over the `steps_averaged` steps since the
previous train line: fewer than log_every_steps only on the first line after
resuming from a checkpoint taken between two train lines)
or 'eval' (the whole test split). `experiments/plot.py` and any notebook read
it with one `json.loads` per line. A resumed run first drops the lines past
the restored step, so the file always describes one consistent run.

Every record is also written to TensorBoard event files in
`<workdir>/tensorboard/` (`tensorboard --logdir runs`): one scalar per
numeric value, tagged `train/loss`, `train/lr`, `train/images_per_sec`,
`eval/accuracy`, ... at the record's step. metrics.jsonl stays the source of
truth; the event files are a view of it for TensorBoard users. They are
written with tensorboardX (protobuf only, no TensorFlow), through its
synchronous `EventsWriter`: `SummaryWriter.flush()` does not wait for the
events still queued for its background thread, so after a `kill -9` the
event files could lack lines that metrics.jsonl holds. Each launch writes
its own event file, which opens with a `SessionLog.START` event at the
restored step + 1: TensorBoard then drops the older files' points from
that step on (the purge tensorboardX's `purge_step` writes), so a resumed
run shows one curve with each step once, as metrics.jsonl does.

A record that cannot be written (a full disk, a quota, an I/O error) stops
the run with a `WriteError` naming the file and the cause. metrics.jsonl is
appended one whole record per `write` call and cut back to its previous
length if that fails, so it never holds a torn line.
"""

from collections.abc import Mapping
import functools
import json
import math
import os
import sys
import time
import types
from typing import Any

import jax
import numpy as np

from train_lib import workdir as workdir_lib


@functools.cache
def _tensorboardx() -> types.SimpleNamespace:
  """tensorboardX's `event_file_writer`, `event_pb2` and `summary_pb2`.

  Imported when the first TensorBoardWriter opens, not with this module.
  tensorboardX's package `__init__` imports torch whenever it is installed,
  only so that its SummaryWriter accepts torch tensors, which this module
  never passes; that import costs 3-5 s on every launch and every child
  process of the tests (measured with torch 2.13 CPU installed). So, unless
  torch or tensorboardX is loaded already, a None `torch` entry in
  `sys.modules` makes tensorboardX's `import torch` raise the ImportError it
  catches, for this import only: the entry is removed right after, so torch
  imports normally later. Importing this module leaves `sys.modules` alone
  (tests/test_import_side_effects.py).
  """
  hide = 'torch' not in sys.modules and 'tensorboardX' not in sys.modules
  if hide:
    sys.modules['torch'] = None
  try:
    from tensorboardX import event_file_writer  # noqa: PLC0415
    from tensorboardX.proto import event_pb2  # noqa: PLC0415
    from tensorboardX.proto import summary_pb2  # noqa: PLC0415
  finally:
    if hide and sys.modules.get('torch', 0) is None:
      del sys.modules['torch']
  return types.SimpleNamespace(
    event_file_writer=event_file_writer,
    event_pb2=event_pb2,
    summary_pb2=summary_pb2,
  )


FILENAME = 'metrics.jsonl'
TENSORBOARD_DIR = 'tensorboard'


def _to_python(value: Any) -> Any:
  if isinstance(value, np.ndarray | np.generic):
    value = value.item()
  if isinstance(value, float) and not math.isfinite(value):
    return str(value)  # JSON has no NaN/inf; keep the line parseable.
  return value


def _scalar(value: Any) -> float | None:
  """The value as a float if it is a number (not a bool), else None."""
  if isinstance(value, np.ndarray | np.generic):
    value = value.item()
  if isinstance(value, bool) or not isinstance(value, int | float):
    return None
  return float(value)


class TensorBoardWriter:
  """Writes metric records as TensorBoard scalars, one event file a launch."""

  def __init__(self, logdir: str, *, purge_step: int | None = None):
    """Opens a new event file in `logdir` (created if needed).

    Args:
      logdir: the event files' directory, `<workdir>/tensorboard`.
      purge_step: the first step this launch writes (the restored step + 1):
        TensorBoard hides the points of earlier event files from this step
        on. None: hide nothing.
    """
    self._events = None
    try:
      os.makedirs(logdir, exist_ok=True)
      # The file name holds the time in seconds and the host; the suffix
      # keeps two launches of one second apart, and in order (TensorBoard
      # reads the files of a directory sorted by name).
      self._events = _tensorboardx().event_file_writer.EventsWriter(
        os.path.join(logdir, 'events'),
        filename_suffix=f'.{time.time_ns():020d}.{os.getpid()}',
      )
      self._path = self._events._file_name  # noqa: SLF001 - not exposed.
    except OSError as e:
      raise workdir_lib.write_error(e.filename or logdir, e) from e
    if purge_step is not None:
      event_pb2 = _tensorboardx().event_pb2
      start = event_pb2.SessionLog(status=event_pb2.SessionLog.START)
      self._write(
        event_pb2.Event(
          wall_time=time.time(), step=int(purge_step), session_log=start
        )
      )

  @property
  def path(self) -> str:
    """This launch's event file."""
    return self._path

  def _write(self, event: Any) -> None:
    """Writes and flushes one `event_pb2.Event`."""
    try:
      self._events.write_event(event)
      self._events.flush()  # On disk now: a kill -9 loses nothing written.
    except OSError as e:
      self._events = None  # Broken: close() must not write it again.
      raise workdir_lib.write_error(self.path, e) from e

  def write(self, step: int, split: str, metrics: Mapping[str, Any]) -> None:
    """Writes each numeric value of `metrics` as the scalar `split/key`."""
    tbx = _tensorboardx()
    values = [
      tbx.summary_pb2.Summary.Value(tag=f'{split}/{key}', simple_value=number)
      for key, value in metrics.items()
      if (number := _scalar(value)) is not None
    ]
    if values:
      self._write(
        tbx.event_pb2.Event(
          wall_time=time.time(),
          step=int(step),
          summary=tbx.summary_pb2.Summary(value=values),
        )
      )

  def close(self) -> None:
    if self._events is not None:
      self._events.close()
      self._events = None


class MetricsWriter:
  """Appends metric records to `<workdir>/metrics.jsonl` and TensorBoard."""

  def __init__(
    self, workdir: str, *, enabled: bool = True, tensorboard: bool = True
  ):
    """Creates a writer.

    Args:
      workdir: the run's directory (created if needed).
      enabled: False on all but the first process of a multi-host run, so
        that exactly one process writes the files.
      tensorboard: also write `<workdir>/tensorboard/` event files, opened
        at the first record (a launch that writes nothing leaves no file).
    """
    self.path = os.path.join(workdir, FILENAME)
    self.enabled = enabled
    self.tensorboard_dir = (
      os.path.join(workdir, TENSORBOARD_DIR) if tensorboard else None
    )
    self._tensorboard = None
    self._purge_step = None
    if enabled:
      os.makedirs(workdir, exist_ok=True)

  def truncate_after(self, step: int) -> int:
    """Drops the records with a step after `step` (used when resuming).

    Lines that do not parse (a run killed mid-write) are dropped too. The
    event files are not rewritten: this launch's file starts by telling
    TensorBoard to drop their points after `step`.

    Returns:
      The number of lines kept.
    """
    self._purge_step = step + 1
    if not self.enabled or not os.path.exists(self.path):
      return 0
    kept = []
    with open(self.path) as f:
      for line in f:
        try:
          record = json.loads(line)
        except json.JSONDecodeError:
          continue
        if isinstance(record, dict) and record.get('step', 0) <= step:
          kept.append(json.dumps(record) + '\n')
    tmp_path = self.path + '.tmp'
    try:
      with open(tmp_path, 'w') as f:
        f.writelines(kept)
      os.replace(tmp_path, self.path)
    except OSError as e:  # metrics.jsonl itself is untouched.
      if os.path.exists(tmp_path):
        os.remove(tmp_path)
      raise workdir_lib.write_error(tmp_path, e) from e
    return len(kept)

  def write(self, step: int, split: str, metrics: Mapping[str, Any]) -> None:
    """Appends one record `{'step': step, 'split': split, **metrics}`."""
    if not self.enabled:
      return
    record = {'step': int(step), 'split': split}
    record.update({k: _to_python(v) for k, v in metrics.items()})
    workdir_lib.append_line(self.path, json.dumps(record) + '\n')
    if self.tensorboard_dir is not None:
      if self._tensorboard is None:
        self._tensorboard = TensorBoardWriter(
          self.tensorboard_dir, purge_step=self._purge_step
        )
        self._purge_step = None  # A later file must not hide this one's.
      self._tensorboard.write(step, split, metrics)

  def close(self) -> None:
    """Closes the event file (metrics.jsonl is closed after each line)."""
    if self._tensorboard is not None:
      self._tensorboard.close()
      self._tensorboard = None


def read_metrics(workdir: str) -> list[dict[str, Any]]:
  """Reads every record of `<workdir>/metrics.jsonl`."""
  with open(os.path.join(workdir, FILENAME)) as f:
    return [json.loads(line) for line in f if line.strip()]


def mean_metrics(
  history: list[Mapping[str, Any]],
) -> dict[str, float]:
  """Averages per-step metric dicts (host numpy scalars) key by key."""
  if not history:
    return {}
  return {
    key: float(np.mean([np.asarray(m[key], np.float64) for m in history]))
    for key in history[0]
  }


def format_duration(seconds: float) -> str:
  """Formats seconds as '1h02m', '3m05s' or '12.3s'."""
  if not math.isfinite(seconds):
    return '?'
  if seconds >= 3600:
    return f'{int(seconds // 3600)}h{int(seconds % 3600 // 60):02d}m'
  if seconds >= 60:
    return f'{int(seconds // 60)}m{int(seconds % 60):02d}s'
  return f'{seconds:.1f}s'


def progress_line(
  *,
  step: int,
  total_steps: int,
  metrics: Mapping[str, float],
  images_per_sec: float,
  eta_s: float,
) -> str:
  """The periodic terminal line: step/total, loss, accuracy, speed, ETA."""
  width = len(str(total_steps))
  parts = [f'step {step:>{width}}/{total_steps}']
  for key in ('loss', 'accuracy', 'top5_accuracy', 'lr'):
    if key in metrics:
      fmt = '.3g' if key == 'lr' else '.4f'
      parts.append(f'{key} {metrics[key]:{fmt}}')
  parts.append(f'{images_per_sec:.0f} img/s')
  parts.append(f'ETA {format_duration(eta_s)}')
  return ' | '.join(parts)


def eval_line(step: int, metrics: Mapping[str, Any]) -> str:
  """The terminal line of an evaluation, naming the split it measured."""
  items = [
    f'{k} {v:.4f}'
    for k, v in metrics.items()
    if k not in ('wall_time_s', 'eval_split')
  ]
  split = metrics.get('eval_split', 'test')
  return f'eval ({split}) @ step {step}: ' + ' | '.join(items)


def _print(text: str) -> None:
  if jax.process_index() == 0:
    print(text, flush=True)


class TrainLog:
  """Collects per-step metrics, checks losses, times steps, writes lines."""

  def __init__(self, writer, config, start_step: int):
    self.writer = writer
    self.total_steps = config.total_steps
    self.batch_size = config.batch_size
    self.pending = []  # (step, device metrics) not yet fetched.
    self.history = []  # Host metrics since the last train line.
    # Test accuracy by step, this run's and (after a resume) the earlier ones.
    earlier = (
      read_metrics(os.path.dirname(writer.path))
      if os.path.exists(writer.path)
      else []
    )
    self.evals = {
      r['step']: r['accuracy']
      for r in earlier
      if r['split'] == 'eval' and r['step'] <= start_step
    }
    self.run_start = time.time()
    self.loop_start, self.start_step = None, start_step
    self.compile_time_s = None
    self.eval_split = 'test'
    self.restart_timer()

  def restart_timer(self) -> None:
    """Starts a timing interval (after compiling, evaluating or saving)."""
    self.interval_start = time.perf_counter()
    self.timed_steps = 0

  def add(self, step: int, metrics: dict[str, jax.Array], first: bool) -> None:
    self.pending.append((step, metrics))
    self.timed_steps += 1
    if first:  # Compilation: reported apart from the step times.
      jax.block_until_ready(metrics)
      self.compile_time_s = time.perf_counter() - self.interval_start
      self.loop_start = time.perf_counter()
      _print(
        f'first train step (compilation included) took '
        f'{self.compile_time_s:.1f}s'
      )
      self.restart_timer()

  def check(self) -> None:
    """Fetches pending metrics; FloatingPointError at the first bad loss."""
    pending, self.pending = self.pending, []
    fetched = jax.device_get([metrics for _, metrics in pending])
    for (step, _), metrics in zip(pending, fetched, strict=True):
      loss = float(metrics['loss'])
      if not np.isfinite(loss):
        raise FloatingPointError(f'loss is {loss} at step {step}')
      self.history.append(metrics)

  def train_line(self, step: int) -> None:
    """Writes the train line averaged since the previous one."""
    self.check()
    record = mean_metrics(self.history)
    # The rate of the logged step itself (a mean would lag behind warmup).
    record['lr_mean'], record['lr'] = (
      record['lr'],
      float(self.history[-1]['lr']),
    )
    # Usually log_every_steps; fewer on the first line after resuming from a
    # checkpoint that fell between two train lines.
    record['steps_averaged'] = len(self.history)
    self.history = []
    if self.timed_steps > 0:
      elapsed = time.perf_counter() - self.interval_start
      record['images_per_sec'] = self.batch_size * self.timed_steps / elapsed
    # ETA from the wall time per step since compilation, evaluation and
    # checkpoint time included.
    steps_timed = step - self.start_step - 1
    sec_per_step = (
      (time.perf_counter() - self.loop_start) / steps_timed
      if steps_timed > 0
      else float('nan')
    )
    if self.compile_time_s is not None:
      record['compile_time_s'] = self.compile_time_s
      self.compile_time_s = None
    record['wall_time_s'] = time.time() - self.run_start
    self.writer.write(step, 'train', record)
    _print(
      progress_line(
        step=step,
        total_steps=self.total_steps,
        metrics=record,
        images_per_sec=record.get('images_per_sec', float('nan')),
        eta_s=(self.total_steps - step) * sec_per_step,
      )
    )
    self.restart_timer()

  def eval_line(self, step: int, results: dict[str, float]) -> None:
    results['wall_time_s'] = time.time() - self.run_start
    self.eval_split = results.get('eval_split', 'test')
    self.writer.write(step, 'eval', results)
    self.evals[step] = results['accuracy']
    _print(eval_line(step, results))
    self.restart_timer()

  def best_step(self, steps: list[int]) -> int | None:
    """The step of `steps` with the best eval accuracy (None: none has one)."""
    scored = [(self.evals[s], s) for s in steps if s in self.evals]
    return max(scored)[1] if scored else None

  def final_line(self, workdir: str) -> None:
    """Where the run ended: final and best accuracy, wall time, next steps."""
    final_step = max(self.evals, default=None)
    if final_step is None:
      scores = 'no evaluation'
    else:
      best = self.best_step(list(self.evals))
      scores = (
        f'final {self.eval_split} accuracy {self.evals[final_step]:.4f}, best '
        f'{self.evals[best]:.4f} at step {best}'
      )
    wall = format_duration(time.time() - self.run_start)
    _print(
      f'done: step {self.total_steps}, {scores}, {wall} this launch; '
      f'results in {workdir}; plot them with python -m experiments.plot '
      f'--workdir {workdir}'
    )
