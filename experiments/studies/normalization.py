"""BatchNorm speeds up and stabilises training; GroupNorm does not need a batch.

Notes (lecture 2, seed 002, "Normalization Methods"): batch normalization
(Ioffe & Szegedy 2015) normalises each channel with the mini-batch's mean and
variance, then scales and shifts with the learned gamma, beta; the paper's
title promises "accelerating deep network training", and its Sec. 3.3 that
BN "enables higher learning rates" without divergence. The notes' "Layer
Normalization" slide then warns that "batch normalization is dependent on the
mini-batch size", which group normalization (Wu & He 2018, the notes' "Other
Normalization Methods") removes: it normalises each example over groups of
channels, so its output never depends on the other examples in the batch.

The study trains the same small plain CNN on the digits (`cnn_small`: two
stages of two 3x3 convs, ReLU, global average pooling; `norm='batch'` puts a
BatchNorm after every conv and drops the conv biases) with SGD + momentum 0.9
at a constant learning rate, in two parts:

1. with and without BN at several learning rates: steps to reach a training
   loss of `LOSS_TARGET`, and whether the net trains at all (a non-finite
   loss stops the trainer with `DivergedError`; the arm is recorded as
   diverged at that step, and an arm whose training accuracy stays under
   `TRAINED_ACCURACY` is recorded as failed);
2. BN against GroupNorm at batch sizes 2, 4, 8, 32 for the same number of
   epochs, the learning rate scaled linearly with the batch (Wu & He's
   protocol, their Fig. 1): the spread of the test error over the batch
   sizes for each norm.

Where the papers differ from the notes: Ioffe & Szegedy explain BN's effect
by "internal covariate shift", which the notes list next to the smoother
loss surface of Santurkar et al. 2018; this study measures the effect, not
its cause. Wu & He measure ResNet-50 on ImageNet (BN's error rises from 23.6%
at batch 32 to 34.7% at batch 2, GN's stays at 24.1 to 24.8%); here the net
and data are tiny, so the size of the effect differs.
"""

import dataclasses
import math
import re

from experiments.configs import digits
from experiments.studies import report
from train_lib import trainer

CLAIM = (
  'BatchNorm speeds up and stabilises training (the same plain CNN reaches '
  'a low training loss in fewer steps and still trains at a learning rate '
  'where it fails without BN), and BN depends on the batch size while '
  'GroupNorm does not.'
)
SOURCE = (
  'notes, lecture 2, "Normalization Methods" and "Layer Normalization" '
  '(Ioffe & Szegedy 2015; Wu & He 2018, Fig. 1)'
)

LOSS_TARGET = 0.5  # Training loss (cross-entropy, nats) "reached".
TRAINED_ACCURACY = 0.5  # Final training accuracy below this: failed.
MOMENTUM = report.PLAIN_SGD_MOMENTUM
# Batch sizes of Wu & He's Fig. 1 that a 899-image training set affords.
BATCH_SIZES = (2, 4, 8, 32)
# GroupNorm's groups: 4 and 8 channels per group in layers of 16 and 32
# (Wu & He's 32 groups would leave one channel per group here, which is
# instance norm, a different method).
GROUPS = 4
BATCH_LR = 0.1  # Part 2's lr at batch 32, scaled linearly with the batch.


@dataclasses.dataclass
class Arm:
  """One training run: its train curve, test accuracy, or its divergence."""

  steps: list
  losses: list
  accuracies: list
  test_accuracy: float = math.nan
  diverged_at: int | None = None

  @property
  def trained(self) -> bool:
    """It did not diverge and its last training accuracy is high enough."""
    return (
      self.diverged_at is None
      and bool(self.accuracies)
      and self.accuracies[-1] >= TRAINED_ACCURACY
    )


def diverged_step(error: Exception) -> int | None:
  """The step a `DivergedError` names ('loss is nan at step 37'), or None."""
  match = re.search(r'at step (\d+)', str(error))
  return int(match.group(1)) if match else None


