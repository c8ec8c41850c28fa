"""ReLU converges faster than sigmoid and tanh ("e.g. 6x").

Notes (seed 003, "Activation functions", ReLU; seed 004, "ReLU: Pros and
Cons"; seed 001, "reported around 6X speed"): ReLU "converges much faster
than sigmoid/tanh in practice (e.g. 6x)" [Krizhevsky et al., 2012]; Leaky
ReLU, PReLU, ELU, GELU, Swish and Maxout are its successors.

Notes and paper differ. Krizhevsky et al. (2012, Fig. 1) compare ReLU with
*tanh* only (not sigmoid): a four-layer CNN on CIFAR-10 reaches 25% training
error six times faster with ReLUs, each network with its own learning rate
"chosen to make training as fast as possible", no regularisation. The notes
extend the 6x to sigmoid.

The study trains the same 4-layer MLP (3 hidden layers, then the linear
head) on MNIST-5k through the project's trainer, once per activation and
seed, and counts the steps until the training loss (the mean over each
`LOG_EVERY` logged steps of minibatch cross-entropy) first falls to
`TARGET_LOSS`. The speed-up of ReLU over an activation is the ratio of their
mean steps-to-target over the seeds.

Fairness: every arm has the same optimizer and learning rate, SGD with
momentum 0.9 (Krizhevsky's optimizer) at a constant `LR` (a decaying schedule
would tie steps-to-target to the run's length), no weight decay, dropout,
label smoothing or augmentation, so that the loss is plain cross-entropy and
the activation is the only difference, plus the initializer matched to it
(`nets.mlp.resolve_init`: He before ReLU-like units, Xavier before sigmoid
and tanh, LeCun for each maxout piece), since each activation is used with
its own init in practice. One shared learning rate does not give every arm
its best rate: `LR` = 0.03 is, of the two rates tried (0.1, 0.03), the one
at which the ReLU-family arms train without loss spikes (seed 0); sigmoid,
whose derivative is at most 1/4, would prefer a larger one, so the full run
repeats ReLU, sigmoid and tanh at 0.1 (seed 0) and reports how the ratios
move. An arm that never reaches the target within
the budget is reported as "> budget" and its ratio as a lower bound
("> x"), never as a number it did not measure.
"""

from collections.abc import Sequence
import math

import numpy as np

from experiments.configs import mnist
from experiments.studies import report

CLAIM = (
  'ReLU networks converge much faster than sigmoid or tanh networks '
  '("e.g. 6x"); Leaky ReLU, ELU, GELU, Swish and Maxout keep that speed.'
)
SOURCE = (
  'notes, seeds 001/003/004, "Activation functions: ReLU"; Krizhevsky et '
  'al. 2012, Fig. 1 (ReLU vs tanh, 6x to 25% CIFAR-10 training error)'
)

ACTIVATIONS = (
  'relu',
  'sigmoid',
  'tanh',
  'leaky_relu',
  'elu',
  'gelu',
  'swish',
  'maxout',
)
TARGET_LOSS = 0.1  # Mean training cross-entropy, about 97% train accuracy.
LR = 0.03
CHECK_LR = 0.1  # The sensitivity check's learning rate (full size only).
CHECK_BUDGET = 600
LOG_EVERY = 10  # Steps per logged (averaged) training loss.
NOTES_RATIO = 6.0
MUCH_FASTER = 2.0  # "Much faster": at least twice as fast.


def steps_to_target(
  steps: Sequence[int], losses: Sequence[float], target: float
) -> float:
  """The first logged step whose loss is <= target; inf if none is."""
  for step, loss in zip(steps, losses, strict=True):
    if loss <= target:
      return float(step)
  return math.inf


def speedup(
  reference: Sequence[float], other: Sequence[float], budget: int
) -> tuple[float, bool]:
  """Ratio of mean steps-to-target, other / reference.

  Args:
    reference: the reference arm's steps-to-target per seed (inf: never).
    other: the other arm's, per seed.
    budget: the run length; a seed that never reached the target counts
      as `budget` steps, which it took at least.

  Returns:
    `(ratio, lower_bound)`: `lower_bound` is True when `other` missed the
    target in some seed, so the true ratio is larger. The ratio is nan if
    the reference missed it in some seed.
  """
  if not all(math.isfinite(s) for s in reference):
    return math.nan, False
  missed = not all(math.isfinite(s) for s in other)
  other_mean = np.mean([min(s, budget) for s in other])
  return float(other_mean / np.mean(reference)), missed


def format_ratio(ratio: float, lower_bound: bool) -> str:
  """'6.1x', '> 6.1x' for a lower bound, 'n/a' when undefined."""
  if math.isnan(ratio):
    return 'n/a'
  return f'{"> " if lower_bound else ""}{ratio:.2g}x'


