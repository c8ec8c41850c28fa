"""Every config key and its default, in one place.

Each file in `experiments/configs/` starts from `get_config()` here and only
changes what its experiment needs. train_lib reads these keys directly
(`config.lr`, `config.augment.crop_padding`), never with a fallback default,
so this file is the one source of truth for what a key means and what it
defaults to. With `lock_config=True` in `experiments/main.py` an override of
a key that is not defined here fails at launch instead of being ignored.

A config file's argument (the text after ':' in `--config=FILE.py:ARG`) uses
one grammar everywhere (`parse_arg`): comma-separated `name=value` fields,
e.g. `cifar.py:model=resnet20_cifar,dataset=cifar100,smoke=True`, where the
leading fields may also be given by position (`cifar.py:resnet20_cifar,
cifar100`). Every config takes `smoke=True`: the same pipeline for two steps
of eight examples (`apply_smoke`), which the end-to-end tests use.
"""

from collections.abc import Sequence
from typing import Any

import ml_collections


def get_config() -> ml_collections.ConfigDict:
  """Returns the default configuration shared by all experiments."""
  config = ml_collections.ConfigDict()
  config.seed = 0
  config.model = 'mlp'
  config.model_kw = ml_collections.ConfigDict()  # Free-form model kwargs.
  config.compute_dtype = 'float32'  # Or 'bfloat16' (loss stays float32).
  # Which backend runs each convolution on the CPU (ops/native/): 'auto'
  # = $CONVNETS_CONV_IMPL if set, else the faster of oneDNN and XLA for
  # each layer's shape, timed once per machine and cached; 'xla' or
  # 'onednn' force one; 'prefer_onednn' = oneDNN wherever it builds the
  # dtype, untimed. Numerics differ only in rounding.
  config.conv_impl = 'auto'
  # '' = random init. Else a torchvision/timm state_dict (.pth, .safetensors)
  # or another run's workdir: a new run starts from its weights, a resumed
  # one from its own checkpoints (train_lib/init_from.py).
  config.init_from = ''

  config.data = ml_collections.ConfigDict()
  config.data.name = 'mnist'
  # None = the tfds default (~/tensorflow_datasets or $TFDS_DATA_DIR).
  config.data.data_dir = ml_collections.config_dict.placeholder(str)
  config.data.image_size = 224  # ImageNet crop size.
  # ImageNet: processes that decode training batches (0 = threads of the
  # training process, -1 = one per CPU); the batches do not depend on it.
  config.data.num_workers = -1
  config.data.synthetic_shape = (32, 32, 3)
  config.data.synthetic_num_classes = 10
  config.data.synthetic_num_train = 1024
  config.data.synthetic_num_test = 256
  # > 0: hold out this share of each class of the training split (drawn from
  # config.seed) and evaluate on it instead of the test split, for tuning.
  config.data.validation_fraction = 0.0
  # In-memory data sets: z-score each input position with the training
  # split's mean and std (the loaders standardise with one scalar each).
  config.data.per_feature_standardize = False
  # In-memory data sets: None, or the seed of ONE fixed permutation of the
  # input positions shared by all examples (MNIST-1D's shuffled variant).
  config.data.permutation_seed = ml_collections.config_dict.placeholder(int)

  config.batch_size = 128  # Global batch, split over all devices.
  config.eval_batch_size = 0  # 0 = same as batch_size.
  config.total_steps = 1000
  config.eval_every_steps = 500  # 0 = only at the end.
  config.log_every_steps = 100
  config.checkpoint_every_steps = 500  # 0 = only at the end.
  config.keep_checkpoints = 3

  config.optimizer = 'momentum'  # sgd, momentum, nesterov, adam, adamw.
  config.optimizer_kw = ml_collections.ConfigDict()
  config.optimizer_kw.momentum = 0.9  # momentum, nesterov.
  config.optimizer_kw.b1 = 0.9  # adam, adamw.
  config.optimizer_kw.b2 = 0.999
  config.optimizer_kw.eps = 1e-8
  config.weight_decay = 0.0
  config.weight_decay_mode = 'decoupled'  # Or 'l2' (added to the gradient).
  # False: weight decay skips biases and norm scales/offsets (ndim <= 1).
  config.decay_all_params = False
  config.grad_clip_norm = 0.0  # 0 = off.
  config.grad_accum_steps = 1  # Micro-batches per update.
  config.ema_decay = 0.0  # 0 = no moving average of the weights.
  # 'START,END': a jax.profiler trace of train steps START..END (included)
  # in <workdir>/profile (train_lib/profiling.py); '' = off.
  config.profile_steps = ''

  config.lr = 0.1  # Peak learning rate.
  config.schedule = 'cosine'  # constant, step, exponential, cosine.
  config.warmup_steps = 0  # Linear warmup from 0, before the schedule.
  config.schedule_kw = ml_collections.ConfigDict()
  config.schedule_kw.lr_end = 0.0  # cosine.
  config.schedule_kw.boundaries = ()  # step: steps after warmup.
  config.schedule_kw.every_steps = 0  # step: or a decay every N steps.
  config.schedule_kw.decay_factor = 0.1  # step, exponential.
  config.schedule_kw.decay_steps = 0  # exponential: steps per factor.

  config.label_smoothing = 0.0
  config.augment = ml_collections.ConfigDict()  # On device, NHWC images only.
  config.augment.crop_padding = 0  # Random crop after zero padding.
  config.augment.random_flip = False  # Horizontal.
  config.augment.cutout_size = 0
  config.augment.mixup_alpha = 0.0  # 0 = off.
  config.augment.cutmix_alpha = 0.0  # 0 = off; with mixup, one per batch.
  return config


