"""DenseNet (Huang et al., "Densely connected convolutional networks", 2017).

The lecture notes' dense connectivity, implemented literally: inside a dense
block, layer l receives the concatenation of the block input and the outputs
of all preceding layers,

    x_l = H_l([x_0, x_1, ..., x_{l-1}]),

so a block of L layers with growth rate k turns c0 channels into c0 + L*k.
H_l is BN-ReLU-Conv3x3(k), preceded in DenseNet-B by a bottleneck
BN-ReLU-Conv1x1(bn_size * k). Transition layers (BN-ReLU-Conv1x1-AvgPool2x2)
compress the channels by theta (DenseNet-C; BC = both).

* `densenet121/169/201/161`: the ImageNet models in torchvision's layout
  (7x7/2 stem with 2k filters (96 for 161), 3x3/2 max-pool, final BN-ReLU,
  no conv biases), which reproduces torchvision's parameter counts exactly.
* `densenet_bc100_k12_cifar`: DenseNet-BC with L=100, k=12 for 32x32 images
  (3x3 stem with 2k filters, three blocks of (L-4)/6 = 16 layers); about
  0.8M parameters (paper Table 2).
* `densenet_cifar(depth, growth_rate, ...)` builds any CIFAR DenseNet(-BC).

Regularisation is the paper's dropout (`dropout_rate`; 0.2 "after each
convolutional layer (except the first one)" on data without augmentation,
so in the dense layers and the transitions); there is no
`drop_path_rate`: DenseNet is not a residual family (nothing is added to an
identity path), and dropping H_l would remove its k channels from the input
of every later layer, so stochastic depth does not apply. `norm='group'`
swaps every BatchNorm for GroupNorm, as in the residual families (the layers
take the norm as a constructor, `nets/norms.py`).

Block outputs and transition outputs are sown as 'intermediates'
('block1_out', 'transition1_out', ...), used by the tests to check the
channel growth.
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


class DenseLayer(nn.Module):
  """H_l: [BN-ReLU-Conv1x1(bn_size*k)]-BN-ReLU-Conv3x3(k), with dropout."""

  growth_rate: int
  bn_size: int = 4
  bottleneck: bool = True
  dropout_rate: float = 0.0
  norm: norms.ModuleDef = norms.BatchNorm
  dtype: Any = None

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    dt = self.dtype
    if self.bottleneck:
      width = self.bn_size * self.growth_rate
      x = activations.relu(self.norm(name='norm1')(x, train))
      x = layers.Conv(width, 1, padding=0, dtype=dt, name='conv1')(x)
      x = layers.Dropout(self.dropout_rate, name='dropout1')(x, train)
    x = activations.relu(self.norm(name='norm2')(x, train))
    x = layers.Conv(self.growth_rate, 3, padding=1, dtype=dt, name='conv2')(x)
    return layers.Dropout(self.dropout_rate, name='dropout2')(x, train)


class DenseBlock(nn.Module):
  """`num_layers` DenseLayers, each fed the concatenation of all before it."""

  num_layers: int
  growth_rate: int
  bn_size: int = 4
  bottleneck: bool = True
  dropout_rate: float = 0.0
  norm: norms.ModuleDef = norms.BatchNorm
  dtype: Any = None

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    features = [x]  # x_0, x_1, ..., x_{l-1}
    for i in range(self.num_layers):
      h = DenseLayer(
        growth_rate=self.growth_rate,
        bn_size=self.bn_size,
        bottleneck=self.bottleneck,
        dropout_rate=self.dropout_rate,
        norm=self.norm,
        dtype=self.dtype,
        name=f'layer{i + 1}',
      )(jnp.concatenate(features, axis=-1), train)  # [B, H, W, k]
      features.append(h)
    return jnp.concatenate(features, axis=-1)  # [B, H, W, c0 + L*k]


class Transition(nn.Module):
  """BN-ReLU-Conv1x1(features)-(dropout)-AvgPool(2x2, stride 2)."""

  features: int
  norm: norms.ModuleDef = norms.BatchNorm
  dropout_rate: float = 0.0
  dtype: Any = None

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    dt = self.dtype
    x = activations.relu(self.norm(name='norm')(x, train))
    x = layers.Conv(self.features, 1, padding=0, dtype=dt, name='conv')(x)
    x = layers.Dropout(self.dropout_rate, name='dropout')(x, train)
    return layers.AvgPool(2, 2, name='pool')(x)


class DenseNet(nn.Module):
  """DenseNet for NHWC images.

  Attributes:
    block_sizes: layers per dense block, e.g. (6, 12, 24, 16).
    growth_rate: k, channels each layer adds.
    init_features: stem filters (2k in the paper).
    num_classes: classifier outputs.
    bn_size: bottleneck width factor (4 -> 4k channels); see `bottleneck`.
    bottleneck: use the 1x1 bottleneck (DenseNet-B).
    compression: theta in (0, 1]; a transition outputs floor(theta * c).
    stem: 'imagenet' (7x7/2 conv, BN-ReLU, 3x3/2 max-pool) or 'cifar'
      (one 3x3 conv).
    dropout_rate: dropout after every convolution but the stem's.
    norm: a name of ``nets.norms.NORMS``: 'batch' or 'group'.
    dtype: computation dtype.
  """

  block_sizes: Sequence[int]
  growth_rate: int = 32
  init_features: int = 64
  num_classes: int = 1000
  bn_size: int = 4
  bottleneck: bool = True
  compression: float = 0.5
  stem: str = 'imagenet'
  dropout_rate: float = 0.0
  norm: str = 'batch'
  dtype: Any = None

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    if not 0.0 < self.compression <= 1.0:
      raise ValueError(f'compression must be in (0, 1], got {self.compression}')
    dt, c = self.dtype, self.init_features
    norm = norms.by_name(self.norm, dt)
    if self.stem == 'imagenet':
      x = layers.Conv(c, 7, 2, padding=3, dtype=dt, name='stem_conv')(x)
      x = activations.relu(norm(name='stem_norm')(x, train))
      x = layers.MaxPool(3, 2, padding=1, name='stem_pool')(x)  # H/4, W/4
    elif self.stem == 'cifar':
      x = layers.Conv(c, 3, padding=1, dtype=dt, name='stem_conv')(x)
    else:
      raise ValueError(f"stem must be 'imagenet' or 'cifar', got {self.stem!r}")
    for i, n in enumerate(self.block_sizes):
      x = DenseBlock(
        num_layers=n,
        growth_rate=self.growth_rate,
        bn_size=self.bn_size,
        bottleneck=self.bottleneck,
        dropout_rate=self.dropout_rate,
        norm=norm,
        dtype=dt,
        name=f'block{i + 1}',
      )(x, train)
      self.sow('intermediates', f'block{i + 1}_out', x)
      if i + 1 < len(self.block_sizes):
        out = int(self.compression * x.shape[-1])
        x = Transition(
          features=out,
          norm=norm,
          dropout_rate=self.dropout_rate,
          dtype=dt,
          name=f'transition{i + 1}',
        )(x, train)
        self.sow('intermediates', f'transition{i + 1}_out', x)
    x = activations.relu(norm(name='final_norm')(x, train))
    x = pooling.global_avg_pool(x)  # [B, C]
    return layers.Dense(self.num_classes, dtype=dt, name='head')(x)


def densenet_cifar(
  depth: int, growth_rate: int, *, bottleneck: bool = True, **kwargs: Any
) -> DenseNet:
  """CIFAR DenseNet(-BC) of total depth L with three equal dense blocks.

  Args:
    depth: L; (L - 4) must split into 3 blocks of equal size (of 2-conv
      layers when `bottleneck`, so (L - 4) % 6 == 0; else (L - 4) % 3 == 0).
    growth_rate: k.
    bottleneck: DenseNet-B layers (with the default compression 0.5: BC).
    **kwargs: other DenseNet attributes (num_classes, dropout_rate, ...).

  Returns:
    The DenseNet module, with a 2k-filter 3x3 stem (k=16 filters for the
    non-bottleneck net, as in the paper).
  """
  per = 6 if bottleneck else 3
  if depth < 4 + per or (depth - 4) % per:
    raise ValueError(f'DenseNet depth {depth} needs (depth-4) % {per} == 0')
  n = (depth - 4) // per
  kwargs.setdefault('num_classes', 10)
  kwargs.setdefault('init_features', 2 * growth_rate if bottleneck else 16)
  if not bottleneck:
    kwargs.setdefault('compression', 1.0)
  return DenseNet(
    block_sizes=(n, n, n),
    growth_rate=growth_rate,
    bottleneck=bottleneck,
    stem='cifar',
    **kwargs,
  )


densenet121 = functools.partial(DenseNet, block_sizes=(6, 12, 24, 16))
densenet169 = functools.partial(DenseNet, block_sizes=(6, 12, 32, 32))
densenet201 = functools.partial(DenseNet, block_sizes=(6, 12, 48, 32))
densenet161 = functools.partial(
  DenseNet, block_sizes=(6, 12, 36, 24), growth_rate=48, init_features=96
)
densenet_bc100_k12_cifar = functools.partial(densenet_cifar, 100, 12)
densenet_tiny = functools.partial(
  DenseNet,
  block_sizes=(2, 2),
  growth_rate=4,
  init_features=8,
  stem='cifar',
  num_classes=10,
)

MODELS: dict = {
  'densenet121': densenet121,
  'densenet169': densenet169,
  'densenet201': densenet201,
  'densenet161': densenet161,
  'densenet_bc100_k12_cifar': densenet_bc100_k12_cifar,
  'densenet_tiny': densenet_tiny,
}
