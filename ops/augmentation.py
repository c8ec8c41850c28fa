"""Batched, jit-able data augmentation with explicit keys (NHWC images).

Implements the augmentation part of the lecture notes (seed 002: crop, flip,
cutout, mixup) plus CutMix:

* random crop: zero-pad by ``padding`` and crop back at a random offset, the
  CIFAR recipe of He et al. (2016);
* horizontal flip with probability 1/2 per example;
* cutout (DeVries & Taylor, 2017): zero a ``size x size`` square at a random
  centre, clipped at the borders;
* mixup (Zhang et al., 2018): ``x = l x_i + (1 - l) x_j``, ``y = l y_i +
  (1 - l) y_j`` with ``l ~ Beta(alpha, alpha)`` drawn once per batch and ``j``
  a random permutation of the batch;
* CutMix (Yun et al., 2019): paste a box of area ratio ``1 - l`` from the
  permuted batch and mix the labels by the pasted area actually used.

Randomness is per example through vectorised sampling (``jax.vmap`` or
broadcast masks), never a Python loop over the batch.
"""

import jax
import jax.numpy as jnp


def _check_images(images: jax.typing.ArrayLike) -> jax.Array:
  images = jnp.asarray(images)
  if images.ndim != 4:
    raise ValueError(f'images must be NHWC [B, H, W, C], got {images.shape}')
  return images


def _check_pair(
  images: jax.typing.ArrayLike, targets: jax.typing.ArrayLike, alpha: float
) -> tuple[jax.Array, jax.Array]:
  images = _check_images(images)
  targets = jnp.asarray(targets)
  if targets.ndim != 2 or targets.shape[0] != images.shape[0]:
    raise ValueError(
      f'targets must be [B, K] with B={images.shape[0]}, got {targets.shape}'
    )
  if not alpha > 0:
    raise ValueError(f'alpha must be positive, got alpha={alpha}')
  if not jnp.issubdtype(targets.dtype, jnp.floating):
    targets = targets.astype(jnp.float32)  # mixed labels are fractional
  return images, targets


def _mix(a: jax.Array, lam: jax.Array, perm: jax.Array) -> jax.Array:
  """``lam a + (1 - lam) a[perm]`` computed in float32, cast back."""
  a32 = a.astype(jnp.float32)
  return (lam * a32 + (1.0 - lam) * a32[perm]).astype(a.dtype)


def random_crop(
  key: jax.Array, images: jax.typing.ArrayLike, *, padding: int
) -> jax.Array:
  """Zero-pads each image by ``padding`` and crops back at a random offset.

  Args:
    key: PRNG key.
    images: ``[B, H, W, C]``.
    padding: pixels of zeros added on every side; 0 returns ``images``.

  Returns:
    ``[B, H, W, C]``: example b is ``padded[b, oy:oy+H, ox:ox+W]`` with
    ``oy, ox`` uniform in ``[0, 2 * padding]``.
  """
  images = _check_images(images)
  if int(padding) != padding or padding < 0:
    raise ValueError(f'padding must be a non-negative int, got {padding}')
  if padding == 0:
    return images
  batch, height, width, channels = images.shape
  pad = ((0, 0), (padding, padding), (padding, padding), (0, 0))
  padded = jnp.pad(images, pad)
  offsets = jax.random.randint(key, (batch, 2), 0, 2 * padding + 1)

  def crop(image, offset):
    start = (offset[0], offset[1], 0)
    return jax.lax.dynamic_slice(image, start, (height, width, channels))

  return jax.vmap(crop)(padded, offsets)


def random_flip(key: jax.Array, images: jax.typing.ArrayLike) -> jax.Array:
  """Flips each image left-right with probability 1/2.

  Args:
    key: PRNG key.
    images: ``[B, H, W, C]``.

  Returns:
    ``[B, H, W, C]`` with a random subset of examples mirrored along W.
  """
  images = _check_images(images)
  flip = jax.random.bernoulli(key, 0.5, (images.shape[0], 1, 1, 1))
  return jnp.where(flip, images[:, :, ::-1, :], images)


def _box_mask(
  top: jax.Array,
  left: jax.Array,
  box_h: jax.Array,
  box_w: jax.Array,
  h: int,
  w: int,
) -> jax.Array:
  """Boolean ``[..., H, W]`` mask of the box ``[top, top+box_h) x [left, ...)``.

  Corners may lie outside the image: the box is clipped by the comparison.
  """
  rows = jnp.arange(h)
  cols = jnp.arange(w)
  top, left = top[..., None], left[..., None]
  in_rows = (rows >= top) & (rows < top + box_h[..., None])  # [..., H]
  in_cols = (cols >= left) & (cols < left + box_w[..., None])  # [..., W]
  return in_rows[..., :, None] & in_cols[..., None, :]


