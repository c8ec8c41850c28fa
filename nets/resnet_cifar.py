"""CIFAR residual networks: He et al. 6n+2 ResNets and Wide ResNets.

* `resnet{20,32,44,56,110}_cifar`: He et al. 2016, Sec. 4.2. A 3x3 conv with
  16 filters, then three stages of n basic blocks with 16/32/64 filters
  (feature maps 32, 16, 8), global average pooling and a classifier: 6n+2
  weighted layers. Shortcuts are identities everywhere; where the shape
  changes they use the paper's option A: subsample by 2 and pad the new
  channels with zeros, so no shortcut has parameters (ResNet-20: 269,722).
* `wrn_cifar(depth, widen_factor)`: Zagoruyko & Komodakis 2016, WRN-d-k.
  Pre-activation blocks BN-ReLU-conv3x3-BN-ReLU-(dropout)-conv3x3 with widths
  16k/32k/64k and (d-4)/6 blocks per stage; a 1x1 projection (no BN) where
  the width changes, fed by the pre-activated input as in the authors' code.
  WRN-28-10 has 36,479,194 parameters for 10 classes.

Both support stochastic depth (`drop_path_rate`, linear rule of the notes)
and `norm='batch'|'group'`.
"""

import functools
import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from nets import layers
from ops import activations
from ops import pooling
from ops import regularization


def norm_layer(kind: str, channels: int, dtype: Any, name: str) -> nn.Module:
  """Returns the normalisation layer used after a convolution.

  Args:
    kind: 'batch' or 'group'.
    channels: number of channels it normalises (picks the group count).
    dtype: computation dtype.
    name: submodule name.

  Returns:
    A `layers.Norm`; GroupNorm uses gcd(32, channels) groups so that narrow
    layers (16 or 24 channels) still divide evenly.
  """
  if kind not in ('batch', 'group'):
    raise ValueError(f"norm must be 'batch' or 'group', got {kind!r}")
  return layers.Norm(
    kind=kind, num_groups=math.gcd(32, channels), dtype=dtype, name=name
  )


def check_drop_path(rate: float) -> None:
  """Raises ValueError unless 0 <= rate < 1."""
  if not 0.0 <= rate < 1.0:
    raise ValueError(f'drop_path_rate must be in [0, 1), got {rate}')


