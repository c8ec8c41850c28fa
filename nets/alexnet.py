"""AlexNet (Krizhevsky et al. 2012) and ZFNet (Zeiler & Fergus 2014).

The notes (seed 002, "ILSVRC"): AlexNet won ILSVRC 2012; ZFNet won 2013 by
shrinking the first layer from 11x11 stride 4 to 7x7 stride 2.

* ``alexnet``: torchvision's single-tower AlexNet ("One weird trick",
  Krizhevsky 2014): convs 64-192-384-256-256, adaptive average pool to 6x6,
  dropout 0.5, fc 4096-4096-classes. 61,100,840 parameters and 0.71 G MACs at
  224x224, torchvision's figures.
* ``alexnet_paper``: the 2012 paper's two-GPU layout on 227x227 inputs (the
  paper says 224, but 11x11 stride 4 needs 227 to give its 55x55 maps):
  convs 96-256-384-384-256 with ``groups=2`` on conv2, conv4 and conv5 (the
  kernels that only see their own GPU's maps), local response normalization
  after conv1 and conv2, overlapping 3x3/2 max pools. 60,965,224 parameters
  (the paper's "60 million").
* ``zfnet``: Zeiler & Fergus 2014, Fig. 3: 7x7/2 conv 96 (-> 110x110),
  3x3/2 pool (-> 55), 5x5/2 conv 256 (-> 26), pool (-> 13), 3x3 convs 384,
  384, 256, pool (-> 6), fc 4096, 4096; "contrast normalization" (LRN) after
  the first two conv layers. 62,357,608 parameters for 1000 classes.

Each net is a tuple of layer specs, so the three layouts are data.
"""

from collections.abc import Sequence
import functools
from typing import Any

import flax.linen as nn
import jax
from jax import lax
import jax.numpy as jnp

from nets import layers
from ops import activations
from ops import initializers

# ('conv', features, kernel, strides, padding, groups) | ('pool', window,
# strides, padding) | ('lrn',)
TORCHVISION = (
  ('conv', 64, 11, 4, 2, 1),
  ('pool', 3, 2, 'VALID'),
  ('conv', 192, 5, 1, 2, 1),
  ('pool', 3, 2, 'VALID'),
  ('conv', 384, 3, 1, 1, 1),
  ('conv', 256, 3, 1, 1, 1),
  ('conv', 256, 3, 1, 1, 1),
  ('pool', 3, 2, 'VALID'),
)
PAPER_2012 = (
  ('conv', 96, 11, 4, 'VALID', 1),
  ('lrn',),
  ('pool', 3, 2, 'VALID'),
  ('conv', 256, 5, 1, 2, 2),
  ('lrn',),
  ('pool', 3, 2, 'VALID'),
  ('conv', 384, 3, 1, 1, 1),
  ('conv', 384, 3, 1, 1, 2),
  ('conv', 256, 3, 1, 1, 2),
  ('pool', 3, 2, 'VALID'),
)
ZFNET = (
  ('conv', 96, 7, 2, 1, 1),
  ('lrn',),
  ('pool', 3, 2, 'SAME'),
  ('conv', 256, 5, 2, 'VALID', 1),
  ('lrn',),
  ('pool', 3, 2, 'SAME'),
  ('conv', 384, 3, 1, 1, 1),
  ('conv', 384, 3, 1, 1, 1),
  ('conv', 256, 3, 1, 1, 1),
  ('pool', 3, 2, 'VALID'),
)
TINY = (
  ('conv', 8, 5, 2, 2, 1),
  ('lrn',),
  ('pool', 3, 2, 'VALID'),
  ('conv', 16, 3, 1, 1, 2),
  ('pool', 3, 2, 'VALID'),
  ('conv', 16, 3, 1, 1, 1),
)


def local_response_norm(
  x: jax.Array,
  *,
  size: int = 5,
  k: float = 2.0,
  alpha: float = 1e-4,
  beta: float = 0.75,
) -> jax.Array:
  """Krizhevsky et al.'s LRN across channels, Sec. 3.3 of the 2012 paper.

  ``b_i = a_i / (k + alpha sum_{|j - i| <= size // 2} a_j^2)^beta`` with the
  paper's constants ``k = 2, n = 5, alpha = 1e-4, beta = 0.75``.

  Args:
    x: activations ``[B, H, W, C]``.
    size: the number n of adjacent channels summed.
    k: additive constant.
    alpha: scale of the sum of squares.
    beta: exponent.

  Returns:
    Normalised activations, same shape and dtype.
  """
  sq = jnp.square(x.astype(jnp.float32))
  half = size // 2
  pads = ((0, 0), (0, 0), (0, 0), (half, size - 1 - half))
  sums = lax.reduce_window(sq, 0.0, lax.add, (1, 1, 1, size), (1,) * 4, pads)
  return (x / (k + alpha * sums) ** beta).astype(x.dtype)


class AlexNet(nn.Module):
  """Conv stack from ``spec``, optional adaptive pool, 3-layer classifier.

  Attributes:
    spec: layer specs (see the module constants).
    num_classes: output units.
    hidden: width of the two hidden fc layers.
    dropout_rate: dropout before each hidden fc layer (0.5 in the paper).
    pool_size: adaptive average pool output size (torchvision), None to
      flatten the last feature map as is (the papers).
    dtype: computation dtype.
  """

  spec: Sequence[tuple] = TORCHVISION
  num_classes: int = 1000
  hidden: int = 4096
  dropout_rate: float = 0.5
  pool_size: int | None = 6
  dtype: Any = None

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    """``x: [B, H, W, 3]`` -> logits ``[B, num_classes]``."""
    n_conv = n_pool = 0
    for item in self.spec:
      if item[0] == 'conv':
        _, features, kernel, strides, padding, groups = item
        n_conv += 1
        x = layers.Conv(
          features,
          kernel,
          strides=strides,
          padding=padding,
          groups=groups,
          use_bias=True,
          dtype=self.dtype,
          name=f'conv{n_conv}',
        )(x)
        x = activations.relu(x)
      elif item[0] == 'pool':
        n_pool += 1
        _, window, strides, padding = item
        x = layers.MaxPool(window, strides, padding, name=f'pool{n_pool}')(x)
      elif item[0] == 'lrn':
        x = local_response_norm(x)
      else:
        raise ValueError(f'unknown layer spec {item!r}')
    if self.pool_size is not None:
      x = layers.AdaptiveAvgPool(self.pool_size, name='avgpool')(x)
    x = jnp.reshape(x, (x.shape[0], -1))
    dense = functools.partial(
      layers.Dense,
      kernel_init=initializers.he_normal(mode='fan_in'),
      dtype=self.dtype,
    )
    for i in (6, 7):
      x = layers.Dropout(self.dropout_rate, name=f'drop{i}')(x, train)
      x = activations.relu(dense(self.hidden, name=f'fc{i}')(x))
    return layers.Dense(self.num_classes, dtype=self.dtype, name='fc8')(x)


alexnet = functools.partial(AlexNet)
alexnet_paper = functools.partial(AlexNet, spec=PAPER_2012, pool_size=None)
zfnet = functools.partial(AlexNet, spec=ZFNET, pool_size=None)
alexnet_tiny = functools.partial(
  AlexNet, spec=TINY, hidden=32, pool_size=2, num_classes=10
)

MODELS: dict = {
  'alexnet': alexnet,
  'alexnet_paper': alexnet_paper,
  'zfnet': zfnet,
  'alexnet_tiny': alexnet_tiny,
}