def cutout(
  key: jax.Array, images: jax.typing.ArrayLike, *, size: int
) -> jax.Array:
  """Zeros a ``size x size`` square at a random centre in each image.

  The centre is uniform over the image (DeVries & Taylor, 2017), so the
  square can be partly outside and is clipped at the borders.

  Args:
    key: PRNG key.
    images: ``[B, H, W, C]``.
    size: side of the square, at most ``min(H, W)``; 0 returns ``images``.

  Returns:
    ``[B, H, W, C]`` with one (clipped) square zeroed per example.
  """
  images = _check_images(images)
  batch, height, width, _ = images.shape
  if int(size) != size or not 0 <= size <= min(height, width):
    raise ValueError(
      f'cutout size must be an int in [0, min(H, W)={min(height, width)}], '
      f'got size={size}'
    )
  if size == 0:
    return images
  y_key, x_key = jax.random.split(key)
  centre_y = jax.random.randint(y_key, (batch,), 0, height)
  centre_x = jax.random.randint(x_key, (batch,), 0, width)
  side = jnp.full((batch,), size)
  mask = _box_mask(
    centre_y - size // 2, centre_x - size // 2, side, side, height, width
  )  # [B, H, W]
  return jnp.where(mask[..., None], jnp.zeros_like(images), images)


def mixup_with_params(
  key: jax.Array,
  images: jax.typing.ArrayLike,
  targets: jax.typing.ArrayLike,
  *,
  alpha: float,
) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
  """Mixup that also returns its lambda and permutation.

  Args:
    key: PRNG key.
    images: ``[B, H, W, C]``.
    targets: one-hot or soft labels ``[B, K]``.
    alpha: Beta(alpha, alpha) parameter, positive.

  Returns:
    ``(images, targets, lam, perm)`` with ``images = lam x + (1-lam) x[perm]``,
    ``targets`` likewise, ``lam`` a float32 scalar and ``perm`` int ``[B]``.
  """
  images, targets = _check_pair(images, targets, alpha)
  lam_key, perm_key = jax.random.split(key)
  lam = jax.random.beta(lam_key, alpha, alpha, dtype=jnp.float32)
  perm = jax.random.permutation(perm_key, images.shape[0])
  return _mix(images, lam, perm), _mix(targets, lam, perm), lam, perm


def mixup(
  key: jax.Array,
  images: jax.typing.ArrayLike,
  targets: jax.typing.ArrayLike,
  *,
  alpha: float,
) -> tuple[jax.Array, jax.Array]:
  """Mixup (Zhang et al., 2018) with one lambda per batch.

  Args:
    key: PRNG key.
    images: ``[B, H, W, C]``.
    targets: one-hot or soft labels ``[B, K]``.
    alpha: Beta(alpha, alpha) parameter, positive.

  Returns:
    ``(images, targets)`` mixed with the same lambda and permutation.
  """
  mixed_images, mixed_targets, _, _ = mixup_with_params(
    key, images, targets, alpha=alpha
  )
  return mixed_images, mixed_targets


def cutmix_with_params(
  key: jax.Array,
  images: jax.typing.ArrayLike,
  targets: jax.typing.ArrayLike,
  *,
  alpha: float,
) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
  """CutMix that also returns the label weight and the permutation.

  One box per batch, as in Yun et al. (2019): ``l ~ Beta(alpha, alpha)``, box
  sides ``floor(H sqrt(1 - l))`` and ``floor(W sqrt(1 - l))`` centred at a
  uniform random pixel and clipped at the borders. Because of clipping and
  flooring the label weight is recomputed from the pasted area:
  ``lam = 1 - area / (H W)``.

  Args:
    key: PRNG key.
    images: ``[B, H, W, C]``.
    targets: one-hot or soft labels ``[B, K]``.
    alpha: Beta(alpha, alpha) parameter, positive.

  Returns:
    ``(images, targets, lam, perm)``: ``lam`` is the fraction of each image
    kept, ``targets = lam y + (1 - lam) y[perm]``.
  """
  images, targets = _check_pair(images, targets, alpha)
  batch, height, width, _ = images.shape
  lam_key, perm_key, y_key, x_key = jax.random.split(key, 4)
  lam0 = jax.random.beta(lam_key, alpha, alpha, dtype=jnp.float32)
  perm = jax.random.permutation(perm_key, batch)
  cut = jnp.sqrt(1.0 - lam0)
  box_h = jnp.floor(height * cut).astype(jnp.int32)
  box_w = jnp.floor(width * cut).astype(jnp.int32)
  centre_y = jax.random.randint(y_key, (), 0, height)
  centre_x = jax.random.randint(x_key, (), 0, width)
  mask = _box_mask(
    centre_y - box_h // 2, centre_x - box_w // 2, box_h, box_w, height, width
  )  # [H, W]
  mixed = jnp.where(mask[None, :, :, None], images[perm], images)
  lam = 1.0 - jnp.mean(mask.astype(jnp.float32))
  return mixed, _mix(targets, lam, perm), lam, perm


def cutmix(
  key: jax.Array,
  images: jax.typing.ArrayLike,
  targets: jax.typing.ArrayLike,
  *,
  alpha: float,
) -> tuple[jax.Array, jax.Array]:
  """CutMix (Yun et al., 2019): paste a box from a shuffled batch.

  Args:
    key: PRNG key.
    images: ``[B, H, W, C]``.
    targets: one-hot or soft labels ``[B, K]``.
    alpha: Beta(alpha, alpha) parameter, positive (the paper uses 1).

  Returns:
    ``(images, targets)``, labels weighted by the pasted pixel fraction.
  """
  mixed_images, mixed_targets, _, _ = cutmix_with_params(
    key, images, targets, alpha=alpha
  )
  return mixed_images, mixed_targets
