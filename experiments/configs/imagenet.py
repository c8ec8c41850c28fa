"""ImageNet ILSVRC-2012 (Russakovsky et al. 2015) via tensorflow-datasets.

Argument: `model=NAME` (or the name alone), default `resnet50`; any model of
the `nets` registry with an ImageNet-sized (224x224) input works, e.g.
`imagenet.py:vgg16`; `smoke=True` runs two steps on 32x32 crops in float32.
The recipe is Goyal et al. 2017 ("ImageNet in 1 hour"):
global batch 1024, lr 0.1 x batch/256 = 0.4, 5 warmup epochs, lr /10 at
epochs 30, 60 and 80 of 90, momentum 0.9, L2 weight decay 1e-4, random-resized
crop (in the input pipeline) and horizontal flip, bfloat16 computation.

Command (prepare the data for tfds first: see docs/data.md):

  python -m experiments.main --config experiments/configs/imagenet.py:resnet50 \
    --workdir runs/imagenet_resnet50 --config.data.data_dir=/data/tfds

Expected metric: ResNet-50 top-1 accuracy about 76.3% (Goyal et al. 2017
report 23.6-23.7% top-1 error for batches 256 to 8k), top-5 about 93%.
Not yet run on ImageNet itself. For scale: 112,590 steps of batch 1024;
published reports are about 8-9 hours on 8 V100 GPUs, and a TPU v3-32 pod
slice takes about 2 hours. Smoke runs (train, eval, resume,
2 worker processes) on a small format-faithful copy of ImageNet (tfds's
imagenet2012 5.1.0 builder writing generated JPEGs of ImageNet's sizes) are
in tests/train_lib/test_data_tfds_slow.py.

Input: JPEG bytes are cropped (random-resized crop, decoded at reduced scale
where the box allows) and resized to uint8 by `config.data.num_workers`
processes (-1: the fastest count, measured once per machine and cached;
0: threads of the training process); the standardisation and the flip run on
device. A GPU training ResNet-50 wants 2,500-3,500 images/s: at the
images/s per core that `python -m experiments.bench_input` measures
(docs/performance.md), size the host's cores accordingly.
"""

import ml_collections

from experiments.configs import common

NUM_TRAIN = 1_281_167
BATCH_SIZE = 1024


def _epochs_to_steps(epochs: float) -> int:
  return round(epochs * NUM_TRAIN / BATCH_SIZE)


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """Returns the ImageNet config for `arg` = '[model=]NAME[,smoke=BOOL]'."""
  fields = common.parse_arg(arg, model='resnet50', smoke=False)
  config = common.get_config()
  config.model = fields.model
  config.data.name = 'imagenet2012'
  config.data.image_size = 224
  config.batch_size = BATCH_SIZE
  config.total_steps = _epochs_to_steps(90)
  config.optimizer = 'momentum'
  config.optimizer_kw.momentum = 0.9
  config.lr = 0.1 * BATCH_SIZE / 256
  config.weight_decay = 1e-4
  config.weight_decay_mode = 'l2'
  config.schedule = 'step'
  config.warmup_steps = _epochs_to_steps(5)
  config.schedule_kw.boundaries = tuple(
    _epochs_to_steps(e) for e in (30, 60, 80)
  )
  config.schedule_kw.decay_factor = 0.1
  config.augment.random_flip = True
  config.compute_dtype = 'bfloat16'
  config.log_every_steps = 100
  config.eval_every_steps = _epochs_to_steps(5)
  config.checkpoint_every_steps = _epochs_to_steps(1)
  if fields.smoke:
    common.apply_smoke(config)
    config.data.image_size = 32
    config.compute_dtype = 'float32'  # bfloat16 convolutions are slow on CPU.
  return config
