"""Learning-rate schedules, and the notes' sweep of its magnitude.

Notes (seed 002, "Convolutional Neural Networks 2", slides "Learning
Rates" to "Warmup"): the learning rate is "the most important
hyperparameter"; for "1. the magnitude of the learning rate", "0.1, 0.01,
0.001, 0.0001 would be a good candidate"; then "2. the rate of decay": step
decay, exponential decay and the cosine scheduler eta_t = eta_T + (eta_0 -
eta_T) / 2 (1 + cos(pi t / T)) ("we might not want to decrease the learning
rate too drastically in the beginning; we might want to refine the solution
at the end"), and warmup ("choosing sufficiently small learning rate to
prevent divergence in the beginning"; Goyal et al. 2017).

The study trains one net (an MLP, 256 hidden ReLU units, SGD with momentum
0.9, batch 64) on digits (899 train / 898 test) with the project's trainer
for the same number of steps under five schedules of peak lr 0.1 (constant;
step decay x0.1 at 1/2 and 3/4 of the run; exponential decay to 1/100;
cosine to 0; cosine after a warmup of 1/10 of the run), over several seeds,
and sweeps the notes' four magnitudes with the cosine schedule. The figure
draws the lr the trainer logged (`lr` in metrics.jsonl: the rate of the
update that produced the logged step, i.e. schedule(step - 1)) over the
schedule function itself (`train_lib.schedules.create_schedule`), the final
test accuracy per schedule, and the sweep.

Where notes and study differ: the notes give the candidates and the shapes
but no numbers; the claim tested is the slide's ordering (magnitude first,
then decay), measured here on a small problem where every decaying schedule
may end within the seeds' spread of each other.
"""

import numpy as np

from experiments.configs import common
from experiments.configs import digits
from experiments.studies import report

CLAIM = (
  "The learning rate's magnitude matters most (the notes' candidates 0.1, "
  '0.01, 0.001, 0.0001 differ more in final accuracy than the schedules '
  'do), and decaying it (step, exponential, cosine) ends better than a '
  'constant rate on the same step budget.'
)
SOURCE = (
  'notes, seed 002 ("CNNs 2"), slides "Learning Rates" (0.1, 0.01, 0.001, '
  '0.0001 "would be a good candidate"), "Step Decay", "Exponential Decay", '
  '"Cosine Scheduler", "Warmup"'
)

PEAK_LR = 0.1
SWEEP = (0.1, 0.01, 0.001, 0.0001)
SCHEDULE_NAMES = ('constant', 'step', 'exponential', 'cosine', 'cosine+warmup')
QUICK_NAMES = ('constant', 'step', 'cosine')


def schedule_keys(name: str, total_steps: int) -> dict:
  """The config keys of one arm (`common.set_keys` names), same budget."""
  if name == 'constant':
    return {'schedule': 'constant', 'warmup_steps': 0}
  if name == 'step':
    half, three_quarters = total_steps // 2, 3 * total_steps // 4
    return {
      'schedule': 'step',
      'warmup_steps': 0,
      'boundaries': (half, three_quarters),
      'decay_factor': 0.1,
    }
  if name == 'exponential':
    # x0.1 every half run: the rate ends at 1/100 of its peak.
    return {
      'schedule': 'exponential',
      'warmup_steps': 0,
      'decay_factor': 0.1,
      'decay_steps': total_steps // 2,
    }
  if name == 'cosine':
    return {'schedule': 'cosine', 'warmup_steps': 0, 'lr_end': 0.0}
  if name == 'cosine+warmup':
    return {
      'schedule': 'cosine',
      'warmup_steps': total_steps // 10,
      'lr_end': 0.0,
    }
  raise ValueError(f'unknown schedule arm {name!r}')


def arm_config(name: str, *, lr: float, steps: int, seed: int, log_every: int):
  """digits.py's MLP with plain SGD + momentum and the arm's schedule."""
  config = digits.get_config('mlp')
  config.model_kw.hidden_sizes = (256,)
  config.model_kw.dropout_rate = 0.0
  common.set_keys(
    config,
    seed=seed,
    lr=lr,
    total_steps=steps,
    optimizer='momentum',
    momentum=0.9,
    weight_decay=0.0,
    label_smoothing=0.0,
    crop_padding=0,
    log_every_steps=log_every,
    eval_every_steps=0,
    checkpoint_every_steps=0,
    **schedule_keys(name, steps),
  )
  return config


