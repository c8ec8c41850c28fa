"""The degradation problem, and residual connections that remove it.

Notes (lecture 2, seed 002, "ResNet", He et al. 2016, Fig. 4): "Thin curves
denote training error ... plain networks of 18 and 34 layers ... ResNets of
18 and 34 layers. In this plot, the residual networks have no extra
parameter compared to their plain counterparts." The deeper plain net has
the *higher training error* (so it is not overfitting: it is harder to
optimise), while the deeper ResNet has the lower one. The study scales down
the paper's CIFAR-10 version (Sec. 4.2, Fig. 6), whose extremes are
plain-20 (the paper's best plain net) and plain-56 against ResNet-20 and
ResNet-56.

Arms (`design.py`): He et al.'s 6n+2 nets (`nets.resnet.resnet_cifar`: a
3-wide stem, three stages of n basic blocks, BatchNorm, option-A shortcuts,
so the plain twin built with `residual=False` has exactly the same layers
and parameters) at 20 and 56 layers, at half the paper's widths, on the
4,000 MNIST-1D training signals (each 3x3 kernel becomes 3 x 1), all with
the paper's recipe and no per-arm tuning, for `design.STEPS` steps over
`design.SEEDS`.

Values, per seed: the error and cross-entropy of the final weights on all
training signals in evaluation mode, the end points of the paper's thin
curves (not their area, which measures speed).

Sub-claims: a check (the twins' parameters are equal), then claims, each a
paired t interval over the seeds against a margin from the pilot's seed
spread (`design.MARGIN_POINTS`, `design.MARGIN_LOSS`): plain-56 ends above
plain-20 by more than the margin, in error and in loss (degradation);
ResNet-56's loss ends less than the margin above ResNet-20's (no
degradation; their errors are near 0, so the loss resolves them); ResNet-56
ends below plain-56 by more than the margin. Preconditions: both 20-layer
nets fit the training set (`design.TRAINED_ERROR`), or the claim is 'not
tested'. The page (`page.py`): figure, table, summary, notes, protocol.

Where notes, paper and study differ: the notes show ImageNet (18 vs 34
layers), the paper CIFAR-10 at 20-56 layers, which this scales down.
Srivastava et al. (2015, Highway Networks, Fig. 1) saw plain nets on MNIST
train as well as highway nets below ~50 layers: the degradation needs
depth, hence the paper's deepest pair. MNIST-1D rather than MNIST-5k's 2-D
images: the cost, measured in `design`'s comment on it.
"""

import numpy as np

from experiments.studies import readable
from experiments.studies import report
from experiments.studies import verdict
from experiments.studies.depth import design
from experiments.studies.depth import page
from experiments.studies.depth.design import arm_key
from experiments.studies.depth.design import arm_name

CLAIM = (
  'A deeper plain net has a higher training error than a shallower one '
  '(degradation), while residual nets with the same layers and parameters '
  'do not degrade.'
)
SOURCE = (
  'notes, lecture 2, "ResNet: training on ImageNet" (He et al. 2016, Fig. 4; '
  'CIFAR-10: Fig. 6)'
)


