"""Fixtures shared by the train_lib tests: the format-faithful tfds data.

`data_dir` is built once per session (a few seconds) and read, never
written, by test_data_tfds.py and test_data_tfds_slow.py.
"""

import pytest

# (train, test) examples of each data set in `data_dir`.
TFDS_SIZES = {
  'imagenet2012': (24, 10),
  'cifar10': (48, 20),
  'cifar100': (24, 12),
}


@pytest.fixture(name='data_dir', scope='session')
def _data_dir(tmp_path_factory) -> str:
  """A tfds data_dir holding imagenet2012, cifar10 and cifar100 fixtures."""
  # Imported here: tfds takes seconds, and most tests here do not need it.
  import tensorflow_datasets as tfds  # noqa: PLC0415

  from train_lib.data import testing_fixtures  # noqa: PLC0415

  where = tmp_path_factory.mktemp('tfds')
  tfds.disable_progress_bar()
  num_train, num_test = TFDS_SIZES['imagenet2012']
  testing_fixtures.build_imagenet(
    where, num_train=num_train, num_validation=num_test
  )
  for name in ('cifar10', 'cifar100'):
    num_train, num_test = TFDS_SIZES[name]
    testing_fixtures.build_cifar(
      where, name, num_train=num_train, num_test=num_test
    )
  return str(where)


@pytest.fixture(name='tfds_sizes')
def _tfds_sizes() -> dict[str, tuple[int, int]]:
  """{name: (train, test) examples} of the data sets in `data_dir`."""
  return dict(TFDS_SIZES)
