"""The host's CPUs as this process sees them (no jax).

One count for everything that sizes a pool of threads or processes to the
machine: the native convolution's OpenMP team (`ops.native.loader`), the
input pipeline's threads and workers (`train_lib.data`) and the machine
line of the benchmarks and studies (`experiments.machine`).
"""

import os


def usable_cpu_count() -> int:
  """The CPUs this process may run on: its affinity mask, at least 1.

  Not `os.cpu_count()`, which counts the machine's CPUs even where a
  container or `taskset` leaves the process fewer.
  """
  if hasattr(os, 'sched_getaffinity'):  # Linux
    return max(1, len(os.sched_getaffinity(0)))
  return os.cpu_count() or 1
