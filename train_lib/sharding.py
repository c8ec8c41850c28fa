"""Data-parallel sharding over a one-axis device mesh.

The recipe of big_vision and the jax "Distributed arrays and automatic
parallelization" guide: a Mesh with a single axis 'data' over all devices;
the batch dimension of every input is sharded over it
(PartitionSpec('data')) and the training state is replicated
(PartitionSpec()). Under jax.jit the arrays are global, so means over the
batch (the loss, and BatchNorm statistics) are computed over the global
batch; XLA inserts the all-reduces.
"""

from collections.abc import Sequence
import functools
from typing import Any

import jax
from jax.sharding import Mesh
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec
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
  return NamedSharding(mesh, PartitionSpec(DATA_AXIS))


def replicated_sharding(mesh: Mesh) -> NamedSharding:
  """A full copy on every device of the mesh."""
  return NamedSharding(mesh, PartitionSpec())


def check_global_batch(batch_size: int, mesh: Mesh) -> None:
  """Raises ValueError unless `batch_size` divides evenly over the mesh."""
  num_devices = mesh.devices.size
  if batch_size <= 0 or batch_size % num_devices:
    raise ValueError(
      f'global batch size {batch_size} must be a positive multiple of the '
      f'number of devices {num_devices}'
    )


def shard_batch(batch: Any, mesh: Mesh) -> Any:
  """Places a host batch (dict of arrays) with its batch dim sharded."""
  leaves = jax.tree.leaves(batch)
  if leaves:
    check_global_batch(int(np.shape(leaves[0])[0]), mesh)
  return jax.device_put(batch, batch_sharding(mesh))


def jit_sharded(step, mesh: Mesh, *, num_args: int, donate_state: bool):
  """Jits `step(state, batch, *rest) -> outputs` for data parallelism.

  The batch is sharded on PartitionSpec('data'); the state, the other
  `num_args - 2` arguments and the outputs are replicated; with
  `donate_state` the state's buffers are reused for the new state. A global
  batch that does not divide over the devices raises a ValueError naming
  both numbers before jax sees it (jax's own error would name neither).
  """
  repl, data = replicated_sharding(mesh), batch_sharding(mesh)
  jitted = jax.jit(
    step,
    in_shardings=(repl, data) + (repl,) * (num_args - 2),
    out_shardings=repl,
    donate_argnums=(0,) if donate_state else (),
  )

  @functools.wraps(step)
  def checked(state, batch, *rest):
    check_global_batch(len(jax.tree.leaves(batch)[0]), mesh)
    return jitted(state, batch, *rest)

  checked.lower = jitted.lower
  return checked
