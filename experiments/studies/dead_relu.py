"""Dead ReLUs at a large learning rate; Leaky ReLU and ELU units that live.

Notes (seed 004, "Activation Functions: ReLU: Pros and Cons"): "A ReLU
neuron may 'die' during training. A large gradient may update the weights
such that the ReLU neuron may never activate again. Avoid large learning
rate." Seed 003 ("Activation functions"): Leaky ReLU ``max(0.01x, x)``
"will not 'die'" [Maas et al. 2013; He et al. 2015]; ELU (Clevert et al.
2015) "does not die"; "Use ReLU. Be careful with your learning rates."

A unit is *dead* when no gradient passes through it on any training input:
its slope f'(z) is below `DEAD_SLOPE` on every one of the 4,000 training
images. For ReLU that is "never active on any training input" (f'(z) = 0
for z <= 0); Leaky ReLU's slope is at least 0.01 everywhere, so by this
definition it cannot die, and the study checks that the code agrees; ELU's
slope alpha e^z is positive but vanishes for very negative z, so whether ELU
units die is an open measurement (the notes say they do not).

The net has ONE hidden layer (784-256-10), so a dead unit's inputs are the
fixed pixels: once dead, no later update reaches its weights (no weight
decay), so it stays dead, which the study measures (units dead at a quarter
of the run that are alive at its end). For Leaky ReLU the same measurement
asks whether units that sit in the negative regime on every input come back.

The trainer runs each arm in stages (one workdir, the run resumed with a
larger `total_steps`: the batches depend only on the step and the rate is
constant, so the stages are one run) and the unit statistics are taken from
the parameters at each stage's end. The notes cite no experiment with
numbers; the protocol table sets the study beside the lecture's source.
"""

import contextlib
import io
import tempfile

import ml_collections
import numpy as np

from experiments.configs import common
from experiments.configs import mnist
from experiments.studies import report
from experiments.studies import verdict as verdict_lib

CLAIM = (
  'At a large learning rate a share of ReLU units die (never active on any '
  'training input again), while Leaky ReLU and ELU units do not die (their '
  'gradient never vanishes).'
)
SOURCE = (
  'notes, seed 004, "ReLU: Pros and Cons" ("may never activate again ... '
  'avoid large learning rate"); seed 003, Leaky ReLU "will not die", ELU '
  '"does not die"'
)

HIDDEN = 256
BATCH = 128
# The notes' candidates 0.1 and 0.01 ("Learning Rates"); 0.1 trains this
# net best of them (probe, seed 0: training loss 0.12 vs 0.28 after 300
# steps). The large rate is 3x the best: a rate a user would try.
NORMAL_LR = 0.1
SMALL_LR = 0.01
LARGE_LR = 0.3
# (activation, learning rate) arms; every arm shares the seeds.
ARMS = (
  ('relu', SMALL_LR),
  ('relu', NORMAL_LR),
  ('relu', LARGE_LR),
  ('leaky_relu', LARGE_LR),
  ('elu', LARGE_LR),
)
QUICK_ARMS = ARMS[1:4]  # No ELU: the quick run fits the tests' budget.
# Stage ends (steps): 400 steps = 12.8 epochs of 4,000 images. The revival
# check starts at a quarter of the run. Each stage is a trainer launch, the
# cost the gallery's budget counts.
STAGES = (50, 100, 400)
QUICK_STAGES = (20, 60)
SEEDS = (0, 1, 2)
QUICK_SEEDS = (0,)
# Dead: slope below a millionth on every training input (ReLU: exactly 0;
# ELU: z < ln(1e-6) = -13.8 everywhere), fixed before the run.
DEAD_SLOPE = 1e-6
# "Never" and "does not die": below one unit in 256 (0.39 points of the
# layer), the resolution of one net; an exact 0 is the claim's own number.
ONE_UNIT = 100.0 / HIDDEN


def arm_config(
  activation: str, *, lr: float, seed: int, steps: int
) -> ml_collections.ConfigDict:
  """mnist.py's MLP, one hidden layer of `HIDDEN`, plain SGD + momentum."""
  config = mnist.get_config('mlp')
  config.model_kw.hidden_sizes = (HIDDEN,)
  config.model_kw.dropout_rate = 0.0
  config.model_kw.activation = activation
  return report.plain_sgd(
    config,
    lr=lr,
    seed=seed,
    total_steps=steps,
    batch_size=BATCH,
    log_every_steps=min(25, steps),
  )


