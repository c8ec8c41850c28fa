"""Datasets for training: `get_dataset(config.data) -> Dataset`.

Small datasets ('mnist', 'digits', 'mnist1d', 'synthetic') come from pip
packages or a generator and live in device memory (`in_memory.py`, loaders in
`small.py`). Large ones ('cifar10', 'cifar100', 'imagenet2012') are read from a
prepared TFDS directory with `tfds.data_source` and grain, each process
reading only its shard (`tfds_source.py`, preprocessing in
`preprocessing.py`).

Every dataset yields global `jax.Array` batches with the batch sharding given
by the trainer; the training batch at step s depends only on (data_key, s),
so a resumed run sees the same data. Normalisation is done here;
augmentation is not (it runs on device in the train step).
"""

import ml_collections

from train_lib.data import small
from train_lib.data.base import Batch
from train_lib.data.base import Dataset
from train_lib.data.base import DatasetNotFoundError
from train_lib.data.in_memory import InMemoryDataset

__all__ = [
  'Batch',
  'Dataset',
  'DatasetNotFoundError',
  'IN_MEMORY_NAMES',
  'InMemoryDataset',
  'NAMES',
  'TFDS_NAMES',
  'get_dataset',
]

IN_MEMORY_NAMES = ('mnist', 'digits', 'mnist1d', 'synthetic')
TFDS_NAMES = ('cifar10', 'cifar100', 'imagenet2012')
NAMES = IN_MEMORY_NAMES + TFDS_NAMES

_NUM_CLASSES = {'mnist': 10, 'digits': 10, 'mnist1d': 10}
_LOADERS = {
  'mnist': small.load_mnist,
  'digits': small.load_digits,
  'mnist1d': small.load_mnist1d,
}


def get_dataset(config_data: ml_collections.ConfigDict) -> Dataset:
  """Builds the dataset named by `config_data.name`.

  Args:
    config_data: the `config.data` ConfigDict (experiments/configs/
      common.py): `name`; for TFDS datasets `data_dir` and, for
      imagenet2012, `image_size`; for 'synthetic' `synthetic_shape`,
      `synthetic_num_classes`, `synthetic_num_train`, `synthetic_num_test`.

  Returns:
    A `Dataset`.

  Raises:
    ValueError: unknown name or bad synthetic settings.
    DatasetNotFoundError: a TFDS dataset is not prepared in `data_dir`.
  """
  name = config_data.name
  if name not in NAMES:
    raise ValueError(
      f'Unknown dataset {name!r}; choose one of {", ".join(NAMES)}.'
    )
  if name in _LOADERS:
    train, test = _LOADERS[name]()
    return InMemoryDataset(
      name=name, train=train, test=test, num_classes=_NUM_CLASSES[name]
    )
  if name == 'synthetic':
    num_classes = config_data.synthetic_num_classes
    train, test = small.make_synthetic(
      shape=tuple(config_data.synthetic_shape),
      num_classes=num_classes,
      num_train=config_data.synthetic_num_train,
      num_test=config_data.synthetic_num_test,
    )
    return InMemoryDataset(
      name=name, train=train, test=test, num_classes=num_classes
    )
  # Imported here: tensorflow_datasets and grain take seconds to import.
  from train_lib.data import tfds_source  # noqa: PLC0415

  return tfds_source.TfdsDataset(
    name,
    data_dir=config_data.data_dir,
    image_size=config_data.image_size,
  )
