"""The in-memory data options: per-feature z-scores and a fixed permutation."""

import numpy as np
import pytest

from experiments.configs import common
from train_lib import data as data_lib
from train_lib.data import small


def _config(**keys):
  config = common.get_config()
  config.data.name = 'digits'
  for key, value in keys.items():
    config.data[key] = value
  return config.data


def test_per_feature_standardize_by_hand():
  train = np.array([[1.0, 5.0], [3.0, 5.0]])[..., None]  # [2, 2, 1]
  test = np.array([[2.0, 7.0]])[..., None]
  got_train, got_test = small.standardize_per_feature(train, test)
  # Column 0: mean 2, std 1; column 1 is constant (std 0 -> divided by 1).
  np.testing.assert_allclose(got_train[..., 0], [[-1.0, 0.0], [1.0, 0.0]])
  np.testing.assert_allclose(got_test[..., 0], [[0.0, 2.0]])


def test_permute_positions_is_one_permutation_for_all_examples():
  x = np.arange(2 * 3 * 2 * 1, dtype=np.float32).reshape(2, 3, 2, 1)
  got_train, got_test = small.permute_positions(x, x + 100, seed=3)
  perm = np.random.default_rng(3).permutation(6)
  np.testing.assert_array_equal(
    got_train.reshape(2, 6), x.reshape(2, 6)[:, perm]
  )
  np.testing.assert_array_equal(got_test, got_train + 100)
  assert got_train.shape == x.shape and sorted(got_train.ravel()) == list(
    x.ravel()
  )


def test_get_dataset_applies_the_options_to_both_splits():
  plain = data_lib.get_dataset(_config())
  z = data_lib.get_dataset(_config(per_feature_standardize=True))
  x, _ = z.host_arrays('train')
  flat = x.reshape(len(x), -1)
  raw = plain.host_arrays('train')[0].reshape(len(x), -1)
  varying = raw.std(0, dtype=np.float64) > 0
  np.testing.assert_allclose(flat.mean(0), 0.0, atol=1e-5)
  np.testing.assert_allclose(flat.std(0)[varying], 1.0, rtol=1e-4)
  shuffled = data_lib.get_dataset(_config(permutation_seed=0))
  perm = np.random.default_rng(0).permutation(64)
  for split in ('train', 'test'):
    want = plain.host_arrays(split)[0].reshape(-1, 64)[:, perm]
    got = shuffled.host_arrays(split)[0].reshape(-1, 64)
    np.testing.assert_array_equal(got, want)


def test_tfds_data_sets_refuse_the_options():
  for key, value in (
    ('per_feature_standardize', True),
    ('permutation_seed', 1),
  ):
    config = _config(**{key: value})
    config.name = 'cifar10'
    with pytest.raises(ValueError, match=key):
      data_lib.get_dataset(config)
