"""A CNN against an MLP when the input positions are shuffled (MNIST-1D).

Notes (seed 001, "Feedforward Neural Network with Many layers" and the
convolution slides): "How may we reduce the number of parameters from the
fully connected network? Keyword of the day: parameter sharing"; a
convolution exploits "the strong spatially local correlation present in
natural images". Parameter sharing and locality are an inductive bias: they
help only when neighbouring inputs belong together.

Greydanus (2020, "Scaling down deep learning", MNIST-1D) makes the point
with a shuffled variant: one fixed permutation of the 40 positions of every
signal (`shuffle_seq`, "as in Zhang et al. 2017"). Their table: MLP 68% ->
68% (an MLP is permutation-invariant: the same permutation applied to its
first layer's weights gives the same function, so only the random init
differs), CNN 94% -> 56%, below the MLP.

The study trains the project's two MNIST-1D recipes (experiments/configs/
mnist1d.py: the `cnn1d` CNN and the two-layer MLP, each with its own
tuned AdamW recipe) on the ordered signals and on the signals shuffled by
one fixed permutation (`config.data.permutation_seed`, train and test
alike), for fewer steps than the configs' 6,000, over paired seeds (a seed
fixes the init and the batch order in both data arms).
"""

import ml_collections
import numpy as np

from experiments.configs import common
from experiments.configs import mnist1d
from experiments.studies import report
from experiments.studies import verdict as verdict_lib

CLAIM = (
  "A CNN's advantage over a fully connected net comes from parameter "
  'sharing and locality: when the input positions are shuffled by one '
  'fixed permutation it disappears, while the MLP is unchanged.'
)
SOURCE = (
  'notes, seed 001, "parameter sharing", "spatially local correlation"; '
  'Greydanus 2020 (MNIST-1D), shuffled variant: MLP 68% -> 68%, CNN 94% -> '
  '56%'
)

MODELS = ('cnn', 'mlp')
# Fixed before the run: the permutation, the budget and the seeds.
PERMUTATION_SEED = 0
STEPS = 1500
QUICK_STEPS = 150
SEEDS = (0, 1, 2)
QUICK_SEEDS = (0,)
# "Unchanged": within 2 points, about 1.4 binomial standard errors of one
# accuracy on 1,000 test signals (sqrt(0.7 * 0.3 / 1000) = 1.45 points).
UNCHANGED_POINTS = 2.0


