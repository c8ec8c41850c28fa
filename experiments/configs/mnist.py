"""MNIST (LeCun et al. 1998), 60k train / 10k test 28x28 digits, offline.

The default config of `experiments.main`: it runs without downloads, in a few
minutes on a laptop CPU. Variants (the part after ':'): `mlp`, `lenet5`.

Commands and results measured on this repository's 2-core CPU machine
(shared with other jobs while measuring, so wall times are pessimistic):

  python -m experiments.main --config experiments/configs/mnist.py:mlp \
    --workdir runs/mnist_mlp
    # MEASURED_MNIST_MLP

  python -m experiments.main --config experiments/configs/mnist.py:lenet5 \
    --workdir runs/mnist_lenet5
    # MEASURED_MNIST_LENET5

Expected from the literature: a 2-hidden-layer MLP reaches about 98% and
LeNet-5 about 99% (LeCun et al. 1998, Table/Fig. 9).
"""

import ml_collections

from experiments.configs import common

VARIANTS = ('mlp', 'lenet5')


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """Returns the MNIST config; `arg` is one of VARIANTS (default 'lenet5')."""
  (variant,) = common.parse_arg(arg, 'lenet5')[:1]
  common.check_choice('mnist variant', variant, VARIANTS)
  config = common.get_config()
  config.data.name = 'mnist'
  config.batch_size = 128
  config.total_steps = 2000  # ~4.3 epochs.
  config.eval_every_steps = 1000
  config.log_every_steps = 200
  config.checkpoint_every_steps = 1000
  config.optimizer = 'adam'
  config.lr = 1e-3
  config.schedule = 'cosine'
  config.warmup_steps = 100
  config.model = variant
  if variant == 'mlp':
    config.model_kw.hidden_sizes = (512, 256)
  return config
