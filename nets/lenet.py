"""LeNet-5 (LeCun, Bottou, Bengio & Haffner 1998) for 28x28x1 digits.

Layout of the paper's Fig. 2 adapted to 28x28 MNIST as is usual: the 5x5 C1
convolution uses padding 2 so the 28x28 input plays the paper's 32x32 one.

  C1 conv 6@5x5 pad 2 -> 28x28x6, S2 pool 2 -> 14x14x6,
  C3 conv 16@5x5      -> 10x10x16, S4 pool 2 -> 5x5x16,
  F5 fc 120, F6 fc 84, output fc ``num_classes``.

Simplifications, as in most modern re-implementations: C3 connects every S2
map (the paper's sparse connection table gives 1,516 weights instead of
2,416), S2/S4 are plain average (or max) pools without trainable coefficients,
and the output is a linear layer instead of RBF units. With the defaults
(tanh, average pooling, 10 classes) it has 61,706 parameters.
"""

import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from nets import layers
from ops import activations


class LeNet5(nn.Module):
  """LeNet-5 for ``[B, 28, 28, 1]`` inputs.

  Attributes:
    num_classes: output units.
    activation: an ``ops.activations`` name ('tanh' as in the paper).
    pool: 'avg' (the paper's subsampling) or 'max'.
    dropout_rate: dropout before F6 and the output layer (0 = off, as in the
      paper).
    dtype: computation dtype.
  """

  num_classes: int = 10
  activation: str = 'tanh'
  pool: str = 'avg'
  dropout_rate: float = 0.0
  dtype: Any = None

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    """``x: [B, 28, 28, 1]`` -> logits ``[B, num_classes]``."""
    if self.pool not in ('avg', 'max'):
      raise ValueError(f"pool must be 'avg' or 'max', got {self.pool!r}")
    if x.ndim == 3:
      x = x[..., None]
    act = activations.get(self.activation)
    init = layers.init_for(self.activation)
    pool = layers.AvgPool if self.pool == 'avg' else layers.MaxPool
    conv = functools.partial(
      layers.Conv, use_bias=True, kernel_init=init, dtype=self.dtype
    )
    x = act(conv(6, 5, padding=2, name='c1')(x))  # [B, 28, 28, 6]
    x = pool(2, name='s2')(x)  # [B, 14, 14, 6]
    x = act(conv(16, 5, padding='VALID', name='c3')(x))  # [B, 10, 10, 16]
    x = pool(2, name='s4')(x)  # [B, 5, 5, 16]
    x = jnp.reshape(x, (x.shape[0], -1))
    dense = functools.partial(layers.Dense, kernel_init=init, dtype=self.dtype)
    x = act(dense(120, name='f5')(x))
    x = layers.Dropout(self.dropout_rate, name='drop5')(x, train)
    x = act(dense(84, name='f6')(x))
    x = layers.Dropout(self.dropout_rate, name='drop6')(x, train)
    return layers.Dense(self.num_classes, dtype=self.dtype, name='output')(x)


lenet5 = functools.partial(LeNet5)

MODELS: dict = {'lenet5': lenet5}