def parse_arg(arg: str | None, **fields: Any) -> ml_collections.ConfigDict:
  """Parses a config argument into named fields, typed like their defaults.

  Args:
    arg: the text after ':' in `--config=file.py:ARG`, or None. Fields are
      comma-separated `name=value`; leading fields may omit `name=` and are
      then taken in the order of `fields`.
    **fields: every field the config takes, with its default (its type: str,
      bool, int or float, is the type of the parsed value).

  Returns:
    A ConfigDict with every field.

  Raises:
    ValueError: an unknown field, a field given twice, a value of the wrong
      type, or too many positional values.
  """
  names = list(fields)
  values = dict(fields)
  given = set()
  named = False
  parts = [p.strip() for p in (arg or '').split(',') if p.strip()]
  for i, part in enumerate(parts):
    name, eq, text = part.partition('=')
    if eq:
      named = True
    else:
      if named or i >= len(names):  # A positional after a named one.
        raise ValueError(
          f'config argument {arg!r}: {part!r} needs a name; the fields are '
          f'{", ".join(names)} (e.g. {names[0]}=...)'
        )
      name, text = names[i], part
    name = name.strip()
    if name not in values:
      raise ValueError(
        f'config argument {arg!r}: unknown field {name!r}; the fields are '
        f'{", ".join(names)}'
      )
    if name in given:
      raise ValueError(f'config argument {arg!r}: {name!r} is given twice')
    given.add(name)
    values[name] = _convert(name, text.strip(), fields[name])
  return ml_collections.ConfigDict(values)


def _convert(name: str, text: str, default: Any) -> Any:
  if isinstance(default, bool):
    if text.lower() in ('true', '1', 'yes'):
      return True
    if text.lower() in ('false', '0', 'no'):
      return False
    raise ValueError(f'config field {name}={text!r} must be True or False')
  try:
    return type(default)(text)
  except ValueError:
    raise ValueError(
      f'config field {name}={text!r} is not a valid {type(default).__name__}'
    ) from None


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


def apply_smoke(config: ml_collections.ConfigDict) -> None:
  """Shrinks a run to two steps of eight examples, same pipeline.

  Eight examples is one per device of the test suite's eight fake devices;
  the single eval and checkpoint come at the last step. The model and the
  data set are kept (configs whose model is too big to compile quickly
  choose a tiny one of the same family themselves).
  """
  config.total_steps = 2
  config.warmup_steps = 0
  config.log_every_steps = 1
  config.eval_every_steps = 0
  config.checkpoint_every_steps = 0
  config.batch_size = 8
  config.eval_batch_size = 200
  config.data.synthetic_num_train = 64
  config.data.synthetic_num_test = 32


_GROUPS = ('augment', 'optimizer_kw', 'schedule_kw')


def set_keys(config: ml_collections.ConfigDict, **values: Any) -> None:
  """Sets each key where it lives: at the top or in one of the groups.

  `set_keys(config, lr=0.1, momentum=0.8, crop_padding=4)` sets `config.lr`,
  `config.optimizer_kw.momentum` and `config.augment.crop_padding`; the key
  names of the groups do not collide with the top-level ones.

  Raises:
    KeyError: a key that is nowhere in the config.
  """
  for key, value in values.items():
    homes = [config] if key in config else []
    homes += [config[g] for g in _GROUPS if key in config[g]]
    if not homes:
      raise KeyError(f'no config key {key!r}')
    homes[0][key] = value
