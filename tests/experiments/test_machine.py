"""Tests of experiments/machine.py: the machine line of every report.

References: /proc/cpuinfo texts written by hand in the kernel's format (two
CPUs each, the first one's fields counting), for the CPU kinds the bfloat16
figures tell apart; load and affinity set by hand (monkeypatched os).
"""

import os

import pytest

from experiments import machine


def _cpuinfo(model: str | None, flags: str | None) -> str:
  """Two CPUs in /proc/cpuinfo's format; the second's fields differ."""
  cpus = []
  for i, (m, f) in enumerate(((model, flags), ('Other CPU', 'sse avx2'))):
    lines = [f'processor\t: {i}', 'vendor_id\t: GenuineIntel']
    if m is not None:
      lines.append(f'model name\t: {m}')
    if f is not None:
      lines.append(f'flags\t\t: fpu vme {f} ht')
    cpus.append('\n'.join(lines))
  return '\n\n'.join(cpus) + '\n'


SAPPHIRE_RAPIDS = _cpuinfo(
  'Intel(R) Xeon(R) Platinum 8480+',
  'avx2 avx512f avx512_bf16 amx_bf16 amx_tile amx_int8',
)
ZEN4 = _cpuinfo('AMD EPYC 9B14', 'avx2 avx512f avx512_bf16')
ZEN2 = _cpuinfo('AMD EPYC 7B12', 'avx2 fma')
LOOKALIKES = _cpuinfo('Lookalike', 'avx512fx amx_bf16_off avx2_')


@pytest.fixture(autouse=True)
def _fixed_host(monkeypatch):
  monkeypatch.setattr(os, 'sched_getaffinity', lambda pid: {0, 1, 2})
  monkeypatch.setattr(os, 'getloadavg', lambda: (0.51, 1.26, 2.0))


@pytest.mark.parametrize(
  'cpuinfo, has, lacks',
  [
    (SAPPHIRE_RAPIDS, 'avx2 avx512f avx512_bf16 amx_bf16', 'nothing'),
    (ZEN4, 'avx2 avx512f avx512_bf16', 'amx_bf16'),
    (ZEN2, 'avx2', 'avx512_bf16 amx_bf16'),
    (LOOKALIKES, 'none of avx2/avx512', 'avx512_bf16 amx_bf16'),
    (_cpuinfo('No flags', None), 'none of avx2/avx512', 'avx512_bf16 amx_bf16'),
  ],
)
def test_cpu_line_splits_the_first_cpus_flags(cpuinfo, has, lacks):
  line = machine.cpu_line(cpuinfo)
  model = cpuinfo.split('model name\t: ')[1].split('\n')[0]
  assert line == (
    f'CPU: {model}, 3 cores; has {has}; lacks {lacks}; '
    'load average 0.5, 1.3, 2.0'
  )


def test_model_and_flags_are_the_first_cpus():
  assert machine.cpu_model(ZEN4) == 'AMD EPYC 9B14'
  assert machine.cpu_flags(ZEN2) == {'fpu', 'vme', 'avx2', 'fma', 'ht'}
  assert machine.cpu_flags('') == frozenset()
  # Without a model name line: the platform's name, never an empty string.
  assert machine.cpu_model(_cpuinfo(None, 'avx2'))


def test_load_average_digits_minutes_and_absence(monkeypatch):
  assert machine.load_average() == '0.5, 1.3, 2.0'
  assert machine.load_average(digits=2) == '0.51, 1.26, 2.00'
  assert machine.load_average(minutes=(1,)) == '0.5'
  assert machine.load_average(minutes=(15, 1)) == '2.0, 0.5'

  def unavailable():
    raise OSError('no load average')

  monkeypatch.setattr(os, 'getloadavg', unavailable)
  assert machine.load_average() == 'unknown'


def test_core_count_is_the_affinity_mask():
  assert machine.core_count() == 3