def steps_to_reach(steps, losses, target: float) -> int | None:
  """The first logged step whose training loss is <= target, or None."""
  for step, loss in zip(steps, losses, strict=True):
    if loss <= target:
      return int(step)
  return None


def batch_spread(errors: dict[int, float]) -> float:
  """Largest minus smallest test error over the batch sizes."""
  values = list(errors.values())
  return float(max(values) - min(values))


def config_for(
  *,
  norm: str | None,
  lr: float,
  batch_size: int,
  total_steps: int,
  log_every_steps: int,
  stage_channels: tuple[int, ...],
  seed: int = 0,
):
  """The digits `cnn_small` config of one arm: plain SGD + momentum."""
  config = digits.get_config('cnn')
  # No regulariser, schedule or augmentation: only the norm changes.
  report.plain_sgd(
    config,
    seed=seed,
    lr=lr,
    batch_size=batch_size,
    eval_batch_size=1024,  # The 898 test images in one (padded) batch.
    total_steps=total_steps,
    log_every_steps=log_every_steps,
  )
  config.model_kw.stage_channels = tuple(stage_channels)
  if norm is not None:
    config.model_kw.norm = norm
  if norm == 'group':
    config.model_kw.norm_groups = GROUPS
  return config


def train_arm(config) -> Arm:
  """Trains one arm; a divergence is recorded, not raised."""
  try:
    run = report.train(config)
  except trainer.DivergedError as e:
    return Arm(steps=[], losses=[], accuracies=[], diverged_at=diverged_step(e))
  steps, losses = run.series('loss')
  _, accuracies = run.series('accuracy')
  return Arm(
    steps=steps,
    losses=losses,
    accuracies=accuracies,
    test_accuracy=float(run.final('accuracy')),
  )


def _sizes(quick: bool) -> dict:
  if quick:
    return dict(
      lrs=(0.3,),
      lr_steps=60,
      lr_log=5,
      batch_sizes=(4, 32),
      epochs=2,
      channels=(16, 32),
    )
  return dict(
    # lr 1 was tried too: it fails with and without BN (BN widens the range
    # of learning rates; it does not remove the limit).
    lrs=(0.01, 0.1, 0.3),
    lr_steps=150,
    lr_log=10,
    batch_sizes=BATCH_SIZES,
    epochs=5,
    channels=(16, 32),
  )


def _learning_rates(sizes) -> dict:
  """Part 1: {(norm, lr): Arm} for norm None and 'batch'."""
  arms = {}
  for lr in sizes['lrs']:
    for norm in (None, 'batch'):
      arms[(norm, lr)] = train_arm(
        config_for(
          norm=norm,
          lr=lr,
          batch_size=32,
          total_steps=sizes['lr_steps'],
          log_every_steps=sizes['lr_log'],
          stage_channels=sizes['channels'],
        )
      )
  return arms


