"""scikit-learn digits (UCI optdigits test set), 1797 8x8 images, offline.

The smallest real data set here, which makes it the data set of the learning
tests. Argument (after ':'): `model=mlp` (the default; one hidden layer of
512, dropout 0.5) or `model=cnn` (`cnn_small`), the name alone also works
(`digits.py:cnn`), and `smoke=True`. The data helper splits it into the
first 899 images for training and the other 898 for testing.

Recipe (both models): AdamW (decoupled weight decay 0.05), peak lr 2e-3,
100 warmup steps then cosine decay to 0, label smoothing 0.1, random shifts
of up to one pixel (`augment.crop_padding=1`: zero padding, random 8x8
crop), batch 64; the CNN trains 2000 steps, the MLP (one hidden layer of
512, dropout 0.5) 4000. Chosen on a validation split (20% of the 899
training images per class, `--config.data.validation_fraction=0.2`, seed 0,
a handful of candidates): CNN 98.3% validation accuracy (the old recipe:
97.2%), MLP 98.3% (a 256-wide layer without shifts: 97.8%, with shifts:
93.9%). Only then was the test split measured, with the commands below.
The reference to beat: scikit-learn's `SVC(gamma=0.001)` on this same split
scores 96.9% (`tests/experiments/test_recipes.py` recomputes it).

Commands and results (test accuracy, final eval, seeds 0, 1, 2; the time
of each command and its hardware are in the README's configs table):

  python -m experiments.main --config experiments/configs/digits.py:mlp \
    --workdir runs/digits_mlp [--config.seed=1]
    # test accuracy 97.88%, 97.88%, 98.00% (mean 97.92%)

  python -m experiments.main --config experiments/configs/digits.py:cnn \
    --workdir runs/digits_cnn [--config.seed=1]
    # test accuracy 98.55%, 98.89%, 99.00% (mean 98.81%)
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
  config.total_steps = 2000  # ~142 epochs of 899 training images.
  config.eval_every_steps = 500
  config.log_every_steps = 100
  config.checkpoint_every_steps = 500
  config.optimizer = 'adamw'
  config.lr = 2e-3
  config.weight_decay = 0.05  # Decoupled: 0.05 * lr per step.
  config.schedule = 'cosine'
  config.warmup_steps = 100
  config.label_smoothing = 0.1
  config.augment.crop_padding = 1  # Random shifts of up to one pixel.
  if variant == 'mlp':
    config.model = 'mlp'
    config.total_steps = 4000
    config.model_kw.hidden_sizes = (512,)
    config.model_kw.dropout_rate = 0.5
  else:
    config.model = 'cnn_small'
  if fields.smoke:
    common.apply_smoke(config)
  return config
