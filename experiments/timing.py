"""How the benchmarks and the studies time things: one loop, two clocks.

`timed` runs a function once and returns its result with the process CPU
time and the wall time it took, after waiting for any jax arrays it
returns. CPU time (all threads of this process) measures the work done and
is not inflated, as wall time is, by other processes sharing the cores;
wall time is what a user waits. `interleaved` times several variants in
turn (A B A B ...), so a change in the machine's load hits them alike, each
warmed up first, and gives each one's median; `median` is that for one.

No test asserts a time: the numbers go into reports, beside the machine
they were measured on (`experiments.machine`).
"""

from collections.abc import Callable, Mapping
import statistics
import time
from typing import Any, NamedTuple

import jax

CLOCKS = ('wall', 'cpu')


class Timing(NamedTuple):
  """One timed call: its result, CPU seconds and wall seconds."""

  result: Any
  cpu_s: float
  wall_s: float


def timed(fn: Callable[[], Any]) -> Timing:
  """Runs `fn()` once, waiting for the jax arrays it returns, and times it."""
  cpu, wall = time.process_time(), time.perf_counter()
  result = jax.block_until_ready(fn())
  return Timing(result, time.process_time() - cpu, time.perf_counter() - wall)


def interleaved(
  runs: Mapping[str, Callable[[], Any]],
  rounds: int,
  *,
  clock: str = 'wall',
  warmup: bool = True,
) -> dict[str, float]:
  """Median seconds per variant; each runs once per round, in turn.

  Args:
    runs: name -> a function to time. One that returns a float has timed
      itself (e.g. PyTorch's step in its own process): that float is taken
      as its seconds instead of the time around the call.
    rounds: calls of each variant that are timed.
    clock: 'wall' (`time.perf_counter`) or 'cpu' (`time.process_time`).
    warmup: call each variant once, untimed, first (compilation, caches).

  Returns:
    {name: median seconds}.
  """
  if clock not in CLOCKS:
    raise ValueError(f'clock must be one of {CLOCKS}, got {clock!r}')
  if rounds < 1:
    raise ValueError(f'rounds must be positive, got {rounds}')
  if warmup:
    for run in runs.values():
      jax.block_until_ready(run())
  times = {name: [] for name in runs}
  for _ in range(rounds):
    for name, run in runs.items():
      result, cpu_s, wall_s = timed(run)
      if isinstance(result, float):
        times[name].append(result)
      else:
        times[name].append(wall_s if clock == 'wall' else cpu_s)
  return {name: statistics.median(t) for name, t in times.items()}


def median(
  fn: Callable[[], Any], repeats: int, *, clock: str = 'wall'
) -> float:
  """Median seconds of `repeats` calls of `fn()`, after one warm-up call."""
  return interleaved({'': fn}, repeats, clock=clock)['']
