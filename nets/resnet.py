"""ResNet family: the residual blocks and every net built from them.

Implements the residual block of the lecture notes (seed 002, "Residual
building block"), x_l = H_l(x_{l-1}) + x_{l-1} (He et al., "Deep residual
learning for image recognition", CVPR 2016), with the torchvision layout so
that parameter counts match it exactly:

* a norm after every convolution (BatchNorm unless `norm='group'`), no
  convolution biases;
* bottleneck blocks put the stride on the 3x3 convolution ("ResNet v1.5");
  `stride_in_1x1=True` gives the paper's v1 placement (3.86G instead of
  4.09G MACs for ResNet-50; the SE paper's SE-ResNet-50 figure is v1's);
* projection shortcuts (1x1 conv + norm) only where the shape changes
  (the paper's option B); `shortcut='a'` gives option A instead (subsample
  and zero-pad the channels, no parameters), the shortcuts of the notes'
  plain-vs-residual figure, "the residual networks have no extra parameter
  compared to their plain counterparts".

Relatives built from the same blocks:

* plain networks (`plain18` ...): the notes' degradation experiment. Every
  shortcut is removed, the projection shortcuts too, so a plain net is the
  residual net minus its projection convolutions (plain18: 11,515,688
  params; plain50: 22,780,456). Stochastic depth needs a shortcut, so plain
  nets reject `drop_path_rate > 0`.
* Wide ResNet-50-2/101-2 (Zagoruyko & Komodakis 2016): bottleneck width x2.
  (The CIFAR WRNs, pre-activation nets, are in `nets/wide_resnet.py`.)
* ResNeXt (Xie et al. 2017): grouped 3x3 convolution, cardinality 32.
* SE-ResNet / SE-ResNeXt (Hu et al. 2018): a squeeze-excitation block on the
  residual branch, before the addition.
* CIFAR: `resnet18_cifar` (ResNet-18 with a 3x3 stride-1 stem and no
  max-pool) and He et al.'s 6n+2 nets `resnet{20,32,44,56,110}_cifar`
  (Sec. 4.2: a 16-filter 3x3 stem, three stages of n basic blocks with
  16/32/64 filters, option-A shortcuts everywhere; ResNet-20: 269,722
  parameters).

Blocks take their norm as a module constructor (`norm: ModuleDef`, as in
flax's examples/imagenet); the `ResNet` module takes the config's name
(`norm='batch'|'group'`) and builds it with `nets.norms.by_name`.

Stochastic depth (Huang et al. 2016, the notes' "DropPath"): block l of L
drops its residual branch with probability l/L * drop_path_rate (linear rule
of ops.regularization), drawing from the 'dropout' rng stream.

1-D signals (`spatial_dims=1`, basic blocks and the 'cifar' stem): MNIST-1D
signals [B, L] or [B, L, C] run as [B, L, 1, C] with k x 1 kernels, as
`nets.small_cnn.cnn1d` does, so `resnet_cifar(56, spatial_dims=1)` is He et
al.'s 6n+2 net on signals (every 3x3 kernel becomes 3 x 1: a third of the
parameters). Option A needs no change: subsampling a width of 1 keeps it.
"""

from collections.abc import Sequence
import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from nets import layers
from nets import norms
from ops import activations
from ops import pooling
from ops import regularization


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


