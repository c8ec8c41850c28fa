"""Each arm at its own best learning rate: a grid, the pick, fresh seeds.

The papers the studies scale down compare networks each at the learning rate
that suits it (Krizhevsky et al. 2012, Fig. 1: "chosen independently to make
training as fast as possible"; Ioffe & Szegedy 2015 raise BN's rate). This
module is that protocol, shared by the studies that need it:

1. on one selection seed, train at the rates of a start grid; while the best
   rate lies at an edge of the rates tried, try the next rate of a ladder
   beyond that edge (a bounded number of times), so the pick is never a
   grid edge by accident;
2. best: the fewest steps until the logged metric (training error or loss)
   first falls to a target; among rates that miss it, the lowest final
   value; ties go to the smaller rate;
3. measure at the best rate on fresh seeds (not the selection seed, whose
   luck picked the rate).

`ratio_interval` turns two arms' per-seed steps into a paired interval of
their ratio (a missed target counts as the budget, a bound).
"""

from collections.abc import Callable, Sequence
import dataclasses
import math

import numpy as np

from experiments.studies import verdict as verdict_lib


@dataclasses.dataclass
class Run:
  """One training run's logged metric (lower is better) or its divergence.

  Attributes:
    steps: the logged steps.
    values: the metric at those steps (training error or loss).
    diverged: the trainer stopped it on a non-finite loss.
  """

  steps: list
  values: list
  diverged: bool = False

  def reach(self, target: float) -> float:
    """The first logged step whose value is <= target; inf if none is."""
    for step, value in zip(self.steps, self.values, strict=True):
      if value <= target:
        return float(step)
    return math.inf

  def final(self) -> float:
    """The last logged value; inf for a diverged or empty run."""
    if self.diverged or not self.values:
      return math.inf
    return float(self.values[-1])


@dataclasses.dataclass
class Tuned:
  """An arm tuned on the selection seed and measured on fresh seeds.

  Attributes:
    grid: {lr: Run} on the selection seed, in the order tried.
    best_lr: the pick.
    runs: {seed: Run} at `best_lr`.
    target: the metric's target.
  """

  grid: dict
  best_lr: float
  runs: dict
  target: float

  @property
  def reach(self) -> list[float]:
    """Steps to the target per measured seed (inf: missed)."""
    return [run.reach(self.target) for run in self.runs.values()]


def best_rate(grid: dict, target: float) -> float:
  """The fastest rate of `grid` ({lr: Run}), by the rule above."""
  return min(
    grid, key=lambda lr: (grid[lr].reach(target), grid[lr].final(), lr)
  )


def next_rate(
  tried: Sequence[float], best: float, ladder: Sequence[float]
) -> float | None:
  """The ladder's rate beyond the edge `best` sits on; None if inside."""
  ladder = sorted(ladder)
  if best == max(tried):
    above = [lr for lr in ladder if lr > best]
    return above[0] if above else None
  if best == min(tried):
    below = [lr for lr in ladder if lr < best]
    return below[-1] if below else None
  return None


def tune(
  train: Callable[[float, int], Run],
  *,
  start: Sequence[float],
  ladder: Sequence[float],
  extensions: int,
  seed: int,
  target: float,
) -> tuple[dict, float]:
  """({lr: Run}, best lr): the start grid, extended past a best edge."""
  grid = {lr: train(lr, seed) for lr in start}
  for _ in range(extensions):
    lr = next_rate(list(grid), best_rate(grid, target), ladder)
    if lr is None or lr in grid:
      break
    grid[lr] = train(lr, seed)
  return grid, best_rate(grid, target)


def tune_and_measure(
  train: Callable[[float, int], Run],
  *,
  start: Sequence[float],
  ladder: Sequence[float],
  extensions: int,
  select_seed: int,
  seeds: Sequence[int],
  target: float,
) -> Tuned:
  """Tunes on `select_seed`, then trains `seeds` at the best rate.

  A measured seed equal to the selection seed reuses its grid run (only
  `--quick` does that, to fit its budget).
  """
  grid, best = tune(
    train,
    start=start,
    ladder=ladder,
    extensions=extensions,
    seed=select_seed,
    target=target,
  )
  runs = {s: grid[best] if s == select_seed else train(best, s) for s in seeds}
  return Tuned(grid=grid, best_lr=best, runs=runs, target=target)


def ratio_interval(
  reference: Sequence[float], other: Sequence[float], budget: int
) -> tuple[float, float, float]:
  """(geometric mean, low, high) of per-seed ratios other / reference.

  Args:
    reference: steps to the target per seed of the reference arm (inf:
      missed within `budget`).
    other: the other arm's, for the same seeds (paired).
    budget: the run length; a missed target counts as `budget` steps.

  Returns:
    `verdict.log_t_interval` of the ratios. A miss makes its ratio a bound:
    when `other` missed in any seed the upper end is inf; when `reference`
    did, the lower end is 0.
  """
  if len(reference) != len(other) or not reference:
    raise ValueError('need the same, non-zero number of seeds in both arms')
  ref = np.minimum(np.asarray(reference, np.float64), budget)
  oth = np.minimum(np.asarray(other, np.float64), budget)
  estimate, low, high = verdict_lib.log_t_interval(oth / ref)
  if not all(math.isfinite(s) for s in other):
    high = math.inf
  if not all(math.isfinite(s) for s in reference):
    low = 0.0
  return estimate, low, high


def format_steps(reach: Sequence[float], budget: int) -> str:
  """Mean +- sd of steps to the target, or '> budget (k/n seeds missed)'."""
  missed = sum(not math.isfinite(s) for s in reach)
  if missed:
    return f'> {budget} ({missed}/{len(reach)} seeds missed)'
  if len(reach) == 1:
    return f'{reach[0]:.0f}'
  return f'{np.mean(reach):.0f} +- {np.std(reach, ddof=1):.0f}'


def mean_curve(runs: Sequence[Run]) -> tuple[list, np.ndarray] | None:
  """(steps, mean value) over the runs that logged, to the shortest; None."""
  curves = [r for r in runs if r.values]
  if not curves:
    return None
  n = min(len(r.values) for r in curves)
  return curves[0].steps[:n], np.mean([r.values[:n] for r in curves], axis=0)


def finite_or_none(x: float) -> float | None:
  """JSON has no inf: None for a missed target."""
  return float(x) if math.isfinite(x) else None
