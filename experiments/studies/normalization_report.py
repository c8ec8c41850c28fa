"""The normalization study's figure, table, protocol and `Result`.

Kept apart from `normalization.py` (the experiment and its sub-claims) so
that each file stays one screen of one idea.
"""

import numpy as np

from experiments.studies import lr_grid
from experiments.studies import normalization as study
from experiments.studies import report

PROTOCOL = (
  (
    'architecture',
    'Inception with and without BN (Ioffe & Szegedy 2015); ResNet-50 with '
    'BN or GN (Wu & He 2018)',
    '1-D ResNet-8 (6n+2, n = 1; widths 8, 16, 32), BN after every conv or '
    'no norm (norm="none", no conv bias either way); BN per group of g, or '
    'GN with 4 groups',
    'a residual net deeper than the old 4-conv CNN, sized for 2 CPU cores',
  ),
  (
    'data',
    'ImageNet',
    'MNIST-1D: 4,000 training, 1,000 test signals of length 40',
    'no ImageNet offline; MNIST-1D separates architectures at this size',
  ),
  (
    'optimizer and learning-rate selection',
    'Ioffe & Szegedy: SGD + momentum, BN nets at up to 30x the rate; Wu & '
    'He: the same schedule for every norm and batch',
    'SGD + momentum 0.9, constant rate, batch 32; each net (BN, none) at '
    'its best rate of the grid 0.03-1 (x3 apart) on seed 0; part 2 at the '
    "BN net's best rate for every g and for GN",
    "a constant rate isolates the norm; the grid stands for each paper's "
    'tuned rate',
  ),
  (
    'metric',
    "steps to the baseline's accuracy (Fig. 2); validation error by "
    'batch size (Wu & He, Fig. 1)',
    'steps until the mean minibatch training error of 20 steps falls to '
    "25%; largest grid rate that reaches it; test error by g (BN's "
    'running statistics)',
    'training error stands for their accuracy curves',
  ),
  (
    'budget',
    'millions of steps; Wu & He: 100 epochs at every batch',
    f'{study.BUDGET} steps of batch {study.BATCH} (4 epochs) for every '
    'arm; a miss counts as the budget (a bound)',
    'the same steps for every g, as per-device BN at a fixed global batch',
  ),
  (
    'runs/seeds',
    'one run per setting',
    f'grid on seed {study.SELECT_SEED}; {len(study.SEEDS)} fresh seeds per '
    'measured arm, paired by seed',
    'seeds give the intervals',
  ),
  (
    'batch dependence',
    'the batch per GPU varied from 32 to 2 (Wu & He, Fig. 1)',
    'statistics over groups of g = 2, 4, 8, 32 consecutive examples inside '
    'the batch of 32 (per-device BN)',
    'the same statistics as g devices, without the devices',
  ),
)


def _label(norm: str) -> str:
  if norm.startswith('batch:'):
    return f'BN, g = {norm.partition(":")[2]}'
  return {'batch': 'BN', 'none': 'no norm', study.GN: 'GN (4 groups)'}[norm]


