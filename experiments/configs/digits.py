"""scikit-learn digits (UCI optdigits test set), 1797 8x8 images, offline.

The smallest real data set here: a full run takes about 20 s, which makes it the
data set of the learning tests. Argument (after ':'): `model=mlp` (the
default; one hidden layer of 128, dropout 0.2) or `model=cnn` (`cnn_small`),
the name alone also works (`digits.py:cnn`), and `smoke=True`. The data
helper splits it into the first 899 images for training and the other 898
for testing.

Commands and results measured on this repository's 2-core CPU machine
(idle while measuring):

  python -m experiments.main --config experiments/configs/digits.py:mlp \
    --workdir runs/digits_mlp
    # test accuracy 94.2% (final eval); wall time 5.6 s for the whole
    # command (start-up, data, compilation included; idle machine)

  python -m experiments.main --config experiments/configs/digits.py:cnn \
    --workdir runs/digits_cnn
    # test accuracy 95.3% (final eval); wall time 11.9 s for the whole
    # command (start-up, data, compilation included; idle machine)
"""

import ml_collections

from experiments.configs import common

VARIANTS = ('mlp', 'cnn')


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """Returns the digits config for `arg` = '[model=]MODEL[,smoke=BOOL]'."""
  fields = common.parse_arg(arg, model='mlp', smoke=False)
  variant = common.check_choice('digits model', fields.model, VARIANTS)
  config = common.get_config()
  config.data.name = 'digits'
  config.batch_size = 64
  config.total_steps = 1000  # ~71 epochs of 899 training images.
  config.eval_every_steps = 500
  config.log_every_steps = 100
  config.checkpoint_every_steps = 500
  config.optimizer = 'adam'
  config.lr = 1e-3
  config.schedule = 'cosine'
  if variant == 'mlp':
    config.model = 'mlp'
    config.model_kw.hidden_sizes = (128,)
    config.model_kw.dropout_rate = 0.2
  else:
    config.model = 'cnn_small'
  if fields.smoke:
    common.apply_smoke(config)
  return config