def shortcut_option_a(x: jax.Array, features: int, strides: int) -> jax.Array:
  """He et al.'s option A shortcut: subsample, then zero-pad channels.

  Args:
    x: [B, H, W, C] block input.
    features: output channels (>= C).
    strides: spatial subsampling factor.

  Returns:
    [B, H/strides, W/strides, features]; the extra channels are split
    evenly before and after the existing ones and are zero.
  """
  x = x[:, ::strides, ::strides, :]
  extra = features - x.shape[-1]
  if extra < 0:
    raise ValueError(f'option A cannot shrink {x.shape[-1]} to {features}')
  return jnp.pad(x, ((0, 0), (0, 0), (0, 0), (extra // 2, extra - extra // 2)))


class CifarBlock(nn.Module):
  """Post-activation basic block with an option-A shortcut."""

  features: int
  strides: int = 1
  norm: str = 'batch'
  drop_path_rate: float = 0.0
  dtype: Any = None

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    f, dt = self.features, self.dtype
    y = layers.Conv(f, 3, self.strides, padding=1, dtype=dt, name='conv1')(x)
    y = activations.relu(norm_layer(self.norm, f, dt, 'norm1')(y, train))
    y = layers.Conv(f, 3, padding=1, dtype=dt, name='conv2')(y)
    y = norm_layer(self.norm, f, dt, 'norm2')(y, train)
    y = layers.DropPath(self.drop_path_rate, name='drop_path')(y, train)
    return activations.relu(shortcut_option_a(x, f, self.strides) + y)


class WideBlock(nn.Module):
  """Pre-activation wide basic block (Zagoruyko & Komodakis, Fig. 1d)."""

  features: int
  strides: int = 1
  dropout_rate: float = 0.0
  norm: str = 'batch'
  drop_path_rate: float = 0.0
  dtype: Any = None

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    f, dt = self.features, self.dtype
    a = activations.relu(
      norm_layer(self.norm, x.shape[-1], dt, 'norm1')(x, train)
    )
    y = layers.Conv(f, 3, self.strides, padding=1, dtype=dt, name='conv1')(a)
    y = activations.relu(norm_layer(self.norm, f, dt, 'norm2')(y, train))
    y = layers.Dropout(self.dropout_rate, name='dropout')(y, train)
    y = layers.Conv(f, 3, padding=1, dtype=dt, name='conv2')(y)
    y = layers.DropPath(self.drop_path_rate, name='drop_path')(y, train)
    if x.shape[-1] != f or self.strides != 1:
      x = layers.Conv(
        f, 1, self.strides, padding=0, dtype=dt, name='proj_conv'
      )(a)
    return x + y


class CifarResNet(nn.Module):
  """He et al. CIFAR ResNet (`block='basic'`) or Wide ResNet (`'wide'`).

  Attributes:
    blocks_per_stage: n (ResNet: depth 6n+2; WRN: depth 6n+4).
    widths: filters per stage ((16, 32, 64) times the widen factor).
    block: 'basic' (post-activation, option A) or 'wide' (pre-activation).
    num_classes: classifier outputs.
    dropout_rate: WRN dropout between the two convolutions of a block.
    norm: 'batch' or 'group'.
    drop_path_rate: stochastic depth rate of the last block.
    dtype: computation dtype.
  """

  blocks_per_stage: int
  widths: tuple[int, int, int] = (16, 32, 64)
  block: str = 'basic'
  num_classes: int = 10
  dropout_rate: float = 0.0
  norm: str = 'batch'
  drop_path_rate: float = 0.0
  dtype: Any = None

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    if self.block not in ('basic', 'wide'):
      raise ValueError(f"block must be 'basic' or 'wide', got {self.block!r}")
    check_drop_path(self.drop_path_rate)
    dt = self.dtype
    x = layers.Conv(16, 3, padding=1, dtype=dt, name='stem_conv')(x)
    if self.block == 'basic':
      x = activations.relu(norm_layer(self.norm, 16, dt, 'stem_norm')(x, train))
    n = self.blocks_per_stage
    rates = regularization.drop_path_rates(3 * n, max_rate=self.drop_path_rate)
    for i, f in enumerate(self.widths):
      for j in range(n):
        kw = dict(
          features=f,
          strides=2 if i > 0 and j == 0 else 1,
          norm=self.norm,
          drop_path_rate=float(rates[i * n + j]),
          dtype=dt,
          name=f'stage{i + 1}_block{j + 1}',
        )
        if self.block == 'basic':
          x = CifarBlock(**kw)(x, train)
        else:
          x = WideBlock(dropout_rate=self.dropout_rate, **kw)(x, train)
      self.sow('intermediates', f'stage{i + 1}', x)
    if self.block == 'wide':
      x = activations.relu(
        norm_layer(self.norm, x.shape[-1], dt, 'final_norm')(x, train)
      )
    x = pooling.global_avg_pool(x)  # [B, C]
    return layers.Dense(self.num_classes, dtype=dt, name='head')(x)


def resnet_cifar(depth: int, **kwargs: Any) -> CifarResNet:
  """He et al. CIFAR ResNet with `depth` = 6n + 2 layers."""
  if depth < 8 or (depth - 2) % 6:
    raise ValueError(f'CIFAR ResNet depth must be 6n+2 (n >= 1), got {depth}')
  return CifarResNet(blocks_per_stage=(depth - 2) // 6, **kwargs)


def wrn_cifar(depth: int, widen_factor: int, **kwargs: Any) -> CifarResNet:
  """Wide ResNet WRN-`depth`-`widen_factor`; depth must be 6n + 4."""
  if depth < 10 or (depth - 4) % 6:
    raise ValueError(f'WRN depth must satisfy (depth-4) % 6 == 0, got {depth}')
  if widen_factor < 1:
    raise ValueError(f'widen_factor must be >= 1, got {widen_factor}')
  k = widen_factor
  return CifarResNet(
    blocks_per_stage=(depth - 4) // 6,
    widths=(16 * k, 32 * k, 64 * k),
    block='wide',
    **kwargs,
  )


P = functools.partial
resnet20_cifar = P(resnet_cifar, 20)
resnet32_cifar = P(resnet_cifar, 32)
resnet44_cifar = P(resnet_cifar, 44)
resnet56_cifar = P(resnet_cifar, 56)
resnet110_cifar = P(resnet_cifar, 110)
wrn28_10_cifar = P(wrn_cifar, 28, 10)
wrn16_8_cifar = P(wrn_cifar, 16, 8)
resnet8_cifar_tiny = P(resnet_cifar, 8)
wrn10_1_cifar_tiny = P(wrn_cifar, 10, 1)

MODELS: dict = {
  'resnet20_cifar': resnet20_cifar,
  'resnet32_cifar': resnet32_cifar,
  'resnet44_cifar': resnet44_cifar,
  'resnet56_cifar': resnet56_cifar,
  'resnet110_cifar': resnet110_cifar,
  'wrn28_10_cifar': wrn28_10_cifar,
  'wrn16_8_cifar': wrn16_8_cifar,
  'resnet8_cifar_tiny': resnet8_cifar_tiny,
  'wrn10_1_cifar_tiny': wrn10_1_cifar_tiny,
}
