"""Dropout and data augmentation (crop, cutout, mixup) against overfitting.

Notes (seed 002, "Convolutional Neural Networks 2", "The Key Ingredients of
Training CNNs"): dropout (Srivastava et al. 2014) turns off neurons with a
given probability, "a simple way to train deep neural networks for improving
generalization performance"; stochastic depth (Huang et al. 2016, "DropPath")
randomly drops residual blocks during training; and "deep learning is data
hungry and can be easily overfitted - let's augment our datasets!": crop,
cutout (DeVries & Taylor 2017), mixup (Zhang et al. 2018).

The study scales down each paper's own experiment, on MNIST-5k (all 4,000
training images; the 1,000 test images are the held-out set, never used to
choose anything):

* dropout as Srivastava et al.'s MNIST nets (Sec. 6.1.1): a ReLU MLP with
  two hidden layers (`MLP_HIDDEN`, theirs 1024-8192 units), dropout 0.5 on
  the hidden units, SGD + momentum, against the same MLP without dropout;
* crop, cutout and mixup on a CNN, as their papers do (ResNets and WRNs on
  CIFAR): LeNet-5 (ReLU, max pooling) with random shifts of up to 2 pixels
  (zero padding + random crop), one 8 x 8 cutout square, or mixup with
  alpha 0.2, each against the same LeNet-5 without augmentation.

Every arm of a part shares the optimiser (SGD + momentum 0.9, cosine decay,
no weight decay, no label smoothing) and the seeds, so the change of
held-out error is paired seed by seed. Horizontal flips are left out: a
mirrored digit is another symbol (or none).

Stochastic depth is not run: it is out of scale here (`SD_OUT_OF_SCALE`).
Huang et al.'s gain is a test-error gain of 110-layer ResNets trained 500
epochs, which overfit CIFAR; the deepest residual net the CPU budget trains
(the depth study's ResNet-56, 300 steps on MNIST-1D) still underfits (its
final training error was 17-39% over 3 seeds), where dropping blocks can only
slow training, and its six paired runs alone would exceed this study's time.

Where notes, papers and study differ: the notes state the gains without
numbers; the papers train for hundreds of epochs, this for tens, so gains
that need long training (mixup's, above all) may not show.
"""

import ml_collections
import numpy as np

from experiments.configs import common
from experiments.configs import mnist
from experiments.studies import report
from experiments.studies import verdict

CLAIM = (
  'Dropout and data augmentation (crop, cutout, mixup) reduce overfitting: '
  'they lower the held-out error of a net that would otherwise overfit its '
  'training set.'
)
SOURCE = (
  'notes, seed 002 ("CNNs 2"), slides "Drop-out/Drop-path" (dropout, '
  'Srivastava et al. 2014; stochastic depth, Huang et al. 2016) and "Data '
  'Augmentation" (crop, cutout, mixup)'
)

# Fixed before the full run (not tuned on its outcome).
SEEDS = (0, 1, 2)
BATCH = 128
MLP_HIDDEN = (512, 512)  # Srivastava et al.'s MNIST nets: 2 x 1024 and up.
MLP_LR = 0.05  # SGD + momentum, the MLP's usual stable rate.
MLP_STEPS = 1000  # 32 epochs: the MLP without dropout fits its 4,000 images.
CNN_LR = 0.05
CNN_STEPS = 400  # 13 epochs of LeNet-5 (0.04 CPU-s a step).
DROPOUT = 0.5  # Srivastava et al.: p = 0.5 for hidden units.
CROP_PADDING = 2  # Shifts of up to 2 of 28 pixels (CIFAR's 4 of 32, scaled).
CUTOUT = 8  # DeVries & Taylor: 8 x 8 on CIFAR-100 (16 on CIFAR-10).
MIXUP_ALPHA = 0.2  # Zhang et al.: alpha in [0.1, 0.4] improves (ImageNet).
SD_OUT_OF_SCALE = (
  "Huang et al.'s gain (110 layers, 500 CIFAR epochs: 6.41% -> 5.25% test "
  'error) needs a deep net that overfits; the deepest residual net the '
  "2-core budget trains (the depth study's ResNet-56, 300 steps on "
  'MNIST-1D) still underfits (final training error 17-39% over 3 seeds, '
  'depth.md), where dropping blocks only slows training, '
  'and its 6 paired runs would take more than this whole study'
)

# (arm, baseline arm, model, model_kw change, augment change)
ARMS = (
  ('MLP', None, 'mlp', {}, {}),
  ('MLP + dropout 0.5', 'MLP', 'mlp', {'dropout_rate': DROPOUT}, {}),
  ('LeNet-5', None, 'lenet5', {}, {}),
  (
    f'LeNet-5 + crop (pad {CROP_PADDING})',
    'LeNet-5',
    'lenet5',
    {},
    {'crop_padding': CROP_PADDING},
  ),
  (
    f'LeNet-5 + cutout {CUTOUT}x{CUTOUT}',
    'LeNet-5',
    'lenet5',
    {},
    {'cutout_size': CUTOUT},
  ),
  (
    f'LeNet-5 + mixup a={MIXUP_ALPHA:g}',
    'LeNet-5',
    'lenet5',
    {},
    {'mixup_alpha': MIXUP_ALPHA},
  ),
)
# --quick: one regulariser per net, few steps (checks the pipeline only).
QUICK_ARMS = ('MLP', 'MLP + dropout 0.5', 'LeNet-5', ARMS[3][0])


