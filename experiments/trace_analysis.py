"""Where a `jax.profiler` trace's time went, read offline from its files.

`breakdown(trace_dir, hlo_text)` attributes a trace's XLA:CPU op times to
kinds of work (convolutions, normalisation, copies and converts, the
optimizer, the rest) using the compiled HLO's metadata: each op records the
JAX source path that produced it, `jvp(ResNet)/stage1_block1/norm2/mul`,
so an op is normalisation when a Flax module on its path is named `*norm*`,
and optimizer work when it is outside the model's forward and backward
(`jvp(`, `transpose(`). It is what `experiments.bench` prints beside
PyTorch's profiler table and what README's step profile was made with. The
trainer's side of profiling (tracing chosen steps of a run) is
train_lib/profiling.py.
"""

import collections
import glob
import gzip
import json
import re

KINDS = ('conv', 'norm', 'copy/convert', 'optimizer', 'other')


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


# name = type opcode(...): the type is a shape or a tuple of shapes (a
# custom call with several results, e.g. the native BatchNorm's).
_INSTRUCTION = re.compile(
  r'^\s*(?:ROOT )?%?([\w.\-]+) = (?:\([^()]*\)|\S+) ([\w-]+)\((.*)$',
  re.MULTILINE,
)


def _kind(name: str, opcode: str, path: str, target: str) -> str:
  if opcode == 'convolution' or path.endswith('conv_general_dilated'):
    return 'conv'
  if opcode == 'custom-call' and target.startswith('onednn_bn'):
    return 'norm'  # ops/native's BatchNorm
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