def _batch_sizes(sizes, base_lr: float = BATCH_LR) -> dict:
  """Part 2: {(norm, batch): Arm}, same epochs, lr = base_lr * batch / 32."""
  arms = {}
  for batch in sizes['batch_sizes']:
    steps = max(1, sizes['epochs'] * digits_train_size() // batch)
    for norm in ('batch', 'group'):
      arms[(norm, batch)] = train_arm(
        config_for(
          norm=norm,
          lr=base_lr * batch / 32,
          batch_size=batch,
          total_steps=steps,
          log_every_steps=max(1, steps // 4),
          stage_channels=sizes['channels'],
        )
      )
  return arms


def digits_train_size() -> int:
  """Training images of the digits split (899)."""
  from train_lib.data import small  # noqa: PLC0415

  return small.DIGITS_NUM_TRAIN


def _fmt_step(step: int | None) -> str:
  return 'never' if step is None else str(step)


def _status(arm: Arm) -> str:
  if arm.diverged_at is not None:
    return f'diverged at step {arm.diverged_at}'
  return 'trained' if arm.trained else 'failed to train'


def _plot(ax_lr, ax_batch, lr_arms, batch_arms, sizes) -> None:
  colours = dict(
    zip(sizes['lrs'], ('C0', 'C1', 'C2', 'C3', 'C4'), strict=False)
  )
  for (norm, lr), arm in lr_arms.items():
    style = '-' if norm else '--'
    label = f'lr {lr:g}, {"BN" if norm else "no norm"}'
    if arm.diverged_at is not None:
      ax_lr.plot(
        [arm.diverged_at],
        [3.0],
        'x',
        ms=10,
        mew=2,
        color=colours[lr],
        label=f'{label}: diverged (step {arm.diverged_at})',
      )
    else:
      ax_lr.plot(arm.steps, arm.losses, style, color=colours[lr], label=label)
  ax_lr.axhline(LOSS_TARGET, color='grey', ls=':', lw=1)
  ax_lr.set_yscale('log')
  ax_lr.set_xlabel('training step (batch 32)')
  ax_lr.set_ylabel('training loss (cross-entropy, nats; log scale)')
  ax_lr.set_title('With / without BatchNorm, SGD + momentum')
  ax_lr.legend(fontsize=7, ncol=2, loc='lower left')

  for norm, marker in (('batch', 'o'), ('group', 's')):
    batches = sizes['batch_sizes']
    errors = [100 * (1 - batch_arms[(norm, b)].test_accuracy) for b in batches]
    name = 'BatchNorm' if norm == 'batch' else 'GroupNorm'
    ax_batch.plot(batches, errors, marker=marker, label=name)
  ax_batch.set_xscale('log', base=2)
  ax_batch.set_xticks(
    sizes['batch_sizes'], [str(b) for b in sizes['batch_sizes']]
  )
  ax_batch.set_xlabel('batch size (images per step, log scale)')
  ax_batch.set_ylabel('test error (%)')
  ax_batch.set_title(f'Same {sizes["epochs"]} epochs, lr ∝ batch')
  ax_batch.legend()


def run(quick: bool = False) -> report.Result:
  """Trains the arms of both parts; `quick` trains fewer, shorter ones."""
  sizes = _sizes(quick)
  lr_arms = _learning_rates(sizes)
  batch_arms = _batch_sizes(sizes)

  # Part 1: speed at the smallest lr (both train there), stability above.
  low = min(sizes['lrs'])
  reach = {
    norm: steps_to_reach(
      lr_arms[(norm, low)].steps, lr_arms[(norm, low)].losses, LOSS_TARGET
    )
    for norm in (None, 'batch')
  }
  reach_by_lr = {
    lr: tuple(
      steps_to_reach(
        lr_arms[(norm, lr)].steps, lr_arms[(norm, lr)].losses, LOSS_TARGET
      )
      for norm in (None, 'batch')
    )
    for lr in sizes['lrs']
  }
  faster = reach['batch'] is not None and (
    reach[None] is None or reach['batch'] < reach[None]
  )
  rescued = [
    lr
    for lr in sizes['lrs']
    if lr_arms[('batch', lr)].trained and not lr_arms[(None, lr)].trained
  ]
  diverged = [lr for lr in sizes['lrs'] if lr_arms[(None, lr)].diverged_at]
  # Part 2: how much the test error moves with the batch size.
  errors = {
    norm: {
      b: 1 - batch_arms[(norm, b)].test_accuracy for b in sizes['batch_sizes']
    }
    for norm in ('batch', 'group')
  }
  spread = {norm: batch_spread(errors[norm]) for norm in errors}
  smallest = min(sizes['batch_sizes'])
  batch_dependent = (
    spread['batch'] > spread['group']
    and errors['batch'][smallest] > errors['group'][smallest]
  )
  holds = faster and bool(rescued) and batch_dependent

  fig, (ax_lr, ax_batch) = report.new_figure(ncols=2)
  _plot(ax_lr, ax_batch, lr_arms, batch_arms, sizes)
  fig.suptitle(
    'BatchNorm trains faster and at larger learning rates; '
    'GroupNorm does not depend on the batch'
  )
  rows = []
  for (norm, lr), arm in lr_arms.items():
    rows.append(
      (
        '1: lr',
        'BatchNorm' if norm else 'none',
        f'lr {lr:g}, batch 32',
        _fmt_step(steps_to_reach(arm.steps, arm.losses, LOSS_TARGET)),
        arm.accuracies[-1] if arm.accuracies else math.nan,
        arm.test_accuracy,
        _status(arm),
      )
    )
  for (norm, batch), arm in batch_arms.items():
    rows.append(
      (
        '2: batch',
        'BatchNorm' if norm == 'batch' else 'GroupNorm',
        f'lr {BATCH_LR * batch / 32:g}, batch {batch}',
        '',
        arm.accuracies[-1] if arm.accuracies else math.nan,
        arm.test_accuracy,
        _status(arm),
      )
    )
  verdict = _verdict(reach, low, rescued, diverged, spread, errors, smallest)
  pairs = [
    f'lr {lr:g}: {_fmt_step(p)} without, {_fmt_step(b)} with'
    for lr, (p, b) in reach_by_lr.items()
  ]
  verdict += f' Steps to training loss {LOSS_TARGET}: ' + '; '.join(pairs) + '.'
  if not holds:
    verdict = 'Contrary to the notes on this run: ' + verdict
  return report.Result(
    figure=fig,
    columns=(
      'part',
      'norm',
      'setting',
      f'steps to train loss {LOSS_TARGET}',
      'final train acc',
      'test acc',
      'outcome',
    ),
    rows=rows,
    holds=holds,
    verdict=verdict,
    values={
      'steps_to_target_bn': reach['batch'],
      'steps_to_target_plain': reach[None],
      'lr_low': low,
      'steps_to_target_by_lr': {
        str(lr): {'plain': p, 'bn': b} for lr, (p, b) in reach_by_lr.items()
      },
      'bn_faster': faster,
      'lrs_only_bn_trains': rescued,
      'lrs_plain_diverged': diverged,
      'bn_error_by_batch': {str(b): e for b, e in errors['batch'].items()},
      'gn_error_by_batch': {str(b): e for b, e in errors['group'].items()},
      'bn_batch_spread': spread['batch'],
      'gn_batch_spread': spread['group'],
      'batch_dependent': batch_dependent,
    },
    notes=(
      f'Data: scikit-learn digits (899 train / 898 test, 8x8). Net: '
      f'cnn_small, stage channels {sizes["channels"]}, SGD + momentum '
      f'{MOMENTUM}, constant lr, no weight decay, augmentation or label '
      'smoothing; seed 0.',
      f'Part 1: {sizes["lr_steps"]} steps of batch 32; "failed to train": '
      f'final training accuracy under {TRAINED_ACCURACY:.0%}; "diverged": '
      "the trainer's DivergedError (a non-finite loss) at that step.",
      f'Part 2: {sizes["epochs"]} epoch(s) per arm, lr = {BATCH_LR:g} x '
      'batch / 32; final train acc: the mean over the last quarter; '
      f"GroupNorm with {GROUPS} groups per layer. BN's test error uses its "
      'running statistics, as at test time.',
    ),
  )


def _verdict(reach, low, rescued, diverged, spread, errors, smallest) -> str:
  speed = (
    f'At lr {low:g} the net with BN reaches training loss {LOSS_TARGET} at '
    f'step {_fmt_step(reach["batch"])}, without BN at step '
    f'{_fmt_step(reach[None])}.'
  )
  if rescued:
    lrs = ', '.join(f'{lr:g}' for lr in rescued)
    stable = f' At lr {lrs} only the net with BN trains'
    if diverged:
      stable += (
        ' (without BN the loss became non-finite at lr '
        + ', '.join(f'{lr:g}' for lr in diverged)
        + ')'
      )
    stable += '.'
  else:
    stable = ' No learning rate tried trains with BN but not without.'
  batch = (
    f' Over batch sizes {smallest} to 32 the test error of BN moves by '
    f'{100 * spread["batch"]:.1f} points (batch {smallest}: '
    f"{100 * errors['batch'][smallest]:.1f}%), GroupNorm's by "
    f'{100 * spread["group"]:.1f} (batch {smallest}: '
    f'{100 * errors["group"][smallest]:.1f}%).'
  )
  return speed + stable + batch
