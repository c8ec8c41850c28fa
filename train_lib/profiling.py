"""Profiling a run: a `jax.profiler` trace of chosen steps, and where it went.

`--config.profile_steps=START,END` (off when empty) traces train steps START
to END, both included, into `<workdir>/profile/`: the trace starts before
step START is dispatched and stops once step END's state is computed, so
the file holds exactly those steps (compilation happens at step 1, so a
START after the first step leaves it out). View it with TensorBoard's
profile plugin (`pip install xprof`, then `tensorboard --logdir
<workdir>/profile`) or drop `plugins/profile/*/perfetto_trace.json.gz` on
https://ui.perfetto.dev. A run resumed past END traces nothing; one resumed
between START and END traces from its first step to END.

`breakdown(trace_dir, hlo_text)` attributes a trace's XLA:CPU op times to
kinds of work (convolutions, normalisation, copies and converts, the
optimizer, the rest) using the compiled HLO's metadata: each op records the
JAX source path that produced it, `jvp(ResNet)/stage1_block1/norm2/mul`,
so an op is normalisation when a Flax module on its path is named `*norm*`,
and optimizer work when it is outside the model's forward and backward
(`jvp(`, `transpose(`). It is what `experiments.bench` prints beside
PyTorch's profiler table and what README's step profile was made with.
"""

import collections
from collections.abc import Callable
import glob
import gzip
import itertools
import json
import os
import re
from typing import Any

import jax

KINDS = ('conv', 'norm', 'copy/convert', 'optimizer', 'other')


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


def trace_steps(
  train_fn: Callable[..., Any],
  steps: tuple[int, int] | None,
  workdir: str,
  *,
  first_step: int,
) -> Callable[..., Any]:
  """`train_fn`, tracing `steps` of a loop whose first step is `first_step`.

  Args:
    train_fn: `(state, batch, key) -> (state, metrics)`, called once per
      step in order.
    steps: (START, END) from `parse_steps`, or None for `train_fn` itself.
    workdir: the run's directory; the trace goes to `trace_dir(workdir)`.
    first_step: the number of the step of the first call.

  Returns:
    A function with `train_fn`'s signature.
  """
  if steps is None or steps[1] < first_step:
    return train_fn
  start, end = max(steps[0], first_step), steps[1]
  numbers = itertools.count(first_step)

  def traced(*args, **kwargs):
    step = next(numbers)
    if step == start:
      jax.profiler.start_trace(trace_dir(workdir), create_perfetto_trace=True)
    out = train_fn(*args, **kwargs)
    if step == end:
      jax.block_until_ready(out)
      jax.profiler.stop_trace()
      if jax.process_index() == 0:
        print(f'profile of steps {start}-{end}: {trace_dir(workdir)}')
    return out

  return traced


def _trace_file(directory: str) -> str:
  found = sorted(glob.glob(f'{directory}/plugins/profile/*/*.trace.json.gz'))
  if not found:
    raise FileNotFoundError(f'no trace under {directory}/plugins/profile')
  return found[-1]  # the newest session


def op_times(directory: str) -> dict[str, float]:
  """Milliseconds per XLA op name, summed over threads and calls.

  Reads the newest `*.trace.json.gz` under `directory` (what
  `jax.profiler.trace` writes). Only XLA's threads count (the client's,
  which runs small programs inline, and its compute pool's), so on a
  multi-threaded CPU the total can exceed the wall time.
  """
  with gzip.open(_trace_file(directory)) as f:
    events = json.load(f)['traceEvents']
  threads = {
    (e['pid'], e['tid']): e['args']['name']
    for e in events
    if e.get('ph') == 'M' and e.get('name') == 'thread_name'
  }
  times = collections.Counter()
  for e in events:
    thread = threads.get((e.get('pid'), e.get('tid')), '')
    name = e.get('name', '')
    if e.get('ph') != 'X' or not thread.startswith('tf_XLA'):
      continue
    if '::' in name:
      continue  # the executor's own spans (ThunkExecutor::Execute) enclose ops
    times[name] += e.get('dur', 0) / 1e3
  return dict(times)


_INSTRUCTION = re.compile(
  r'^\s*(?:ROOT )?%?([\w.\-]+) = \S+ ([\w-]+)\((.*)$', re.MULTILINE
)


def _kind(name: str, opcode: str, path: str, target: str) -> str:
  if opcode == 'convolution' or path.endswith('conv_general_dilated'):
    return 'conv'
  if opcode == 'custom-call' and 'conv' in target:
    return 'conv'  # ops/native's oneDNN convolutions
  if re.search(r'/\w*norm\w*/', path) or 'norm' in target:
    return 'norm'
  if opcode in ('copy', 'transpose', 'convert') or re.search(
    r'copy|transpose|convert', name
  ):
    return 'copy/convert'
  if path and 'jvp(' not in path:
    return 'optimizer'
  return 'other'


def op_kinds(hlo_text: str) -> dict[str, str]:
  """Kind (one of KINDS) of every instruction of the compiled entry HLO."""
  entry = hlo_text[hlo_text.find('\nENTRY') :]
  kinds = {}
  for name, opcode, rest in _INSTRUCTION.findall(entry):
    path = re.search(r'op_name="([^"]*)"', rest)
    target = re.search(r'custom_call_target="([^"]*)"', rest)
    kinds[name] = _kind(
      name,
      opcode,
      path.group(1) if path else '',
      target.group(1) if target else '',
    )
  return kinds


def breakdown(
  directory: str, hlo_text: str, *, steps: int = 1
) -> dict[str, float]:
  """Milliseconds per step of each kind of work in a trace.

  Args:
    directory: the folder given to `jax.profiler.trace`.
    hlo_text: `jitted.lower(...).compile().as_text()` of the traced program.
    steps: how many calls of it the trace holds (the result is per call).

  Returns:
    {kind: ms} over KINDS (ops of other programs count as 'other').
  """
  kinds = op_kinds(hlo_text)
  totals = dict.fromkeys(KINDS, 0.0)
  for name, ms in op_times(directory).items():
    totals[kinds.get(name, 'other')] += ms / steps
  return totals
