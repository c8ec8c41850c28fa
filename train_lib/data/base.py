"""The dataset interface every data source implements, and its errors.

The training loop only sees this protocol: it asks for sharded global batches
by step (training) or one padded pass (evaluation). See `train_lib.data` for
the datasets and the ordering guarantees.
"""

from collections.abc import Iterator
from typing import Protocol

import jax

Batch = dict[str, jax.Array]


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
