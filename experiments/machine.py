"""The machine a measurement ran on, in the words every report prints.

The CPU model and its flags (read from /proc/cpuinfo, or text in its format,
so that tests can hand it one), the load average and the number of CPUs
this process may use (`ops.host`, the count the input pipeline and the
native convolution size their threads by). The benchmarks and the studies
print these beside their numbers: on a shared machine they are lower
bounds, and a bfloat16 figure means little without the CPU's bfloat16 and
AMX flags.
"""

import os

from ops import host

core_count = host.usable_cpu_count
read_cpuinfo = host.read_cpuinfo
cpu_model = host.cpu_model
cpu_flags = host.cpu_flags
# What the bfloat16 figures depend on: AVX-512 with bfloat16 dot products,
# and AMX tiles (oneDNN's fastest bfloat16 convolutions).
BFLOAT16_FLAGS = ('avx512_bf16', 'amx_bf16')
_SHOWN_FLAGS = ('avx2', 'avx512f', *BFLOAT16_FLAGS)


def load_average(digits: int = 1, minutes: tuple[int, ...] = (1, 5, 15)) -> str:
  """The load averages over `minutes` (of 1, 5, 15), e.g. '0.5, 1.2, 1.0'."""
  try:
    loads = dict(zip((1, 5, 15), os.getloadavg(), strict=True))
  except OSError:  # Not available on this platform.
    return 'unknown'
  return ', '.join(f'{loads[m]:.{digits}f}' for m in minutes)


def cpu_line(cpuinfo: str | None = None) -> str:
  """CPU model, usable cores, its bfloat16 / AMX flags and the load.

  e.g. 'CPU: Intel Xeon ..., 2 cores; has avx2 avx512f amx_bf16; lacks
  avx512_bf16; load average 0.5, 0.6, 0.7'. Every flag of
  `BFLOAT16_FLAGS` is named, as had or as lacked.
  """
  text = read_cpuinfo() if cpuinfo is None else cpuinfo
  flags = cpu_flags(text)
  has = [f for f in _SHOWN_FLAGS if f in flags]
  lacks = [f for f in BFLOAT16_FLAGS if f not in flags]
  return (
    f'CPU: {cpu_model(text)}, {core_count()} cores; has '
    f'{" ".join(has) or "none of avx2/avx512"}; lacks '
    f'{" ".join(lacks) or "nothing"}; load average {load_average()}'
  )
