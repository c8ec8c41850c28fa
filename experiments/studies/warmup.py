"""Warmup lets a large learning rate train where it would diverge without it.

Notes (seed 002, "Learning Rates" ... "Warmup"): warmup, "by choosing
sufficiently small learning rate to prevent divergence in the beginning".
Goyal et al. (2017, "Accurate, Large Minibatch SGD"): ResNet-50 (with
BatchNorm) at a large rate ends worse without warmup; a gradual warmup
(linear over 5 epochs) closes the gap (Sec. 2.2, Fig. 2, Table 1).

The study tests the claim where it applies, at `LR`: the smallest rate of
`RATE_GRID` at which the net diverged without warmup in most runs of a
pilot on seeds never used for the verdict (`PILOT`).

A run diverged when its loss became NaN (the trainer's DivergedError) or
the net ended at chance: final training error >= `DIVERGED_ERROR`. A loss
"above ln 10" does not separate the runs here: a blown-up BatchNorm net
dies without NaN and predicts the class prior, with a loss of 2.3018-2.3036
(pilot), both sides of ln 10 = 2.3026, and a training error of 89.7-90.0%;
every pilot run that learned ended below 72%.
"""

import functools
import math
import re

import ml_collections
import numpy as np

from experiments.configs import digits
from experiments.studies import report
from experiments.studies import verdict as verdict_lib

CLAIM = (
  'A learning-rate warmup lets a large learning rate train where without '
  'it the loss diverges in the beginning, and training ends worse without '
  'it.'
)
SOURCE = (
  'notes, seed 002, "Warmup" ("sufficiently small learning rate to prevent '
  'divergence in the beginning"); Goyal et al. 2017, Sec. 2.2, Fig. 2'
)

BATCH = 128
STEPS = 200  # 28 epochs of 899 images at 7 steps an epoch.
WARMUP_STEPS = 35  # 5 epochs: Goyal's gradual warmup.
DECAY_AT = (0.5, 0.75)  # Step decay x0.1 at these fractions of the run.
QUICK_STEPS, QUICK_WARMUP_STEPS = 30, 5
LOG_EVERY = 5
CHANCE_ERROR = 90.0  # Training error (%) of a net that learned nothing.
DIVERGED_ERROR = 80.0  # Ends at chance: a dead net scores 89.7-90.0%.

# The pilot, fixed before the full run: seeds 100-104, 200 steps, no warmup;
# rate -> (diverged, runs). Final training errors: lr 2: 20.7, 4.3%; lr
# 2.83: 43.4, 19.9, 71.5%; lr 4: 67.4, 89.8, 89.8, 89.9, 89.7%; lr 8-32:
# 89.7-90.0% (no NaN: every blown-up run died at chance).
RATE_GRID = (2.0, 2.83, 4.0, 8.0, 16.0, 32.0)
PILOT_COUNTS = ((0, 2), (0, 3), (4, 5), (3, 3), (1, 1), (1, 1))
PILOT = dict(zip(RATE_GRID, PILOT_COUNTS, strict=True))
# The 35-step warmup at lr 4, seeds 100-102: 3 of 3 diverged (after the
# warmup, as the rate passed about 3); no-warmup minus warmup training error
# -22.4, 0.0, 0.0 points (with a 70-step warmup: 2 of 2 diverged too).
PILOT_WARMUP = (3, 3)
PILOT_DIFFERENCES = (-22.4, 0.0, 0.0)
LR = 4.0  # == smallest_diverging_rate(PILOT): fixed before the full run.
MOST = 50.0  # "most runs": more than half (percent).
WORSE = 10.0  # Points of training error.
SEEDS = tuple(range(15))  # == seeds_needed()[0]: see SEEDS_WHY.
QUICK_SEEDS = tuple(range(verdict_lib.MIN_SEEDS))


def smallest_diverging_rate(pilot: dict) -> float:
  """The smallest rate at which most pilot runs diverged."""
  return min(lr for lr, (k, n) in pilot.items() if 2 * k > n)


def seeds_to_resolve(share: float, threshold: float, up_to: int = 24) -> int:
  """From how many seeds on the exact interval of a share excludes a value."""
  n = up_to
  while n > verdict_lib.MIN_SEEDS:
    _, low, high = verdict_lib.clopper_pearson(round(share * (n - 1)), n - 1)
    if low <= threshold <= high:
      break
    n -= 1
  return n