def conv_geometry(spatial_dims: int, kernel: int, strides: int) -> dict:
  """`layers.Conv` kernel, strides and padding of a k x k ('same') conv.

  Args:
    spatial_dims: 2 (images: k x k) or 1 (signals stored [B, L, 1, C]: k x 1,
      no padding or stride along the unit width).
    kernel: odd kernel width k.
    strides: the stride along the signal (and the width, for images).

  Returns:
    {'kernel_size', 'strides', 'padding'} for `layers.Conv`.
  """
  if spatial_dims == 2:
    return dict(kernel_size=kernel, strides=strides, padding=kernel // 2)
  if spatial_dims == 1:
    pad = ((kernel // 2, kernel // 2), (0, 0))
    return dict(kernel_size=(kernel, 1), strides=(strides, 1), padding=pad)
  raise ValueError(f'spatial_dims must be 1 or 2, got {spatial_dims}')


class BasicBlock(nn.Module):
  """Two 3x3 convolutions (ResNet-18/34, the CIFAR ResNets)."""

  features: int
  strides: int = 1
  residual: bool = True
  norm: norms.ModuleDef = norms.BatchNorm
  drop_path_rate: float = 0.0
  se_reduction: int = 0
  shortcut: str = 'b'
  spatial_dims: int = 2
  dtype: Any = None

  expansion = 1

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    f, dt, dims = self.features, self.dtype, self.spatial_dims
    first = conv_geometry(dims, 3, self.strides)
    y = layers.Conv(f, **first, dtype=dt, name='conv1')(x)
    y = activations.relu(self.norm(name='norm1')(y, train))
    y = layers.Conv(f, **conv_geometry(dims, 3, 1), dtype=dt, name='conv2')(y)
    y = self.norm(name='norm2')(y, train)
    return _merge(self, x, y, f, train)


class Bottleneck(nn.Module):
  """1x1 reduce, 3x3 (optionally grouped), 1x1 expand (ResNet-50 and up).

  The inner width is `features * base_width / 64 * groups`, which gives
  ResNet (64, 1), Wide ResNet (128, 1) and ResNeXt (4 or 8, 32).
  """

  features: int
  strides: int = 1
  residual: bool = True
  norm: norms.ModuleDef = norms.BatchNorm
  drop_path_rate: float = 0.0
  se_reduction: int = 0
  groups: int = 1
  base_width: int = 64
  stride_in_1x1: bool = False
  shortcut: str = 'b'
  dtype: Any = None

  expansion = 4

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    dt = self.dtype
    width = int(self.features * self.base_width / 64) * self.groups
    out = self.features * self.expansion
    s1, s3 = (self.strides, 1) if self.stride_in_1x1 else (1, self.strides)
    y = layers.Conv(width, 1, s1, padding=0, dtype=dt, name='conv1')(x)
    y = activations.relu(self.norm(name='norm1')(y, train))
    y = layers.Conv(
      width, 3, s3, padding=1, groups=self.groups, dtype=dt, name='conv2'
    )(y)
    y = activations.relu(self.norm(name='norm2')(y, train))
    y = layers.Conv(out, 1, padding=0, dtype=dt, name='conv3')(y)
    y = self.norm(name='norm3')(y, train)
    return _merge(self, x, y, out, train)


def _merge(
  block: nn.Module, x: jax.Array, y: jax.Array, out: int, train: bool
) -> jax.Array:
  """SE gate, stochastic depth and shortcut addition shared by both blocks.

  Must be called from inside the block's compact `__call__` (it creates the
  block's 'se', 'drop_path', 'proj_conv' and 'proj_norm' submodules).
  """
  if block.se_reduction:
    y = layers.SEBlock(
      reduction=block.se_reduction, dtype=block.dtype, name='se'
    )(y)
  if not block.residual:
    return activations.relu(y)
  y = layers.DropPath(block.drop_path_rate, name='drop_path')(y, train)
  if block.shortcut == 'a':
    x = shortcut_option_a(x, out, block.strides)
  elif x.shape[-1] != out or block.strides != 1:
    geometry = conv_geometry(
      getattr(block, 'spatial_dims', 2), 1, block.strides
    )
    x = layers.Conv(out, **geometry, dtype=block.dtype, name='proj_conv')(x)
    x = block.norm(name='proj_norm')(x, train)
  return activations.relu(x + y)


class ResNet(nn.Module):
  """ResNet / plain net / WRN / ResNeXt / SE-ResNet for NHWC images.

  Attributes:
    stage_sizes: blocks per stage, e.g. (3, 4, 6, 3) for ResNet-50.
    block: BasicBlock or Bottleneck.
    num_classes: classifier outputs.
    widths: base features per stage (block outputs are x block.expansion).
    stem: 'imagenet' (7x7/2 conv + 3x3/2 max-pool) or 'cifar' (3x3/1 conv).
    residual: False gives the plain counterpart (no shortcuts at all).
    groups, base_width: ResNeXt cardinality / Wide ResNet width.
    se_reduction: 0 (off) or the SE reduction ratio (16 in Hu et al.).
    stride_in_1x1: v1 bottlenecks (stride on the first 1x1 conv).
    shortcut: 'b' (projection where the shape changes, torchvision) or 'a'
      (parameter-free subsample and zero-pad, He et al. option A).
    norm: a name of ``nets.norms.NORMS``: 'batch' or 'group'.
    drop_path_rate: stochastic depth rate of the last block (linear rule).
    spatial_dims: 2 (NHWC images) or 1 (signals [B, L] or [B, L, C], run
      as [B, L, 1, C] with k x 1 kernels; basic blocks, 'cifar' stem only).
    dtype: computation dtype (params stay float32).
  """

  stage_sizes: Sequence[int]
  block: Any = BasicBlock
  num_classes: int = 1000
  widths: Sequence[int] = (64, 128, 256, 512)
  stem: str = 'imagenet'
  residual: bool = True
  groups: int = 1
  base_width: int = 64
  se_reduction: int = 0
  stride_in_1x1: bool = False
  shortcut: str = 'b'
  norm: str = 'batch'
  drop_path_rate: float = 0.0
  spatial_dims: int = 2
  dtype: Any = None

  def _block(self, i: int, j: int, rate: float) -> nn.Module:
    kw = dict(
      features=self.widths[i],
      strides=2 if i > 0 and j == 0 else 1,
      residual=self.residual,
      norm=norms.by_name(self.norm, self.dtype),
      drop_path_rate=rate,
      se_reduction=self.se_reduction,
      shortcut=self.shortcut,
      dtype=self.dtype,
      name=f'stage{i + 1}_block{j + 1}',
    )
    if self.block is Bottleneck:
      kw.update(
        groups=self.groups,
        base_width=self.base_width,
        stride_in_1x1=self.stride_in_1x1,
      )
    elif self.groups != 1 or self.base_width != 64:
      raise ValueError('groups/base_width need Bottleneck blocks')
    else:
      kw.update(spatial_dims=self.spatial_dims)
    return self.block(**kw)

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    layers.check_rate(self.drop_path_rate, 'drop_path_rate')
    if self.shortcut not in ('a', 'b'):
      raise ValueError(f"shortcut must be 'a' or 'b', got {self.shortcut!r}")
    if not self.residual and self.drop_path_rate > 0:
      raise ValueError('plain networks have no shortcut for stochastic depth')
    dt, c0 = self.dtype, self.widths[0]
    norm = norms.by_name(self.norm, dt)
    if self.spatial_dims == 1:
      x = _as_signal_image(x, self)
    elif self.spatial_dims != 2:
      raise ValueError(f'spatial_dims must be 1 or 2, got {self.spatial_dims}')
    if self.stem == 'imagenet':
      x = layers.Conv(c0, 7, 2, padding=3, dtype=dt, name='stem_conv')(x)
      x = activations.relu(norm(name='stem_norm')(x, train))
      x = layers.MaxPool(3, 2, padding=1, name='stem_pool')(x)  # H/4, W/4
    elif self.stem == 'cifar':
      geometry = conv_geometry(self.spatial_dims, 3, 1)
      x = layers.Conv(c0, **geometry, dtype=dt, name='stem_conv')(x)
      x = activations.relu(norm(name='stem_norm')(x, train))
    else:
      raise ValueError(f"stem must be 'imagenet' or 'cifar', got {self.stem!r}")
    rates = regularization.drop_path_rates(
      sum(self.stage_sizes), max_rate=self.drop_path_rate
    )
    k = 0
    for i, n in enumerate(self.stage_sizes):
      for j in range(n):
        x = self._block(i, j, float(rates[k]))(x, train)
        k += 1
      self.sow('intermediates', f'stage{i + 1}', x)
    x = pooling.global_avg_pool(x)  # [B, C]
    return layers.Dense(self.num_classes, dtype=dt, name='head')(x)


def _as_signal_image(x: jax.Array, net: ResNet) -> jax.Array:
  """[B, L] or [B, L, C] signals -> [B, L, 1, C] for a 1-D ResNet."""
  if net.block is not BasicBlock or net.stem != 'cifar':
    raise ValueError("spatial_dims=1 needs basic blocks and stem='cifar'")
  if x.ndim == 2:
    x = x[..., None]
  if x.ndim != 3:
    raise ValueError(f'a 1-D ResNet needs [B, L] or [B, L, C], got {x.shape}')
  return x[:, :, None, :]


def resnet_cifar(depth: int, **kwargs: Any) -> ResNet:
  """He et al.'s CIFAR ResNet with `depth` = 6n + 2 layers (Sec. 4.2).

  A 3x3 conv with 16 filters, three stages of n basic blocks with 16/32/64
  filters (feature maps 32, 16, 8), global average pooling and a classifier,
  with option-A shortcuts everywhere, so no shortcut has parameters and
  `residual=False` gives the plain twin with exactly the same parameters
  (the notes' plain-vs-residual figure, He et al. Fig. 6).

  Args:
    depth: 6n + 2 (20, 32, 44, 56, 110, ...).
    **kwargs: other ResNet attributes (num_classes defaults to 10, widths to
      the paper's (16, 32, 64); narrower widths give cheaper twins;
      `spatial_dims=1` gives the same net on 1-D signals, e.g. MNIST-1D).

  Returns:
    The ResNet module.
  """
  if depth < 8 or (depth - 2) % 6:
    raise ValueError(f'CIFAR ResNet depth must be 6n+2 (n >= 1), got {depth}')
  n = (depth - 2) // 6
  kwargs.setdefault('num_classes', 10)
  kwargs.setdefault('widths', (16, 32, 64))
  return ResNet(stage_sizes=(n, n, n), stem='cifar', shortcut='a', **kwargs)


_R18, _R34 = (2, 2, 2, 2), (3, 4, 6, 3)
_R50, _R101, _R152 = (3, 4, 6, 3), (3, 4, 23, 3), (3, 8, 36, 3)
_B = functools.partial(ResNet, block=Bottleneck)

resnet18 = functools.partial(ResNet, stage_sizes=_R18)
resnet34 = functools.partial(ResNet, stage_sizes=_R34)
resnet50 = functools.partial(_B, stage_sizes=_R50)
resnet101 = functools.partial(_B, stage_sizes=_R101)
resnet152 = functools.partial(_B, stage_sizes=_R152)
plain18 = functools.partial(resnet18, residual=False)
plain34 = functools.partial(resnet34, residual=False)
plain50 = functools.partial(resnet50, residual=False)
plain101 = functools.partial(resnet101, residual=False)
plain152 = functools.partial(resnet152, residual=False)
wide_resnet50_2 = functools.partial(_B, stage_sizes=_R50, base_width=128)
wide_resnet101_2 = functools.partial(_B, stage_sizes=_R101, base_width=128)
resnext50_32x4d = functools.partial(
  _B, stage_sizes=_R50, groups=32, base_width=4
)
resnext101_32x8d = functools.partial(
  _B, stage_sizes=_R101, groups=32, base_width=8
)
se_resnet50 = functools.partial(resnet50, se_reduction=16)
se_resnext50_32x4d = functools.partial(resnext50_32x4d, se_reduction=16)
# CIFAR: ResNet-18 with a 3x3 stride-1 stem; He et al.'s 6n+2 nets.
resnet18_cifar = functools.partial(resnet18, stem='cifar', num_classes=10)
resnet20_cifar = functools.partial(resnet_cifar, 20)
resnet32_cifar = functools.partial(resnet_cifar, 32)
resnet44_cifar = functools.partial(resnet_cifar, 44)
resnet56_cifar = functools.partial(resnet_cifar, 56)
resnet110_cifar = functools.partial(resnet_cifar, 110)
# Tiny variants: compile in about a second, any input size.
resnet8_cifar_tiny = functools.partial(resnet_cifar, 8)
resnet_tiny = functools.partial(
  ResNet, stage_sizes=(1, 1), widths=(8, 16), stem='cifar', num_classes=10
)
resnext_tiny = functools.partial(
  _B,
  stage_sizes=(1, 1),
  widths=(16, 32),
  groups=4,
  base_width=8,
  se_reduction=4,
  stem='cifar',
  num_classes=10,
)

MODELS: dict = {
  'resnet18': resnet18,
  'resnet34': resnet34,
  'resnet50': resnet50,
  'resnet101': resnet101,
  'resnet152': resnet152,
  'plain18': plain18,
  'plain34': plain34,
  'plain50': plain50,
  'plain101': plain101,
  'plain152': plain152,
  'wide_resnet50_2': wide_resnet50_2,
  'wide_resnet101_2': wide_resnet101_2,
  'resnext50_32x4d': resnext50_32x4d,
  'resnext101_32x8d': resnext101_32x8d,
  'se_resnet50': se_resnet50,
  'se_resnext50_32x4d': se_resnext50_32x4d,
  'resnet18_cifar': resnet18_cifar,
  'resnet20_cifar': resnet20_cifar,
  'resnet32_cifar': resnet32_cifar,
  'resnet44_cifar': resnet44_cifar,
  'resnet56_cifar': resnet56_cifar,
  'resnet110_cifar': resnet110_cifar,
  'resnet8_cifar_tiny': resnet8_cifar_tiny,
  'resnet_tiny': resnet_tiny,
  'resnext_tiny': resnext_tiny,
}
