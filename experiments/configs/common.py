"""Shared defaults for every experiment config.

Each file in `experiments/configs/` starts from `get_config()` here and only
changes what its experiment needs, so the full set of keys (the contract's
flat config, with units in the names) is defined in exactly one place. With
`lock_config=True` in `experiments/main.py` an override of a key that is not
defined here fails at launch instead of being silently ignored.
"""

from collections.abc import Sequence

import ml_collections


def get_config() -> ml_collections.ConfigDict:
  """Returns the default configuration shared by all experiments."""
  config = ml_collections.ConfigDict()
  config.seed = 0
  config.model = 'mlp'
  config.model_kw = ml_collections.ConfigDict()

  config.data = ml_collections.ConfigDict()
  config.data.name = 'mnist'
  # None = the tfds default (~/tensorflow_datasets or $TFDS_DATA_DIR).
  config.data.data_dir = ml_collections.config_dict.placeholder(str)
  config.data.image_size = 224  # ImageNet crop size.
  config.data.synthetic_shape = (32, 32, 3)
  config.data.synthetic_num_classes = 10
  config.data.synthetic_num_train = 1024
  config.data.synthetic_num_test = 256

  config.batch_size = 128  # Global batch, split over all devices.
  config.eval_batch_size = 0  # 0 = same as batch_size.
  config.total_steps = 1000
  config.eval_every_steps = 500
  config.log_every_steps = 100
  config.checkpoint_every_steps = 500
  config.keep_checkpoints = 3

  config.optimizer = 'momentum'
  config.lr = 0.1
  config.momentum = 0.9
  config.b1 = 0.9
  config.b2 = 0.999
  config.eps = 1e-8
  config.weight_decay = 0.0
  config.weight_decay_mode = 'decoupled'
  # False: weight decay skips biases and norm scales/offsets (ndim <= 1).
  config.decay_all_params = False
  config.grad_clip_norm = 0.0
  config.grad_accum_steps = 1

  config.schedule = 'cosine'
  config.warmup_steps = 0
  config.lr_end = 0.0
  config.step_boundaries = ()
  config.step_every_steps = 0
  config.decay_factor = 0.1
  config.decay_steps = 0

  config.ema_decay = 0.0
  config.label_smoothing = 0.0
  config.mixup_alpha = 0.0
  config.cutmix_alpha = 0.0
  config.cutout_size = 0
  config.crop_padding = 0
  config.random_flip = False
  config.compute_dtype = 'float32'
  return config


def parse_arg(arg: str | None, default: str) -> list[str]:
  """Splits a config argument such as 'resnet20_cifar,cifar100' into parts.

  Args:
    arg: the text after ':' in `--config=file.py:ARG`, or None.
    default: used when `arg` is None or empty.

  Returns:
    The comma-separated parts, stripped, in order.
  """
  text = arg if arg else default
  return [part.strip() for part in text.split(',') if part.strip()]


def single_variant(
  arg: str | None, *, kind: str, default: str, choices: Sequence[str]
) -> str:
  """The one variant named by `arg` (default `default`), checked.

  Raises:
    ValueError: more than one part, or a variant not in `choices`.
  """
  parts = parse_arg(arg, default)
  if len(parts) != 1:
    raise ValueError(f'{kind} config takes one variant, got {arg!r}')
  return check_choice(f'{kind} variant', parts[0], choices)


def check_choice(kind: str, value: str, choices: Sequence[str]) -> str:
  """Returns `value` if it is one of `choices`, else raises ValueError.

  Args:
    kind: what is being chosen, for the message (e.g. 'mnist variant').
    value: the requested choice.
    choices: the allowed values.
  """
  if value not in choices:
    raise ValueError(
      f'unknown {kind} {value!r}; choose one of: {", ".join(choices)}'
    )
  return value
