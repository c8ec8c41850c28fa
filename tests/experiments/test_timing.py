"""Tests of experiments/timing.py: the one timing loop of benches and studies.

No real time is asserted: the clocks are replaced by counters that each
timed function advances by hand-chosen amounts, so every median below is
known exactly.
"""

import jax.numpy as jnp
import pytest

from experiments import timing


class _Clocks:
  """Fake `perf_counter` (wall) and `process_time` (cpu) of the module."""

  def __init__(self, monkeypatch):
    self.wall = self.cpu = 0.0
    monkeypatch.setattr(timing.time, 'perf_counter', lambda: self.wall)
    monkeypatch.setattr(timing.time, 'process_time', lambda: self.cpu)

  def work(self, wall: float, cpu: float) -> None:
    self.wall += wall
    self.cpu += cpu


def test_timed_returns_result_and_both_clocks(monkeypatch):
  clocks = _Clocks(monkeypatch)

  def fn():
    clocks.work(wall=3.0, cpu=1.5)
    return jnp.arange(3)

  result, cpu_s, wall_s = timing.timed(fn)
  assert result.tolist() == [0, 1, 2]
  assert (cpu_s, wall_s) == (1.5, 3.0)


def test_interleaved_takes_turns_after_one_warmup_each(monkeypatch):
  clocks = _Clocks(monkeypatch)
  calls = []
  costs = {'a': iter([99.0, 1.0, 5.0, 3.0]), 'b': iter([99.0, 2.0, 2.0, 8.0])}

  def run(name):
    def fn():
      calls.append(name)
      step = next(costs[name])
      clocks.work(wall=step, cpu=step / 2)

    return fn

  medians = timing.interleaved({'a': run('a'), 'b': run('b')}, rounds=3)
  assert calls == ['a', 'b'] * 4  # warm-up (untimed), then 3 rounds
  assert medians == {'a': 3.0, 'b': 2.0}


def test_cpu_clock_and_self_timed_runs(monkeypatch):
  clocks = _Clocks(monkeypatch)
  own = iter([0.0, 0.25, 0.75, 0.5])  # a run timed in another process

  def local():
    clocks.work(wall=10.0, cpu=4.0)

  medians = timing.interleaved(
    {'local': local, 'remote': lambda: next(own)}, rounds=3, clock='cpu'
  )
  assert medians == {'local': 4.0, 'remote': 0.5}
  assert timing.median(local, 2) == 10.0


def test_bad_arguments():
  with pytest.raises(ValueError, match='clock'):
    timing.interleaved({'a': lambda: None}, 1, clock='gpu')
  with pytest.raises(ValueError, match='rounds'):
    timing.median(lambda: None, 0)
