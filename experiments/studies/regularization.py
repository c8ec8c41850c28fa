"""Dropout, stochastic depth and data augmentation against overfitting.

Notes (seed 002, "Convolutional Neural Networks 2", "The Key Ingredients of
Training CNNs"): dropout (Srivastava et al. 2014) turns off neurons with a
given probability, "a simple way to train deep neural networks for improving
generalization performance"; stochastic depth (Huang et al. 2016, "DropPath")
randomly drops residual blocks during training, with a drop probability
growing linearly to the last block (their Fig. 2: p_L = 0.5); and "deep
learning is data hungry and can be easily overfitted - let's augment our
datasets!": crop, cutout (DeVries & Taylor 2017), mixup (Zhang et al. 2018).

The study makes a small training set overfit and measures the gap between
training and held-out accuracy, with and without each regulariser. Data:
digits, with `config.data.validation_fraction=0.8`, the only subsampling
the data pipeline has: each seed keeps a stratified 20% of the 899 training
images (179) for training and evaluates on the other 720 (never trained
on), so the seed draws both the initialisation and the training subset. Two
nets train with the project's trainer (Adam, cosine schedule, no weight
decay, no label smoothing): an MLP (512-512, ReLU) for dropout and the
augmentations, and the tiny ResNet `resnet_tiny` (two BatchNorm basic
blocks) for stochastic depth, which needs residual blocks. Train accuracy is
measured after training, in evaluation mode, on the clean 179 images (the
trainer's logged train accuracy is on augmented, dropped-out batches).
Horizontal flips are left out: a mirrored digit is another symbol (or none).

Where notes and study differ: the notes show the methods and claim the
generalisation gain without numbers; with 179 images a regulariser can
shrink the gap by lowering training accuracy without raising held-out
accuracy, so the table reports both.
"""

import ml_collections
import numpy as np

from experiments.configs import common
from experiments.configs import digits
from experiments.studies import report

CLAIM = (
  'Dropout, stochastic depth and data augmentation (crop, cutout, mixup) '
  'reduce overfitting: on a small training set they shrink the gap between '
  'training and held-out accuracy.'
)
SOURCE = (
  'notes, seed 002 ("CNNs 2"), slides "Drop-out/Drop-path" (dropout, '
  'stochastic depth, Huang et al. 2016) and "Data Augmentation" (crop, '
  'cutout, mixup)'
)

QUICK_ARMS = (
  'MLP: none',
  'MLP: dropout 0.5',
  'MLP: cutout 4x4',
  'MLP: mixup a=0.4',
)
HELD_OUT_FRACTION = 0.8  # digits: 179 of 899 images train, 720 held out.
MLP_KW = {'hidden_sizes': (512, 512)}
# (arm, baseline arm, model, model_kw changes, augment changes)
ARMS = (
  ('MLP: none', None, 'mlp', {}, {}),
  ('MLP: dropout 0.5', 'MLP: none', 'mlp', {'dropout_rate': 0.5}, {}),
  ('MLP: crop (pad 1)', 'MLP: none', 'mlp', {}, {'crop_padding': 1}),
  ('MLP: cutout 4x4', 'MLP: none', 'mlp', {}, {'cutout_size': 4}),
  ('MLP: mixup a=0.4', 'MLP: none', 'mlp', {}, {'mixup_alpha': 0.4}),
  ('ResNet: none', None, 'resnet_tiny', {}, {}),
  (
    'ResNet: stoch. depth 0.5',
    'ResNet: none',
    'resnet_tiny',
    {'drop_path_rate': 0.5},
    {},
  ),
)


def arm_config(model, model_kw, augment, *, steps: int, seed: int):
  """digits.py's recipe minus its regularisers, plus the arm's one."""
  config = digits.get_config('mlp')
  config.data.validation_fraction = HELD_OUT_FRACTION
  config.model = model
  kw = dict(MLP_KW) if model == 'mlp' else {}
  kw.update(model_kw)
  config.model_kw = ml_collections.ConfigDict(kw)
  keys = {
    'seed': seed,
    'total_steps': steps,
    'lr': 1e-3,
    'warmup_steps': 0,
    'weight_decay': 0.0,
    'label_smoothing': 0.0,
    'crop_padding': 0,  # digits.py shifts by one pixel: an arm here.
    'log_every_steps': steps,
    'eval_every_steps': 0,
    'checkpoint_every_steps': 0,
  }
  common.set_keys(config, **{**keys, **augment})
  return config


def accuracy_gap(config, state) -> tuple[float, float]:
  """(clean train accuracy, held-out accuracy), both in evaluation mode."""
  accs = []
  for split in ('train', 'test'):
    probs, labels = report.predict(config, state, split)
    accs.append(float(np.mean(np.argmax(probs, -1) == labels)))
  return accs[0], accs[1]


def summarize(train: dict, test: dict) -> dict[str, dict[str, float]]:
  """Per arm: mean/std of the gap, mean test accuracy, paired gap change.

  Args:
    train, test: arm -> list of accuracies, one per seed (same seed order
      in every arm).

  Returns:
    arm -> {'gap', 'gap_std', 'train', 'test', 'gap_change',
    'gap_change_std', 'test_change'}; the changes are against the arm's
    baseline, seed by seed (nan for a baseline).
  """
  out = {}
  for arm, base, *_ in ARMS:
    if arm not in train:
      continue
    gap = np.asarray(train[arm]) - np.asarray(test[arm])
    row = {
      'gap': float(gap.mean()),
      'gap_std': float(gap.std()),
      'train': float(np.mean(train[arm])),
      'test': float(np.mean(test[arm])),
      'gap_change': float('nan'),
      'gap_change_std': float('nan'),
      'test_change': float('nan'),
    }
    if base is not None:
      base_gap = np.asarray(train[base]) - np.asarray(test[base])
      change = gap - base_gap
      row['gap_change'] = float(change.mean())
      row['gap_change_std'] = float(change.std())
      row['test_change'] = float(np.mean(test[arm]) - np.mean(test[base]))
    out[arm] = row
  return out


