"""uint8 pixels -> standardised float32, on the device.

CIFAR (held in device memory as uint8) and ImageNet (crops sent as uint8)
keep their pixels as bytes up to the accelerator: a quarter of the memory
and of the host-to-device transfer of float32. This is the one place that
turns them into the network's input, (pixels / 255 - mean) / std per
channel, with the statistics of `preprocessing.STATS`; it runs jitted on the
global batch with the batch's sharding, so each device standardises its own
shard.
"""

import functools

import jax
import jax.numpy as jnp

from ops import normalization

Stats = tuple[tuple[float, ...], tuple[float, ...]]  # (mean, std)


def standardize(pixels: jax.Array, stats: Stats) -> jax.Array:
  """uint8 [..., C] -> float32 (pixels / 255 - mean) / std over channels."""
  mean, std = stats
  x = pixels.astype(jnp.float32) / 255.0
  return normalization.standardize_with(x, mean, std)


@functools.cache
def standardize_fn(sharding: jax.sharding.Sharding, stats: Stats):
  """`standardize` jitted for global batches with `sharding` in and out."""
  return jax.jit(
    functools.partial(standardize, stats=stats), out_shardings=sharding
  )
