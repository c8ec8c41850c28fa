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

Choosing the count (`num_workers` = -1, the launcher's default). Which is
fastest is the machine's business: on a 2-core AMD EPYC, 0 workers gave 916
images/s, 1 gave 483 and 2 gave 848, so "one per CPU" was the slow choice.
The first training stream of a machine (per image size, dataset size and
local batch) therefore times a short burst of batches with each of
`worker_candidates(cores)` (`measure_rate`, about 2 s each, start-up
excluded; counts are tried upwards until one is 10% slower than a smaller
one) and takes the most images per wall-second: about 15 s once on 2 cores.
`ops.choice_cache` keeps the choice, so later runs reuse it without
measuring (on a busy machine it may be off: delete the file, or set the
count). Worker start-up (spawn and imports: a few seconds) is left out of
the rates because it is paid once per run, not per batch. The measurement
times the input alone: a training step sharing the CPUs changes what is
best only where the host computes the model too. Batches do not depend on
the count (tests/train_lib/test_data_tfds_slow.py,
`test_batches_do_not_depend_on_the_worker_count`), so the choice never
changes a result, only its speed, and each of several processes may choose
its own. Worker processes need parsed absl flags (below): without them -1
means 0, unmeasured.
"""

from collections.abc import Iterator
import functools
import time

from absl import flags
from absl import logging
import grain
import jax
import numpy as np
import PIL

from ops import choice_cache
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
AUTO = -1  # `num_workers`: measure the candidates once per machine.
MEASURE_SECONDS = 2.0  # Per candidate, after its start-up.
_MAX_WORKERS = 32
# Counts are tried upwards; the search stops at one this much slower than
# the best smaller count (more workers than that only contend more).
_STOP_BELOW = 0.9


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
    num_workers: processes computing training batches (0: threads; -1:
      measured at the first training stream, `workers_for`).
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
    if num_workers < AUTO:
      raise ValueError(
        f'num_workers must be >= 0, or -1 to measure, got {num_workers}.'
      )
    self.image_size = int(image_size)
    self.image_shape = (self.image_size, self.image_size, 3)
    self.num_workers = int(num_workers)
    train, test = tfds_source.SPLITS[self.name]
    self._train = tfds_source.open_source(self.name, train, data_dir)
    self._test = tfds_source.open_source(self.name, test, data_dir)
    self.num_train = len(self._train)
    self.num_test = len(self._test)
    self._threads = min(_MAX_THREADS, host.usable_cpu_count())
    self._chosen: dict[int, int] = {}  # local batch -> measured count

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
    if workers < AUTO:
      raise ValueError(f'num_workers must be >= -1, got {workers}.')
    if workers == AUTO:
      workers = self.workers_for(local_batch)
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

  def workers_for(self, local_batch: int) -> int:
    """The worker count of this process's training stream (-1 resolved)."""
    if self.num_workers != AUTO:
      return self.num_workers
    if local_batch not in self._chosen:
      self._chosen[local_batch] = choose_workers(self, local_batch)
    return self._chosen[local_batch]

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


def worker_candidates(cores: int) -> list[int]:
  """0 (threads), then 1, 2, 4, ... below `cores` (at most 32), and that."""
  top = min(cores, _MAX_WORKERS)
  counts, n = [0], 1
  while n < top:
    counts.append(n)
    n *= 2
  return [*counts, top] if top >= 1 else counts


def _close(it) -> None:
  close = getattr(it, 'close', None)
  if close is not None:
    close()  # Stops mp_prefetch's worker processes.


def measure_rate(
  ds: ImagenetDataset,
  *,
  local_batch: int,
  workers: int,
  seconds: float = MEASURE_SECONDS,
) -> float:
  """Training images per wall-second with `workers`, start-up excluded.

  The first round (one batch per worker, or one batch for threads) is
  taken untimed: it holds the spawn and imports, and the batches the other
  workers finished meanwhile. Then batches are taken until `seconds` have
  passed and at least one more round has come. The module hook that
  `choose_workers` calls; tests replace it.
  """
  it = ds.local_train_batches(
    jax.random.key(0), local_batch=local_batch, num_workers=workers
  )
  per_round = max(1, workers)
  try:
    for _ in range(per_round):
      next(it)
    start, count = time.perf_counter(), 0
    while count < per_round or time.perf_counter() - start < seconds:
      next(it)
      count += 1
    return count * local_batch / (time.perf_counter() - start)
  finally:
    _close(it)


def workers_cache(
  image_size: int, directory: str | None = None
) -> choice_cache.ChoiceCache:
  """This machine's measured worker counts for crops of `image_size`."""
  context = {
    'grain': getattr(grain, '__version__', 'unknown'),
    'pillow': PIL.__version__,
    'image_size': str(image_size),
  }
  return choice_cache.ChoiceCache('input_workers', context, directory)


def workers_key(ds: ImagenetDataset, local_batch: int) -> str:
  """What a measured count is kept under in `workers_cache`."""
  return f'{ds.name}/train/n={ds.num_train}/batch={local_batch}'


def choose_workers(
  ds: ImagenetDataset,
  local_batch: int,
  *,
  cache: choice_cache.ChoiceCache | None = None,
  seconds: float = MEASURE_SECONDS,
) -> int:
  """The fastest worker count for `ds`'s training stream on this machine.

  Read from `cache` (default: `workers_cache(ds.image_size)`, keyed by the
  split's size and `local_batch`), else measured with `measure_rate` over
  `worker_candidates` and written there; one INFO line either way.
  Without parsed absl flags no worker can start: 0, unmeasured.
  """
  if not flags.FLAGS.is_parsed():
    logging.info('input workers: 0 (threads); absl flags are not parsed')
    return 0
  cache = workers_cache(ds.image_size) if cache is None else cache
  key = workers_key(ds, local_batch)
  known = cache.get(key)
  known = known.get('workers') if isinstance(known, dict) else None
  if isinstance(known, int) and known >= 0:
    logging.info('input workers: %d, measured before (%s)', known, cache.path)
    return known
  rates = {}
  for workers in worker_candidates(host.usable_cpu_count()):
    fewer = [rate for n, rate in rates.items() if n]
    rates[workers] = measure_rate(
      ds, local_batch=local_batch, workers=workers, seconds=seconds
    )
    if fewer and rates[workers] < _STOP_BELOW * max(fewer):
      break
  best = max(rates, key=rates.get)  # the fewest workers on a tie
  shown = ', '.join(f'{n}: {rate:,.0f}' for n, rate in rates.items())
  logging.info(
    'input workers: %d; images per wall-s by workers {%s} (%s, kept in %s)',
    *(best, shown, key, cache.path or 'memory'),
  )
  stored = {str(n): rate for n, rate in rates.items()}  # JSON keys
  cache.put(key, {'workers': best, 'images_per_s': stored})
  return best


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
    _close(local)
