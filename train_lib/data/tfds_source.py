"""CIFAR-10/100 and ImageNet from prepared TFDS directories, read with grain.

No TensorFlow: `tfds.data_source` gives random access to an ArrayRecord
dataset; records come back as numpy, images already decoded (tfds decodes
ImageNet JPEGs with OpenCV if installed, else Pillow, inside the reader
threads below). A grain `MapDataset` pipeline shuffles, shards, preprocesses
(`preprocessing.py`) and batches on the host with reader threads. Data must
have been prepared in the ArrayRecord format beforehand; otherwise
`DatasetNotFoundError` says how.

Ordering. The training stream is the train split shuffled by grain with a
seed drawn from `data_key`, reshuffled every epoch (`shuffle().repeat()`), so
batches run on across epoch boundaries. The global batch for step s holds the
stream elements [s * B, (s + 1) * B): the batch depends only on
`(data_key, s)` and a resumed run restarts at element s * B directly (random
access, nothing is replayed). Random crops (ImageNet) draw from a generator
seeded by the stream index, so they are reproducible too.

Multi-process. With P = jax.process_count() processes, process p reads the
stream elements p, p + P, p + 2P, ... (grain slice `[p::P]`, as
`ShardByJaxProcess` would) and batches B / P of them, so the P local batches
of step s together are exactly the elements [s * B, (s + 1) * B).
`jax.make_array_from_process_local_data` then places each local batch on that
process's devices (the batch axis must be sharded over all devices, as the
'data' mesh axis is). Evaluation pads the test split to a multiple of B
(padding masked with 0) and shards it the same way, so every process yields
the same number of batches and every example counts once.
"""

from collections.abc import Iterator
import contextlib
import functools
import os

from absl import logging
import grain
import jax
import numpy as np
import tensorflow_datasets as tfds

from train_lib.data import preprocessing
from train_lib.data.base import Batch
from train_lib.data.base import DatasetNotFoundError
from train_lib.data.in_memory import check_batch_size
from train_lib.data.in_memory import check_divisible

_SPLITS = {
  'cifar10': ('train', 'test'),
  'cifar100': ('train', 'test'),
  'imagenet2012': ('train', 'validation'),
}
_NUM_CLASSES = {'cifar10': 10, 'cifar100': 100, 'imagenet2012': 1000}


def _prepare_hint(name: str, data_dir: str | None) -> str:
  where = data_dir or '~/tensorflow_datasets'
  manual = ''
  if name == 'imagenet2012':
    manual = (
      ' ImageNet cannot be downloaded automatically: put ILSVRC2012_img_train'
      '.tar and ILSVRC2012_img_val.tar in <data_dir>/downloads/manual first.'
    )
  return (
    f'Prepare it on a machine with internet access with\n  tfds build {name} '
    f'--file_format=array_record --data_dir={where}\n(or '
    f"tfds.builder('{name}', data_dir=...).download_and_prepare("
    'file_format="array_record")), then pass '
    f'--config.data.data_dir={where}.{manual}'
  )


@contextlib.contextmanager
def _absl_errors_only():
  """Hides tfds' absl warnings while probing for a dataset that may be absent.

  Looking for an unprepared dataset makes tfds warn ("Variant folder ... has
  no dataset_info.json") before our own error, which already says what is
  missing and how to prepare it: the launch should print that line alone.
  """
  level = logging.get_verbosity()
  logging.set_verbosity(logging.ERROR)
  try:
    yield
  finally:
    logging.set_verbosity(level)


def open_source(name: str, split: str, data_dir: str | None):
  """`tfds.data_source` without downloading; DatasetNotFoundError if absent."""
  with _absl_errors_only():
    try:
      return tfds.data_source(
        name, split=split, data_dir=data_dir, download=False
      )
    except Exception as e:  # tfds raises many types; classify them below.
      builder = tfds.builder(name, data_dir=data_dir)
      if not builder.is_prepared():
        raise DatasetNotFoundError(
          f'TFDS dataset {name!r} is not prepared in data_dir={data_dir!r}. '
          + _prepare_hint(name, data_dir)
        ) from e
      file_format = builder.info.file_format
      if 'array_record' not in str(file_format).lower():
        raise DatasetNotFoundError(
          f'TFDS dataset {name!r} in {builder.data_dir} is stored as '
          f'{file_format}, which has no random access; rebuild it as '
          'array_record. ' + _prepare_hint(name, data_dir)
        ) from e
      raise


def _seed_from_key(data_key: jax.Array) -> int:
  """A grain seed (uint32) derived deterministically from the data key."""
  return int(jax.random.bits(data_key, (), np.uint32))


class _PaddedSource:
  """The test split padded to `length` records, with a 'mask' feature."""

  def __init__(self, source, length: int):
    self._source = source
    self._length = length

  def __len__(self) -> int:
    return self._length

  def __getitem__(self, index: int):
    n = len(self._source)
    record = dict(self._source[index if index < n else 0])
    record['mask'] = np.float32(index < n)
    return record


