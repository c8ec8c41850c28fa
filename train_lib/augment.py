"""On-device augmentation and training targets, as the config asks for them.

The augmentations of the lecture notes (seed 002): random crop after zero
padding, horizontal flip, cutout, mixup (Zhang et al. 2018) and cutmix (Yun
et al. 2019), all from ops.augmentation, plus label smoothing (Szegedy et al.
2016). They run inside the jitted train step, on the sharded global batch,
and only for image batches of rank 4 (NHWC); other inputs (mnist1d [B, L])
are left alone, with a warning if augmentation was asked for.

`make_augment(config, num_classes)` reads the config once (outside jit) and
returns `augment(keys, images, labels) -> (images, targets)`, where `keys`
are the step's keys (train_lib.step.step_keys) and `targets` are [B, K]
probabilities: one-hot labels, smoothed and mixed as configured.
"""

import functools
from typing import Any

from absl import logging
import jax
import jax.numpy as jnp

from ops import augmentation
from ops import losses


def augment_batch(
  keys: dict[str, jax.Array],
  images: jax.Array,
  labels: jax.Array,
  *,
  num_classes: int,
  label_smoothing: float,
  crop_padding: int,
  random_flip: bool,
  cutout_size: int,
  mixup_alpha: float,
  cutmix_alpha: float,
) -> tuple[jax.Array, jax.Array]:
  """Augments a batch and makes its soft targets.

  Args:
    keys: the step's keys, one per random consumer ('crop', 'flip', 'cutout',
      'mixup', 'cutmix', 'mix_choice').
    images: [B, ...] float32 inputs.
    labels: [B] int labels.
    num_classes: K.
    label_smoothing, crop_padding, random_flip, cutout_size, mixup_alpha,
      cutmix_alpha: as in experiments/configs/common.py (0 / False = off).

  Returns:
    (images, targets [B, K] float32).
  """
  is_image = images.ndim == 4
  asked = crop_padding or random_flip or cutout_size
  if not is_image and (asked or mixup_alpha or cutmix_alpha):
    logging.warning(
      'Inputs of shape %s are not NHWC images: augmentation is off.',
      images.shape,
    )
    crop_padding, random_flip, cutout_size = 0, False, 0
    mixup_alpha = cutmix_alpha = 0.0
  if crop_padding > 0:
    images = augmentation.random_crop(
      keys['crop'], images, padding=crop_padding
    )
  if random_flip:
    images = augmentation.random_flip(keys['flip'], images)
  if cutout_size > 0:
    images = augmentation.cutout(keys['cutout'], images, size=cutout_size)
  targets = losses.one_hot(labels, num_classes).astype(jnp.float32)
  if label_smoothing > 0:
    targets = losses.smooth_labels(targets, label_smoothing)
  mixup = functools.partial(
    augmentation.mixup, keys['mixup'], alpha=mixup_alpha
  )
  cutmix = functools.partial(
    augmentation.cutmix, keys['cutmix'], alpha=cutmix_alpha
  )
  if mixup_alpha > 0 and cutmix_alpha > 0:
    # One of the two per batch, with equal probability (as in timm).
    use_mixup = jax.random.bernoulli(keys['mix_choice'])
    return jax.lax.cond(use_mixup, mixup, cutmix, images, targets)
  if mixup_alpha > 0:
    return mixup(images, targets)
  if cutmix_alpha > 0:
    return cutmix(images, targets)
  return images, targets


def make_augment(config: Any, num_classes: int):
  """`augment_batch` with the config's settings bound (read once, here)."""
  return functools.partial(
    augment_batch,
    num_classes=num_classes,
    label_smoothing=config.label_smoothing,
    **config.augment.to_dict(),
  )
