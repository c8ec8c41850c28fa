"""Data-parallel sharding over a one-axis device mesh.

The recipe of big_vision and the jax "Distributed arrays and automatic
parallelization" guide: a Mesh with a single axis 'data' over all devices;
the batch dimension of every input is sharded over it (P('data')) and the
training state is replicated (P()). Under jax.jit the arrays are global, so
means over the batch (the loss, and BatchNorm statistics) are computed over
the global batch; XLA inserts the all-reduces.
"""

from collections.abc import Sequence
from typing import Any

import jax
from jax.sharding import Mesh
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P
import numpy as np

DATA_AXIS = 'data'


def make_mesh(devices: Sequence[jax.Device] | None = None) -> Mesh:
  """Returns a 1-D mesh with axis 'data' over `devices` (default: all)."""
  devices = jax.devices() if devices is None else list(devices)
  if not devices:
    raise ValueError('make_mesh needs at least one device')
  return Mesh(np.asarray(devices), (DATA_AXIS,))


def batch_sharding(mesh: Mesh) -> NamedSharding:
  """Leading (batch) dimension split over 'data', other dims whole."""
  return NamedSharding(mesh, P(DATA_AXIS))


def replicated_sharding(mesh: Mesh) -> NamedSharding:
  """A full copy on every device of the mesh."""
  return NamedSharding(mesh, P())


def check_global_batch(batch_size: int, mesh: Mesh) -> None:
  """Raises ValueError unless `batch_size` divides evenly over the mesh."""
  num_devices = mesh.devices.size
  if batch_size <= 0 or batch_size % num_devices:
    raise ValueError(
      f'global batch size {batch_size} must be a positive multiple of the '
      f'number of devices {num_devices}'
    )


def replicate(tree: Any, mesh: Mesh) -> Any:
  """Places every array of `tree` on all devices of `mesh`."""
  return jax.device_put(tree, replicated_sharding(mesh))


def shard_batch(batch: Any, mesh: Mesh) -> Any:
  """Places a host batch (dict of arrays) with its batch dim sharded."""
  leaves = jax.tree.leaves(batch)
  if leaves:
    check_global_batch(int(np.shape(leaves[0])[0]), mesh)
  return jax.device_put(batch, batch_sharding(mesh))
