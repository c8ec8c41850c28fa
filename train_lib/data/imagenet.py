"""ImageNet from a prepared TFDS directory, streamed by grain.

Records are read with their JPEG bytes (`tfds_source.open_source`); the map
functions of `jpeg_crop` crop and resize them to uint8 at reduced scale
where possible; the uint8 batch goes to the devices and is standardised
there (`normalize`); the flip is the train step's (`config.augment`).

Ordering. The training stream is the train split shuffled by grain with a
seed drawn from `data_key`, reshuffled every epoch (`shuffle().repeat()`), so
batches run on across epoch boundaries. Each element's crop is drawn from
grain's generator for its stream index (`random_map`). With P =
jax.process_count() processes, process p takes the stream elements p, p + P,
p + 2P, ... and the batches are formed on that `MapDataset`, before any
worker sees it: local batch s is exactly the process's elements
[s * B / P, (s + 1) * B / P), so the P local batches of step s together are
the global elements [s * B, (s + 1) * B). The batch depends only on
(data_key, s): a resumed run starts at batch s by random access, and the
batches are the same for any number of workers.

Workers. With `num_workers` > 0, grain's `mp_prefetch` spawns that many
processes, worker i computing batches i, i + n, ... and the main process
taking them in order; they unpickle only the data source and `jpeg_crop`'s
maps, which never call jax, so a worker never touches the accelerator.
With 0, batches are computed by threads of the training process (Pillow
decodes and resizes outside the GIL). Evaluation always uses threads: one
pass, in order, the last batch padded with masked copies of record 0.
"""

from collections.abc import Iterator
import functools

from absl import flags
import grain
import jax
import numpy as np

from ops import host
from train_lib.data import jpeg_crop
from train_lib.data import normalize
from train_lib.data import preprocessing
from train_lib.data import tfds_source
from train_lib.data.base import NUM_CLASSES
from train_lib.data.base import Batch
from train_lib.data.base import check_batch_size
from train_lib.data.base import check_divisible

_MAX_THREADS = 16
_STATS = preprocessing.STATS['imagenet2012']


def seed_from_key(data_key: jax.Array) -> int:
  """A grain seed (uint32) derived deterministically from the data key."""
  return int(jax.random.bits(data_key, (), np.uint32))


class _PaddedSource:
  """The eval split padded to `length` records, with a 'mask' feature."""

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