def unit_stats(
  activation: str, kernel: np.ndarray, bias: np.ndarray, inputs: np.ndarray
) -> dict[str, np.ndarray]:
  """Per hidden unit: dead (slope < DEAD_SLOPE everywhere), never positive.

  Args:
    activation: an `ops.activations` name.
    kernel: [784, H] first-layer weights.
    bias: [H].
    inputs: [N, 784] the whole training split.

  Returns:
    {'dead': bool [H], 'negative': bool [H] (z <= 0 on every input)}.
  """
  from ops import activations  # noqa: PLC0415 (jax import)

  z = inputs @ kernel + bias  # [N, H]
  slope = np.asarray(activations.get_grad(activation)(z))
  return {
    'dead': slope.max(axis=0) < DEAD_SLOPE,
    'negative': z.max(axis=0) <= 0,
  }


def revived_share(before: np.ndarray, after: np.ndarray) -> float:
  """Points of the layer: units flagged `before` that are not flagged after."""
  return 100.0 * float(np.mean(before & ~after))


def train_in_stages(config, stages):
  """The project's trainer resumed in one workdir: (states, records).

  One state per stage end; the records are the run's metrics.jsonl.
  """
  from train_lib import metrics as metrics_lib  # noqa: PLC0415 (slow import)
  from train_lib import trainer  # noqa: PLC0415

  states = []
  with tempfile.TemporaryDirectory(prefix='study-') as workdir:
    for steps in stages:
      common.set_keys(config, total_steps=steps)
      with contextlib.redirect_stdout(io.StringIO()):
        states.append(
          trainer.train_and_evaluate(config, workdir, allow_config_change=True)
        )
    records = metrics_lib.read_metrics(workdir)
  return states, records


def run_arm(activation, lr, seed, stages, inputs) -> dict | None:
  """Unit statistics per stage, final loss and accuracy; None if diverged."""
  from train_lib import trainer  # noqa: PLC0415

  config = arm_config(activation, lr=lr, seed=seed, steps=stages[0])
  try:
    states, records = train_in_stages(config, stages)
  except trainer.DivergedError:
    return None
  run = report.TrainRun(records=records, state=states[-1])
  stats = [
    unit_stats(
      activation,
      np.asarray(s.params['fc0']['kernel']),
      np.asarray(s.params['fc0']['bias']),
      inputs,
    )
    for s in states
  ]
  return {
    'dead': [100.0 * float(np.mean(u['dead'])) for u in stats],
    'negative': [100.0 * float(np.mean(u['negative'])) for u in stats],
    # From a quarter of the run (the stage nearest it) to the end.
    'revived_dead': revived_share(
      stats[_quarter(stages)]['dead'], stats[-1]['dead']
    ),
    'revived_negative': revived_share(
      stats[_quarter(stages)]['negative'], stats[-1]['negative']
    ),
    'train_loss': run.final('loss', 'train'),
    'test_accuracy': run.final('accuracy'),
  }


def _quarter(stages) -> int:
  """Index of the stage nearest a quarter of the run."""
  return int(np.argmin([abs(s - stages[-1] / 4) for s in stages]))


def _subclaim(*, claim, stats, **kw) -> verdict_lib.Subclaim:
  estimate, low, high = stats
  return verdict_lib.Subclaim(
    claim=claim, estimate=estimate, ci_low=low, ci_high=high, **kw
  )


def arm_name(activation: str, lr: float) -> str:
  return f'{activation} lr {lr:g}'