class TfdsDataset:
  """A TFDS image classification dataset read with grain.

  Attributes:
    name: 'cifar10', 'cifar100' or 'imagenet2012'.
    num_classes, image_shape, num_train, num_test: as in `Dataset`.
  """

  def __init__(
    self,
    name: str,
    *,
    data_dir: str | None = None,
    image_size: int = 224,
    num_threads: int | None = None,
  ):
    """Opens both splits; raises DatasetNotFoundError if not prepared."""
    if name not in _SPLITS:
      raise ValueError(
        f'Unknown TFDS dataset {name!r}; one of {list(_SPLITS)}.'
      )
    if image_size < 1:
      raise ValueError(f'image_size must be positive, got {image_size}.')
    self.name = name
    self.image_size = int(image_size)
    self.num_classes = _NUM_CLASSES[name]
    train_split, test_split = _SPLITS[name]
    self._train = open_source(name, train_split, data_dir)
    self._test = open_source(name, test_split, data_dir)
    self.num_train = len(self._train)
    self.num_test = len(self._test)
    if name == 'imagenet2012':
      self.image_shape = (self.image_size, self.image_size, 3)
    else:
      self.image_shape = (32, 32, 3)
    self._mean, self._std = preprocessing.STATS[name]
    self._threads = num_threads or min(16, os.cpu_count() or 1)

  def __repr__(self) -> str:
    return (
      f'TfdsDataset({self.name!r}, image_shape={self.image_shape}, '
      f'num_train={self.num_train}, num_test={self.num_test})'
    )

  def _train_example(self, record, rng: np.random.Generator) -> dict:
    if self.name == 'imagenet2012':
      image = preprocessing.imagenet_train(
        record['image'], rng, self.image_size
      )
    else:
      image = preprocessing.normalize(record['image'], self._mean, self._std)
    return {'image': image, 'label': np.int32(record['label'])}

  def _eval_example(self, record) -> dict:
    if self.name == 'imagenet2012':
      image = preprocessing.imagenet_eval(record['image'], self.image_size)
    else:
      image = preprocessing.normalize(record['image'], self._mean, self._std)
    return {
      'image': image,
      'label': np.int32(record['label']),
      'mask': record['mask'],
    }

  def _local_batch(self, batch_size: int, sharding) -> int:
    check_divisible(batch_size, sharding)
    count = jax.process_count()
    if batch_size % count:
      raise ValueError(
        f'batch_size {batch_size} is not divisible by the {count} processes.'
      )
    return batch_size // count

  def _iterate(self, ds: grain.MapDataset, local_batch: int, sharding, n: int):
    """Yields `n` (or infinitely many if None) global batches from `ds`."""
    options = grain.ReadOptions(
      num_threads=self._threads, prefetch_buffer_size=2 * local_batch
    )
    batches = ds.to_iter_dataset(options).batch(
      local_batch, drop_remainder=True
    )
    to_global = functools.partial(
      jax.make_array_from_process_local_data, sharding
    )
    for i, local in enumerate(batches):
      if n is not None and i >= n:
        return
      yield {k: to_global(v) for k, v in local.items()}

  def train_batches(
    self,
    *,
    batch_size: int,
    data_key: jax.Array,
    start_step: int = 0,
    sharding: jax.sharding.Sharding,
  ) -> Iterator[Batch]:
    """Infinite training batches from `start_step`; see the module docstring."""
    check_batch_size(batch_size, self.num_train, 'train')
    if start_step < 0:
      raise ValueError(f'start_step must be >= 0, got {start_step}.')
    local_batch = self._local_batch(batch_size, sharding)
    ds = self.train_elements(
      data_key,
      process_index=jax.process_index(),
      process_count=jax.process_count(),
    )
    ds = ds[start_step * local_batch :]
    return self._iterate(ds, local_batch, sharding, None)

  def train_elements(
    self, data_key: jax.Array, *, process_index: int, process_count: int
  ) -> grain.MapDataset:
    """This process's infinite stream of preprocessed training examples.

    Element k is global stream element process_index + k * process_count.
    """
    seed = _seed_from_key(data_key)
    ds = grain.MapDataset.source(self._train).shuffle(seed=seed).repeat()
    ds = ds.random_map(self._train_example, seed=seed)
    return ds[process_index::process_count]

  def eval_elements(
    self, batch_size: int, *, process_index: int, process_count: int
  ) -> grain.MapDataset:
    """This process's share of the test split padded to a multiple of B."""
    num_batches = -(-self.num_test // batch_size)
    padded = _PaddedSource(self._test, num_batches * batch_size)
    ds = grain.MapDataset.source(padded).map(self._eval_example)
    return ds[process_index::process_count]

  def eval_batches(
    self, *, batch_size: int, sharding: jax.sharding.Sharding
  ) -> Iterator[Batch]:
    """One ordered pass over the test split, last batch padded (mask 0)."""
    check_batch_size(batch_size, self.num_test, 'test')
    local_batch = self._local_batch(batch_size, sharding)
    ds = self.eval_elements(
      batch_size,
      process_index=jax.process_index(),
      process_count=jax.process_count(),
    )
    num_batches = -(-self.num_test // batch_size)
    return self._iterate(ds, local_batch, sharding, num_batches)