def arm_config(
  model: str, *, shuffled: bool, seed: int, steps: int
) -> ml_collections.ConfigDict:
  """mnist1d.py's recipe for `model`, ordered or shuffled, `steps` long."""
  config = mnist1d.get_config(model)
  config.data.permutation_seed = PERMUTATION_SEED if shuffled else None
  common.set_keys(
    config,
    seed=seed,
    total_steps=steps,
    warmup_steps=min(config.warmup_steps, steps // 10),
    log_every_steps=steps,
    eval_every_steps=0,
    checkpoint_every_steps=0,
  )
  return config


def check_shuffled(steps: int) -> None:
  """RuntimeError unless the shuffled arm's signals are the permuted ones."""
  from train_lib import data as data_lib  # noqa: PLC0415 (slow import)

  signals = {}
  for shuffled in (False, True):
    config = arm_config('cnn', shuffled=shuffled, seed=0, steps=steps)
    signals[shuffled], _ = data_lib.get_dataset(config.data).host_arrays('test')
  perm = np.random.default_rng(PERMUTATION_SEED).permutation(
    signals[False].shape[1]
  )
  if not np.array_equal(signals[True], signals[False][:, perm]):
    raise RuntimeError('the shuffled arm does not see permuted signals')


def arm_name(model: str, shuffled: bool) -> str:
  return f'{model} {"shuffled" if shuffled else "ordered"}'


def _subclaim(*, claim, values, **kw) -> verdict_lib.Subclaim:
  estimate, low, high = verdict_lib.t_interval(values)
  return verdict_lib.Subclaim(
    claim=claim,
    estimate=estimate,
    ci_low=low,
    ci_high=high,
    interval='paired t over seeds (per-seed difference)',
    **kw,
  )


def subclaims(acc: dict[str, list[float]]) -> list[verdict_lib.Subclaim]:
  """Sub-claims from test accuracies (%) per arm, over the shared seeds."""
  a = {k: np.asarray(v, np.float64) for k, v in acc.items()}
  seeds = len(a[arm_name('cnn', False)])
  mlp_change = a[arm_name('mlp', True)] - a[arm_name('mlp', False)]
  return [
    _subclaim(
      claim='On ordered signals the CNN beats the MLP (test accuracy, points).',
      values=a[arm_name('cnn', False)] - a[arm_name('mlp', False)],
      threshold=0.0,
      direction='above',
      seeds=seeds,
      threshold_why="the CNN's advantage: more than none (Greydanus: +26)",
    ),
    _subclaim(
      claim='On shuffled signals the CNN no longer beats the MLP (test '
      'accuracy, CNN - MLP, points).',
      values=a[arm_name('cnn', True)] - a[arm_name('mlp', True)],
      threshold=0.0,
      direction='below',
      seeds=seeds,
      threshold_why='"disappears": no advantage left (Greydanus: -12)',
    ),
    _subclaim(
      claim='The MLP does not lose accuracy to the shuffling (shuffled - '
      'ordered, points).',
      values=mlp_change,
      threshold=-UNCHANGED_POINTS,
      direction='above',
      seeds=seeds,
      threshold_why='"unchanged": within 2 points, 1.4 binomial standard '
      'errors on 1,000 test signals',
    ),
    _subclaim(
      claim='Nor does it gain from it (shuffled - ordered, points).',
      values=mlp_change,
      threshold=UNCHANGED_POINTS,
      direction='below',
      seeds=seeds,
      threshold_why='"unchanged": within 2 points, as above',
    ),
  ]


PROTOCOL = (
  (
    'architecture',
    'Greydanus 2020: CNN of three 1-D convs (25 channels) + linear; MLP '
    'with two hidden layers of 100',
    "the project's cnn1d (three 1-D convs of 32 channels, kernel 5, "
    'strides 1, 2, 2) and MLP (two hidden layers of 256, dropout 0.3)',
    "the course's MNIST-1D nets (experiments/configs/mnist1d.py), of the "
    "same kind and size as the paper's",
  ),
  (
    'data',
    'MNIST-1D 4,000 / 1,000; shuffled: one fixed permutation of the 40 '
    'positions',
    'the same (generated offline with the default arguments); '
    f'permutation drawn from seed {PERMUTATION_SEED}',
    'none',
  ),
  (
    'optimizer and learning-rate selection',
    'Adam at a constant rate, the same for ordered and shuffled',
    "each net's tuned AdamW recipe (warmup, cosine, label smoothing, "
    'weight decay), the same for ordered and shuffled',
    "the project's recipes were tuned on ordered validation signals, as "
    "the paper's rates were",
  ),
  (
    'metric',
    'test accuracy',
    'test accuracy (1,000 signals) at the end',
    'none',
  ),
  (
    'budget',
    '6,000 steps of batch 100',
    f'{STEPS} steps of batch 100 (cosine to 0 over them)',
    'the CPU budget of the gallery; the ordering of the arms is clear earlier',
  ),
  (
    'runs/seeds',
    'one run per cell (as read from the table)',
    f'{len(SEEDS)} seeds, paired over the four arms',
    'intervals on the paired differences',
  ),
)


def _figure(acc):
  fig, ax = report.new_figure()
  for i, model in enumerate(MODELS):
    for j, shuffled in enumerate((False, True)):
      values = acc[arm_name(model, shuffled)]
      x = 2 * i + j
      ax.bar(
        x,
        np.mean(values),
        color=f'C{i}',
        alpha=0.5 if shuffled else 1.0,
        hatch='//' if shuffled else None,
        label=arm_name(model, shuffled),
      )
      ax.plot([x] * len(values), values, 'k.', ms=5)
  paper = {'cnn ordered': 94, 'cnn shuffled': 56, 'mlp ordered': 68}
  paper['mlp shuffled'] = 68
  for x, name in enumerate(
    arm_name(m, s) for m in MODELS for s in (False, True)
  ):
    ax.plot([x - 0.4, x + 0.4], [paper[name]] * 2, 'r--', lw=1)
  ax.plot([], [], 'r--', lw=1, label='Greydanus 2020 (6,000 steps)')
  ax.set_xticks(
    range(4), [arm_name(m, s) for m in MODELS for s in (False, True)]
  )
  ax.set_ylabel('test accuracy (%), bars: mean, dots: seeds')
  ax.set_ylim(0, 100)
  ax.legend(fontsize=7, loc='lower right')
  ax.set_title(
    'MNIST-1D, positions shuffled by one fixed permutation: the CNN loses '
    'its edge',
    fontsize=10,
  )
  return fig


def run(quick: bool = False) -> report.Result:
  """Trains both nets on ordered and shuffled signals, paired seeds."""
  steps = QUICK_STEPS if quick else STEPS
  seeds = QUICK_SEEDS if quick else SEEDS
  check_shuffled(steps)
  acc, loss = {}, {}
  for model in MODELS:
    for shuffled in (False, True):
      name = arm_name(model, shuffled)
      acc[name], loss[name] = [], []
      for seed in seeds:
        config = arm_config(model, shuffled=shuffled, seed=seed, steps=steps)
        trained = report.train(config)
        acc[name].append(100 * trained.final('accuracy'))
        loss[name].append(trained.final('loss', 'train'))
  claims = subclaims(acc)
  mean = {k: float(np.mean(v)) for k, v in acc.items()}
  summary = (
    'Test accuracy, ordered -> shuffled (mean of '
    f'{len(seeds)} seeds): CNN {mean["cnn ordered"]:.1f}% -> '
    f'{mean["cnn shuffled"]:.1f}%, MLP {mean["mlp ordered"]:.1f}% -> '
    f'{mean["mlp shuffled"]:.1f}% (Greydanus: CNN 94% -> 56%, MLP 68% -> '
    '68%).'
  )
  rows = [
    (
      name,
      mean[name],
      float(np.std(acc[name])),
      float(np.mean(loss[name])),
      len(seeds),
    )
    for name in acc
  ]
  return report.Result(
    figure=_figure(acc),
    columns=(
      'arm',
      'test accuracy (%)',
      'std over seeds (points)',
      'final training loss',
      'seeds',
    ),
    rows=rows,
    subclaims=claims,
    summary=summary,
    protocol=PROTOCOL,
    values={'test_accuracy': acc, 'train_loss': loss, 'steps': steps},
    notes=(
      'One permutation for train and test and every seed; the MLP sees '
      'the same numbers in another order, so only its random init relates '
      'differently to the data.',
      'Thresholds and budget fixed before the full run.',
    ),
  )
