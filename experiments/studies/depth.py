"""The degradation problem, and residual connections that remove it.

Notes (lecture 2, seed 002, "ResNet", He et al. 2016, Fig. 4): "Thin curves
denote training error ... plain networks of 18 and 34 layers ... ResNets of
18 and 34 layers. In this plot, the residual networks have no extra
parameter compared to their plain counterparts." The deeper plain net has
the *higher training error* (so it is not overfitting: it is harder to
optimise), while the deeper ResNet has the lower one. The study scales down
the paper's CIFAR-10 version of that experiment (Sec. 4.2, Fig. 6), whose
extremes are plain-20 (the paper's *best* plain net) and plain-56 against
ResNet-20 and ResNet-56.

What it trains: He et al.'s 6n+2 nets (`nets.resnet.resnet_cifar`: a 3-wide
stem, three stages of n basic blocks, BatchNorm, option-A shortcuts, so the
plain twin built with `residual=False` has exactly the same layers and
parameters) at 20 and 56 layers, with `WIDTHS` filters instead of 16/32/64,
on MNIST-1D signals (`spatial_dims=1`: every 3x3 kernel becomes 3 x 1).
The recipe is the paper's: SGD + momentum 0.9, lr 0.1 divided by 10 at 50%
and 75% of the steps (their 32k and 48k of 64k), weight decay 1e-4 as an
L2 term, batch 128, no warmup (they warm up only ResNet-110), three seeds.

What it measures: the training error and loss of each net on all 4,000
training signals in evaluation mode at the end, and averaged over the run
(the trainer's running mean of each logging window on the minibatches, the
paper's thin curves). Sub-claims, each a paired t interval over the seeds:
plain-56 ends, and runs, above plain-20; ResNet-56 ends and runs within
`MARGIN_POINTS` of ResNet-20 (or below it); ResNet-56 ends below plain-56.

Where notes, paper and study differ: the notes show ImageNet (18 vs 34
layers); the paper shows the same on CIFAR-10 at 20-56 layers, which this
scales down. Srivastava et al. (2015, Highway Networks, Fig. 1) saw plain
nets on MNIST train about as well as highway nets below ~50 layers, and
degrade beyond: on an easy task the degradation needs depth, so the study
takes the paper's deepest pair (56 vs 20) rather than a shallower one.
MNIST-1D (Greydanus 2020) is chosen over MNIST-5k because the budget cannot
memorise it (the best net ends with several percent training error) and its
1-D signals make a 56-layer net affordable on 2 CPU cores.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np

from experiments.configs import mnist1d
from experiments.studies import report
from experiments.studies import verdict
import nets
from ops import native

# XLA's convolutions, not oneDNN's: on these 1-D maps (length <= 40, <= 32
# channels) a ResNet-56 training step took 0.063 CPU-s with XLA against 0.19
# with oneDNN (128 signals; same numbers either way, it is the same
# convolution). `native.auto_impl` applies it to everything traced inside.
CONV_IMPL = 'xla'

CLAIM = (
  'A deeper plain net has a higher training error than a shallower one '
  '(degradation), while residual nets with the same layers and parameters '
  'do not degrade.'
)
SOURCE = (
  'notes, lecture 2, "ResNet: training on ImageNet" (He et al. 2016, Fig. 4; '
  'CIFAR-10: Fig. 6)'
)

# Fixed before the full run (not tuned on its outcome).
DEPTHS = (20, 56)  # He et al.'s Fig. 6 extremes; plain-20 is their best.
WIDTHS = (8, 16, 32)  # Half the paper's (16, 32, 64): the CPU budget.
SEEDS = (0, 1, 2)
LR = 0.1  # He et al. Sec. 4.2.
MOMENTUM = report.PLAIN_SGD_MOMENTUM  # 0.9, He et al.
WEIGHT_DECAY = 1e-4  # He et al., an L2 term in the loss (SGD's classic form).
BATCH = 128  # He et al.
# 300 steps (10 epochs of 4,000 signals): in the design probes plain-56 sat
# at chance for its first 100 steps and ResNet-56 ended at 46% training error
# after 170 steps, 13% after 300 (not memorised); a ResNet-56 step takes
# about 0.06 CPU-s (XLA convolutions), so the 4 arms x 3 seeds with their
# compilations take about 4 minutes on 2 idle cores.
STEPS = 300
DECAY_AT = (0.5, 0.75)  # Of STEPS: He et al. divide by 10 at 32k and 48k/64k.
LOG_EVERY = 20  # 20 points per training curve.
# "Do not degrade": ResNet-56 within 1 point of ResNet-20's training error.
# The old study's seed spread of a final training error was 0.3 points (issue
# 18), and the binomial sd of an error near 10% on 4,000 signals is 0.5
# points: 1 point is 2-3 such spreads, and far below the gap the paper shows
# for plain nets (several points).
MARGIN_POINTS = 1.0

ARMS = tuple((d, r) for d in DEPTHS for r in (False, True))


def arm_name(depth: int, residual: bool) -> str:
  return f'{"ResNet" if residual else "plain"}-{depth}'


def model_name(depth: int) -> str:
  """The registry name of the 6n+2 net of `depth` layers."""
  return 'resnet8_cifar_tiny' if depth == 8 else f'resnet{depth}_cifar'


def arm_key(arm: tuple[int, bool]) -> str:
  """The json name of an arm: 'plain20', 'resnet56'."""
  return f'{"resnet" if arm[1] else "plain"}{arm[0]}'


def param_count(depth: int, *, residual: bool, widths=WIDTHS) -> int:
  """Parameters of the 1-D depth-`depth` twin on a length-40 signal."""
  model = nets.create(
    model_name(depth),
    residual=residual,
    widths=tuple(widths),
    spatial_dims=1,
  )
  signal = jax.ShapeDtypeStruct((1, 40, 1), jnp.float32)
  variables = jax.eval_shape(model.init, jax.random.key(0), signal)
  return sum(math.prod(p.shape) for p in jax.tree.leaves(variables['params']))


def config_for(
  *,
  depth: int,
  residual: bool,
  seed: int,
  total_steps: int = STEPS,
  log_every_steps: int = LOG_EVERY,
  widths=WIDTHS,
):
  """The MNIST-1D config of one arm: He et al.'s CIFAR recipe."""
  config = mnist1d.get_config('cnn')
  config.model = model_name(depth)
  config.model_kw = {
    'residual': residual,
    'widths': tuple(widths),
    'spatial_dims': 1,
  }
  report.plain_sgd(
    config,
    seed=seed,
    lr=LR,
    batch_size=BATCH,
    eval_batch_size=1000,
    total_steps=total_steps,
    log_every_steps=log_every_steps,
    schedule='step',
    boundaries=tuple(int(f * total_steps) for f in DECAY_AT),
    decay_factor=0.1,
    weight_decay=WEIGHT_DECAY,
    weight_decay_mode='l2',
  )
  return config