def seeds_needed() -> tuple[int, str]:
  """The seed count the pilot asks for, and its calculation in words."""
  k, n = PILOT[LR]
  none = seeds_to_resolve(k / n, MOST / 100)
  warm = seeds_to_resolve(PILOT_WARMUP[0] / PILOT_WARMUP[1], MOST / 100)
  d = np.asarray(PILOT_DIFFERENCES)
  margin, sd = abs(float(d.mean()) - WORSE), float(d.std(ddof=1))
  diff = verdict_lib.seeds_for(margin, sd)
  seeds = max(none, warm, diff)
  return seeds, (
    f'pilot on seeds 100-104 (not used here): without warmup {k} of {n} '
    f'diverged at lr {LR:g}; the exact binomial interval of that share '
    f'({100 * k / n:.0f}%) excludes {MOST:g}% from {none} seeds on; with '
    f'warmup {PILOT_WARMUP[0]} of {PILOT_WARMUP[1]} diverged: {warm} seeds; '
    f'the paired error difference ({d.mean():.1f} points, sd {sd:.1f}, '
    f'{margin:.1f} from the threshold) needs {diff} (t interval); the '
    f'largest: {seeds}'
  )


SEEDS_WHY = seeds_needed()[1]


def arm_config(
  *, lr: float, warmup_steps: int, seed: int, steps: int
) -> ml_collections.ConfigDict:
  """digits.py's CNN with BatchNorm, SGD + momentum, the same step decay."""
  config = digits.get_config('cnn')
  config.model_kw.norm = 'batch'
  return report.plain_sgd(
    config,
    lr=lr,
    warmup_steps=warmup_steps,
    seed=seed,
    total_steps=steps,
    batch_size=BATCH,
    log_every_steps=LOG_EVERY,
    schedule='step',
    boundaries=tuple(int(f * steps) for f in DECAY_AT),
    decay_factor=0.1,
  )


def diverged_step(message: str) -> int:
  """The step a DivergedError names ('... at step N ...'); -1 if none."""
  found = re.search(r'at step (\d+)', message)
  return int(found.group(1)) if found else -1


def is_diverged(nan_at: int | None, train_error: float) -> bool:
  """NaN at some step, or the net ended at chance."""
  return nan_at is not None or train_error >= DIVERGED_ERROR


def train_arm(lr: float, warmup_steps: int, seed: int, steps: int) -> dict:
  """One run: its divergence, final training error (%) and loss curve."""
  from train_lib import trainer  # noqa: PLC0415 (slow import)

  config = arm_config(lr=lr, warmup_steps=warmup_steps, seed=seed, steps=steps)
  nan_at, curve, error = None, ([], []), CHANCE_ERROR
  try:
    run = report.train(config)
  except trainer.DivergedError as e:
    nan_at = diverged_step(str(e))
  else:
    curve = run.series('loss')
    probs, labels = report.predict(config, run.state, 'train')
    error = 100.0 * float(np.mean(probs.argmax(axis=1) != labels))
  out = {'seed': seed, 'nan_at': nan_at, 'train_error': error}
  return {**out, 'diverged': is_diverged(nan_at, error), 'curve': curve}


def checks(steps: int, warmup: int) -> list[verdict_lib.Subclaim]:
  """The arms' setup, exact: they differ in the warmup only."""
  from train_lib import schedules  # noqa: PLC0415 (slow import)

  configs = [
    arm_config(lr=LR, warmup_steps=w, seed=0, steps=steps) for w in (0, warmup)
  ]
  a, b = (schedules.create_schedule(c)(np.arange(steps)) for c in configs)
  after = float(np.max(np.abs(np.asarray(a - b)[warmup:])))
  a, b = (c.to_dict() for c in configs)
  others = sum(a[k] != b[k] for k in a if k != 'warmup_steps')
  return [
    verdict_lib.check(
      'After the warmup both arms run the same rate (the same step decay).',
      after,
      threshold=1e-6,
      direction='below',
      why='the largest difference of the schedules: 0 up to round-off',
    ),
    verdict_lib.check(
      'The arms differ in the warmup only (every other config key agrees).',
      others,
      threshold=0.5,
      direction='below',
      why='count of differing config keys besides warmup_steps: 0',
    ),
  ]


WORSE_WHY = (
  f'"ends worse", practically: {WORSE:g} points (one training image in ten); '
  'a diverged run ends near 90%, a trained one below 25% (pilot, lr 2), so '
  'a prevented divergence shows as tens of points (Goyal et al. Table 1: '
  '1.1 points of ImageNet validation error, worse training, no divergence)'
)


