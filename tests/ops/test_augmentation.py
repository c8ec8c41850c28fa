"""Tests for ops/augmentation.py: crop, flip, cutout, mixup and CutMix."""

import functools

import jax
import numpy as np
import pytest

from ops import augmentation

B, H, W, C = 8, 6, 5, 2


def _images(seed=0, shape=(B, H, W, C)):
  return np.random.default_rng(seed).normal(size=shape).astype(np.float32)


def _distinct_images():
  """Example b is the constant b + 1, so every pixel names its source."""
  values = np.arange(1, B + 1, dtype=np.float32)
  return np.broadcast_to(values[:, None, None, None], (B, H, W, C)).copy()


def test_random_crop_is_a_window_of_the_padded_image():
  padding = 2
  x = _images()
  out = np.asarray(
    jax.jit(functools.partial(augmentation.random_crop, padding=padding))(
      jax.random.key(0), x
    )
  )
  padded = np.pad(x, ((0, 0), (padding,) * 2, (padding,) * 2, (0, 0)))
  offsets = []
  for b in range(B):
    found = [
      (i, j)
      for i in range(2 * padding + 1)
      for j in range(2 * padding + 1)
      if np.array_equal(out[b], padded[b, i : i + H, j : j + W])
    ]
    assert len(found) == 1, f'example {b} is not a window of its padding'
    offsets.append(found[0])
  assert len(set(offsets)) > 1  # per-example offsets


def test_random_crop_padding_zero_identity_and_errors():
  x = _images(1)
  out = augmentation.random_crop(jax.random.key(1), x, padding=0)
  np.testing.assert_array_equal(out, x)
  with pytest.raises(ValueError, match='padding'):
    augmentation.random_crop(jax.random.key(1), x, padding=-1)
  with pytest.raises(ValueError, match='NHWC'):
    augmentation.random_crop(jax.random.key(1), x[0], padding=1)


def test_random_flip_per_example():
  x = _images(2, shape=(32, H, W, C))
  out = np.asarray(jax.jit(augmentation.random_flip)(jax.random.key(2), x))
  same = np.all(out == x, axis=(1, 2, 3))
  flipped = np.all(out == x[:, :, ::-1], axis=(1, 2, 3))
  assert np.all(same ^ flipped)
  assert 0 < flipped.sum() < 32


def test_cutout_zeroes_one_clipped_square():
  size = 3
  x = np.ones((32, 7, 7, C), np.float32)
  out = np.asarray(
    jax.jit(functools.partial(augmentation.cutout, size=size))(
      jax.random.key(3), x
    )
  )
  clipped = 0
  for b in range(32):
    zero = np.all(out[b] == 0, axis=-1)
    # Channels are zeroed together and nothing else changes.
    assert np.all((out[b] == 0) == zero[..., None])
    rows, cols = np.nonzero(zero)
    assert rows.size > 0
    r0, r1, c0, c1 = rows.min(), rows.max() + 1, cols.min(), cols.max() + 1
    # The zeros fill exactly one rectangle...
    assert zero.sum() == (r1 - r0) * (c1 - c0)
    # ...which is the size x size square unless it touches a border.
    for lo, hi, n in ((r0, r1, 7), (c0, c1, 7)):
      assert hi - lo == size or (lo == 0 or hi == n) and hi - lo < size
    clipped += zero.sum() < size * size
  assert 0 < clipped < 32


def test_cutout_errors_and_size_zero():
  x = _images(4)
  np.testing.assert_array_equal(
    augmentation.cutout(jax.random.key(4), x, size=0), x
  )
  with pytest.raises(ValueError, match='size=6'):
    augmentation.cutout(jax.random.key(4), x, size=6)
  with pytest.raises(ValueError, match='size'):
    augmentation.cutout(jax.random.key(4), x, size=-1)


def _one_hot(k=4):
  return np.eye(k, dtype=np.float32)[np.arange(B) % k]


@pytest.mark.slow
def test_mixup_uses_one_lambda_and_permutation():
  x, y = _images(5), _one_hot()
  fn = jax.jit(functools.partial(augmentation.mixup_with_params, alpha=0.4))
  mx, my, lam, perm = fn(jax.random.key(5), x, y)
  lam, perm = float(lam), np.asarray(perm)
  assert 0.0 <= lam <= 1.0
  np.testing.assert_array_equal(np.sort(perm), np.arange(B))
  np.testing.assert_allclose(mx, lam * x + (1 - lam) * x[perm], atol=1e-6)
  np.testing.assert_allclose(my, lam * y + (1 - lam) * y[perm], atol=1e-6)
  np.testing.assert_allclose(np.sum(my, axis=1), 1.0, rtol=1e-6)