def subclaims(results: dict, seeds: int) -> list[verdict_lib.Subclaim]:
  """The claim's sub-claims from per-arm lists of per-seed results.

  Args:
    results: arm name -> list (over the shared seeds) of `run_arm` dicts.
    seeds: the number of seeds (for the records).
  """

  def final(arm, key):
    return [
      r[key][-1] if isinstance(r[key], list) else r[key] for r in results[arm]
    ]

  relu_large = arm_name('relu', LARGE_LR)
  relu_normal = arm_name('relu', NORMAL_LR)
  paired = 'paired t over seeds (per-seed difference)'
  diff = np.subtract(final(relu_large, 'dead'), final(relu_normal, 'dead'))
  out = [
    _subclaim(
      claim=(
        f'At the large rate ({LARGE_LR:g}) more ReLU units die than at the '
        f'normal one ({NORMAL_LR:g}) (points of the layer).'
      ),
      stats=verdict_lib.t_interval(diff),
      threshold=0.0,
      direction='above',
      seeds=seeds,
      interval=paired,
      threshold_why='"a large gradient may update the weights such that the '
      'ReLU neuron may never activate again": more than none',
    ),
    _subclaim(
      claim=(
        f'A ReLU unit dead at a quarter of the run never becomes active '
        f'again (revived, points of the layer, lr {LARGE_LR:g}).'
      ),
      stats=verdict_lib.t_interval(final(relu_large, 'revived_dead')),
      threshold=ONE_UNIT,
      direction='below',
      seeds=seeds,
      interval='t over seeds',
      threshold_why='"never activate again": fewer than one unit of 256',
    ),
  ]
  for activation in ('leaky_relu', 'elu'):
    arm = arm_name(activation, LARGE_LR)
    if arm not in results:  # --quick leaves ELU out.
      continue
    out.append(
      _subclaim(
        claim=(
          f'{activation} units do not die at the large rate ({LARGE_LR:g}): '
          f'dead share at the end (points of the layer).'
        ),
        stats=verdict_lib.t_interval(final(arm, 'dead')),
        threshold=ONE_UNIT,
        direction='below',
        seeds=seeds,
        interval='t over seeds',
        threshold_why=(
          '"will not die" (Leaky ReLU) / "does not die" (ELU): fewer '
          'than one unit of 256'
        ),
      )
    )
  leaky = arm_name('leaky_relu', LARGE_LR)
  out.append(
    _subclaim(
      claim=(
        'Leaky ReLU units that are negative on every input at a quarter of '
        'the run come back (positive on some input at the end; points of '
        'the layer).'
      ),
      stats=verdict_lib.t_interval(final(leaky, 'revived_negative')),
      threshold=0.0,
      direction='above',
      seeds=seeds,
      interval='t over seeds',
      threshold_why='"will not die": its gradient lets a unit return, so '
      'more than none return',
    ),
  )
  return out


PROTOCOL = (
  (
    'architecture',
    'notes / CS231n: no experiment; Maas et al. 2013 (deep rectifier nets '
    'for speech) motivate the leaky slope by the zero gradient of inactive '
    'units',
    f'MLP 784-{HIDDEN}-10, one hidden layer, He init for ReLU-like units',
    'one hidden layer makes death exact and permanent: a dead unit sees '
    'fixed pixels, so no update can revive it',
  ),
  (
    'data',
    'none given',
    'MNIST-5k, 4,000 training images (the dead share is measured on all)',
    "the course's offline MNIST",
  ),
  (
    'optimizer and learning-rate selection',
    '"avoid large learning rate"; no rates given',
    f'SGD + momentum 0.9, constant rate: ReLU at {SMALL_LR:g} and '
    f"{NORMAL_LR:g} (the notes' candidates; {NORMAL_LR:g} trains best), "
    f'every activation at the large {LARGE_LR:g} (3x the best)',
    'the claim is about the rate, so the rate is the variable; all '
    'activations share it',
  ),
  (
    'metric',
    '"never activate again"',
    f'share of hidden units whose slope is below {DEAD_SLOPE:g} on every '
    'training image, over training; units dead (negative) at a quarter of '
    'the run that are alive (positive) at the end',
    'the definition counts a unit as dead when no gradient passes through '
    'it, which is the notes\' reason (Leaky ReLU "will not die")',
  ),
  (
    'budget',
    'none given',
    f'{STAGES[-1]} steps of batch {BATCH} (12.8 epochs)',
    'enough for the death to happen and the survivors to train',
  ),
  (
    'runs/seeds',
    'none given',
    f'{len(SEEDS)} seeds, shared by all arms (paired)',
    'the dead share varies by tens of points between seeds at the large rate',
  ),
)