def format_steps(
  per_seed: Sequence[float], budget: int, diverged: int = 0
) -> str:
  """Mean +- std of steps-to-target, or '> budget (k/n missed)'.

  `diverged` of the missed seeds stopped on a non-finite loss.
  """
  missed = sum(not math.isfinite(s) for s in per_seed)
  if missed:
    why = f', {diverged} diverged' if diverged else ''
    return f'> {budget} ({missed}/{len(per_seed)} seeds missed{why})'
  if len(per_seed) == 1:
    return f'{per_seed[0]:.0f}'
  return f'{np.mean(per_seed):.0f} +- {np.std(per_seed):.0f}'


def make_config(activation, seed, *, steps, hidden, lr=LR):
  """MNIST-5k MLP config of one arm: SGD + momentum, constant lr."""
  config = mnist.get_config('mlp')
  report.plain_sgd(
    config,
    seed=seed,
    lr=lr,
    total_steps=steps,
    log_every_steps=LOG_EVERY,
  )
  config.model_kw.hidden_sizes = tuple(hidden)
  config.model_kw.dropout_rate = 0.0
  config.model_kw.activation = activation
  return config


def _train(activation, seed, *, steps, hidden, lr=LR):
  """(steps, losses, test accuracy) of one arm; diverged: ([], [], nan)."""
  from train_lib import trainer  # noqa: PLC0415 - heavy; not for --list.

  try:
    run = report.train(
      make_config(activation, seed, steps=steps, hidden=hidden, lr=lr)
    )
  except trainer.DivergedError:
    return [], [], math.nan
  steps_logged, losses = run.series('loss')
  return steps_logged, losses, run.final('accuracy')


def run(quick: bool = False) -> report.Result:
  """Trains every activation over the seeds; `quick`: ReLU vs sigmoid."""
  acts = ('relu', 'sigmoid') if quick else ACTIVATIONS
  seeds = (0,) if quick else (0, 1, 2)
  budget = 300 if quick else 1200
  hidden = (64, 64, 64) if quick else (128, 128, 128)

  curves, reach, test_acc = {}, {}, {}
  for act in acts:
    curves[act], reach[act], test_acc[act] = [], [], []
    for seed in seeds:
      steps, losses, acc = _train(act, seed, steps=budget, hidden=hidden)
      curves[act].append((steps, losses))
      reach[act].append(steps_to_target(steps, losses, TARGET_LOSS))
      test_acc[act].append(acc)

  ratios = {a: speedup(reach['relu'], reach[a], budget) for a in acts}
  rows = []
  for act in acts:
    finals = [ls[-1] if ls else math.nan for _, ls in curves[act]]
    diverged = sum(not ls for _, ls in curves[act])
    rows.append(
      (
        act,
        format_steps(reach[act], budget, diverged),
        format_ratio(*ratios[act]),
        float(np.mean(finals)),
        float(np.mean(test_acc[act])),
      )
    )
  check = {} if quick else _lr_check(budget, hidden)
  fig = _figure(acts, curves, reach, ratios, budget)
  return _result(fig, rows, acts, reach, ratios, check, budget, seeds, hidden)


def _lr_check(budget, hidden) -> dict:
  """ReLU, sigmoid and tanh at CHECK_LR (seed 0): steps-to-target each."""
  check = {}
  for act in ('relu', 'sigmoid', 'tanh'):
    steps, losses, _ = _train(
      act, 0, steps=CHECK_BUDGET, hidden=hidden, lr=CHECK_LR
    )
    check[act] = steps_to_target(steps, losses, TARGET_LOSS)
  return check


