"""An ensemble of diverse architectures beats its best member.

Notes (seed 002, "Convolutional Neural Networks 2", slide "Ensemble of
Diverse Architecture"): the ILSVRC 2016 winner (Trimps-Soushen) fused
Inception-v3 (4.20% top-5 error), Inception-v4 (4.01%), Inception-ResNet-v2
(3.52%), ResNet-200 (4.26%) and WRN-68-3 (4.65%) into 2.92% on validation
("-0.6", against the best member) and 2.99% on test. The slide does not say
how they fused; Tsang's review it cites describes averaging the members'
scores, which is what `nets/ensemble.py` implements: `p = 1/M sum_m
softmax(f_m(x))`.

The study keeps the slide's design at MNIST-1D size: members of similar
strength from one family (all of Trimps' members were deep CNNs within 1.1
points of each other), differing in depth, kernel width and activation:
three 1-D CNNs (`cnn1d`), each trained by the project's trainer on the 4,000
MNIST-1D training signals with the MNIST-1D recipe, on 3 seeds. Their final
states are fused by `nets.ensemble.Ensemble` (the project's own fusion
module) and evaluated on fresh signals drawn by the MNIST-1D generator with
another seed (`fresh_signals`): 2,000 to pick the best member (as Trimps
compared against its best single model on validation), and 10,000 to
measure, so that the interval on the gain is narrower than the gain in
question. The interval is a paired bootstrap over seeds and test signals
(`verdict.bootstrap_seeds_examples`): the ensemble and its best member are
scored on the same resampled signals and seeds.

Where notes and this study differ: the notes' numbers are top-5 errors on
ImageNet; here the metric is top-1 error on a 10-class task. The MLP, the
only other architecture that reads MNIST-1D signals here, reaches about 76%
against the CNNs' 97%, so it is left out: a member that weak is not the
slide's "ensemble of diverse [strong] architectures".
"""

from collections.abc import Sequence
import dataclasses
import functools
from typing import Any

import jax
from matplotlib import patches
import ml_collections
import numpy as np

from experiments.configs import common
from experiments.configs import mnist1d
from experiments.studies import report
from experiments.studies import verdict as verdict_lib
from nets import ensemble as ensemble_lib

CLAIM = (
  'An ensemble of diverse architectures, fused by averaging their softmax '
  'probabilities, is more accurate than its best member.'
)
SOURCE = (
  'notes, seed 002 ("CNNs 2"), slide "Ensemble of Diverse Architecture": '
  'ILSVRC 2016, Trimps-Soushen, best member 3.52% -> fusion 2.92% top-5 error'
)


@dataclasses.dataclass(frozen=True)
class Member:
  """One member: a registered model and its options."""

  label: str
  model: str
  model_kw: dict[str, Any]