class ImagenetDataset:
  """imagenet2012 read with grain; batches of standardised crops.

  Attributes:
    num_classes, image_shape, num_train, num_test: as in `Dataset`.
    eval_split: 'validation' (ImageNet's test labels are not public).
    num_workers: processes computing training batches (0: threads).
  """

  name = 'imagenet2012'
  num_classes = NUM_CLASSES[name]
  eval_split = 'validation'

  def __init__(
    self,
    *,
    data_dir: str | None = None,
    image_size: int = 224,
    num_workers: int = 0,
  ):
    """Opens both splits; raises DatasetNotFoundError if not prepared."""
    if image_size < 1:
      raise ValueError(f'image_size must be positive, got {image_size}.')
    if num_workers < 0:
      raise ValueError(f'num_workers must be >= 0, got {num_workers}.')
    self.image_size = int(image_size)
    self.image_shape = (self.image_size, self.image_size, 3)
    self.num_workers = int(num_workers)
    train, test = tfds_source.SPLITS[self.name]
    self._train = tfds_source.open_source(self.name, train, data_dir)
    self._test = tfds_source.open_source(self.name, test, data_dir)
    self.num_train = len(self._train)
    self.num_test = len(self._test)
    self._threads = min(_MAX_THREADS, host.usable_cpu_count())

  def __repr__(self) -> str:
    return (
      f'ImagenetDataset(image_shape={self.image_shape}, num_train='
      f'{self.num_train}, num_test={self.num_test}, num_workers='
      f'{self.num_workers})'
    )

  def train_elements(
    self, data_key: jax.Array, *, process_index: int, process_count: int
  ) -> grain.MapDataset:
    """This process's infinite stream of uint8 training crops.

    Element k is global stream element process_index + k * process_count.
    """
    seed = seed_from_key(data_key)
    ds = grain.MapDataset.source(self._train).shuffle(seed=seed).repeat()
    ds = ds.random_map(jpeg_crop.TrainMap(self.image_size), seed=seed)
    return ds[process_index::process_count]

  def local_train_batches(
    self,
    data_key: jax.Array,
    *,
    local_batch: int,
    start_step: int = 0,
    process_index: int = 0,
    process_count: int = 1,
    num_workers: int | None = None,
  ) -> Iterator[dict[str, np.ndarray]]:
    """This process's host batches {'image' uint8, 'label'} from start_step.

    `num_workers` (default: the dataset's) changes only who computes them.
    """
    workers = self.num_workers if num_workers is None else num_workers
    ds = self.train_elements(
      data_key, process_index=process_index, process_count=process_count
    )
    ds = ds.batch(local_batch)[start_step:]
    if workers and not flags.FLAGS.is_parsed():
      # grain's worker startup reads an absl flag from its own threads, which
      # fails before the flags are parsed. Parsing them is the program's
      # call (experiments/ does it with absl.app), not a data module's.
      raise ValueError(
        f'num_workers={workers} needs parsed absl flags (grain reads them): '
        'run under absl.app, call absl.flags.FLAGS.mark_as_parsed() first, '
        'or use num_workers=0'
      )
    if workers:
      # One thread per worker process; each holds one batch ahead.
      options = grain.ReadOptions(num_threads=1, prefetch_buffer_size=1)
      it = ds.to_iter_dataset(options).mp_prefetch(
        grain.MultiprocessingOptions(num_workers=workers)
      )
    else:
      options = grain.ReadOptions(
        num_threads=self._threads, prefetch_buffer_size=self._threads
      )
      it = ds.to_iter_dataset(options)
    return iter(it)

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
    local = self.local_train_batches(
      data_key,
      local_batch=self._local_batch(batch_size, sharding),
      start_step=start_step,
      process_index=jax.process_index(),
      process_count=jax.process_count(),
    )
    return _to_device(local, sharding, None)

  def eval_elements(
    self, batch_size: int, *, process_index: int, process_count: int
  ) -> grain.MapDataset:
    """This process's share of the eval split padded to a multiple of B."""
    num_batches = -(-self.num_test // batch_size)
    padded = _PaddedSource(self._test, num_batches * batch_size)
    ds = grain.MapDataset.source(padded).map(jpeg_crop.EvalMap(self.image_size))
    return ds[process_index::process_count]

  def eval_batches(
    self, *, batch_size: int, sharding: jax.sharding.Sharding
  ) -> Iterator[Batch]:
    """One ordered pass over the eval split, last batch padded (mask 0)."""
    check_batch_size(batch_size, self.num_test, 'test')
    local_batch = self._local_batch(batch_size, sharding)
    ds = self.eval_elements(
      batch_size,
      process_index=jax.process_index(),
      process_count=jax.process_count(),
    ).batch(local_batch)
    options = grain.ReadOptions(
      num_threads=self._threads, prefetch_buffer_size=self._threads
    )
    return _to_device(iter(ds.to_iter_dataset(options)), sharding, len(ds))

  def _local_batch(self, batch_size: int, sharding) -> int:
    check_divisible(batch_size, sharding)
    count = jax.process_count()
    if batch_size % count:
      raise ValueError(
        f'batch_size {batch_size} is not divisible by the {count} processes.'
      )
    return batch_size // count


def _to_device(local: Iterator, sharding, n: int | None) -> Iterator[Batch]:
  """Global batches from host ones: uint8 sent, standardised on device."""
  to_global = functools.partial(
    jax.make_array_from_process_local_data, sharding
  )
  standardize = normalize.standardize_fn(sharding, _STATS)
  try:
    for i, batch in enumerate(local):
      if n is not None and i >= n:
        return
      out = {k: to_global(v) for k, v in batch.items()}
      out['image'] = standardize(out['image'])
      yield out
  finally:
    close = getattr(local, 'close', None)
    if close is not None:
      close()  # Stops mp_prefetch's worker processes.
