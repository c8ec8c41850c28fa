"""MobileNet v1 (Howard et al. 2017) with the width multiplier alpha.

The notes (seed 002, "Depthwise Separable Convolution"): a standard conv costs
``D_K^2 M N D_F^2`` mult-adds, a depthwise separable one (depthwise ``D_K x
D_K`` per channel, then a 1x1 pointwise conv) ``D_K^2 M D_F^2 + M N D_F^2``,
a ratio of ``1/N + 1/D_K^2``.

Layout of the paper's Table 1 (224x224 input): a full 3x3/2 conv with 32
filters, 13 depthwise separable blocks (64, 128/2, 128, 256/2, 256, 512/2,
5 x 512, 1024/2, 1024), global average pooling and a fully connected layer.
Every conv is followed by BatchNorm and ReLU (paper Fig. 3). The table's
second-to-last depthwise row says stride 2 but its 7x7 input and output show
stride 1, which we use, as every implementation does. The width multiplier
scales every layer's channels: 0.75, 0.5, 0.25 give Table 6's smaller nets
(4.2M/569M, 2.6M/325M, 1.3M/149M, 0.5M/41M parameters/mult-adds).

``separable=False`` builds the paper's Table 4 twin, "Conv MobileNet" (29.3M
parameters, 4866M mult-adds): the same layers with each depthwise separable
block replaced by one full ``3 x 3`` conv of the pointwise conv's channels and
the depthwise conv's strides (layers ``conv{i}``, ``conv{i}_bn``), so the
notes' ``1/N + 1/D_K^2`` can be measured block by block.

Padding is PyTorch's symmetric ``padding=1`` for every 3x3 conv (timm's
``mobilenetv1_100``; the output sizes are those of 'SAME'). Until the parity
tests against timm (tests/nets/test_weights_parity.py) the convs used 'SAME',
which pads a stride-2 conv on even inputs by (0, 1) instead of (1, 1) and so
computed a different function with the same parameters. ``relu6=True`` clips
every activation at 6, as TF-Slim's reference code and timm's
``mobilenetv1_100`` (whose weights ``nets.weights`` imports) do; the paper's
Fig. 3 says ReLU, the default.
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

# (pointwise output channels, depthwise strides) of the 13 separable blocks.
BLOCKS = (
  (64, 1),
  (128, 2),
  (128, 1),
  (256, 2),
  (256, 1),
  (512, 2),
  *((512, 1),) * 5,
  (1024, 2),
  (1024, 1),
)
TINY_BLOCKS = ((64, 1), (128, 2), (128, 1), (256, 2))


class MobileNetV1(nn.Module):
  """MobileNet v1.

  Attributes:
    width_multiplier: alpha, scales every layer's channels.
    blocks: (channels, strides) of each depthwise separable block.
    stem_channels: filters of the first full conv (before alpha).
    num_classes: output units.
    dropout_rate: dropout before the classifier (the paper has none; the
      reference TF-Slim code uses 0.001).
    separable: False replaces each depthwise + pointwise pair by one full
      conv (the paper's Table 4 "Conv MobileNet").
    relu6: clip activations at 6 (TF-Slim, timm) instead of plain ReLU.
    dtype: computation dtype.
  """

  width_multiplier: float = 1.0
  blocks: Sequence[tuple[int, int]] = BLOCKS
  stem_channels: int = 32
  num_classes: int = 1000
  dropout_rate: float = 0.0
  separable: bool = True
  relu6: bool = False
  dtype: Any = None

  def _width(self, channels: int) -> int:
    return max(1, int(channels * self.width_multiplier))

  def _act(self, x: jax.Array) -> jax.Array:
    x = activations.relu(x)
    return jnp.minimum(x, 6.0).astype(x.dtype) if self.relu6 else x

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    """``x: [B, H, W, 3]`` -> logits ``[B, num_classes]``."""
    if self.width_multiplier <= 0:
      raise ValueError(
        f'width_multiplier must be positive, got {self.width_multiplier}'
      )
    norm = functools.partial(norms.BatchNorm, dtype=self.dtype)
    x = layers.Conv(
      self._width(self.stem_channels),
      3,
      strides=2,
      padding=1,
      dtype=self.dtype,
      name='conv0',
    )(x)
    x = self._act(norm(name='bn0')(x, train))
    for i, (channels, strides) in enumerate(self.blocks, start=1):
      if not self.separable:
        x = layers.Conv(
          self._width(channels),
          3,
          strides=strides,
          padding=1,
          dtype=self.dtype,
          name=f'conv{i}',
        )(x)
        x = self._act(norm(name=f'conv{i}_bn')(x, train))
        continue
      x = layers.DepthwiseConv(
        3, strides=strides, padding=1, dtype=self.dtype, name=f'dw{i}'
      )(x)
      x = self._act(norm(name=f'dw{i}_bn')(x, train))
      x = layers.Conv(
        self._width(channels), 1, padding=0, dtype=self.dtype, name=f'pw{i}'
      )(x)
      x = self._act(norm(name=f'pw{i}_bn')(x, train))
    x = pooling.global_avg_pool(x)  # [B, 1024 alpha]
    x = layers.Dropout(self.dropout_rate, name='drop')(x, train)
    return layers.Dense(self.num_classes, dtype=self.dtype, name='fc')(x)


mobilenet_v1 = functools.partial(MobileNetV1)
mobilenet_v1_075 = functools.partial(MobileNetV1, width_multiplier=0.75)
mobilenet_v1_050 = functools.partial(MobileNetV1, width_multiplier=0.5)
mobilenet_v1_025 = functools.partial(MobileNetV1, width_multiplier=0.25)
mobilenet_v1_tiny = functools.partial(
  MobileNetV1, width_multiplier=0.125, blocks=TINY_BLOCKS, num_classes=10
)

MODELS: dict = {
  'mobilenet_v1': mobilenet_v1,
  'mobilenet_v1_075': mobilenet_v1_075,
  'mobilenet_v1_050': mobilenet_v1_050,
  'mobilenet_v1_025': mobilenet_v1_025,
  'mobilenet_v1_tiny': mobilenet_v1_tiny,
}