@pytest.mark.slow
def test_mixup_images_and_labels_agree_without_internals():
  # Example b is the constant b+1 with label b: the label weights must
  # reproduce the mixed pixel value.
  x = _distinct_images()
  y = np.eye(B, dtype=np.float32)
  mx, my = augmentation.mixup(jax.random.key(6), x, y, alpha=1.0)
  px, py, _, _ = augmentation.mixup_with_params(
    jax.random.key(6), x, y, alpha=1.0
  )
  np.testing.assert_array_equal(mx, px)
  np.testing.assert_array_equal(my, py)
  values = np.arange(1, B + 1, dtype=np.float32)
  np.testing.assert_allclose(mx[:, 0, 0, 0], np.asarray(my) @ values, rtol=1e-5)
  np.testing.assert_allclose(mx, mx[:, :1, :1, :1] * np.ones_like(x))


@pytest.mark.slow
def test_mixup_lambda_is_beta_distributed():
  keys = jax.random.split(jax.random.key(7), 2000)
  x, y = _images(7, shape=(2, 1, 1, 1)), _one_hot(2)[:2]

  def lam_of(keys, alpha):
    # Eager vmap: the Beta sampler compiles once and alpha is an argument.
    f = lambda k: augmentation.mixup_with_params(k, x, y, alpha=alpha)[2]
    return jax.vmap(f)(keys)

  lam = np.asarray(lam_of(keys, 2.0))
  # Beta(a, a): mean 1/2, variance 1 / (4 (2a + 1)).
  assert abs(lam.mean() - 0.5) < 0.02
  assert abs(lam.var() - 1 / 20) < 0.01
  # Small alpha pushes lambda towards 0 or 1 (P(min(l, 1-l) < 0.1) ~ 0.6).
  small = np.asarray(lam_of(keys, 0.2))
  assert np.mean(np.minimum(small, 1 - small) < 0.1) > 0.5


@pytest.mark.slow
def test_cutmix_label_weights_equal_pasted_fraction():
  x = _distinct_images()
  y = np.eye(B, dtype=np.float32)
  fn = jax.jit(functools.partial(augmentation.cutmix_with_params, alpha=1.0))
  for seed in range(3):
    mx, my, lam, perm = map(np.asarray, fn(jax.random.key(seed), x, y))
    np.testing.assert_allclose(my.sum(axis=1), 1.0, rtol=1e-6)
    for b in range(B):
      # Fraction of pixels that came from each source example.
      counts = np.bincount(
        mx[b, ..., 0].astype(int).ravel() - 1, minlength=B
      ) / (H * W)
      np.testing.assert_allclose(my[b], counts, atol=1e-6)
      if perm[b] != b:
        np.testing.assert_allclose(counts[b], lam, atol=1e-6)
    # The pasted region is one box shared by the batch.
    pasted = mx[..., 0] != x[..., 0]
    moved = perm != np.arange(B)
    assert np.all(pasted[moved] == pasted[moved][0])


@pytest.mark.slow
def test_cutmix_wrapper_and_errors():
  x, y = _images(8), _one_hot()
  mx, my = augmentation.cutmix(jax.random.key(8), x, y, alpha=1.0)
  assert mx.shape == x.shape and my.shape == y.shape
  np.testing.assert_allclose(np.sum(my, axis=1), 1.0, rtol=1e-6)
  # Integer one-hot targets come back as float mixtures.
  _, int_targets = augmentation.mixup(
    jax.random.key(9), x, y.astype(np.int32), alpha=1.0
  )
  assert int_targets.dtype == np.float32
  np.testing.assert_allclose(np.sum(int_targets, axis=1), 1.0, rtol=1e-6)
  for fn in (augmentation.mixup, augmentation.cutmix):
    with pytest.raises(ValueError, match='alpha'):
      fn(jax.random.key(8), x, y, alpha=0.0)
    with pytest.raises(ValueError, match='targets'):
      fn(jax.random.key(8), x, y[:3], alpha=1.0)


@pytest.mark.parametrize(
  'name', ['random_crop', 'random_flip', 'cutout', 'mixup', 'cutmix']
)
@pytest.mark.slow
def test_same_key_same_result_different_key_different(name):
  x, y = (
    _images(10, shape=(16, H, W, C)),
    np.eye(4, dtype=np.float32)[np.arange(16) % 4],
  )
  fn = {
    'random_crop': lambda k: augmentation.random_crop(k, x, padding=2),
    'random_flip': lambda k: augmentation.random_flip(k, x),
    'cutout': lambda k: augmentation.cutout(k, x, size=3),
    'mixup': lambda k: augmentation.mixup(k, x, y, alpha=1.0),
    'cutmix': lambda k: augmentation.cutmix(k, x, y, alpha=1.0),
  }[name]
  fn = jax.jit(fn)
  a, b, c = (
    fn(jax.random.key(11)),
    fn(jax.random.key(11)),
    fn(jax.random.key(12)),
  )
  for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
    np.testing.assert_array_equal(u, v)
  assert not np.array_equal(np.asarray(jax.tree.leaves(a)[0]),
                            np.asarray(jax.tree.leaves(c)[0]))  # fmt: skip
  if name == 'cutmix':  # The wrapper is the _with_params version.
    full = augmentation.cutmix_with_params(jax.random.key(11), x, y, alpha=1.0)
    np.testing.assert_array_equal(a[0], full[0])
    np.testing.assert_allclose(a[1], full[1], rtol=1e-6)