def subclaims(results: dict, warmup: int) -> list[verdict_lib.Subclaim]:
  """The claims from the runs of the arms 'none' and 'warmup' at LR."""
  none, warm = results['none'], results['warmup']
  share = functools.partial(
    verdict_lib.proportion, threshold=MOST, seeds_why=SEEDS_WHY, scale=100.0
  )
  a, b = (np.asarray([r['train_error'] for r in x]) for x in (none, warm))
  d = a - b
  claim = f'Training ends worse without warmup at lr {LR:g}: final training '
  if np.ptp(d) > 0:
    worse = verdict_lib.paired_difference(
      claim + 'error without minus with warmup, in points.',
      a,
      b,
      threshold=WORSE,
      direction='above',
      threshold_why=WORSE_WHY,
      seeds_why=SEEDS_WHY,
      bounds=(-100.0, 100.0),
    )
  else:  # Every seed gave the same difference: a t interval is a point.
    worse = share(
      claim + f'error over {WORSE:g} points above the warmup run (% of '
      'seeds; every seed gave the same difference).',
      d > WORSE,
      direction='above',
      threshold_why=WORSE_WHY,
    )
  return [
    share(
      f'Without warmup, lr {LR:g} diverges (NaN, or the net ends at chance) '
      'in most runs (% of seeds).',
      [r['diverged'] for r in none],
      direction='above',
      threshold_why='"divergence in the beginning" in most runs: over half',
    ),
    share(
      f'With a {warmup}-step warmup, lr {LR:g} trains: it diverges in fewer '
      'than half of the runs (% of seeds).',
      [r['diverged'] for r in warm],
      direction='below',
      threshold_why='"to prevent divergence": a rate that diverges in most '
      'runs without warmup diverges in fewer than half with it',
    ),
    worse,
  ]


def preconditions(results: dict) -> list[verdict_lib.Precondition]:
  """The regime: LR diverges without warmup in most seeds."""
  diverged = [r['diverged'] for r in results['none']]
  return [
    verdict_lib.Precondition.compare(
      f'lr {LR:g} without warmup diverges in most seeds (% diverged)',
      100.0 * float(np.mean(diverged)),
      threshold=MOST,
      direction='above',
    )
  ]


ARMS = {'none': f'lr {LR:g}, no warmup', 'warmup': f'lr {LR:g}, warmup'}


def describe(results: dict, claims, pres, warmup: int) -> str:
  """The summary in plain words (the unmet precondition first)."""
  count, median = {}, {}
  for arm, runs in results.items():
    count[arm] = f'{sum(r["diverged"] for r in runs)} of {len(runs)} seeds'
    median[arm] = float(np.median([r['train_error'] for r in runs]))
  c = claims[-1]
  gap = f'without minus with warmup {c.estimate:+.1f} points on average '
  gap += f'(95% interval {c.ci_low:+.1f} to {c.ci_high:+.1f})'
  if not c.interval.startswith('paired'):
    gap = f'{c.estimate:.0f}% of the seeds ended over {WORSE:g} points worse '
    gap += 'without warmup'
  said = (
    f'Without warmup, lr {LR:g} diverged in {count["none"]}; with a '
    f'{warmup}-step warmup, in {count["warmup"]}. Final training error: '
    f'median {median["none"]:.1f}% without and {median["warmup"]:.1f}% with '
    f'warmup; {gap}.'
  )
  unmet = verdict_lib.unmet_reason(pres)
  return f'{unmet} {said}' if unmet else said


PROTOCOL = (
  (
    'architecture',
    'Goyal et al. 2017: ResNet-50 with BatchNorm',
    'cnn_small, BatchNorm after each of its 4 convs (32/64 channels)',
    'a BatchNorm CNN of the size the CPU budget allows',
  ),
  (
    'data',
    'ImageNet, 1.28M images',
    'digits, 899 training images (8x8)',
    'offline data of the course; no augmentation',
  ),
  (
    'optimizer and learning-rate selection',
    'SGD + momentum 0.9, lr 0.1 k/256 for batch k (k = 8k: 3.2), gradual '
    'warmup over 5 epochs; step decay x0.1 at epochs 30, 60, 80',
    f'SGD + momentum 0.9, batch {BATCH}; lr {LR:g}: the smallest of '
    f'{", ".join(f"{r:g}" for r in RATE_GRID)} at which most pilot runs '
    '(seeds 100-104) diverged without warmup; without and with a linear '
    f'warmup from 0 over 5 epochs ({WARMUP_STEPS} steps); step decay x0.1 '
    f'at steps {int(DECAY_AT[0] * STEPS)} and {int(DECAY_AT[1] * STEPS)} '
    'in both arms',
    'the rate is raised at a fixed batch, to where the claim applies',
  ),
  (
    'metric',
    'training error over the epochs (Fig. 2), final validation error',
    f'diverged (NaN, or final training error >= {DIVERGED_ERROR:g}%: the net '
    'died at chance) per run; final training error (eval mode, all 899 '
    'training images)',
    "the notes' claim is about divergence, the paper's about the error",
  ),
  (
    'budget',
    '90 epochs',
    f'{STEPS} steps = 28 epochs',
    'the CPU budget; divergence shows within the first 10 epochs',
  ),
  (
    'runs/seeds',
    'one run per setting (curves), 5 runs for the table',
    f'{len(SEEDS)} seeds per arm, paired (a seed fixes init and batches); '
    'the count from the pilot (seeds_why)',
    'exact binomial intervals of shares, paired t of differences',
  ),
)


