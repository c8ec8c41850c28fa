"""Profiling a run: a `jax.profiler` trace of chosen train steps.

`--config.profile_steps=START,END` (off when empty; END at most
total_steps) traces train steps START to END, both included, into
`<workdir>/profile/`: the trace starts before step START is dispatched and
stops once step END's state is computed, so the file holds exactly those
steps (compilation happens at step 1, so a START after the first step
leaves it out). A run that stops before END (a step raised, a signal, a
divergence) stops the trace on the way out, so the steps it did run are in
the file and the profiler is free again. View it with TensorBoard's
profile plugin (`pip install xprof`, then `tensorboard --logdir
<workdir>/profile`) or drop `plugins/profile/*/perfetto_trace.json.gz` on
https://ui.perfetto.dev. A run resumed past END traces nothing; one resumed
between START and END traces from its first step to END. Where a trace's
time went, by kind of work: experiments/trace_analysis.py.
"""

from collections.abc import Callable, Iterator
import contextlib
import itertools
import os
from typing import Any

import jax


def parse_steps(spec: str) -> tuple[int, int] | None:
  """'START,END' -> (START, END); '' -> None (profiling off).

  Raises:
    ValueError: not two integers with 1 <= START <= END.
  """
  if not spec.strip():
    return None
  parts = spec.split(',')
  try:
    start, end = (int(p) for p in parts)
  except ValueError:
    raise ValueError(
      f'profile_steps={spec!r} must be START,END (two step numbers, e.g. '
      "'10,12'), or '' for no profile"
    ) from None
  if not 1 <= start <= end:
    raise ValueError(
      f'profile_steps={spec!r}: need 1 <= START <= END, got {start}, {end}'
    )
  return start, end


def trace_dir(workdir: str) -> str:
  """Where a run's profile goes."""
  return os.path.join(workdir, 'profile')


@contextlib.contextmanager
def trace_steps(
  train_fn: Callable[..., Any],
  steps: tuple[int, int] | None,
  workdir: str,
  *,
  first_step: int,
) -> Iterator[Callable[..., Any]]:
  """Yields `train_fn`, tracing `steps` of a loop starting at `first_step`.

  A trace still running when the block ends (a step or the loop raised, or
  the loop stopped before END) is stopped then: it holds the steps from
  START to the last one called.

  Args:
    train_fn: `(state, batch, key) -> (state, metrics)`, called once per
      step in order.
    steps: (START, END) from `parse_steps`, or None for `train_fn` itself.
    workdir: the run's directory; the trace goes to `trace_dir(workdir)`.
    first_step: the number of the step of the first call.

  Yields:
    A function with `train_fn`'s signature (`train_fn` itself when no step
    of the loop is traced).
  """
  if steps is None or steps[1] < first_step:
    yield train_fn
    return
  start, end = max(steps[0], first_step), steps[1]
  numbers = itertools.count(first_step)
  last = None  # the step of the latest call while tracing

  def stop(note: str = '') -> None:
    nonlocal last
    traced_steps, last = f'{start}-{last}', None  # Stopped once, come what may.
    jax.profiler.stop_trace()
    if jax.process_index() == 0:
      print(f'profile of steps {traced_steps}{note}: {trace_dir(workdir)}')

  def traced(*args, **kwargs):
    nonlocal last
    step = next(numbers)
    if step == start:
      jax.profiler.start_trace(trace_dir(workdir), create_perfetto_trace=True)
    if start <= step <= end:
      last = step
    out = train_fn(*args, **kwargs)
    if step == end:
      jax.block_until_ready(out)
      stop()
    return out

  try:
    yield traced
  finally:
    if last is not None:  # Started, not stopped: the run ended before END.
      stop(f' (the run stopped before step {end})')
