"""scikit-learn digits (UCI optdigits test set), 1797 8x8 images, offline.

The smallest real data set here: a full run takes seconds, which makes it the
data set of the learning tests. Variants: `mlp` (one hidden layer) and `cnn`
(`cnn_small`). The data helper splits it 80/20 into train/test.

Commands and results measured on this repository's 2-core CPU machine
(shared with other jobs while measuring, so wall times are pessimistic):

  python -m experiments.main --config experiments/configs/digits.py:mlp \
    --workdir runs/digits_mlp
    # MEASURED_DIGITS_MLP

  python -m experiments.main --config experiments/configs/digits.py:cnn \
    --workdir runs/digits_cnn
    # MEASURED_DIGITS_CNN
"""

import ml_collections

from experiments.configs import common

VARIANTS = ('mlp', 'cnn')


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """Returns the digits config; `arg` is one of VARIANTS (default 'mlp')."""
  (variant,) = common.parse_arg(arg, 'mlp')[:1]
  common.check_choice('digits variant', variant, VARIANTS)
  config = common.get_config()
  config.data.name = 'digits'
  config.batch_size = 64
  config.total_steps = 1000  # ~45 epochs of 1437 training images.
  config.eval_every_steps = 500
  config.log_every_steps = 100
  config.checkpoint_every_steps = 500
  config.optimizer = 'adam'
  config.lr = 1e-3
  config.schedule = 'cosine'
  if variant == 'mlp':
    config.model = 'mlp'
    config.model_kw.hidden_sizes = (128,)
  else:
    config.model = 'cnn_small'
  return config
