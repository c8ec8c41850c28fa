"""VGG (Simonyan & Zisserman 2015): configurations A, B, D, E = VGG-11/13/16/19.

The notes' VGGNet slides (seed 002) tabulate VGG-16 layer by layer: 3x3 convs
with padding 1 in five blocks of 64, 128, 256, 512, 512 channels, 2x2/2 max
pools, then fc 4096, 4096, 1000: 138M parameters, of which the first fc layer
holds 102,760,448.

Layout and initialization follow torchvision (its parameter counts are
matched exactly, e.g. VGG-16 138,357,544): convs have biases (also in the
``_bn`` variants, which add BatchNorm after each conv), an adaptive average
pool to 7x7 (identity at 224x224), then
``fc-ReLU-dropout-fc-ReLU-dropout-fc`` with dropout 0.5 as in the paper.
Convs use He normal (fan_out) and fc layers N(0, 0.01), torchvision's choice.
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
from ops import initializers

# Channels of the 3x3 convs per block; each block ends in a 2x2/2 max pool.
CONFIGS = {
  11: ((64,), (128,), (256, 256), (512, 512), (512, 512)),
  13: ((64, 64), (128, 128), (256, 256), (512, 512), (512, 512)),
  16: ((64, 64), (128, 128), (256,) * 3, (512,) * 3, (512,) * 3),
  19: ((64, 64), (128, 128), (256,) * 4, (512,) * 4, (512,) * 4),
}
TINY = ((8,), (16,), (16,))


class VGG(nn.Module):
  """VGG network.

  Attributes:
    blocks: conv channels per block (see ``CONFIGS``).
    num_classes: output units.
    batch_norm: add BatchNorm after every conv (torchvision's ``vgg*_bn``).
    hidden: width of the two hidden fc layers.
    dropout_rate: dropout after each hidden fc layer.
    pool_size: adaptive average pool size before the classifier.
    dtype: computation dtype.
  """

  blocks: Sequence[Sequence[int]] = CONFIGS[16]
  num_classes: int = 1000
  batch_norm: bool = False
  hidden: int = 4096
  dropout_rate: float = 0.5
  pool_size: int = 7
  dtype: Any = None

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    """``x: [B, H, W, 3]`` -> logits ``[B, num_classes]``."""
    for b, block in enumerate(self.blocks, start=1):
      for i, features in enumerate(block, start=1):
        name = f'conv{b}_{i}'
        x = layers.Conv(
          features, 3, padding=1, use_bias=True, dtype=self.dtype, name=name
        )(x)
        if self.batch_norm:
          x = norms.BatchNorm(dtype=self.dtype, name=f'bn{b}_{i}')(x, train)
        x = activations.relu(x)
      x = layers.MaxPool(2, name=f'pool{b}')(x)
    x = layers.AdaptiveAvgPool(self.pool_size, name='avgpool')(x)
    x = jnp.reshape(x, (x.shape[0], -1))  # [B, 7 * 7 * 512]
    dense = functools.partial(
      layers.Dense, kernel_init=initializers.normal(0.01), dtype=self.dtype
    )
    for i in (6, 7):
      x = activations.relu(dense(self.hidden, name=f'fc{i}')(x))
      x = layers.Dropout(self.dropout_rate, name=f'drop{i}')(x, train)
    return dense(self.num_classes, name='fc8')(x)


vgg11 = functools.partial(VGG, blocks=CONFIGS[11])
vgg13 = functools.partial(VGG, blocks=CONFIGS[13])
vgg16 = functools.partial(VGG, blocks=CONFIGS[16])
vgg19 = functools.partial(VGG, blocks=CONFIGS[19])
vgg11_bn = functools.partial(VGG, blocks=CONFIGS[11], batch_norm=True)
vgg13_bn = functools.partial(VGG, blocks=CONFIGS[13], batch_norm=True)
vgg16_bn = functools.partial(VGG, blocks=CONFIGS[16], batch_norm=True)
vgg19_bn = functools.partial(VGG, blocks=CONFIGS[19], batch_norm=True)
vgg_tiny = functools.partial(
  VGG, blocks=TINY, hidden=32, pool_size=1, num_classes=10
)
vgg_tiny_bn = functools.partial(vgg_tiny, batch_norm=True)

MODELS: dict = {
  'vgg11': vgg11,
  'vgg13': vgg13,
  'vgg16': vgg16,
  'vgg19': vgg19,
  'vgg11_bn': vgg11_bn,
  'vgg13_bn': vgg13_bn,
  'vgg16_bn': vgg16_bn,
  'vgg19_bn': vgg19_bn,
  'vgg_tiny': vgg_tiny,
  'vgg_tiny_bn': vgg_tiny_bn,
}
