"""What every data source shares: the interface, its errors and checks.

The training loop only sees the `Dataset` protocol: it asks for sharded
global batches by step (training) or one padded pass (evaluation). See
`train_lib.data` for the datasets and the ordering guarantees. Beside it
live the facts and checks the sources have in common, each written once:
the class counts (`NUM_CLASSES`), the batch-size checks, and the decode of
encoded images to RGB (`decode_rgb`, `as_rgb`), which ImageNet's map
functions call from grain's worker processes.
"""

from collections.abc import Iterator
import io
from typing import Protocol

import jax
import numpy as np
from PIL import Image

Batch = dict[str, jax.Array]

NUM_CLASSES = {
  'mnist': 10,
  'digits': 10,
  'mnist1d': 10,
  'cifar10': 10,
  'cifar100': 100,
  'imagenet2012': 1000,
}


class DatasetNotFoundError(ValueError):
  """A TFDS dataset is not prepared in the given data_dir."""


class Dataset(Protocol):
  """A classification dataset that yields sharded global batches.

  Attributes:
    num_classes: number of classes.
    image_shape: shape of one example, e.g. (28, 28, 1) or (40, 1).
    num_train: number of training examples.
    num_test: number of test examples.
  """

  num_classes: int
  image_shape: tuple[int, ...]
  num_train: int
  num_test: int

  def train_batches(
    self,
    *,
    batch_size: int,
    data_key: jax.Array,
    start_step: int,
    sharding: jax.sharding.Sharding,
  ) -> Iterator[Batch]:
    """Infinite batches; the batch at step s depends only on (data_key, s).

    Yields {'image': float32 [B, ...], 'label': int32 [B]}, global arrays with
    `sharding` (batch dimension over the mesh's 'data' axis).
    """
    ...

  def eval_batches(
    self, *, batch_size: int, sharding: jax.sharding.Sharding
  ) -> Iterator[Batch]:
    """One pass over the test split in order, last batch padded.

    Yields {'image', 'label', 'mask'}; 'mask' is float32 [B], 1 for real
    examples and 0 for padding, so every test example counts exactly once.
    """
    ...


def check_batch_size(batch_size: int, n: int, split: str) -> None:
  """Raises ValueError unless 1 <= batch_size (and <= n for training)."""
  if batch_size < 1:
    raise ValueError(f'batch_size must be positive, got {batch_size}.')
  if split == 'train' and batch_size > n:
    raise ValueError(
      f'batch_size {batch_size} exceeds the {n} training examples.'
    )


def check_divisible(batch_size: int, sharding: jax.sharding.Sharding) -> None:
  """Raises ValueError if `sharding` cannot split a batch of `batch_size`."""
  try:
    sharding.shard_shape((batch_size,))
  except ValueError as e:  # jax's IndivisibleError is a ValueError
    raise ValueError(
      f'batch_size {batch_size} is not divisible by the number of batch '
      f'shards of {sharding}.'
    ) from e


def open_image(data: bytes) -> Image.Image:
  """Opens encoded image bytes; only the header is read until pixels are."""
  return Image.open(io.BytesIO(data))


def as_rgb(image: Image.Image | np.ndarray) -> Image.Image:
  """An image in RGB mode: greyscale, palette and CMYK are converted.

  A uint8 array [H, W], [H, W, 1] or [H, W, 3] is taken as pixels.
  """
  if not isinstance(image, Image.Image):
    image = np.asarray(image)
    if image.ndim == 3 and image.shape[-1] == 1:
      image = image[..., 0]
    image = Image.fromarray(image)
  return image if image.mode == 'RGB' else image.convert('RGB')


def decode_rgb(data: bytes) -> np.ndarray:
  """Encoded image bytes (PNG, JPEG...) -> uint8 [H, W, 3], with Pillow."""
  return np.asarray(as_rgb(open_image(data)))