def arm_config(model, model_kw, augment, *, steps: int, seed: int):
  """MNIST-5k, plain SGD + momentum with cosine decay, plus the arm's one."""
  config = mnist.get_config(model)
  kw = (
    {'hidden_sizes': MLP_HIDDEN, 'dropout_rate': 0.0}
    if model == 'mlp'
    else {'activation': 'relu', 'pool': 'max'}
  )
  kw.update(model_kw)
  config.model_kw = ml_collections.ConfigDict(kw)
  report.plain_sgd(
    config,
    seed=seed,
    lr=MLP_LR if model == 'mlp' else CNN_LR,
    schedule='cosine',
    batch_size=BATCH,
    eval_batch_size=1000,
    total_steps=steps,
    log_every_steps=max(steps // 10, 1),
  )
  common.set_keys(config, **augment)
  return config


def errors(config, state) -> tuple[float, float]:
  """(clean train error %, held-out error %), both in evaluation mode."""
  out = []
  for split in ('train', 'test'):
    probs, labels = report.predict(config, state, split)
    out.append(100 * float(np.mean(np.argmax(probs, -1) != labels)))
  return out[0], out[1]


def subclaims(test_error: dict) -> list[verdict.Subclaim]:
  """One sub-claim per regulariser: it lowers the held-out error.

  Args:
    test_error: arm -> held-out errors in % per seed (the same seed order
      in every arm).
  """
  out = []
  for arm, base, *_ in ARMS:
    if base is None or arm not in test_error:
      continue
    change = np.asarray(test_error[arm]) - np.asarray(test_error[base])
    estimate, low, high = verdict.t_interval(change)
    out.append(
      verdict.Subclaim(
        claim=f'{arm.split(" + ")[1]} lowers the held-out error of '
        f'{base} (points, regularised minus plain).',
        estimate=estimate,
        ci_low=low,
        ci_high=high,
        threshold=0.0,
        direction='below',
        seeds=len(change),
        interval='paired t over seeds (per-seed differences)',
        threshold_why='"improving generalization", "reduce overfitting": '
        'any decrease',
      )
    )
  return out


def _figure(train_error, test_error, steps):
  fig, ax = report.new_figure()
  arms = list(test_error)
  x = np.arange(len(arms))
  for offset, values, label in (
    (-0.2, train_error, 'training error (4,000 images, eval mode)'),
    (0.2, test_error, 'held-out error (1,000 test images)'),
  ):
    means = [np.mean(values[a]) for a in arms]
    ax.bar(x + offset, means, 0.4, label=label, alpha=0.8)
    for i, arm in enumerate(arms):
      ax.plot(
        [x[i] + offset] * len(values[arm]), values[arm], 'k.', ms=4, zorder=3
      )
  base = {arm: b for arm, b, *_ in ARMS}
  for i, arm in enumerate(arms):
    if base[arm] in test_error:
      change = np.mean(test_error[arm]) - np.mean(test_error[base[arm]])
      ax.annotate(
        f'{change:+.2f}',
        (x[i] + 0.2, np.max(test_error[arm])),
        ha='center',
        va='bottom',
        fontsize=8,
      )
  num_mlp = sum(1 for a in arms if a.startswith('MLP'))
  ax.axvline(num_mlp - 0.5, color='grey', ls=':')
  ax.set_xticks(x, [a.replace(' + ', '\n+ ') for a in arms], fontsize=7)
  ax.set_xlabel(
    f'net and regulariser (MLP {steps["mlp"]} steps, LeNet-5 '
    f'{steps["lenet5"]} steps; dots: seeds)'
  )
  ax.set_ylabel('error (%)')
  ax.set_title(
    'MNIST-5k: training vs held-out error with and without each '
    'regulariser\n(numbers: change of held-out error against the plain net, '
    'points)'
  )
  ax.set_ylim(0, 1.2 * max(max(v) for v in test_error.values()))
  ax.legend(loc='upper left', fontsize=8)
  return fig


def run(quick: bool = False) -> report.Result:
  """Trains every arm over the seeds; `quick`: fewer arms, seeds, steps."""
  steps = (
    {'mlp': 60, 'lenet5': 30}
    if quick
    else {'mlp': MLP_STEPS, 'lenet5': CNN_STEPS}
  )
  seeds = SEEDS[:1] if quick else SEEDS
  arms = [a for a in ARMS if not quick or a[0] in QUICK_ARMS]
  train_error, test_error = {}, {}
  for arm, _, model, model_kw, augment in arms:
    train_error[arm], test_error[arm] = [], []
    for seed in seeds:
      config = arm_config(
        model, model_kw, augment, steps=steps[model], seed=seed
      )
      trained = report.train(config)
      e_train, e_test = errors(config, trained.state)
      train_error[arm].append(e_train)
      test_error[arm].append(e_test)
  claims = subclaims(test_error)
  base = {arm: b for arm, b, *_ in ARMS}
  rows = []
  for arm in test_error:
    change = (
      float(np.mean(test_error[arm]) - np.mean(test_error[base[arm]]))
      if base[arm]
      else 0.0
    )
    rows.append(
      (
        arm,
        float(np.mean(train_error[arm])),
        float(np.mean(test_error[arm])),
        float(np.std(test_error[arm], ddof=1)) if len(seeds) > 1 else 0.0,
        float(np.mean(test_error[arm]) - np.mean(train_error[arm])),
        change,
      )
    )
  summary = 'Held-out error (mean of {} seeds): {}.'.format(
    len(seeds),
    '; '.join(f'{arm} {np.mean(v):.2f}%' for arm, v in test_error.items()),
  )
  return report.Result(
    figure=_figure(train_error, test_error, steps),
    columns=(
      'arm',
      'train error % (eval mode)',
      'held-out error %',
      'its seed sd',
      'gap (points)',
      'held-out change vs plain (points)',
    ),
    rows=rows,
    subclaims=claims,
    summary=summary,
    protocol=_protocol(steps, len(seeds)),
    values={'train_error_pct': train_error, 'test_error_pct': test_error},
    notes=(
      'MNIST-5k: 4,000 training and 1,000 held-out (test) images, '
      'standardised; seeds ' + ', '.join(map(str, seeds)) + ' draw the '
      'initialisation, the batch order and the random regularisers.',
      f'SGD + momentum {report.PLAIN_SGD_MOMENTUM}, cosine decay to 0, batch '
      f'{BATCH}, no weight decay or label smoothing; MLP {MLP_HIDDEN} ReLU at '
      f'lr {MLP_LR:g} for {steps["mlp"]} steps, LeNet-5 (ReLU, max pooling) '
      f'at lr {CNN_LR:g} for {steps["lenet5"]} steps.',
      f'Stochastic depth: out of scale. {SD_OUT_OF_SCALE}.',
    ),
  )


def _protocol(steps, num_seeds) -> list[tuple[str, str, str, str]]:
  epochs = {k: f'{v * BATCH / 4000:.0f}' for k, v in steps.items()}
  return [
    (
      'architecture',
      'dropout: MLPs 2-3 x 1024-8192 ReLU/maxout (Srivastava et al. 2014 '
      'Sec. 6.1.1); cutout: ResNet-18 / WRN-16-8 (DeVries & Taylor 2017); '
      'mixup: PreAct ResNet-18, WRN-28-10, DenseNet (Zhang et al. 2018)',
      f'dropout: MLP {MLP_HIDDEN} ReLU; crop, cutout, mixup: LeNet-5 (ReLU, '
      'max pooling)',
      'the MLP is narrower (CPU time); LeNet-5 is the smallest CNN, as the '
      'augmentations need one (they act on image structure)',
    ),
    (
      'data',
      'dropout: MNIST 60k; cutout and mixup: CIFAR-10/100 50k',
      'MNIST-5k: 4,000 training images, 1,000 held-out',
      'small enough to train 18 nets on 2 CPU cores; a net overfits 4,000 '
      "images (train error well below held-out), the regime the papers' "
      'claims are about; dropout is reported to help from ~1k examples '
      '(Srivastava et al. Fig. 10)',
    ),
    (
      'optimizer and learning-rate selection',
      'SGD + momentum (0.95 dropout, 0.9 cutout/mixup), step decay, '
      'weight decay or max-norm; one recipe per net for all arms',
      f'SGD + momentum 0.9, cosine decay, lr {MLP_LR:g} (MLP) / {CNN_LR:g} '
      '(LeNet-5), no weight decay or max-norm; one recipe per net for all '
      'arms',
      'no other regulariser, so that each arm differs from its baseline in '
      'one thing only',
    ),
    (
      'metric',
      'test error with and without the regulariser',
      'held-out error (1,000 test images) with and without, paired by seed',
      'none in kind',
    ),
    (
      'budget',
      'dropout: up to 3000 epochs; cutout: 200 epochs; mixup: 200 epochs',
      f'MLP {steps["mlp"]} steps ({epochs["mlp"]} epochs), LeNet-5 '
      f'{steps["lenet5"]} steps ({epochs["lenet5"]} epochs), batch {BATCH}',
      'CPU time; regularisers that need long training may show smaller '
      'gains or none',
    ),
    (
      'runs/seeds',
      'mostly one run (Zhang et al.: median of 5)',
      f'{num_seeds} seeds per arm, paired t intervals',
      'intervals need more than one run',
    ),
    (
      'stochastic depth',
      'Huang et al. 2016: ResNet-110 on CIFAR-10, p_L = 0.5, 500 epochs',
      'not run',
      f'out of scale: {SD_OUT_OF_SCALE}',
    ),
  ]
