"""Wide Residual Networks for CIFAR (Zagoruyko & Komodakis, BMVC 2016).

The notes (seed 002, "Wide Residual Networks (WRNs)"): widening the residual
blocks instead of deepening the net. WRN-d-k has pre-activation blocks
BN-ReLU-conv3x3-BN-ReLU-(dropout)-conv3x3 (paper Fig. 1d) with widths
16k/32k/64k and (d-4)/6 blocks per stage, after a 16-filter 3x3 stem; a 1x1
projection (no norm) where the width changes, fed by the pre-activated input
as in the authors' code; a final BN-ReLU before global pooling. WRN-28-10
has 36,479,194 parameters for 10 classes.

* `wrn_cifar(depth, widen_factor)` builds any WRN-d-k; `wrn28_10_cifar`,
  `wrn16_8_cifar` and the tiny `wrn10_1_cifar_tiny` are registered.
* Options: `dropout_rate` between the two convolutions of a block (0.3 in
  the paper), stochastic depth (`drop_path_rate`, the notes' linear rule)
  and `norm='batch'|'group'` (see `nets/norms.py`).

The ImageNet wide ResNets (`wide_resnet50_2`, bottleneck blocks) are in
`nets/resnet.py`.
"""

import functools
from typing import Any

import flax.linen as nn
import jax

from nets import layers
from nets import norms
from ops import activations
from ops import pooling
from ops import regularization


class WideBlock(nn.Module):
  """Pre-activation wide basic block (Zagoruyko & Komodakis, Fig. 1d)."""

  features: int
  strides: int = 1
  dropout_rate: float = 0.0
  norm: norms.ModuleDef = norms.BatchNorm
  drop_path_rate: float = 0.0
  dtype: Any = None

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    f, dt = self.features, self.dtype
    a = activations.relu(self.norm(name='norm1')(x, train))
    y = layers.Conv(f, 3, self.strides, padding=1, dtype=dt, name='conv1')(a)
    y = activations.relu(self.norm(name='norm2')(y, train))
    y = layers.Dropout(self.dropout_rate, name='dropout')(y, train)
    y = layers.Conv(f, 3, padding=1, dtype=dt, name='conv2')(y)
    y = layers.DropPath(self.drop_path_rate, name='drop_path')(y, train)
    if x.shape[-1] != f or self.strides != 1:
      x = layers.Conv(
        f, 1, self.strides, padding=0, dtype=dt, name='proj_conv'
      )(a)
    return x + y


class WideResNet(nn.Module):
  """WRN-d-k for 32x32 NHWC images.

  Attributes:
    blocks_per_stage: n = (d - 4) / 6.
    widths: filters per stage: (16, 32, 64) times the widen factor k.
    num_classes: classifier outputs.
    dropout_rate: dropout between the two convolutions of a block.
    norm: a name of ``nets.norms.NORMS``: 'batch' or 'group'.
    drop_path_rate: stochastic depth rate of the last block (linear rule).
    dtype: computation dtype.
  """

  blocks_per_stage: int
  widths: tuple[int, int, int] = (16, 32, 64)
  num_classes: int = 10
  dropout_rate: float = 0.0
  norm: str = 'batch'
  drop_path_rate: float = 0.0
  dtype: Any = None

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    layers.check_rate(self.drop_path_rate, 'drop_path_rate')
    dt = self.dtype
    norm = norms.by_name(self.norm, dt)
    x = layers.Conv(16, 3, padding=1, dtype=dt, name='stem_conv')(x)
    n = self.blocks_per_stage
    rates = regularization.drop_path_rates(3 * n, max_rate=self.drop_path_rate)
    for i, f in enumerate(self.widths):
      for j in range(n):
        x = WideBlock(
          features=f,
          strides=2 if i > 0 and j == 0 else 1,
          dropout_rate=self.dropout_rate,
          norm=norm,
          drop_path_rate=float(rates[i * n + j]),
          dtype=dt,
          name=f'stage{i + 1}_block{j + 1}',
        )(x, train)
      self.sow('intermediates', f'stage{i + 1}', x)
    x = activations.relu(norm(name='final_norm')(x, train))
    x = pooling.global_avg_pool(x)  # [B, C]
    return layers.Dense(self.num_classes, dtype=dt, name='head')(x)


def wrn_cifar(depth: int, widen_factor: int, **kwargs: Any) -> WideResNet:
  """Wide ResNet WRN-`depth`-`widen_factor`; depth must be 6n + 4."""
  if depth < 10 or (depth - 4) % 6:
    raise ValueError(f'WRN depth must satisfy (depth-4) % 6 == 0, got {depth}')
  if widen_factor < 1:
    raise ValueError(f'widen_factor must be >= 1, got {widen_factor}')
  k = widen_factor
  return WideResNet(
    blocks_per_stage=(depth - 4) // 6,
    widths=(16 * k, 32 * k, 64 * k),
    **kwargs,
  )


wrn28_10_cifar = functools.partial(wrn_cifar, 28, 10)
wrn16_8_cifar = functools.partial(wrn_cifar, 16, 8)
wrn10_1_cifar_tiny = functools.partial(wrn_cifar, 10, 1)

MODELS: dict = {
  'wrn28_10_cifar': wrn28_10_cifar,
  'wrn16_8_cifar': wrn16_8_cifar,
  'wrn10_1_cifar_tiny': wrn10_1_cifar_tiny,
}