def logged_lr_error(config, steps, logged) -> float:
  """Largest |logged lr - schedule(step - 1)| over the logged train lines.

  The trainer logs, at step s, the rate of the update that produced step s:
  the schedule evaluated at the optimizer count s - 1.
  """
  from train_lib import schedules  # noqa: PLC0415 (slow import)

  schedule = schedules.create_schedule(config)
  want = np.asarray(schedule(np.asarray(steps) - 1), np.float64)
  return float(np.max(np.abs(np.asarray(logged, np.float64) - want)))


def _train(config):
  """(final test accuracy, run) or (nan, None) if the run diverged."""
  from train_lib import trainer  # noqa: PLC0415

  try:
    run = report.train(config)
  except trainer.DivergedError:
    return float('nan'), None
  return run.final('accuracy'), run


def _figure(curves, acc, sweep, steps):
  fig, (ax_lr, ax_acc, ax_sweep) = report.new_figure(ncols=3)
  for i, (name, (dense, logged_steps, logged)) in enumerate(curves.items()):
    color = f'C{i}'
    ax_lr.plot(np.arange(steps), dense, color=color, lw=1, label=name)
    ax_lr.plot(logged_steps, logged, 'o', color=color, ms=2.5)
  ax_lr.plot([], [], 'ko', ms=2.5, label='logged by the trainer')
  ax_lr.set_xlabel('optimizer step')
  ax_lr.set_ylabel('learning rate')
  ax_lr.set_title('schedule (line) vs logged lr (dots)', fontsize=9)
  ax_lr.legend(fontsize=7)
  names = list(acc)
  means = [100 * np.mean(acc[n]) for n in names]
  stds = [100 * np.std(acc[n]) for n in names]
  ax_acc.bar(range(len(names)), means, yerr=stds, capsize=3, color='C0')
  for i, n in enumerate(names):
    ax_acc.plot([i] * len(acc[n]), 100 * np.asarray(acc[n]), 'k.', ms=4)
  ax_acc.set_xticks(range(len(names)), names, rotation=30, fontsize=7)
  low = min(100 * min(acc[n]) for n in names)
  ax_acc.set_ylim(max(0.0, low - 3), 100)
  ax_acc.set_ylabel('final test accuracy (%)')
  ax_acc.set_title(f'peak lr {PEAK_LR}: mean +- std, dots = seeds', fontsize=9)
  lrs = list(sweep)
  ax_sweep.semilogx(lrs, [100 * sweep[lr] for lr in lrs], 'o-', color='C3')
  ax_sweep.set_xlabel('peak lr (cosine schedule)')
  ax_sweep.set_ylabel('final test accuracy (%)')
  ax_sweep.set_title("the notes' sweep 0.1 ... 0.0001", fontsize=9)
  ax_sweep.plot([], [], 'o-', color='C3', label='seed 0')
  ax_sweep.legend(fontsize=7)
  fig.suptitle(
    f'Learning rate: schedules and magnitude (digits, MLP, SGD + momentum, '
    f'{steps} steps)'
  )
  return fig


