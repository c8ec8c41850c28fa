"""GoogLeNet / Inception v1 (Szegedy et al., "Going deeper with
convolutions", CVPR 2015) and the lecture notes' Inception modules.

* `NaiveInception`: the notes' module (a): parallel 1x1, 3x3, 5x5
  convolutions and a 3x3 max-pool, concatenated along channels.
* `Inception`: module (b) with 1x1 reductions before the 3x3 and 5x5
  convolutions and a 1x1 projection after the pool.
* `GoogLeNet`: the network of the paper's Table 1 (filter numbers below),
  with conv biases and ReLU, no BatchNorm and no LRN (as later
  reimplementations, we leave the local response normalisation out; it has
  no parameters). Dropout 0.4 before the classifier. Conv/pool padding keeps
  the sizes of Table 1 (112, 56, 28, 14, 7).
  Table 1's filter numbers give 6,998,552 parameters (1000 classes); the
  paper's "about 6.8M" is the sum of Table 1's params column, whose entries
  are rounded estimates (e.g. conv1 is listed as 2.7K, 7*7*3*64 = 9.4K).
  Multiply-adds: 1.583G, matching the sum of Table 1's ops column (1.586G;
  the text rounds it to "1.5 billion").
* `aux_heads=True` adds the two auxiliary classifiers of the paper (after
  4a and 4d: 5x5/3 avg-pool, 1x1 conv 128, FC 1024, dropout 0.7, FC). They
  only run in training. `model.apply(v, x, train=True, return_aux=True,
  ...)` returns `(logits, (aux1_logits, aux2_logits))`; every other call
  returns the main logits [B, num_classes] only, as the nets contract
  requires. The paper weights each aux loss by 0.3.
* `batch_norm=True` (`googlenet_bn`): conv without bias + BatchNorm (eps
  1e-3), torchvision's choice. This is *not* torchvision's googlenet, which
  also replaces the 5x5 branch by a 3x3 conv; we keep the paper's 5x5
  (`googlenet_torchvision` below is torchvision's).
* `googlenet_torchvision`: torchvision's `googlenet` layer for layer, so
  its weights import (`nets/weights.py`): BatchNorm (eps 1e-3), a 3x3 conv
  in the "5x5" branch (`b5_kernel=3`; a slip in the original Caffe port
  that torchvision kept for its pretrained weights), torchvision's pools
  (`torchvision_pools`: 3x3/2 max-pools in ceil mode without padding, a
  2x2/2 one before stage 5, an adaptive 4x4 average pool in the auxiliary
  heads) and dropout 0.2. 6,624,904 parameters (13,004,888 with
  `aux_heads=True`), torchvision's counts. `transform_input=True` maps
  ImageNet-normalised inputs to the (x - 0.5) / 0.5 scaling of the Caffe
  weights, as torchvision does for its pretrained GoogLeNet.
* `se_reduction=16` (`se_googlenet`): SE-Inception of Hu et al. 2018 (the
  notes' figure), an SE block (reduction 16) on each Inception module's
  output; the option has the ResNets' name and meaning (0 = off).
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

# Paper Table 1: (#1x1, #3x3 reduce, #3x3, #5x5 reduce, #5x5, pool proj).
INCEPTION_CONFIG = {
  '3a': (64, 96, 128, 16, 32, 32),
  '3b': (128, 128, 192, 32, 96, 64),
  '4a': (192, 96, 208, 16, 48, 64),
  '4b': (160, 112, 224, 24, 64, 64),
  '4c': (128, 128, 256, 24, 64, 64),
  '4d': (112, 144, 288, 32, 64, 64),
  '4e': (256, 160, 320, 32, 128, 128),
  '5a': (256, 160, 320, 32, 128, 128),
  '5b': (384, 192, 384, 48, 128, 128),
}


class ConvReLU(nn.Module):
  """kxk 'SAME' conv, then ReLU; bias, or BatchNorm when `batch_norm`."""

  features: int
  kernel_size: int
  strides: int = 1
  batch_norm: bool = False
  dtype: Any = None

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    x = layers.Conv(
      self.features,
      self.kernel_size,
      self.strides,
      padding=self.kernel_size // 2,
      use_bias=not self.batch_norm,
      dtype=self.dtype,
      name='conv',
    )(x)
    if self.batch_norm:
      x = norms.BatchNorm(epsilon=1e-3, dtype=self.dtype, name='bn')(x, train)
    return activations.relu(x)


class NaiveInception(nn.Module):
  """Module (a): 1x1, 3x3, 5x5 convolutions and 3x3 max-pool, concatenated.

  The pool branch passes all input channels through, so the output has
  c1 + c3 + c5 + C_in channels.
  """

  c1: int
  c3: int
  c5: int
  batch_norm: bool = False
  dtype: Any = None

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    kw = dict(batch_norm=self.batch_norm, dtype=self.dtype)
    b1 = ConvReLU(self.c1, 1, name='b1', **kw)(x, train)
    b3 = ConvReLU(self.c3, 3, name='b3', **kw)(x, train)
    b5 = ConvReLU(self.c5, 5, name='b5', **kw)(x, train)
    bp = layers.MaxPool(3, 1, padding=1, name='pool')(x)
    return jnp.concatenate([b1, b3, b5, bp.astype(b1.dtype)], axis=-1)


class Inception(nn.Module):
  """Module (b): 1x1 reductions before 3x3/5x5, 1x1 projection after pool.

  Attributes:
    filters: (#1x1, #3x3 reduce, #3x3, #5x5 reduce, #5x5, pool proj).
    batch_norm: BatchNorm instead of conv biases.
    se_reduction: 0 (off) or SE-Inception reduction ratio.
    b5_kernel: kernel of the "5x5" branch (3 in torchvision).
    dtype: computation dtype.
  """

  filters: Sequence[int]
  batch_norm: bool = False
  se_reduction: int = 0
  b5_kernel: int = 5
  dtype: Any = None

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    c1, r3, c3, r5, c5, cp = self.filters
    kw = dict(batch_norm=self.batch_norm, dtype=self.dtype)
    b1 = ConvReLU(c1, 1, name='b1', **kw)(x, train)
    b3 = ConvReLU(r3, 1, name='b3_reduce', **kw)(x, train)
    b3 = ConvReLU(c3, 3, name='b3', **kw)(b3, train)
    b5 = ConvReLU(r5, 1, name='b5_reduce', **kw)(x, train)
    b5 = ConvReLU(c5, self.b5_kernel, name='b5', **kw)(b5, train)
    bp = layers.MaxPool(3, 1, padding=1, name='pool')(x)
    bp = ConvReLU(cp, 1, name='pool_proj', **kw)(bp, train)
    y = jnp.concatenate([b1, b3, b5, bp], axis=-1)  # [B, H, W, c1+c3+c5+cp]
    if self.se_reduction:
      y = layers.SEBlock(
        reduction=self.se_reduction, dtype=self.dtype, name='se'
      )(y)
    return y


class AuxHead(nn.Module):
  """Auxiliary classifier: avgpool 5x5/3, conv1x1 128, FC 1024, dropout 0.7."""

  num_classes: int
  batch_norm: bool = False
  adaptive_pool: bool = False
  dtype: Any = None

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    if self.adaptive_pool:  # torchvision
      x = layers.AdaptiveAvgPool(4, name='pool')(x)
    else:
      x = layers.AvgPool(5, 3, name='pool')(x)  # 14x14 -> 4x4
    x = ConvReLU(
      128, 1, batch_norm=self.batch_norm, dtype=self.dtype, name='conv'
    )(x, train)
    x = x.reshape(x.shape[0], -1)  # [B, 4*4*128]
    x = activations.relu(layers.Dense(1024, dtype=self.dtype, name='fc1')(x))
    x = layers.Dropout(0.7, name='dropout')(x, train)
    return layers.Dense(self.num_classes, dtype=self.dtype, name='fc2')(x)


def _ceil_mode_pad(size: int, window: int, strides: int) -> tuple[int, int]:
  """Right padding that turns a VALID pool into PyTorch's ceil_mode one."""
  out = -(-(size - window) // strides) + 1
  if (out - 1) * strides >= size:  # the last window must start inside
    out -= 1
  return (0, max(0, (out - 1) * strides + window - size))


def max_pool_ceil(x: jax.Array, window: int, strides: int, name: str):
  """``torch.nn.MaxPool2d(window, strides, ceil_mode=True)`` on NHWC."""
  pads = tuple(_ceil_mode_pad(n, window, strides) for n in x.shape[1:3])
  return layers.MaxPool(window, strides, padding=pads, name=name)(x)


# ImageNet's normalisation, undone by `transform_input` (torchvision).
_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


class GoogLeNet(nn.Module):
  """Inception v1 (paper Table 1) for 224x224 NHWC images.

  Attributes:
    num_classes: classifier outputs.
    stem_filters: (conv1 7x7/2, conv2 1x1 reduce, conv2 3x3) filters.
    inception: the nine modules' filter tuples (Table 1 by default).
    width_divisor: divide every filter number (tiny test variants).
    aux_heads: build the two auxiliary classifiers (training only).
    batch_norm: BatchNorm after every conv, no biases (torchvision style).
    se_reduction: 0 (off) or the reduction ratio of an SE block after every
      module (SE-Inception; 16 in Hu et al.), as in the ResNets.
    dropout_rate: dropout before the classifier (0.4 in the paper).
    b5_kernel: kernel of the "5x5" branch (3 in torchvision).
    torchvision_pools: torchvision's ceil-mode max-pools and adaptive aux
      pools instead of Table 1's padded ones.
    transform_input: map ImageNet-normalised RGB inputs to (x - 0.5) / 0.5
      (torchvision's pretrained GoogLeNet).
    dtype: computation dtype.
  """

  num_classes: int = 1000
  stem_filters: Sequence[int] = (64, 64, 192)
  inception: tuple = tuple(INCEPTION_CONFIG.items())
  width_divisor: int = 1
  aux_heads: bool = False
  batch_norm: bool = False
  se_reduction: int = 0
  dropout_rate: float = 0.4
  b5_kernel: int = 5
  torchvision_pools: bool = False
  transform_input: bool = False
  dtype: Any = None

  def _pool(self, x: jax.Array, index: int) -> jax.Array:
    """Max-pool `index` (1-4): Table 1's padded 3x3/2, or torchvision's."""
    if not self.torchvision_pools:
      return layers.MaxPool(3, 2, padding=1, name=f'pool{index}')(x)
    window = 2 if index == 4 else 3
    return max_pool_ceil(x, window, 2, name=f'pool{index}')

  @nn.compact
  def __call__(
    self, x: jax.Array, train: bool = False, return_aux: bool = False
  ) -> jax.Array | tuple[jax.Array, tuple[jax.Array, jax.Array]]:
    d = self.width_divisor
    if d < 1:
      raise ValueError(f'width_divisor must be >= 1, got {d}')
    if return_aux and not (self.aux_heads and train):
      raise ValueError('return_aux needs aux_heads=True and train=True')
    if self.transform_input:
      mean, std = jnp.array(_IMAGENET_MEAN), jnp.array(_IMAGENET_STD)
      x = (x * std + mean - 0.5) / 0.5
    kw = dict(batch_norm=self.batch_norm, dtype=self.dtype)
    s1, s2, s3 = (max(1, f // d) for f in self.stem_filters)
    x = ConvReLU(s1, 7, 2, name='conv1', **kw)(x, train)  # [B, 112, 112, 64]
    x = self._pool(x, 1)  # 56x56
    x = ConvReLU(s2, 1, name='conv2_reduce', **kw)(x, train)
    x = ConvReLU(s3, 3, name='conv2', **kw)(x, train)  # [B, 56, 56, 192]
    x = self._pool(x, 2)  # 28x28
    # Aux heads run only when returned (and at init, to create params).
    run_aux = self.aux_heads and (return_aux or self.is_initializing())
    aux = []
    for name, filters in self.inception:
      if name in ('4a', '5a'):  # max-pool before stages 4 and 5
        x = self._pool(x, int(name[0]) - 1)
      x = Inception(
        tuple(max(1, f // d) for f in filters),
        se_reduction=self.se_reduction,
        b5_kernel=self.b5_kernel,
        name=f'inception{name}',
        **kw,
      )(x, train)
      if run_aux and name in ('4a', '4d'):
        head = AuxHead(
          self.num_classes,
          adaptive_pool=self.torchvision_pools,
          name=f'aux_{name}',
          **kw,
        )
        aux.append(head(x, train))
    x = pooling.global_avg_pool(x)  # [B, 1024]
    x = layers.Dropout(self.dropout_rate, name='dropout')(x, train)
    logits = layers.Dense(self.num_classes, dtype=self.dtype, name='head')(x)
    if return_aux:
      return logits, tuple(aux)
    return logits


googlenet = functools.partial(GoogLeNet)
googlenet_bn = functools.partial(GoogLeNet, batch_norm=True)
se_googlenet = functools.partial(GoogLeNet, se_reduction=16)
googlenet_tiny = functools.partial(GoogLeNet, width_divisor=16, num_classes=10)
googlenet_torchvision = functools.partial(
  GoogLeNet,
  batch_norm=True,
  b5_kernel=3,
  torchvision_pools=True,
  dropout_rate=0.2,
)

MODELS: dict = {
  'googlenet': googlenet,
  'googlenet_bn': googlenet_bn,
  'se_googlenet': se_googlenet,
  'googlenet_tiny': googlenet_tiny,
  'googlenet_torchvision': googlenet_torchvision,
}
