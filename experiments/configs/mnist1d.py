"""MNIST-1D (Greydanus 2020), 4000 train / 1000 test signals of length 40.

A tiny benchmark on which architectures differ clearly: the paper reports
about 68% test accuracy for an MLP and 94% for a CNN. The data ship with the
`mnist1d` package, so it runs offline. Argument (after ':'): `model=cnn`
(the default, `cnn1d`) or `model=mlp` (or the name alone), and `smoke=True`.
Training follows the paper: Adam, lr 1e-2, batch 100, 6000 steps.

Commands and results measured on this repository's 2-core CPU machine
(idle while measuring):

  python -m experiments.main --config experiments/configs/mnist1d.py:mlp \
    --workdir runs/mnist1d_mlp
    # test accuracy 67.7% (final eval); wall time 7.4 s for the whole
    # command (start-up, data, compilation included; idle machine)

  python -m experiments.main --config experiments/configs/mnist1d.py:cnn \
    --workdir runs/mnist1d_cnn
    # test accuracy 95.4% (final eval); wall time 16.4 s for the whole
    # command (start-up, data, compilation included; idle machine)
"""

import ml_collections

from experiments.configs import common

VARIANTS = ('mlp', 'cnn')


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """Returns the MNIST-1D config for `arg` = '[model=]MODEL[,smoke=BOOL]'."""
  fields = common.parse_arg(arg, model='cnn', smoke=False)
  variant = common.check_choice('mnist1d model', fields.model, VARIANTS)
  config = common.get_config()
  config.data.name = 'mnist1d'
  config.batch_size = 100
  config.total_steps = 6000
  config.eval_every_steps = 1000
  config.log_every_steps = 500
  config.checkpoint_every_steps = 2000
  config.optimizer = 'adam'
  config.lr = 1e-2
  config.schedule = 'constant'
  if variant == 'mlp':
    config.model = 'mlp'
    config.model_kw.hidden_sizes = (100, 100)
  else:
    config.model = 'cnn1d'
  if fields.smoke:
    common.apply_smoke(config)
  return config