def result(*, tuned, error, runs, lr, sizes, subclaims) -> report.Result:
  budget = sizes['budget']
  rows = []
  for norm, arm in tuned.items():
    for grid_lr, run in arm.grid.items():
      rows.append(
        (
          '1: grid',
          _label(norm),
          grid_lr,
          str(study.SELECT_SEED),
          'diverged'
          if run.diverged
          else lr_grid.format_steps([run.reach(arm.target)], budget),
          '',
        )
      )
  for norm, arm in tuned.items():
    rows.append(
      (
        '1: best rate',
        _label(norm),
        arm.best_lr,
        ', '.join(map(str, arm.runs)),
        lr_grid.format_steps(arm.reach, budget),
        '',
      )
    )
  for norm, errors in error.items():
    rows.append(
      (
        '2: batch',
        _label(norm),
        lr,
        ', '.join(map(str, sizes['seeds'])),
        '',
        f'{100 * np.mean(errors):.1f} ('
        + ', '.join(f'{100 * e:.1f}' for e in errors)
        + ')',
      )
    )
  values = {
    'best_lr': {norm: arm.best_lr for norm, arm in tuned.items()},
    'grid_steps': {
      norm: {
        f'{g:g}': lr_grid.finite_or_none(run.reach(arm.target))
        for g, run in arm.grid.items()
      }
      for norm, arm in tuned.items()
    },
    'steps_to_target': {
      norm: [lr_grid.finite_or_none(r) for r in arm.reach]
      for norm, arm in tuned.items()
    },
    'test_error': {norm: list(map(float, e)) for norm, e in error.items()},
    'part2_lr': lr,
  }
  words = '; '.join(
    f'{_label(n)} {100 * np.mean(e):.1f}%' for n, e in error.items()
  )
  summary = (
    f'Best rates: BN {tuned["batch"].best_lr:g}, no norm '
    f'{tuned["none"].best_lr:g}; steps to 25% training error '
    f'{lr_grid.format_steps(tuned["batch"].reach, budget)} with BN, '
    f'{lr_grid.format_steps(tuned["none"].reach, budget)} without (ratio '
    f'{subclaims[0].estimate:.2g}). Test error at lr {lr:g}: {words}.'
  )
  return report.Result(
    figure=_figure(tuned, error, lr, sizes),
    columns=(
      'part',
      'net / norm',
      'lr',
      'seeds',
      'steps to 25% train error',
      'test error % (mean; per seed)',
    ),
    rows=rows,
    subclaims=subclaims,
    summary=summary,
    protocol=PROTOCOL,
    values=values,
    notes=(
      'A diverged run (non-finite loss) counts as never reaching the target '
      f'and, in part 2, as chance test error ({study.CHANCE_ERROR:.0%}).',
      'BN with group size g: each group of g consecutive examples of the '
      'batch is normalised with its own statistics; the running averages '
      'take the mean of the group statistics (nets/norms.py).',
    ),
  )


def _figure(tuned, error, lr, sizes):
  fig, (ax, bx) = report.new_figure(ncols=2)
  for norm, color in (('batch', 'C0'), ('none', 'C1')):
    arm = tuned[norm]
    curve = lr_grid.mean_curve(list(arm.runs.values()))
    if curve is not None:
      ax.plot(
        curve[0],
        100 * curve[1],
        color=color,
        label=f'{_label(norm)}, lr {arm.best_lr:g} (best)',
      )
  ax.axhline(100 * study.TARGET_ERROR, color='k', ls=':', lw=1, label='target')
  ax.set_ylim(0, 95)
  ax.set_xlabel(f'training step (batch {study.BATCH})')
  ax.set_ylabel('training error (%), mean of 20 steps')
  ax.set_title('Each net at its best rate (mean over seeds)', fontsize=9)
  ax.legend(fontsize=7)

  groups = sizes['groups']
  bn = [error[f'batch:{g}'] for g in groups]
  for g, errs in zip(groups, bn, strict=True):
    bx.plot([g] * len(errs), 100 * np.asarray(errs), 'o', color='C0', ms=3)
  bx.plot(groups, [100 * np.mean(e) for e in bn], '-', color='C0', label='BN')
  if study.GN in error:
    gn = 100 * np.mean(error[study.GN])
    bx.axhline(gn, color='C2', label='GN (no batch statistics)')
    for e in error[study.GN]:
      bx.plot([max(groups)], [100 * e], 's', color='C2', ms=3)
  bx.set_xscale('log', base=2)
  bx.set_xticks(groups, [str(g) for g in groups])
  bx.set_xlabel('examples per BN statistic, g (batch 32)')
  bx.set_ylabel('test error (%)')
  bx.set_title(f'Per-device BN vs GN, lr {lr:g} (dots: seeds)', fontsize=9)
  bx.legend(fontsize=7)
  fig.suptitle('BatchNorm: speed, stability and batch dependence (MNIST-1D)')
  return fig