def eval_mode_fit(probs: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
  """(error in %, mean cross-entropy) of softmax outputs on a split."""
  probs, labels = np.asarray(probs), np.asarray(labels)
  error = 100 * float(np.mean(np.argmax(probs, -1) != labels))
  picked = probs[np.arange(len(labels)), labels]
  loss = float(np.mean(-np.log(np.maximum(picked, 1e-30))))
  return error, loss


def measure(run: report.TrainRun, config) -> dict[str, float]:
  """One trained net's numbers: final (eval mode) and over-the-run fits."""
  error, loss = eval_mode_fit(*report.predict(config, run.state, 'train'))
  _, accs = run.series('accuracy')
  _, losses = run.series('loss')
  if not accs:
    raise ValueError('no training error was logged')
  return {
    'final_error': error,
    'final_loss': loss,
    'run_error': 100 * (1 - float(np.mean(accs))),
    'run_loss': float(np.mean(losses)),
    'test_error': 100 * (1 - run.final('accuracy')),
  }


def subclaims(per_seed: dict, depths=DEPTHS) -> list[verdict.Subclaim]:
  """The claim's five sentences from {arm: {metric: [per seed]}}."""
  shallow, deep = depths

  def diff(a, b, key):
    return np.asarray(per_seed[a][key]) - np.asarray(per_seed[b][key])

  how = 'paired t over seeds (per-seed differences)'
  above = '"higher training error": any positive gap'
  within = (
    f'"do not degrade": at most {MARGIN_POINTS:g} point above (2-3 seed '
    'spreads)'
  )
  pd, ps = (deep, False), (shallow, False)
  rd, rs = (deep, True), (shallow, True)
  rows = [
    (
      f'plain-{deep} ends with a higher training error than plain-{shallow} '
      '(eval mode, all training signals; points).',
      diff(pd, ps, 'final_error'),
      0.0,
      'above',
      above,
    ),
    (
      f'plain-{deep} has a higher training error than plain-{shallow} '
      'averaged over the run (points).',
      diff(pd, ps, 'run_error'),
      0.0,
      'above',
      above,
    ),
    (
      f'ResNet-{deep} ends with a training error no worse than '
      f'ResNet-{shallow} (points).',
      diff(rd, rs, 'final_error'),
      MARGIN_POINTS,
      'below',
      within,
    ),
    (
      f'ResNet-{deep} has a training error no worse than ResNet-{shallow} '
      'averaged over the run (points).',
      diff(rd, rs, 'run_error'),
      MARGIN_POINTS,
      'below',
      within,
    ),
    (
      f'With the same layers and parameters, ResNet-{deep} ends with a lower '
      f'training error than plain-{deep} (points, plain minus ResNet).',
      diff(pd, rd, 'final_error'),
      0.0,
      'above',
      '"residual nets ... do not degrade" where the plain twin does: any '
      'positive gap',
    ),
  ]
  out = []
  for claim, values, threshold, direction, why in rows:
    estimate, low, high = verdict.t_interval(values)
    out.append(
      verdict.Subclaim(
        claim=claim,
        estimate=estimate,
        ci_low=low,
        ci_high=high,
        threshold=threshold,
        direction=direction,
        seeds=len(values),
        interval=how,
        threshold_why=why,
      )
    )
  return out


def _sizes(quick: bool) -> dict:
  if quick:  # Shallow nets and few steps: only the pipeline is checked.
    return dict(depths=(8, 20), widths=(4, 8, 8), seeds=(0,), steps=20, log=5)
  return dict(
    depths=DEPTHS, widths=WIDTHS, seeds=SEEDS, steps=STEPS, log=LOG_EVERY
  )


def _train(sizes) -> tuple[dict, dict]:
  """({arm: {metric: [per seed]}}, {arm: [(steps, train errors %)]})."""
  per_seed, curves = {}, {}
  for depth in sizes['depths']:
    for residual in (False, True):
      arm = (depth, residual)
      per_seed[arm], curves[arm] = {}, []
      for seed in sizes['seeds']:
        config = config_for(
          depth=depth,
          residual=residual,
          seed=seed,
          total_steps=sizes['steps'],
          log_every_steps=sizes['log'],
          widths=sizes['widths'],
        )
        with native.auto_impl(CONV_IMPL):
          run = report.train(config)
          numbers = measure(run, config)
        for key, value in numbers.items():
          per_seed[arm].setdefault(key, []).append(value)
        steps, accs = run.series('accuracy')
        curves[arm].append((steps, [100 * (1 - a) for a in accs]))
  return per_seed, curves


def _plot(ax, per_seed, curves, sizes) -> None:
  for i, (arm, runs) in enumerate(curves.items()):
    colour = f'C{i}'
    steps = np.asarray(runs[0][0])
    errors = np.asarray([e for _, e in runs])
    ax.plot(steps, errors.mean(0), '-', lw=1.2, color=colour)
    ax.fill_between(
      steps, errors.min(0), errors.max(0), color=colour, alpha=0.15
    )
    final = per_seed[arm]['final_error']
    ax.plot(
      [steps[-1] * 1.03] * len(final),
      final,
      'o',
      ms=6,
      color=colour,
      label=f'{arm_name(*arm)}: final {np.mean(final):.1f}% (eval mode)',
    )
  for f in DECAY_AT:
    ax.axvline(f * sizes['steps'], color='grey', ls=':', lw=0.8)
  ax.set_yscale('log')
  ax.set_xlabel(
    f'training step (batch {BATCH}; dotted: lr / 10; dots: each seed, eval '
    'mode)'
  )
  ax.set_ylabel('training error (%, log scale)')
  ax.set_title(
    'Plain vs residual twins on MNIST-1D: running training error\n'
    f'(mean and range over {len(sizes["seeds"])} seeds; widths '
    f'{sizes["widths"]})'
  )
  ax.legend(fontsize=8)


def _rows(per_seed, params) -> list[tuple]:
  rows = []
  for arm, m in per_seed.items():
    rows.append(
      (
        arm_name(*arm),
        params[arm],
        float(np.mean(m['final_error'])),
        float(np.std(m['final_error'], ddof=1))
        if len(m['final_error']) > 1
        else 0.0,
        float(np.mean(m['final_loss'])),
        float(np.mean(m['run_error'])),
        float(np.mean(m['run_loss'])),
        float(np.mean(m['test_error'])),
      )
    )
  return rows


def run(quick: bool = False) -> report.Result:
  """Trains plain and residual twins at two depths over the seeds."""
  sizes = _sizes(quick)
  shallow, deep = sizes['depths']
  per_seed, curves = _train(sizes)
  params = {
    arm: param_count(arm[0], residual=arm[1], widths=sizes['widths'])
    for arm in per_seed
  }
  claims = subclaims(per_seed, sizes['depths'])
  fig, ax = report.new_figure()
  _plot(ax, per_seed, curves, sizes)
  mean = {arm: float(np.mean(m['final_error'])) for arm, m in per_seed.items()}
  summary = (
    f'Final training error (eval mode, all 4,000 signals, mean of '
    f'{len(sizes["seeds"])} seeds): plain-{shallow} '
    f'{mean[(shallow, False)]:.2f}%, plain-{deep} {mean[(deep, False)]:.2f}%; '
    f'ResNet-{shallow} {mean[(shallow, True)]:.2f}%, ResNet-{deep} '
    f'{mean[(deep, True)]:.2f}%.'
  )
  return report.Result(
    figure=fig,
    columns=(
      'net',
      'params',
      'final train error % (eval, mean)',
      'its seed sd',
      'final train loss (eval)',
      'train error % over the run',
      'train loss over the run',
      'final test error %',
    ),
    rows=_rows(per_seed, params),
    subclaims=claims,
    summary=summary,
    protocol=_protocol(sizes),
    values={
      'per_seed': {
        arm_key(arm): {k: list(v) for k, v in m.items()}
        for arm, m in per_seed.items()
      },
      'params': {arm_key(arm): v for arm, v in params.items()},
      'twins_have_equal_params': all(
        params[(d, True)] == params[(d, False)] for d in sizes['depths']
      ),
      'margin_points': MARGIN_POINTS,
    },
    notes=(
      'Final: error and cross-entropy of the final weights on all 4,000 '
      'MNIST-1D training signals in evaluation mode (BatchNorm running '
      "statistics). Over the run: the mean of the trainer's running "
      f'training error and loss over each {sizes["log"]}-step window '
      '(train mode, the minibatches seen), i.e. the area under the thin '
      'curves of He et al., divided by the steps.',
      f'SGD + momentum {MOMENTUM}, lr {LR:g} / 10 at steps '
      f'{[int(f * sizes["steps"]) for f in DECAY_AT]} of {sizes["steps"]}, '
      f'L2 weight decay {WEIGHT_DECAY:g} (biases and BatchNorm parameters '
      f'not decayed), batch {BATCH}, no augmentation; seeds '
      f'{list(sizes["seeds"])} draw the initialisation and the batch order.',
      'Srivastava et al. (2015) saw no degradation of plain nets on MNIST '
      "below about 50 layers: this is why the deep arm is the paper's "
      'deepest, 56 layers, and why a shallower pair would not test the claim.',
      'Where this study and the paper differ on ResNet-56: He et al. compare '
      f'nets after 64k iterations (164 epochs), this after {sizes["steps"]} '
      'steps (under 1% of theirs), at half width, from lr 0.1 with no warmup '
      '(He et al. warm ResNet-110 up at 0.01 because 0.1 is "slightly too '
      'large to start converging"). A deeper residual net starts slower, so '
      'at this budget the ResNet sub-claims measure early training speed, '
      'not the converged training error of Fig. 6; the plain gap, about '
      'twice as large, shows from the first steps.',
    ),
  )


def _protocol(sizes) -> list[tuple[str, str, str, str]]:
  shallow, deep = sizes['depths']
  return [
    (
      'architecture',
      'He et al. 2016 Sec. 4.2: 6n+2 nets, widths 16/32/64, BN, option-A '
      'shortcuts; plain-20/32/44/56 vs ResNet-20/32/44/56 (Fig. 6)',
      f'the same 6n+2 nets at {shallow} and {deep} layers, widths '
      f'{sizes["widths"]}, 3 x 1 kernels on 1-D signals',
      'the two extremes of Fig. 6 only, at half width with 1-D kernels: '
      'the 2-core CPU budget',
    ),
    (
      'data',
      'CIFAR-10, 50k images, flip + 4-pixel crop augmentation',
      'MNIST-1D (Greydanus 2020), 4,000 training / 1,000 test signals of '
      'length 40, no augmentation',
      'a task small enough for 56-layer nets on a CPU that the budget still '
      "cannot memorise (the best arm's final training error stays above 0); "
      'the claim is about training error, which augmentation would blur',
    ),
    (
      'optimizer and learning-rate selection',
      'SGD, momentum 0.9, lr 0.1 / 10 at 32k and 48k iterations, weight '
      'decay 1e-4, batch 128; one recipe for all depths',
      'the same recipe: lr 0.1 / 10 at 50% and 75% of the steps, L2 1e-4, '
      'batch 128, one recipe for all arms',
      'none in kind (the decay points keep their share of the run)',
    ),
    (
      'metric',
      'training error curves (thin) and test error (bold) against iterations',
      'training error and loss on all training signals in eval mode at the '
      'end, and the running training error averaged over the run',
      "the end point and the area under the paper's thin curve, so that "
      'one number per seed can be paired',
    ),
    (
      'budget',
      '64k iterations (164 epochs)',
      f'{sizes["steps"]} steps ({sizes["steps"] * BATCH // 4000} epochs)',
      'CPU time; the plain/residual gap of the paper is there from the '
      'first epochs of Fig. 6',
    ),
    (
      'runs/seeds',
      'one run per net (curves), 5 runs for ResNet-110',
      f'{len(sizes["seeds"])} seeds per net, paired t intervals',
      'intervals need more than one run',
    ),
  ]