def _figure(acts, curves, reach, ratios, budget):
  fig, (ax, bx) = report.new_figure(ncols=2)
  colors = dict(zip(ACTIVATIONS, [f'C{i}' for i in range(10)], strict=False))
  for act in acts:
    grid = min(len(s) for s, _ in curves[act])
    if not grid:
      continue
    steps = curves[act][0][0][:grid]
    losses = np.array([ls[:grid] for _, ls in curves[act]])
    ax.plot(steps, losses.mean(0), color=colors[act], label=act)
    if len(losses) > 1:
      ax.fill_between(
        steps, losses.min(0), losses.max(0), color=colors[act], alpha=0.2
      )
  ax.axhline(TARGET_LOSS, color='k', ls='--', lw=1, label='target')
  ax.set_yscale('log')
  ax.set_xlabel('training step')
  ax.set_ylabel(f'training loss (cross-entropy, mean of {LOG_EVERY} steps)')
  ax.set_title('Training loss (mean; band: min-max over seeds)')
  ax.legend(fontsize=7, ncol=2)

  for i, act in enumerate(acts):
    per_seed = [min(s, budget) for s in reach[act]]
    missed = not all(math.isfinite(s) for s in reach[act])
    bx.barh(
      i,
      np.mean(per_seed),
      color=colors[act],
      hatch='//' if missed else None,
      alpha=0.5 if missed else 0.9,
    )
    bx.plot(per_seed, [i] * len(per_seed), 'k.', ms=4)
    label = format_ratio(*ratios[act]) if act != 'relu' else 'reference'
    if missed:
      label = f'> budget; {label}'
    bx.text(max(per_seed), i, f'  {label}', va='center', fontsize=7)
  bx.set_yticks(range(len(acts)), acts)
  bx.invert_yaxis()
  bx.set_xlim(0, budget * 1.45)
  bx.set_xlabel(f'steps to training loss {TARGET_LOSS} (dots: seeds)')
  bx.set_title('Steps to target (label: ReLU speed-up)')
  fig.suptitle(f'ReLU vs sigmoid/tanh on MNIST-5k (SGD+momentum, lr {LR})')
  return fig


def _result(fig, rows, acts, reach, ratios, check, budget, seeds, hidden):
  sig, sig_lb = ratios['sigmoid']
  tanh, tanh_lb = ratios.get('tanh', (math.nan, False))
  measured = [r for r in (sig, tanh) if not math.isnan(r)]
  holds = bool(measured) and all(r >= MUCH_FASTER for r in measured)
  verdict = (
    f'ReLU reaches training loss {TARGET_LOSS} '
    f'{format_ratio(sig, sig_lb)} faster than sigmoid'
  )
  if 'tanh' in ratios:
    verdict += f' and {format_ratio(tanh, tanh_lb)} faster than tanh'
  verdict += f' (mean over {len(seeds)} seed(s); the notes say "e.g. 6x").'
  verdict += (
    f' "Much faster" (at least {MUCH_FASTER:g}x) '
    + ('holds against ' if sig >= MUCH_FASTER else 'does NOT hold against ')
    + 'sigmoid'
  )
  if 'tanh' in ratios:
    verdict += '; against tanh, the pair Krizhevsky et al. measured, it ' + (
      'holds' if tanh >= MUCH_FASTER else 'does NOT hold'
    )
  verdict += ' on this MLP.'
  values = {
    'steps_to_target': {a: [_finite(s) for s in reach[a]] for a in acts},
    'relu_vs_sigmoid': _finite(sig),
    'relu_vs_sigmoid_lower_bound': sig_lb,
    'relu_vs_tanh': _finite(tanh),
    'relu_vs_tanh_lower_bound': tanh_lb,
    'target_loss': TARGET_LOSS,
    'budget_steps': budget,
  }
  notes = [
    f'MLP 784-{"-".join(map(str, hidden))}-10 on MNIST-5k (4,000 training '
    f'images), batch 128, SGD + momentum 0.9, constant lr {LR}, {budget} '
    f'steps, seeds {", ".join(map(str, seeds))}; init matched to the '
    'activation (He; Xavier for sigmoid/tanh; LeCun for maxout, 2 pieces '
    'per unit).',
    f'Steps to target: first logged step (every {LOG_EVERY}) whose mean '
    f'training loss is <= {TARGET_LOSS}; "> {budget}": never reached, '
    'counted as the budget, so the ratio is a lower bound.',
  ]
  if check:
    values['lr_check'] = {a: _finite(s) for a, s in check.items()}
    r_sig = speedup([check['relu']], [check['sigmoid']], CHECK_BUDGET)
    r_tanh = speedup([check['relu']], [check['tanh']], CHECK_BUDGET)
    notes.append(
      f'Sensitivity, seed 0 at lr {CHECK_LR}: steps to target ReLU '
      f'{format_steps([check["relu"]], CHECK_BUDGET)}, sigmoid '
      f'{format_steps([check["sigmoid"]], CHECK_BUDGET)}, tanh '
      f'{format_steps([check["tanh"]], CHECK_BUDGET)}: ReLU '
      f'{format_ratio(*r_sig)} vs sigmoid, {format_ratio(*r_tanh)} vs tanh.'
    )
  return report.Result(
    figure=fig,
    columns=(
      'activation',
      'steps to target',
      'ReLU speed-up',
      'final train loss',
      'test accuracy',
    ),
    rows=rows,
    holds=holds,
    verdict=verdict,
    values=values,
    notes=notes,
  )


def _finite(x: float) -> float | None:
  """JSON has no inf or nan: None for either."""
  return float(x) if math.isfinite(x) else None