MEMBERS = (
  Member(
    'CNN 3 x k5 ReLU',
    'cnn1d',
    {'channels': (32, 32, 32), 'kernel_size': 5, 'strides': (1, 2, 2)},
  ),
  # The first full run had tanh here: 87.3% against 96.9% and 97.7%, not
  # the similar strength the design asks for (see REDESIGN).
  Member(
    'CNN 3 x k9 ELU',
    'cnn1d',
    {
      'channels': (32, 32, 32),
      'kernel_size': 9,
      'strides': (1, 2, 2),
      'activation': 'elu',
    },
  ),
  Member(
    'CNN 4 x k3 GELU',
    'cnn1d',
    {
      'channels': (32, 32, 32, 32),
      'kernel_size': 3,
      'strides': (1, 1, 2, 2),
      'activation': 'gelu',
    },
  ),
)
REDESIGN = (
  'The first full run (members CNN 3 x k5 ReLU, CNN 3 x k9 tanh, CNN 4 x '
  'k3 GELU) found the tanh member at 87.3% test accuracy against 96.9% and '
  '97.7%: not members of similar strength, as the design asks; its gain was '
  '+0.40 points [-0.04, +0.90], inconclusive. The tanh member was replaced '
  'by the same CNN with ELU (3 x k9) and the study rerun; the rule, '
  'threshold, seeds, budget and test signals did not change. The ELU member '
  'came out weaker too (92.8%); the study was left there rather than tuned '
  'member by member on the test outcome.'
)
# Fixed before the run. 1,000 steps of batch 100 (25 epochs) bring the
# default CNN to about 96.5% (a probe); 3 seeds per member.
STEPS = 1000
QUICK_STEPS = 150
SEEDS = (0, 1, 2)
QUICK_SEEDS = (0,)
# Fresh signals: the generator's own arguments with another seed (the
# project's split uses seed 42). 2,000 pick the best member, 10,000 measure:
# at ~97% accuracy a paired difference's standard error is about
# sqrt(0.03 / 10,000) = 0.17 points, well under the slide's 0.6-point gain.
FRESH_SEED = 1
SELECT_SIGNALS = 2000
TEST_SIGNALS = 10000
QUICK_SELECT, QUICK_TEST = 300, 700
# The mean and standard deviation of the raw MNIST-1D training split (the
# package's default arguments), with which `small.load_mnist1d` scales its
# signals; constants, because generating that split again costs seconds (a
# slow test recomputes them).
MNIST1D_TRAIN_MEAN = -0.0003236716742193472
MNIST1D_TRAIN_STD = 0.9976479749365886
RESAMPLES = 2000
# "Similar strength" (Trimps' members span 1.1 points of top-5 error): the
# members' mean accuracies within 2 points; reported, not a sub-claim.
SIMILAR_SPREAD = 0.02
# "More accurate than its best member": a gain above 0.
GAIN_THRESHOLD = 0.0
# nets.ensemble.Ensemble computes the mean of softmax in float32 (log of
# the mean): it agrees with the hand mean to float32 round-off.
FUSION_TOLERANCE = 1e-5

PROTOCOL = (
  (
    'architecture',
    'five deep ImageNet CNNs within 1.1 points of each other: Inception-v3, '
    'Inception-v4, Inception-ResNet-v2, ResNet-200, WRN-68-3 (the slide)',
    'three 1-D CNNs (cnn1d) differing in depth (3, 4 conv layers), kernel '
    'width (3, 5, 9) and activation (ReLU, ELU, GELU)',
    'the only non-CNN net for these signals (an MLP, ~76%) is far weaker; '
    'the slide fused members of similar strength',
  ),
  (
    'data',
    'ImageNet (ILSVRC 2016): 1.28M training images; validation and test '
    'sets of 50k and 100k',
    'MNIST-1D: the 4,000 training signals; 2,000 fresh signals pick the '
    'best member, 10,000 more measure',
    'fresh signals from the same generator (another seed) make the test '
    'set large enough for the gain in question',
  ),
  (
    'optimizer and learning-rate selection',
    "each member trained by its authors' own recipe",
    'the MNIST-1D recipe (experiments/configs/mnist1d.py: AdamW, peak lr '
    '1e-2, cosine, label smoothing 0.1), the same for every member',
    'one tuned recipe; the members differ in architecture only',
  ),
  (
    'metric',
    'top-5 error; the fusion against the best single model',
    'top-1 error on the 10,000 fresh signals; gain = ensemble accuracy '
    'minus the best member (picked on the 2,000) per seed',
    'a 10-class task has no useful top-5',
  ),
  (
    'budget',
    'full ImageNet training per member',
    f'{STEPS} steps of batch 100 per member (25 epochs); --quick: 2 '
    f'members, {QUICK_STEPS} steps, 1 seed, 1,500 test signals',
    'a few CPU minutes for 9 runs',
  ),
  (
    'runs/seeds',
    'one model per architecture',
    '3 seeds per member; each seed fuses its own members',
    'the interval covers training seeds and test signals (paired '
    'bootstrap over both)',
  ),
)