def _figure(results: dict, steps: int, warmup: int):
  fig, (ax_loss, ax_err) = report.new_figure(ncols=2)
  for i, (arm, name) in enumerate(ARMS.items()):
    for j, r in enumerate(results[arm]):
      ax_loss.semilogy(
        *r['curve'], color=f'C{i}', lw=0.6, label=name if j == 0 else None
      )
    errors = [r['train_error'] for r in results[arm]]
    x = i + np.linspace(-0.2, 0.2, len(errors))
    ax_err.scatter(x, errors, s=12, color=f'C{i}')
  ax_loss.axvline(warmup, color='k', ls=':', lw=1, label='warmup ends')
  for at in DECAY_AT:
    ax_loss.axvline(int(at * steps), color='grey', ls='-.', lw=0.8)
  ax_loss.axhline(math.log(10), color='grey', ls='--', lw=0.8)
  ax_loss.set_xlabel('step (dash-dot: rate x0.1)')
  ax_loss.set_ylabel('training loss (mean of 5 steps; dashed: ln 10)')
  ax_loss.legend(fontsize=7)
  ax_err.axhline(DIVERGED_ERROR, color='r', ls='--', lw=0.8)
  ax_err.set_xticks(range(len(ARMS)), list(ARMS.values()))
  ax_err.set_ylabel('final training error (%); dashed: diverged above')
  ax_err.set_ylim(-3, 100)
  fig.suptitle(
    f'Warmup at lr {LR:g}: BatchNorm CNN on digits, a line/dot per seed; '
    f"{steps} steps ({steps * BATCH // 899} of the paper's 90 epochs)",
    fontsize=9,
  )
  return fig


def _row(name: str, runs: list[dict]) -> tuple:
  errors = [r['train_error'] for r in runs]
  nans = sum(r['nan_at'] is not None for r in runs)
  diverged = f'{sum(r["diverged"] for r in runs)} of {len(runs)} ({nans} NaN)'
  spread = (
    f'median {np.median(errors):.1f}, {min(errors):.1f}-{max(errors):.1f}'
  )
  return name, diverged, spread


def run(quick: bool = False) -> report.Result:
  """Two arms over paired seeds: LR without and with warmup."""
  steps = QUICK_STEPS if quick else STEPS
  warmup = QUICK_WARMUP_STEPS if quick else WARMUP_STEPS
  seeds = QUICK_SEEDS if quick else SEEDS
  results = {
    arm: [train_arm(LR, w, seed, steps) for seed in seeds]
    for arm, w in (('none', 0), ('warmup', warmup))
  }
  claims, pres = subclaims(results, warmup), preconditions(results)
  fig = _figure(results, steps, warmup)
  for runs in results.values():
    for r in runs:
      r['curve'] = None  # The json keeps the numbers, not the curves.
  pilot = ', '.join(f'{k} of {n} at lr {r:g}' for r, (k, n) in PILOT.items())
  return report.Result(
    figure=fig,
    columns=('arm', 'diverged (seeds)', 'final training error (%)'),
    rows=[_row(ARMS[arm], runs) for arm, runs in results.items()],
    subclaims=[*checks(steps, warmup), *claims],
    summary=describe(results, claims, pres, warmup),
    protocol=PROTOCOL,
    preconditions=pres,
    values={'results': results, 'lr': LR, 'warmup_steps': warmup},
    notes=(
      f'Diverged: the loss became NaN, or the final training error is >= '
      f'{DIVERGED_ERROR:g}% (the net died at chance). A NaN run counts 90%.',
      f'Pilot (seeds 100-104, before the full run): diverged without '
      f'warmup {pilot}; with warmup at lr {LR:g}, {PILOT_WARMUP[0]} of '
      f'{PILOT_WARMUP[1]}. It fixed the rate, the thresholds and the seeds.',
    ),
  )