def _figure(stats, steps, num_seeds):
  fig, ax = report.new_figure()
  arms = list(stats)
  x = np.arange(len(arms))
  train = [100 * stats[a]['train'] for a in arms]
  test = [100 * stats[a]['test'] for a in arms]
  ax.bar(x - 0.2, train, 0.4, label='train accuracy (179 clean images)')
  ax.bar(x + 0.2, test, 0.4, label='held-out accuracy (720 images)')
  for i, arm in enumerate(arms):
    s = stats[arm]
    spread = f'\n+-{100 * s["gap_std"]:.1f}' if num_seeds > 1 else ''
    ax.annotate(
      f'gap {100 * s["gap"]:.1f}{spread}',
      (i, max(train[i], test[i]) + 0.5),
      ha='center',
      va='bottom',
      fontsize=7,
    )
  num_mlp = sum(1 for a in arms if a.startswith('MLP'))
  if num_mlp < len(arms):  # A line between the MLP and the ResNet arms.
    ax.axvline(num_mlp - 0.5, color='grey', ls=':')
  ax.set_xticks(x, [a.replace(': ', ':\n') for a in arms], fontsize=7)
  low = min(min(train), min(test))
  ax.set_ylim(max(0.0, low - 10), 112)  # Room for the gap labels.
  ax.set_yticks([t for t in ax.get_yticks() if t <= 100])
  ax.set_xlabel('net and regulariser')
  ax.set_ylabel(f'accuracy (%), mean over {num_seeds} seed(s)')
  ax.set_title(
    f'Train vs held-out accuracy on 179 digits ({steps["mlp"]} / '
    f'{steps["resnet_tiny"]} steps): gap in points'
  )
  ax.legend(loc='lower left', fontsize=8)
  return fig


def run(quick: bool = False) -> report.Result:
  """Trains every arm over the seeds; `quick`: one seed, fewer steps."""
  steps = (
    {'mlp': 150, 'resnet_tiny': 100}
    if quick
    else {'mlp': 600, 'resnet_tiny': 400}
  )
  seeds = (0,) if quick else (0, 1, 2)
  # Quick: the MLP arms that compile fastest (the ResNet's compilation is
  # several times the MLP's), enough to show the gap and its change.
  arms = [a for a in ARMS if not quick or a[0] in QUICK_ARMS]
  train, test = {}, {}
  for arm, _, model, model_kw, augment in arms:
    train[arm], test[arm] = [], []
    for seed in seeds:
      config = arm_config(
        model, model_kw, augment, steps=steps[model], seed=seed
      )
      trained = report.train(config)
      a_train, a_test = accuracy_gap(config, trained.state)
      train[arm].append(a_train)
      test[arm].append(a_test)
  stats = summarize(train, test)
  regularised = [a for a, base, *_ in arms if base is not None]
  shrinks = {a: stats[a]['gap_change'] < 0 for a in regularised}
  holds = all(shrinks.values())
  base_gaps = ', '.join(
    f'{a.split(":")[0]} {100 * stats[a]["gap"]:.1f}'
    for a, base, *_ in arms
    if base is None
  )
  changes = '; '.join(
    f'{a.split(": ")[1]} {100 * stats[a]["gap_change"]:+.1f} '
    f'(held-out {100 * stats[a]["test_change"]:+.1f})'
    for a in regularised
  )
  failed = [a for a, ok in shrinks.items() if not ok]
  verdict = (
    f'Without regularisation the gap is {base_gaps} points. Change of the '
    f'gap (and of held-out accuracy) in points, mean over {len(seeds)} '
    f'seed(s): {changes}. '
    + (
      'Every regulariser shrinks the gap.'
      if holds
      else f'Not every regulariser shrinks the gap: {", ".join(failed)}.'
    )
  )
  rows = [
    (
      arm,
      100 * s['train'],
      100 * s['test'],
      100 * s['gap'],
      100 * s['gap_std'],
      100 * s['gap_change'],
      100 * s['test_change'],
    )
    for arm, s in stats.items()
  ]
  return report.Result(
    figure=_figure(stats, steps, len(seeds)),
    columns=(
      'arm',
      'train acc (%)',
      'held-out acc (%)',
      'gap (points)',
      'gap std',
      'gap change vs none',
      'held-out change vs none',
    ),
    rows=rows,
    holds=holds,
    verdict=verdict,
    values={
      'train_accuracy': train,
      'test_accuracy': test,
      'stats': stats,
      'gap_shrinks': shrinks,
    },
    notes=(
      'digits with validation_fraction 0.8: 179 training images per seed '
      '(stratified, drawn from the seed), 720 held-out ones; seeds '
      + ', '.join(map(str, seeds))
      + '.',
      f'Adam (lr 1e-3, cosine, no warmup), batch 64; MLP 512-512 '
      f'{steps["mlp"]} steps, resnet_tiny {steps["resnet_tiny"]} steps; no '
      'weight decay, label smoothing or shifts except in the arm that adds '
      'them. Stochastic depth: linear rule, last block dropped with '
      "probability 0.5 (p_L = 0.5, the notes' figure).",
      'Changes are paired: each seed against the baseline of the same seed '
      '(same training subset), then averaged. No flip: digits are not '
      'mirror-symmetric.',
    ),
  )
