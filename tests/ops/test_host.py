"""Tests of ops/host.py: the CPU count every thread pool is sized by.

References: affinity masks and CPU counts set by hand (monkeypatched os).
"""

import os

from ops import host
from ops.native import loader


def test_counts_the_affinity_mask_not_the_machine(monkeypatch):
  monkeypatch.setattr(os, 'sched_getaffinity', lambda pid: {0, 5, 7})
  monkeypatch.setattr(os, 'cpu_count', lambda: 64)
  assert host.usable_cpu_count() == 3
  monkeypatch.delenv('OMP_NUM_THREADS', raising=False)
  assert loader.default_threads() == 3


def test_without_affinity_the_cpu_count_or_one(monkeypatch):
  monkeypatch.delattr(os, 'sched_getaffinity', raising=False)
  monkeypatch.setattr(os, 'cpu_count', lambda: 6)
  assert host.usable_cpu_count() == 6
  monkeypatch.setattr(os, 'cpu_count', lambda: None)
  assert host.usable_cpu_count() == 1
