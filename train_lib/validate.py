"""Checks of a config's values, before anything runs or is written.

The keys and their defaults are in experiments/configs/common.py; this
module knows which values make sense (signs, ranges, divisibility over the
devices), so a bad value ends a launch with one line naming the key instead
of a run that silently does something else (a negative learning rate climbs
the loss) or a traceback deep in jax.
"""

import ml_collections

from ops import native
from train_lib import profiling


def check_config(config: ml_collections.ConfigDict, num_devices: int) -> None:
  """Raises ValueError for a config value no run can use."""
  for key in ('total_steps', 'log_every_steps', 'grad_accum_steps'):
    if config[key] < 1:
      raise ValueError(f'{key} must be >= 1, got {config[key]}')
  for key in ('eval_every_steps', 'checkpoint_every_steps'):
    if config[key] < 0:
      raise ValueError(f'{key} must be >= 0 (0 = only at the end)')
  inf = float('inf')
  ranges = {  # key: (low, high, low included, high included)
    'lr': (0.0, inf, False, False),
    'warmup_steps': (0, config.total_steps, True, False),
    'keep_checkpoints': (1, inf, True, False),
    'weight_decay': (0.0, inf, True, False),
    'grad_clip_norm': (0.0, inf, True, False),
    'ema_decay': (0.0, 1.0, True, False),
    'label_smoothing': (0.0, 1.0, True, False),
    'optimizer_kw.momentum': (0.0, 1.0, True, False),
    'optimizer_kw.b1': (0.0, 1.0, True, False),
    'optimizer_kw.b2': (0.0, 1.0, True, False),
    'optimizer_kw.eps': (0.0, inf, False, False),
    'schedule_kw.lr_end': (0.0, inf, True, False),
    'schedule_kw.decay_factor': (0.0, 1.0, False, True),
    'schedule_kw.every_steps': (0, inf, True, False),
    'schedule_kw.decay_steps': (0, inf, True, False),
    'augment.crop_padding': (0, inf, True, False),
    'augment.cutout_size': (0, inf, True, False),
    'augment.mixup_alpha': (0.0, inf, True, False),
    'augment.cutmix_alpha': (0.0, inf, True, False),
  }
  for key, (low, high, low_in, high_in) in ranges.items():
    group, _, name = key.rpartition('.')
    value = (config[group] if group else config)[name]
    above = value >= low if low_in else value > low
    below = value <= high if high_in else value < high
    if not (above and below):
      raise ValueError(
        f'{key} must be in {"[" if low_in else "("}{low}, {high}'
        f'{"]" if high_in else ")"}, got {value!r}'
      )
  if config.compute_dtype not in ('float32', 'bfloat16', 'float16'):
    raise ValueError(
      "compute_dtype must be 'float32', 'bfloat16' or 'float16', got "
      f'{config.compute_dtype!r}'
    )
  native.check_mode(config.conv_impl, 'conv_impl')
  if config.conv_impl == 'onednn':  # else a failure deep in the first trace
    native.check(config.compute_dtype, "conv_impl='onednn'")
  for key in ('batch_size', 'eval_batch_size'):
    size = config[key] or config.batch_size
    if size <= 0 or size % num_devices:
      raise ValueError(
        f'global {key} {size} must be a positive multiple of the number of '
        f'devices {num_devices}'
      )
  if config.batch_size % (config.grad_accum_steps * num_devices):
    raise ValueError(
      f'batch_size {config.batch_size} must divide into grad_accum_steps '
      f'{config.grad_accum_steps} micro-batches over {num_devices} devices'
    )
  profile = profiling.parse_steps(config.profile_steps)
  if profile and profile[1] > config.total_steps:
    raise ValueError(
      f'profile_steps={config.profile_steps!r}: END {profile[1]} is past '
      f'total_steps {config.total_steps}, so the run would end mid-trace'
    )
