"""Datasets for training: `get_dataset(config.data) -> Dataset`.

Small datasets ('mnist', 'digits', 'mnist1d', 'synthetic') come from pip
packages or a generator and live in device memory (`in_memory.py`, loaders in
`small.py`). CIFAR-10/100 are read from a prepared TFDS directory and decoded
once into uint8 arrays that live there too (`tfds_source.py`). ImageNet
('imagenet2012') streams from its TFDS directory through grain, JPEGs
cropped on the host, each process reading only its shard (`imagenet.py`,
map functions in `jpeg_crop.py`, geometry in `preprocessing.py`).

`config.data.num_workers` is ImageNet's: the processes that compute its
training batches (0: threads of the training process), and -1 (the
default) picks the fastest count by measuring once per machine
(`imagenet.choose_workers`, cached by `ops.choice_cache`). The other data
sets start no worker whatever the value: they are decoded once into
memory (CIFAR by one thread per CPU) and batched on device, so -1 means 0
there.

Every dataset yields global `jax.Array` batches with the batch sharding given
by the trainer; the training batch at step s depends only on (data_key, s),
so a resumed run sees the same data. Standardisation is done here (on device
for the uint8 CIFAR and ImageNet pixels, `normalize.py`); augmentation is
not (it runs on device in the train step).

With `config.data.validation_fraction` > 0 (all but ImageNet), a
stratified validation set drawn from the run's seed is taken out of the
training split and takes the place of the test split: the model never trains
on it, the evaluations measure it, and the dataset's `eval_split` is
'validation' instead of 'test'. That is the split to tune on; the test split
is for the final recipe only.
"""

import ml_collections

from train_lib.data import preprocessing
from train_lib.data import small
from train_lib.data.base import NUM_CLASSES
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
CIFAR_NAMES = ('cifar10', 'cifar100')
TFDS_NAMES = ('cifar10', 'cifar100', 'imagenet2012')
NAMES = IN_MEMORY_NAMES + TFDS_NAMES

_LOADERS = {
  'mnist': small.load_mnist,
  'digits': small.load_digits,
  'mnist1d': small.load_mnist1d,
}


def get_dataset(
  config_data: ml_collections.ConfigDict, *, seed: int = 0
) -> Dataset:
  """Builds the dataset named by `config_data.name`.

  Args:
    config_data: the `config.data` ConfigDict (experiments/configs/
      common.py): `name`; for TFDS datasets `data_dir`, and for
      imagenet2012 `image_size` and `num_workers` (-1: measured; the
      others start no workers, whatever its value); for 'synthetic'
      `synthetic_shape`, `synthetic_num_classes`, `synthetic_num_train`,
      `synthetic_num_test`; `validation_fraction` for all;
      `per_feature_standardize` and `permutation_seed` for the float ones.
    seed: the run's `config.seed`, which draws the validation split.

  Returns:
    A `Dataset`.

  Raises:
    ValueError: unknown name, bad synthetic settings, num_workers < -1,
      or a validation fraction out of range or asked of ImageNet.
    DatasetNotFoundError: a TFDS dataset is not prepared in `data_dir`.
  """
  name = config_data.name
  if name not in NAMES:
    raise ValueError(
      f'Unknown dataset {name!r}; choose one of {", ".join(NAMES)}.'
    )
  fraction = config_data.validation_fraction
  if config_data.num_workers < -1:
    raise ValueError(
      'num_workers must be >= 0, or -1 to choose by measuring, got '
      f'{config_data.num_workers}.'
    )
  for key in ('per_feature_standardize', 'permutation_seed'):
    if config_data[key] not in (None, False) and name not in IN_MEMORY_NAMES:
      raise ValueError(
        f'{key} is only implemented for the float data sets '
        f'({", ".join(IN_MEMORY_NAMES)}), not {name!r}.'
      )
  if name == 'imagenet2012':
    if fraction:
      raise ValueError(
        'validation_fraction is not implemented for imagenet2012 (its '
        'validation split is the evaluation split already).'
      )
    # Imported here: tensorflow_datasets and grain take seconds to import.
    from train_lib.data import imagenet  # noqa: PLC0415

    return imagenet.ImagenetDataset(
      data_dir=config_data.data_dir,
      image_size=config_data.image_size,
      num_workers=config_data.num_workers,
    )
  pixel_stats = None
  if name == 'synthetic':
    num_classes = config_data.synthetic_num_classes
    train, test = small.make_synthetic(
      shape=tuple(config_data.synthetic_shape),
      num_classes=num_classes,
      num_train=config_data.synthetic_num_train,
      num_test=config_data.synthetic_num_test,
    )
  elif name in CIFAR_NAMES:
    from train_lib.data import tfds_source  # noqa: PLC0415

    num_classes, pixel_stats = NUM_CLASSES[name], preprocessing.STATS[name]
    train, test = tfds_source.load_cifar(name, config_data.data_dir)
  else:
    num_classes = NUM_CLASSES[name]
    train, test = _LOADERS[name]()
  eval_split = 'test'
  if fraction:
    (x, y), eval_split = train, 'validation'
    keep_idx, val_idx = small.validation_split(y, fraction, seed)
    train, test = (x[keep_idx], y[keep_idx]), (x[val_idx], y[val_idx])
  (train_x, train_y), (test_x, test_y) = train, test
  if config_data.per_feature_standardize:
    train_x, test_x = small.standardize_per_feature(train_x, test_x)
  if config_data.permutation_seed is not None:
    train_x, test_x = small.permute_positions(
      train_x, test_x, config_data.permutation_seed
    )
  train, test = (train_x, train_y), (test_x, test_y)
  return InMemoryDataset(
    name=name,
    train=train,
    test=test,
    num_classes=num_classes,
    eval_split=eval_split,
    pixel_stats=pixel_stats,
  )
