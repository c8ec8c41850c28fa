"""Small datasets held in device memory, batched by a jitted gather.

Each split is uploaded once, replicated over the devices of the batch
sharding's mesh; the batch for a step is a jitted gather whose output sharding
is the batch sharding, so the batch dimension is split over the mesh's 'data'
axis and no host work is done per step beyond computing the indices.

Ordering (the contract of `train_batches`): with `steps_per_epoch =
num_train // batch_size` (the remainder is dropped), the batch for step `s`
holds the examples `perm[j * B:(j + 1) * B]` where `epoch, j =
divmod(s, steps_per_epoch)` and `perm = jax.random.permutation(
fold_in(data_key, epoch), num_train)`. It depends only on `(data_key, s)`, so a
resumed run sees the same batches.

Pixels may be kept as uint8 (CIFAR: a quarter of the device memory of
float32) with the statistics to standardise them (`pixel_stats`): the jitted
gather then returns standardised float32 batches (train_lib.data.normalize).

Multi-process: every process holds the whole (small) split on the host and
builds the global arrays with `jax.make_array_from_callback`, which only asks
it for the shards of its addressable devices; the gather indices are computed
identically on every process. The replicated split and the indices are
therefore ordinary global arrays and the gather is one SPMD program.
"""

from collections.abc import Iterator
import functools

import jax
import jax.numpy as jnp
import numpy as np

from train_lib.data import normalize
from train_lib.data.base import Batch
from train_lib.data.base import check_batch_size
from train_lib.data.base import check_divisible


def replicated_like(sharding: jax.sharding.Sharding) -> jax.sharding.Sharding:
  """A fully replicated sharding over the devices of `sharding`."""
  if isinstance(sharding, jax.sharding.NamedSharding):
    return jax.sharding.NamedSharding(
      sharding.mesh, jax.sharding.PartitionSpec()
    )
  if len(sharding.device_set) == 1:
    return sharding
  raise ValueError(
    'Expected a NamedSharding (batch sharded over a mesh) or a single-device '
    f'sharding, got {sharding!r}.'
  )


def global_array(
  value: np.ndarray, sharding: jax.sharding.Sharding
) -> jax.Array:
  """A global array from a host array every process holds in full.

  Each process only materialises the shards of its addressable devices, which
  is what makes this correct with `jax.process_count() > 1`.
  """
  value = np.asarray(value)
  return jax.make_array_from_callback(
    value.shape, sharding, lambda index: value[index]
  )


def epoch_permutation(data_key: jax.Array, epoch: int, n: int) -> np.ndarray:
  """The order of the `n` training examples in `epoch`, as host int32."""
  key = jax.random.fold_in(data_key, epoch)
  return np.asarray(jax.random.permutation(key, n), dtype=np.int32)


@functools.cache
def _gather_fn(
  sharding: jax.sharding.Sharding, stats: normalize.Stats | None = None
):
  """A jitted `(images, labels, idx) -> batch` with batch `sharding`.

  With `stats`, uint8 images are standardised to float32 on the way out.
  """

  def gather(images, labels, idx):
    images = jnp.take(images, idx, axis=0)
    if stats is not None:
      images = normalize.standardize(images, stats)
    return {'image': images, 'label': jnp.take(labels, idx, axis=0)}

  return jax.jit(gather, out_shardings={'image': sharding, 'label': sharding})