def run(quick: bool = False) -> report.Result:
  """Trains every schedule arm and the sweep; `quick`: fewer steps, 1 seed."""
  steps = 150 if quick else 600
  seeds = (0,) if quick else (0, 1, 2)
  # Quick: the three kinds of curve (flat, jumps, smooth) and the sweep's
  # ends, so that each run's compilation fits the tests' budget.
  names = QUICK_NAMES if quick else SCHEDULE_NAMES
  sweep_lrs = (SWEEP[0], SWEEP[-1]) if quick else SWEEP
  log_every = 10
  acc = {name: [] for name in names}
  curves, lr_errors, sweep = {}, {}, {}
  from train_lib import schedules  # noqa: PLC0415

  for name in names:
    for seed in seeds:
      config = arm_config(
        name, lr=PEAK_LR, steps=steps, seed=seed, log_every=log_every
      )
      accuracy, trained = _train(config)
      acc[name].append(accuracy)
      if name == 'cosine' and seed == 0:
        sweep[PEAK_LR] = accuracy
      if trained is None or seed != seeds[0]:
        continue
      logged_steps, logged = trained.series('lr', 'train')
      lr_errors[name] = logged_lr_error(config, logged_steps, logged)
      dense = np.asarray(schedules.create_schedule(config)(np.arange(steps)))
      # Logged at step s: the rate of update s - 1 (see logged_lr_error).
      curves[name] = (dense, np.asarray(logged_steps) - 1, logged)
  for lr in sweep_lrs:
    if lr not in sweep:
      config = arm_config('cosine', lr=lr, steps=steps, seed=0, log_every=steps)
      sweep[lr] = _train(config)[0]

  means = {n: float(np.mean(a)) for n, a in acc.items()}
  stds = {n: float(np.std(a)) for n, a in acc.items()}
  schedule_range = max(means.values()) - min(means.values())
  finite = [a for a in sweep.values() if np.isfinite(a)]
  sweep_range = max(finite) - min(finite) if finite else float('nan')
  decaying = [n for n in names if n != 'constant']
  decay_beats_constant = all(means[n] >= means['constant'] for n in decaying)
  magnitude_first = bool(sweep_range > schedule_range)
  max_lr_error = max(lr_errors.values()) if lr_errors else float('nan')
  holds = magnitude_first and decay_beats_constant
  best_lr = max(sweep, key=lambda lr: -1 if np.isnan(sweep[lr]) else sweep[lr])
  verdict = (
    f"Across the notes' sweep the final test accuracy spans "
    f'{100 * sweep_range:.1f} points (best lr {best_lr:g}), across the five '
    f'schedules at lr {PEAK_LR} only {100 * schedule_range:.1f} points: '
    f'magnitude {"matters more" if magnitude_first else "does NOT matter more"}'
    f'. Constant lr ends at {100 * means["constant"]:.1f}%; the decaying '
    'schedules at '
    + ', '.join(f'{n} {100 * means[n]:.1f}%' for n in decaying)
    + (
      ' (all at least as good).'
      if decay_beats_constant
      else ' (not all better than constant).'
    )
    + f' The logged lr equals the schedule function to {max_lr_error:.1e}.'
  )
  rows = [
    (
      f'schedule: {n}',
      PEAK_LR,
      100 * means[n],
      100 * stds[n],
      len(acc[n]),
      lr_errors.get(n, float('nan')),
    )
    for n in names
  ]
  rows += [
    (
      'sweep: cosine',
      lr,
      100 * sweep[lr],
      float('nan'),
      1,
      float('nan'),
    )
    for lr in sweep_lrs
  ]
  return report.Result(
    figure=_figure(curves, acc, sweep, steps),
    columns=(
      'arm',
      'peak lr',
      'final test accuracy (%)',
      'std over seeds (points)',
      'seeds',
      'max |logged lr - schedule|',
    ),
    rows=rows,
    holds=holds,
    verdict=verdict,
    values={
      'schedule_accuracy': acc,
      'schedule_mean_accuracy': means,
      'sweep_accuracy': {str(lr): a for lr, a in sweep.items()},
      'schedule_range': schedule_range,
      'sweep_range': sweep_range,
      'magnitude_first': magnitude_first,
      'decay_beats_constant': decay_beats_constant,
      'max_logged_lr_error': max_lr_error,
      'logged_lr_error': lr_errors,
    },
    notes=(
      f'digits (899 train / 898 test), MLP with 256 ReLU units, SGD with '
      f'momentum 0.9, batch 64, {steps} steps, no weight decay, label '
      'smoothing or augmentation; seeds ' + ', '.join(map(str, seeds)) + '.',
      'step: x0.1 at steps 1/2 and 3/4 of the run; exponential: x0.1 every '
      'half run (ends at 1/100); cosine: to 0; warmup: linear from 0 over '
      '1/10 of the run.',
      'Logged lr at step s is the rate of the update that produced step s, '
      'schedule(s - 1); a diverged run would show as nan.',
    ),
  )
