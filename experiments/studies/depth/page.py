"""The depth study's page: figure, table, summary, notes and protocol.

The figure shows what the claims test: each seed's final eval-mode
training loss and error per arm, with the margins the claims use.
"""

from matplotlib import ticker
import numpy as np

from experiments.studies import readable
from experiments.studies import verdict
from experiments.studies.depth import design
from experiments.studies.depth.design import arm_name
from experiments.studies.depth.design import epochs


def reach(steps: int) -> str:
  """How far the budget reaches: "48 of the paper's 164 epochs"."""
  return (
    f"{readable.number(epochs(steps))} of the paper's {design.PAPER_EPOCHS} "
    'epochs'
  )


def plot(axes, per_seed, sizes) -> None:
  shallow, deep = sizes['depths']
  x = {(shallow, False): 0, (deep, False): 1, (shallow, True): 2.5}
  x[(deep, True)] = 3.5
  for ax, metric, margin, label in (
    (axes[0], 'final_loss', design.MARGIN_LOSS, 'training loss (log scale)'),
    (axes[1], 'final_error', design.MARGIN_POINTS, 'training error, %'),
  ):
    for residual in (False, True):
      pair = [(shallow, residual), (deep, residual)]
      ax.plot(
        [x[a] for a in pair],
        np.asarray([per_seed[a][metric] for a in pair]),
        '-',
        color='grey',
        lw=0.6,
      )
      top = np.mean(per_seed[pair[0]][metric]) + margin
      ax.plot(
        [x[pair[0]] - 0.2, x[pair[1]] + 0.2],
        [top, top],
        '--',
        color='k',
        lw=0.8,
        label=None if residual else f'{shallow}-layer mean + margin',
      )
    for i, (arm, at) in enumerate(x.items()):
      values = per_seed[arm][metric]
      ax.plot([at] * len(values), values, 'o', color=f'C{i}', ms=5)
    ax.set_xticks(list(x.values()), [arm_name(*a) for a in x], fontsize=8)
    ax.set_xlim(-0.5, 4.0)
    ax.set_ylabel(f'final {label}, eval mode')
    ax.legend(fontsize=8, loc='upper right')
  axes[0].set_yscale('log')
  axes[1].set_yscale('symlog', linthresh=1.0)
  axes[1].set_ylim(0, 100)
  plain = ticker.FuncFormatter(lambda v, _: readable.number(v))
  for ax in axes:  # Plain decimals, no powers of ten.
    ax.yaxis.set_major_formatter(plain)
    ax.yaxis.set_minor_formatter(ticker.NullFormatter())
  axes[0].set_title('Loss (lines: one seed)', fontsize=10)
  axes[1].set_title('Error (symlog: linear below 1%)', fontsize=10)
  axes[0].figure.suptitle(
    f'Plain vs residual twins on MNIST-1D after {sizes["steps"]} steps '
    f'({reach(sizes["steps"])}), {len(sizes["seeds"])} seeds'
  )


def rows(per_seed, params) -> list[tuple]:
  sd = lambda v: float(np.std(v, ddof=1)) if len(v) > 1 else 0.0
  return [
    (
      arm_name(*arm),
      params[arm],
      float(np.mean(m['final_error'])),
      sd(m['final_error']),
      float(np.mean(m['final_loss'])),
      sd(m['final_loss']),
      float(np.mean(m['test_error'])),
    )
    for arm, m in per_seed.items()
  ]


def summary(rows, subclaims, pre) -> str:
  """The deciding numbers: each claim's estimate, interval and margin."""
  claims = [c for c in subclaims if c.kind == 'claim']
  said = [
    f'{row[0]}: {readable.number(c.estimate)}, 95% interval '
    f'{readable.interval(c.ci_low, c.ci_high)}, margin '
    f'{readable.number(c.threshold)}, {c.verdict}.'
    for row, c in zip(rows if claims else (), claims, strict=True)
  ] or [f'No claim is made: a claim needs {verdict.MIN_SEEDS} seeds.']
  reason = verdict.unmet_reason(pre)
  return ' '.join([reason, *said] if reason else said)


MEANING = {
  'holds': "As in He et al.'s Fig. 6, depth made the plain net harder to "
  'optimise and not its residual twin.',
  'does not hold': 'A claim went against the paper here: the claims below '
  'say which.',
  'inconclusive': 'An interval straddles its margin: the claims below say '
  'which; more seeds would decide it.',
  verdict.NOT_TESTED: 'The shallow nets did not fit the training set, so '
  'the run says nothing about degradation either way.',
  verdict.CHECKS_PASS: 'With fewer than 5 seeds no claim is made: the run '
  'checks the pipeline only.',
}