def member_config(member: Member, *, steps: int, seed: int = 0):
  """The MNIST-1D recipe (experiments/configs/mnist1d.py) for one member."""
  config = mnist1d.get_config('cnn')
  config.model = member.model
  config.model_kw = ml_collections.ConfigDict(member.model_kw)
  common.set_keys(
    config,
    seed=seed,
    total_steps=steps,
    warmup_steps=min(100, steps // 10),
    log_every_steps=steps,
    eval_every_steps=0,
    checkpoint_every_steps=0,
  )
  return config


@functools.cache
def fresh_signals(n: int, seed: int = FRESH_SEED) -> tuple[np.ndarray, ...]:
  """`n` new MNIST-1D signals [n, 40, 1] and labels, as the loader scales.

  Drawn by the package's generator with its default arguments but `seed`
  (the project's split uses 42, so the signals are new), and standardised
  with the mean and standard deviation of the project's raw training split,
  as `train_lib.data.small.load_mnist1d` standardises its own.
  """
  from mnist1d.data import get_dataset_args  # noqa: PLC0415
  from mnist1d.data import make_dataset  # noqa: PLC0415

  args = get_dataset_args()
  # The generator sends train_split of num_samples to 'x', the rest to
  # 'x_test'; both halves are fresh here.
  args.num_samples = n
  args.seed = seed
  data = make_dataset(args)
  x = np.concatenate([data['x'], data['x_test']])
  y = np.concatenate([data['y'], data['y_test']])
  scaled = (x - MNIST1D_TRAIN_MEAN) / MNIST1D_TRAIN_STD
  return scaled.astype(np.float32)[..., None], y


def fuse(
  configs: Sequence[ml_collections.ConfigDict],
  states: Sequence[Any],
  images: np.ndarray,
  num_classes: int = 10,
) -> np.ndarray:
  """Fused probabilities [N, K] by `nets.ensemble.Ensemble` of the states.

  The members' trained variables are placed under `members_{i}`, the
  Ensemble module's naming, and the module (log of the mean member
  probability) is applied to `images`.
  """
  from train_lib import trainer  # noqa: PLC0415

  members = tuple(trainer.create_model(c, num_classes) for c in configs)
  model = ensemble_lib.Ensemble(members=members)
  params, batch_stats = {}, {}
  for i, state in enumerate(states):
    params[f'members_{i}'] = state.params
    if state.batch_stats:
      batch_stats[f'members_{i}'] = state.batch_stats
  variables = {'params': params}
  if batch_stats:
    variables['batch_stats'] = batch_stats
  log_p = jax.jit(model.apply)(variables, images)
  return np.exp(np.asarray(log_p, np.float64))


def mean_probabilities(probs: Sequence[np.ndarray]) -> np.ndarray:
  """The notes' fusion, by hand: 1/M sum_m p_m, for [N, K] arrays."""
  return np.mean(np.stack([np.asarray(p, np.float64) for p in probs]), 0)


def best_member_gain(
  member_correct: np.ndarray, ensemble_correct: np.ndarray, n_select: int
) -> tuple[np.ndarray, np.ndarray]:
  """Per seed: the best member (on the first `n_select` signals) and gain.

  Args:
    member_correct: ``[seeds, members, signals]`` bools.
    ensemble_correct: ``[seeds, signals]`` bools.
    n_select: the first signals pick the best member; the rest measure.

  Returns:
    ``(best [seeds] member index, diff [seeds, test signals])`` where diff
    is ensemble minus best member correctness (-1, 0 or 1) on the test part.
  """
  member_correct = np.asarray(member_correct, bool)
  best = member_correct[:, :, :n_select].mean(axis=2).argmax(axis=1)
  seeds = np.arange(member_correct.shape[0])
  best_test = member_correct[seeds, best, n_select:]
  diff = ensemble_correct[:, n_select:].astype(np.float64) - best_test
  return best, diff


def run(quick: bool = False) -> report.Result:
  """Trains the members on every seed, fuses, compares on fresh signals."""
  members = MEMBERS[:2] if quick else MEMBERS
  steps = QUICK_STEPS if quick else STEPS
  seeds = QUICK_SEEDS if quick else SEEDS
  n_select = QUICK_SELECT if quick else SELECT_SIGNALS
  n_test = QUICK_TEST if quick else TEST_SIGNALS
  images, labels = fresh_signals(n_select + n_test)
  member_correct, ensemble_correct, fusion_diff = [], [], 0.0
  for seed in seeds:
    configs, states, probs = [], [], []
    for member in members:
      config = member_config(member, steps=steps, seed=seed)
      states.append(report.train(config).state)
      configs.append(config)
      probs.append(report.predict_images(config, states[-1], images))
    fused = fuse(configs, states, images)
    # The module's fusion against the notes' formula computed by hand.
    fusion_diff = max(
      fusion_diff, float(np.abs(fused - mean_probabilities(probs)).max())
    )
    member_correct.append([np.argmax(p, -1) == labels for p in probs])
    ensemble_correct.append(np.argmax(fused, -1) == labels)
  return summarize(
    [m.label for m in members],
    np.asarray(member_correct),
    np.asarray(ensemble_correct),
    n_select=n_select,
    fusion_diff=fusion_diff,
    steps=steps,
  )


def summarize(
  labels: Sequence[str],
  member_correct: np.ndarray,
  ensemble_correct: np.ndarray,
  *,
  n_select: int,
  fusion_diff: float,
  steps: int,
) -> report.Result:
  """Sub-claims, table and figure from per-signal correctness."""
  n_seeds, _, n_all = member_correct.shape
  n_test = n_all - n_select
  best, diff = best_member_gain(member_correct, ensemble_correct, n_select)
  gain = verdict_lib.bootstrap_seeds_examples(diff, n_resamples=RESAMPLES)
  test_acc = member_correct[:, :, n_select:].mean(axis=2)  # [seeds, members]
  ens_acc = ensemble_correct[:, n_select:].mean(axis=1)  # [seeds]
  best_acc = test_acc[np.arange(n_seeds), best]
  subclaims = [
    verdict_lib.Subclaim(
      claim='The ensemble (mean of the softmax) is more accurate than its '
      'best member.',
      estimate=gain[0],
      ci_low=gain[1],
      ci_high=gain[2],
      threshold=GAIN_THRESHOLD,
      direction='above',
      seeds=n_seeds,
      interval=f'paired percentile bootstrap over {n_seeds} seed(s) x '
      f'{n_test:,} test signals ({RESAMPLES} resamples of both)',
      threshold_why='"more accurate than its best member": a gain in test '
      'accuracy above 0',
    ),
    verdict_lib.Subclaim(
      claim="nets.ensemble.Ensemble fuses by averaging the members' "
      'softmax probabilities.',
      estimate=fusion_diff,
      ci_low=fusion_diff,
      ci_high=fusion_diff,
      threshold=FUSION_TOLERANCE,
      direction='below',
      seeds=n_seeds,
      interval='exact (a deterministic computation: the largest '
      'difference over all signals and seeds)',
      threshold_why='"fused by averaging their softmax": the module equals '
      'the hand mean to float32 round-off (1e-5)',
    ),
  ]
  member_means = test_acc.mean(axis=0)
  spread = float(member_means.max() - member_means.min())
  strength_note = (
    f"Member strength: the members' mean test accuracies span "
    f'{100 * spread:.1f} points'
    + (
      f' (more than the {100 * SIMILAR_SPREAD:.0f} points the design allows '
      'for "similar strength": the weakest member dilutes the average, and '
      'the gain over the strongest member is the smaller for it).'
      if spread > SIMILAR_SPREAD
      else '.'
    )
  )
  summary = (
    f'On {n_test:,} fresh MNIST-1D signals the ensemble of {len(labels)} '
    f'CNNs scores {100 * ens_acc.mean():.2f}% against '
    f'{100 * best_acc.mean():.2f}% for its best member (mean over '
    f'{n_seeds} seed(s)): {100 * gain[0]:+.2f} points (95% paired '
    f'bootstrap {100 * gain[1]:+.2f} to {100 * gain[2]:+.2f}; the slide: '
    '-0.6 points of top-5 error). The members score '
    + ', '.join(
      f'{label} {100 * test_acc[:, i].mean():.2f}%'
      for i, label in enumerate(labels)
    )
    + '.'
  )
  rows = [
    (
      label,
      100 * test_acc[:, i].mean(),
      ' '.join(f'{100 * v:.2f}' for v in test_acc[:, i]),
      int(np.sum(best == i)),
    )
    for i, label in enumerate(labels)
  ]
  rows.append(
    (
      'ensemble (mean of softmax)',
      100 * ens_acc.mean(),
      ' '.join(f'{100 * v:.2f}' for v in ens_acc),
      '-',
    )
  )
  return report.Result(
    figure=_figure(labels, test_acc, ens_acc, best_acc, gain),
    columns=(
      'model',
      'test accuracy (%, mean over seeds)',
      'per seed (%)',
      'seeds where it is the best member',
    ),
    rows=rows,
    subclaims=subclaims,
    summary=summary,
    protocol=PROTOCOL,
    redesign=REDESIGN,
    values={
      'member_accuracy': {
        label: [float(v) for v in test_acc[:, i]]
        for i, label in enumerate(labels)
      },
      'best_member': [labels[b] for b in best],
      'best_member_accuracy': [float(v) for v in best_acc],
      'ensemble_accuracy': [float(v) for v in ens_acc],
      'gain': gain[0],
      'gain_ci95': [gain[1], gain[2]],
      'fusion_max_abs_diff': fusion_diff,
      'test_signals': n_test,
      'select_signals': n_select,
    },
    notes=(
      f'MNIST-1D: members train on the 4,000 training signals for {steps} '
      'steps of batch 100 with the mnist1d.py recipe (AdamW, weight decay '
      '0.05, label smoothing 0.1, warmup then cosine, peak lr 1e-2); seeds '
      'draw the init and the batches.',
      f'Evaluation: {n_select + n_test:,} fresh signals from the MNIST-1D '
      f'generator (default arguments, seed {FRESH_SEED}; the training '
      f'split uses 42), standardised as the loader does; the first '
      f"{n_select:,} pick each seed's best member, the other {n_test:,} "
      'measure.',
      strength_note,
      f'Fusion: `nets.ensemble.Ensemble` over the trained members (log of '
      f"the mean softmax); it matches the members' softmax averaged by hand "
      f'to {fusion_diff:.1e}.',
    ),
  )


def _figure(labels, test_acc, ens_acc, best_acc, gain):
  fig, ax = report.new_figure()
  names = [*labels, 'ensemble\n(mean of softmax)']
  errors = 100 * (1 - np.concatenate([test_acc, ens_acc[:, None]], axis=1))
  means = errors.mean(axis=0)
  colors = ['tab:blue'] * len(labels) + ['tab:red']
  bars = ax.bar(names, means, color=colors, alpha=0.7)
  for i in range(errors.shape[1]):
    ax.plot([i] * errors.shape[0], errors[:, i], 'k.', ms=5)
  for bar, value in zip(bars, means, strict=True):
    ax.annotate(
      f'{value:.2f}%',
      (bar.get_x() + bar.get_width() / 2, value),
      ha='center',
      va='bottom',
      xytext=(0, 4),
      textcoords='offset points',
    )
  best_error = 100 * (1 - best_acc.mean())
  ax.axhline(
    best_error,
    ls='--',
    color='grey',
    label=f'best member (picked per seed): {best_error:.2f}%',
  )
  handles = [
    ax.get_legend_handles_labels()[0][0],
    patches.Patch(color='tab:blue', alpha=0.7, label='members (dots: seeds)'),
    patches.Patch(
      color='tab:red',
      alpha=0.7,
      label=(
        f'ensemble: {-100 * gain[0]:+.2f} points of error vs best '
        f'(95%: {-100 * gain[2]:+.2f} to {-100 * gain[1]:+.2f})'
      ),
    ),
  ]
  ax.set_ylabel('test error on fresh MNIST-1D signals (%)')
  ax.set_xlabel('model')
  ax.set_title(
    f'An ensemble of {len(labels)} diverse 1-D CNNs against its members'
  )
  ax.legend(handles=handles, loc='upper right', fontsize=8)
  ax.set_ylim(0, errors.max() * 1.5)  # Room for the legend.
  return fig
