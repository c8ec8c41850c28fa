"""The host's CPUs as this process sees them (no jax).

One count for everything that sizes a pool of threads or processes to the
machine: the native convolution's OpenMP team (`ops.native.loader`), the
input pipeline's threads and workers (`train_lib.data`) and the machine
line of the benchmarks and studies (`experiments.machine`). And the CPU's
model and flags (read from /proc/cpuinfo, or text in its format, so that
tests can hand it one): what a measurement made on this machine holds for
(`ops.choice_cache`, `experiments.machine`).
"""

import contextlib
import os
import platform


def usable_cpu_count() -> int:
  """The CPUs this process may run on: its affinity mask, at least 1.

  Not `os.cpu_count()`, which counts the machine's CPUs even where a
  container or `taskset` leaves the process fewer.
  """
  if hasattr(os, 'sched_getaffinity'):  # Linux
    return max(1, len(os.sched_getaffinity(0)))
  return os.cpu_count() or 1


def read_cpuinfo() -> str:
  """The text of /proc/cpuinfo, or '' where there is none."""
  with contextlib.suppress(OSError), open('/proc/cpuinfo') as f:
    return f.read()
  return ''


def _field(cpuinfo: str, name: str) -> str | None:
  """The value of the first CPU's `name : value` line, if it has one.

  CPUs are blocks separated by blank lines; only the first is read, so a
  field the first CPU lacks is not taken from another.
  """
  first = cpuinfo.strip().split('\n\n', 1)[0]
  for line in first.splitlines():
    key, sep, value = line.partition(':')
    if sep and key.strip() == name:
      return value.strip()
  return None


def cpu_model(cpuinfo: str | None = None) -> str:
  """The 'model name' of the first CPU, else the platform's processor."""
  text = read_cpuinfo() if cpuinfo is None else cpuinfo
  model = _field(text, 'model name')
  return model or platform.processor() or platform.machine() or 'unknown CPU'


def cpu_flags(cpuinfo: str | None = None) -> frozenset[str]:
  """The first CPU's feature flags ('flags' line); empty if unknown."""
  text = read_cpuinfo() if cpuinfo is None else cpuinfo
  return frozenset((_field(text, 'flags') or '').split())