def _figure(results, stages):
  fig, (ax_curve, ax_bar) = report.new_figure(ncols=2)
  for i, (arm, runs) in enumerate(results.items()):
    ok = [r for r in runs if r is not None]
    if not ok:
      continue
    curves = np.asarray([r['dead'] for r in ok])
    for curve in curves:
      ax_curve.plot(stages, curve, color=f'C{i}', lw=0.6, alpha=0.5)
    ax_curve.plot(stages, curves.mean(0), 'o-', color=f'C{i}', label=arm)
  ax_curve.set_xlabel('training step')
  ax_curve.set_ylabel('dead units (% of the hidden layer)')
  ax_curve.set_title('dead: slope < 1e-6 on every training image', fontsize=9)
  ax_curve.legend(fontsize=7)
  names = list(results)
  for key, offset, hatch, label in (
    ('dead', -0.2, None, 'dead (no gradient)'),
    ('negative', 0.2, '//', 'negative on every input'),
  ):
    means = [
      np.mean([r[key][-1] for r in results[n] if r is not None] or [np.nan])
      for n in names
    ]
    ax_bar.bar(
      np.arange(len(names)) + offset,
      means,
      width=0.4,
      hatch=hatch,
      color='C0' if hatch is None else 'white',
      edgecolor='C0',
      label=label,
    )
  ax_bar.set_xticks(range(len(names)), names, rotation=25, fontsize=7)
  ax_bar.set_ylabel(f'% of units at step {stages[-1]} (mean over seeds)')
  ax_bar.set_title('Leaky ReLU: negative, yet not dead', fontsize=9)
  ax_bar.legend(fontsize=7)
  fig.suptitle(f'Dying ReLUs: MLP 784-{HIDDEN}-10 on MNIST-5k, SGD + momentum')
  return fig


def run(quick: bool = False) -> report.Result:
  """Trains every arm in stages and counts the dead units at each stage."""
  from train_lib import data as data_lib  # noqa: PLC0415 (slow import)

  arms = QUICK_ARMS if quick else ARMS
  stages = QUICK_STAGES if quick else STAGES
  seeds = QUICK_SEEDS if quick else SEEDS
  config = arm_config('relu', lr=NORMAL_LR, seed=0, steps=stages[-1])
  images, _ = data_lib.get_dataset(config.data).host_arrays('train')
  inputs = images.reshape(len(images), -1).astype(np.float64)
  results = {
    arm_name(a, lr): [run_arm(a, lr, s, stages, inputs) for s in seeds]
    for a, lr in arms
  }
  diverged = {n: sum(r is None for r in rs) for n, rs in results.items()}
  if any(diverged.values()):
    raise RuntimeError(f'arms diverged (seeds per arm): {diverged}')
  claims = subclaims(results, len(seeds))
  rows = []
  for name, runs in results.items():

    def mean(key, runs=runs):
      return float(np.mean([r[key][-1] for r in runs]))

    rows.append(
      (
        name,
        mean('dead'),
        float(np.std([r['dead'][-1] for r in runs])),
        mean('negative'),
        float(np.mean([r['revived_dead'] for r in runs])),
        float(np.mean([r['revived_negative'] for r in runs])),
        float(np.mean([r['train_loss'] for r in runs])),
        100 * float(np.mean([r['test_accuracy'] for r in runs])),
      )
    )
  relu_large = rows[[r[0] for r in rows].index(arm_name('relu', LARGE_LR))]
  summary = (
    f'At lr {LARGE_LR:g}, {relu_large[1]:.0f}% of the ReLU units are dead '
    f'after {stages[-1]} steps (mean of {len(seeds)} seeds; '
    + ', '.join(f'{r[0]}: {r[1]:.1f}%' for r in rows if r is not relu_large)
    + f'); {claims[1].estimate:.2f} points of them came back.'
  )
  return report.Result(
    figure=_figure(results, stages),
    columns=(
      'arm',
      'dead at end (%)',
      'std over seeds (points)',
      'negative on every input (%)',
      'dead at 1/4 -> alive at end (points)',
      'negative at 1/4 -> positive at end (points)',
      'final training loss',
      'test accuracy (%)',
    ),
    rows=rows,
    subclaims=claims,
    summary=summary,
    protocol=PROTOCOL,
    values={
      'results': results,
      'stages': list(stages),
      'seeds': list(seeds),
      'dead_slope': DEAD_SLOPE,
    },
    notes=(
      f'Stages end at steps {", ".join(map(str, stages))}: one run per arm '
      'and seed, resumed by the trainer in its workdir with a larger '
      'total_steps (constant rate, batches fixed by the step).',
      "Leaky ReLU slope 0.01 (the notes' max(0.01x, x)); ELU alpha 1.",
      "A unit is dead when its slope f'(z) is below "
      f'{DEAD_SLOPE:g} on all 4,000 training images (ReLU: z <= 0 on all; '
      'ELU: z < -13.8 on all). The rule and thresholds were fixed before '
      'the full run; the rates come from a probe of 300 steps, seeds 0-1.',
    ),
  )