class InMemoryDataset:
  """A classification dataset small enough to live on every device.

  Attributes:
    name: dataset name.
    num_classes: number of classes.
    image_shape: shape of one example, e.g. (28, 28, 1) or (40, 1).
    num_train: training examples.
    num_test: examples of the evaluation split (host key 'test').
    eval_split: what that split is: 'test', or 'validation' when it was
      carved out of the training data (`get_dataset`).
  """

  def __init__(
    self,
    *,
    name: str,
    train: tuple[np.ndarray, np.ndarray],
    test: tuple[np.ndarray, np.ndarray],
    num_classes: int,
    eval_split: str = 'test',
    pixel_stats: normalize.Stats | None = None,
  ):
    """Wraps host arrays: images float32 [N, ...], labels int [N].

    With `pixel_stats` = (mean, std) per channel, images are uint8 pixels,
    kept as such, and batches are standardised on device.
    """
    self.name = name
    self.pixel_stats = pixel_stats
    self.eval_split = eval_split
    self.num_classes = int(num_classes)
    self._host = {}
    for split, (images, labels) in (('train', train), ('test', test)):
      dtype = np.float32 if pixel_stats is None else np.uint8
      if pixel_stats is not None and np.asarray(images).dtype != np.uint8:
        raise ValueError(f'{name} {split}: pixel_stats needs uint8 images.')
      images = np.asarray(images, dtype)
      labels = np.asarray(labels, np.int32)
      if labels.ndim != 1 or images.shape[:1] != labels.shape:
        raise ValueError(
          f'{name} {split}: images of shape {images.shape} but labels of '
          f'shape {labels.shape}.'
        )
      # Checked here: inside the jitted step a label outside the classes
      # gives a NaN or silently wrong loss, not an error.
      outside = (labels < 0) | (labels >= self.num_classes)
      if outside.any():
        raise ValueError(
          f'{name} {split}: label {labels[outside][0]} is outside '
          f'[0, {self.num_classes}) ({int(outside.sum())} such labels).'
        )
      self._host[split] = (images, labels)
    self.image_shape = tuple(self._host['train'][0].shape[1:])
    self.num_train = int(self._host['train'][1].shape[0])
    self.num_test = int(self._host['test'][1].shape[0])
    self._device = {}

  def __repr__(self) -> str:
    return (
      f'InMemoryDataset({self.name!r}, image_shape={self.image_shape}, '
      f'num_classes={self.num_classes}, num_train={self.num_train}, '
      f'num_test={self.num_test}, eval_split={self.eval_split!r})'
    )

  def host_arrays(self, split: str) -> tuple[np.ndarray, np.ndarray]:
    """The (images, labels) host arrays of 'train' or 'test'.

    Images are float32, or uint8 pixels when the dataset has `pixel_stats`.
    """
    return self._host[split]

  def _on_device(self, split: str, replicated: jax.sharding.Sharding):
    """The split as replicated global arrays, uploaded once per sharding."""
    cache_key = (split, replicated)
    if cache_key not in self._device:
      images, labels = self._host[split]
      self._device[cache_key] = (
        global_array(images, replicated),
        global_array(labels, replicated),
      )
    return self._device[cache_key]

  def train_batches(
    self,
    *,
    batch_size: int,
    data_key: jax.Array,
    start_step: int = 0,
    sharding: jax.sharding.Sharding,
  ) -> Iterator[Batch]:
    """Infinite shuffled training batches from `start_step` on.

    Args:
      batch_size: global batch size.
      data_key: PRNG key of the data order.
      start_step: step of the first batch (resume).
      sharding: sharding of the batch arrays (batch dim over 'data').

    Yields:
      {'image': float32 [B, *image_shape], 'label': int32 [B]}.
    """
    check_batch_size(batch_size, self.num_train, 'train')
    check_divisible(batch_size, sharding)
    if start_step < 0:
      raise ValueError(f'start_step must be >= 0, got {start_step}.')
    replicated = replicated_like(sharding)
    images, labels = self._on_device('train', replicated)
    gather = _gather_fn(sharding, self.pixel_stats)
    steps_per_epoch = self.num_train // batch_size
    epoch, perm = -1, None
    step = start_step
    while True:
      step_epoch, j = divmod(step, steps_per_epoch)
      if step_epoch != epoch:
        epoch = step_epoch
        perm = epoch_permutation(data_key, epoch, self.num_train)
      idx = perm[j * batch_size : (j + 1) * batch_size]
      yield gather(images, labels, global_array(idx, replicated))
      step += 1

  def eval_batches(
    self, *, batch_size: int, sharding: jax.sharding.Sharding
  ) -> Iterator[Batch]:
    """One ordered pass over the test split, the last batch padded.

    Yields:
      {'image', 'label', 'mask'}: mask float32 [B] is 1 for real examples and
      0 for the padding (copies of example 0) of the last batch.
    """
    check_batch_size(batch_size, self.num_test, 'test')
    check_divisible(batch_size, sharding)
    replicated = replicated_like(sharding)
    images, labels = self._on_device('test', replicated)
    gather = _gather_fn(sharding, self.pixel_stats)
    for start in range(0, self.num_test, batch_size):
      idx = np.arange(start, start + batch_size)
      mask = (idx < self.num_test).astype(np.float32)
      idx = np.where(idx < self.num_test, idx, 0).astype(np.int32)
      batch = gather(images, labels, global_array(idx, replicated))
      batch['mask'] = global_array(mask, sharding)
      yield batch