def lead(per_seed, sizes, headline: str) -> str:
  """The page's opening: what was tested, what came out, what it means."""
  shallow, deep = sizes['depths']
  err = lambda arm: readable.number(np.mean(per_seed[arm]['final_error']))
  n = len(sizes['seeds'])
  seeds = f'{n} seed{"s" if n > 1 else ""}'
  return (
    f'Plain and residual nets of {shallow} and {deep} layers (twins with '
    f'the same parameters) were trained alike on 4,000 MNIST-1D signals '
    f'for {reach(sizes["steps"])}, {seeds} each. '
    f'At the end plain-{deep} misclassified {err((deep, False))}% of its '
    f"training signals against plain-{shallow}'s {err((shallow, False))}%, "
    f'while ResNet-{deep} ended at {err((deep, True))}% beside '
    f"ResNet-{shallow}'s {err((shallow, True))}%. {MEANING[headline]}"
  )


def caption(sizes) -> str:
  """What the figure shows and how far the budget reaches."""
  shallow, deep = sizes['depths']
  steps = sizes['steps']
  return (
    "Each dot is one seed's final training loss (left, log scale) or error "
    '(right, linear below 1%), in evaluation mode on all 4,000 training '
    f"signals; grey lines join a seed's {shallow}- and {deep}-layer twins; "
    f'dashed: the {shallow}-layer mean plus the margin, above which a '
    f'deeper net counts as degraded. {steps} steps of batch {design.BATCH} '
    f'are {reach(steps)}.'
  )


def notes(sizes) -> tuple[str, ...]:
  steps = sizes['steps']
  return (
    'Final: error and cross-entropy of the final weights on all 4,000 '
    'MNIST-1D training signals in evaluation mode (BatchNorm running '
    'statistics), the end points of the thin curves of He et al.',
    f'How far the budget reaches: {steps} steps of batch {design.BATCH} are '
    f'{readable.number(epochs(steps))} passes over the 4,000 signals, '
    f'{reach(steps)} (its 64k iterations on 50k images).',
    f'SGD + momentum {design.MOMENTUM}, lr {design.LR:g} / 10 at steps '
    f'{[int(f * steps) for f in design.DECAY_AT]} of {steps}, L2 weight '
    f'decay {design.WEIGHT_DECAY:g} (biases and BatchNorm parameters not '
    f'decayed), batch {design.BATCH}, no augmentation; seeds '
    f'{list(sizes["seeds"])} draw the initialisation and the batch order.',
    f'Pilot (seeds {design.PILOT_SEEDS[0]} and {design.PILOT_SEEDS[1]}, '
    'full size, not used for the verdict), final training error %: '
    + '; '.join(
      f'{arm_name(int(k[-2:]), k.startswith("resnet"))} '
      f'{v["final_error"][0]:g} and {v["final_error"][1]:g}'
      for k, v in design.PILOT.items()
    )
    + '. ResNet-20 ended both pilot runs with no training error and '
    'ResNet-56 one of them, so every paired difference of the residual '
    "pair's errors can be 0: its claim is on the loss, which resolves it.",
    'Why MNIST-1D and not MNIST-5k images: 4 arms x 5 seeds x 800 steps on '
    '28 x 28 images, at the measured 0.48 CPU-s per ResNet-56 step and 0.21 '
    'per ResNet-20 step (batch 128, oneDNN), take about 5,500 CPU-s: over '
    '45 minutes even with both cores busy, past the 30-minute budget.',
    'Srivastava et al. (2015) saw no degradation of plain nets on MNIST '
    "below about 50 layers: hence the paper's deepest pair, 56 layers.",
  )


def protocol(sizes) -> list[tuple[str, str, str, str]]:
  shallow, deep = sizes['depths']
  steps = sizes['steps']
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
      'data the 20-layer nets fit within the budget (2-D MNIST-5k needs '
      'over 45 minutes); the claim is about training error, which augmentation '
      'would blur',
    ),
    (
      'optimizer and learning-rate selection',
      'SGD, momentum 0.9, lr 0.1 / 10 at 32k and 48k iterations, weight '
      'decay 1e-4, batch 128; one recipe for all depths, not tuned per net',
      "the same procedure for every arm: the paper's recipe, lr 0.1 / 10 "
      'at 50% and 75% of the steps, L2 1e-4, batch 128, no per-arm tuning',
      'none in kind (the decay points keep their share of the run)',
    ),
    (
      'metric',
      'training error curves (thin) and test error (bold) against iterations',
      'final training error and loss on all training signals, eval mode',
      "the end point of the paper's thin curves, one number per seed to "
      'pair; the loss resolves the residual pair, whose errors are near 0',
    ),
    (
      'budget',
      f'64k iterations ({design.PAPER_EPOCHS} epochs)',
      f'{steps} steps ({readable.number(epochs(steps))} epochs)',
      'CPU time: 30 minutes on 2 cores for every arm and seed',
    ),
    (
      'runs/seeds',
      'one run per net (curves), 5 runs for ResNet-110',
      f'{len(sizes["seeds"])} seeds per net, paired t intervals; seeds '
      f'from a 2-seed pilot',
      'intervals need several runs',
    ),
  ]