def eval_mode_fit(probs: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
  """(error in %, mean cross-entropy) of softmax outputs on a split."""
  probs, labels = np.asarray(probs), np.asarray(labels)
  error = 100 * float(np.mean(np.argmax(probs, -1) != labels))
  picked = probs[np.arange(len(labels)), labels]
  loss = float(np.mean(-np.log(np.maximum(picked, 1e-30))))
  return error, loss


def train_arm(depth: int, residual: bool, seed: int, sizes) -> dict:
  """One trained net's values: final eval-mode training fit, test error."""
  config = design.config_for(
    depth=depth,
    residual=residual,
    seed=seed,
    total_steps=sizes['steps'],
    log_every_steps=sizes['log'],
    widths=sizes['widths'],
  )
  run = report.train(config)
  error, loss = eval_mode_fit(*report.predict(config, run.state, 'train'))
  return {
    'final_error': error,
    'final_loss': loss,
    'test_error': 100 * (1 - run.final('accuracy')),
  }


def seeds_why(a: str, b: str, metric: str, threshold: float, above: bool):
  """The pilot's calculation of the seeds of a claim on arm a minus arm b."""
  d = np.subtract(design.PILOT[a][metric], design.PILOT[b][metric])
  mean, sd = float(np.mean(d)), float(np.std(d, ddof=1))
  distance = mean - threshold if above else threshold - mean
  return (
    f'pilot (seeds {design.PILOT_SEEDS[0]} and {design.PILOT_SEEDS[1]}, '
    f'full size): paired difference {readable.number(mean)}, sd '
    f'{readable.number(sd)}, {readable.number(distance)} from the '
    f'threshold; a t interval resolves that with '
    f'{verdict.seeds_for(distance, sd)} seeds (verdict.seeds_for). The '
    f"design runs {len(design.SEEDS)}, as the budget allows: the pilot's sd "
    'has one degree of freedom'
  )


def claim_rows(depths=design.DEPTHS) -> tuple:
  """(label, claim, arm a, arm b, metric, direction, the claim's words)."""
  shallow, deep = depths
  ps, pd, rs, rd = (
    (shallow, False),
    (deep, False),
    (shallow, True),
    (deep, True),
  )
  return (
    (
      f'plain-{deep} minus plain-{shallow}, training error (points)',
      f'plain-{deep} ends with a higher training error than plain-{shallow} '
      '(eval mode, all training signals; points).',
      pd, ps, 'final_error', 'above',
      '"higher training error", beyond seed noise:',
    ),
    (
      f'plain-{deep} minus plain-{shallow}, training loss',
      f'plain-{deep} ends with a higher training loss than plain-{shallow}.',
      pd, ps, 'final_loss', 'above',
      '"higher", beyond seed noise:',
    ),
    (
      f'ResNet-{deep} minus ResNet-{shallow}, training loss',
      f'ResNet-{deep} ends with a training loss no worse than '
      f'ResNet-{shallow}: less than the margin above it.',
      rd, rs, 'final_loss', 'below',
      '"do not degrade": less above than',
    ),
    (
      f'plain-{deep} minus ResNet-{deep}, training error (points)',
      f'With the same layers and parameters, ResNet-{deep} ends with a lower '
      f'training error than plain-{deep} (points, plain minus ResNet).',
      pd, rd, 'final_error', 'above',
      '"residual nets ... do not degrade" where the plain twin does, beyond '
      'seed noise:',
    ),
  )  # fmt: skip


def subclaims(per_seed: dict, depths=design.DEPTHS, params=None) -> list:
  """The check (equal parameters) and the claims, from {arm: {metric: []}}.

  `params`: {arm: parameter count}; None leaves the check out. With fewer
  than `verdict.MIN_SEEDS` seeds (`--quick`) no claim is made.
  """
  out = []
  if params is not None:
    gap = max(abs(params[(d, True)] - params[(d, False)]) for d in depths)
    out.append(
      verdict.check(
        'Each plain net has exactly the parameters of its residual twin.',
        gap,
        threshold=0.5,
        direction='below',
        why='"no extra parameter" (He et al.): option-A shortcuts add none; '
        'the largest difference over the depths',
        runs=len(depths),
      )
    )
  if len(per_seed[(depths[0], False)]['final_error']) < verdict.MIN_SEEDS:
    return out
  spread = "the pilot's ResNets' seed spread, 1.96 sd of a difference"
  by = {
    'final_error': f'{design.MARGIN_POINTS:.2f} points ({spread})',
    'final_loss': f'{design.MARGIN_LOSS:.4f} ({spread})',
  }
  pilot = lambda arm: arm_key((design.DEPTHS[depths.index(arm[0])], arm[1]))
  for _, claim, a, b, metric, direction, words in claim_rows(depths):
    error = metric == 'final_error'
    threshold = design.MARGIN_POINTS if error else design.MARGIN_LOSS
    out.append(
      verdict.paired_difference(
        claim,
        per_seed[a][metric],
        per_seed[b][metric],
        threshold=threshold,
        direction=direction,
        threshold_why=f'{words} {by[metric]}',
        seeds_why=seeds_why(
          pilot(a), pilot(b), metric, threshold, direction == 'above'
        ),
        bounds=(-100.0, 100.0) if error else None,
      )
    )
  return out


def preconditions(per_seed: dict, depths=design.DEPTHS) -> list:
  """The shallow nets fit the training set: the regime of the claim."""
  return [
    verdict.Precondition.compare(
      f'{arm_name(depths[0], residual)} fits the training set (final '
      'training error %, mean over seeds)',
      float(np.mean(per_seed[(depths[0], residual)]['final_error'])),
      threshold=design.TRAINED_ERROR,
      direction='below',
    )
    for residual in (False, True)
  ]


# --quick: shallow nets, few steps and one seed, so that the 4 runs and
# their compilations take under 30 s: only the pipeline is checked, and
# with one seed no claim is made (a claim needs verdict.MIN_SEEDS; 4 arms
# x 5 seeds of fresh compilations took 80 CPU-s).
QUICK_SEEDS = (0,)


def _sizes(quick: bool) -> dict:
  if quick:
    return dict(
      depths=(8, 20), widths=(4, 8, 8), seeds=QUICK_SEEDS, steps=20, log=10
    )
  return dict(
    depths=design.DEPTHS,
    widths=design.WIDTHS,
    seeds=design.SEEDS,
    steps=design.STEPS,
    log=design.LOG_EVERY,
  )


def run(quick: bool = False) -> report.Result:
  """Trains plain and residual twins at two depths over the seeds."""
  sizes = _sizes(quick)
  per_seed = {}
  for depth in sizes['depths']:
    for residual in (False, True):
      arm = per_seed[(depth, residual)] = {}
      for seed in sizes['seeds']:
        for key, value in train_arm(depth, residual, seed, sizes).items():
          arm.setdefault(key, []).append(value)
  params = {
    arm: design.param_count(arm[0], residual=arm[1], widths=sizes['widths'])
    for arm in per_seed
  }
  pre = preconditions(per_seed, sizes['depths'])
  claims = subclaims(per_seed, sizes['depths'], params)
  fig, axes = report.new_figure(ncols=2)
  page.plot(axes, per_seed, sizes)
  return report.Result(
    figure=fig,
    columns=(
      'net',
      'params',
      'final train error % (eval, mean)',
      'its seed sd',
      'final train loss (eval, mean)',
      'its seed sd',
      'final test error %',
    ),
    rows=page.rows(per_seed, params),
    subclaims=claims,
    summary=page.summary(claim_rows(sizes['depths']), claims, pre),
    lead=page.lead(per_seed, sizes, verdict.headline(claims, pre)),
    caption=page.caption(sizes),
    protocol=page.protocol(sizes),
    preconditions=pre,
    values={
      'per_seed': {
        arm_key(arm): {k: list(v) for k, v in m.items()}
        for arm, m in per_seed.items()
      },
      'params': {arm_key(arm): v for arm, v in params.items()},
      'margin_points': design.MARGIN_POINTS,
      'margin_loss': design.MARGIN_LOSS,
      'trained_error': design.TRAINED_ERROR,
      'pilot': {'seeds': list(design.PILOT_SEEDS), **design.PILOT},
      'epochs': design.epochs(sizes['steps']),
    },
    notes=page.notes(sizes),
  )
