"""CIFAR-10 / CIFAR-100 (Krizhevsky 2009) via tensorflow-datasets.

Argument: `model=MODEL,dataset=DATASET,smoke=BOOL` (each optional; the
first two also by position), e.g. `resnet20_cifar`, `wrn28_10_cifar,cifar100`
or `model=resnet20_cifar,dataset=cifar100,smoke=True` (smoke: two steps with
the tiny `resnet8_cifar_tiny`, same pipeline). Each model follows its
paper's recipe (50k train images, 32x32, batch-level crop with 4 pixels of
padding and horizontal flip done on device), with classical (coupled) L2
weight decay as the papers use:

- resnet20/32/44/56/110_cifar (He et al. 2016, Sec. 4.2): batch 128, lr 0.1,
  /10 at steps 32k and 48k, 64k steps, wd 1e-4 (resnet110: 400 warmup steps).
  Paper test error on CIFAR-10: 8.75, 7.51, 7.17, 6.97, 6.43%.
- resnet18_cifar (the common reimplementation of ResNet-18 for 32x32): batch
  128, lr 0.1 cosine over 200 epochs, wd 5e-4. About 4.6-5% error on
  CIFAR-10 in public reimplementations (no paper number).
- wrn28_10_cifar (Zagoruyko & Komodakis 2016): nesterov, lr 0.1 x0.2 at
  epochs 60/120/160 of 200, wd 5e-4. Test error 4.00% (C10) / 19.25% (C100).
- densenet_bc100_k12_cifar (Huang et al. 2017): batch 64, nesterov, 300
  epochs, lr /10 at 50% and 75%, wd 1e-4. Error 4.51% (C10+) / 22.27%
  (C100+).

Command (the data must first be prepared for tfds, see docs/data.md; tfds
stores them under `--config.data.data_dir`):

  python -m experiments.main \
    --config experiments/configs/cifar.py:resnet20_cifar \
    --workdir runs/cifar10_resnet20

Expected metric: the paper numbers above (eval accuracy = 1 - error).
Input: both splits are decoded once into uint8 arrays held in device
memory and standardised on device (train_lib/data/tfds_source.py); the
crop and flip run in the train step.

Not yet run on CIFAR itself: the smoke runs on a small format-faithful
copy (tfds's cifar10 3.0.2 builder writing generated PNGs) are in
tests/train_lib/test_data_tfds_slow.py. To gauge the time on your machine,
time a few steps on synthetic images of the same shape:

  python -m experiments.main \
    --config experiments/configs/synthetic.py:resnet20_cifar,32x32x3 \
    --workdir runs/speed --config.batch_size=128 --config.total_steps=40
"""

import ml_collections

from experiments.configs import common

RESNET_DEPTHS = (20, 32, 44, 56, 110)
VARIANTS = (
  'resnet18_cifar',
  *(f'resnet{d}_cifar' for d in RESNET_DEPTHS),
  'wrn28_10_cifar',
  'densenet_bc100_k12_cifar',
)
DATASETS = ('cifar10', 'cifar100')
NUM_TRAIN = 50_000


def _epochs_to_steps(epochs: float, batch_size: int) -> int:
  return round(epochs * NUM_TRAIN / batch_size)


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """Returns the CIFAR config for `arg` = 'MODEL[,DATASET][,smoke=BOOL]'."""
  fields = common.parse_arg(
    arg, model='resnet20_cifar', dataset='cifar10', smoke=False
  )
  model = common.check_choice('cifar model', fields.model, VARIANTS)
  dataset = common.check_choice('cifar dataset', fields.dataset, DATASETS)

  config = common.get_config()
  config.data.name = dataset
  config.model = model
  config.optimizer = 'momentum'
  config.optimizer_kw.momentum = 0.9
  config.lr = 0.1
  config.weight_decay_mode = 'l2'
  config.augment.crop_padding = 4
  config.augment.random_flip = True
  config.batch_size = 128
  config.log_every_steps = 100

  if model == 'resnet18_cifar':
    config.total_steps = _epochs_to_steps(200, 128)
    config.schedule = 'cosine'
    config.weight_decay = 5e-4
  elif model == 'wrn28_10_cifar':
    config.optimizer = 'nesterov'
    config.total_steps = _epochs_to_steps(200, 128)
    config.schedule = 'step'
    config.schedule_kw.boundaries = tuple(
      _epochs_to_steps(e, 128) for e in (60, 120, 160)
    )
    config.schedule_kw.decay_factor = 0.2
    config.weight_decay = 5e-4
  elif model == 'densenet_bc100_k12_cifar':
    config.optimizer = 'nesterov'
    config.batch_size = 64
    config.total_steps = _epochs_to_steps(300, 64)
    config.schedule = 'step'
    config.schedule_kw.boundaries = tuple(
      _epochs_to_steps(e, 64) for e in (150, 225)
    )
    config.weight_decay = 1e-4
  else:  # He et al. 2016 CIFAR ResNets.
    config.total_steps = 64_000
    config.schedule = 'step'
    config.schedule_kw.boundaries = (32_000, 48_000)
    config.weight_decay = 1e-4
    if model == 'resnet110_cifar':
      # The paper warms up at lr 0.01 for ~400 steps; linear warmup is close.
      config.warmup_steps = 400

  config.eval_every_steps = max(config.total_steps // 20, 1)
  config.checkpoint_every_steps = config.eval_every_steps
  if fields.smoke:
    common.apply_smoke(config)
    config.model = 'resnet8_cifar_tiny'  # Compiles in seconds.
  return config
