"""Multilayer perceptron (the notes' fully connected networks, seed 001).

``mlp``: flatten, then (Dense, activation, dropout) per hidden layer and a
linear classifier; it flattens its input, so it takes images as well as
vectors. Its width, depth and activation are options (``hidden_sizes``,
``activation``), as in the notes' feedforward-network chapter.

Initialization follows the activation (``nets.layers.init_for``): He normal
(fan_in) before ReLU-like activations (He et al. 2015), Xavier normal before
tanh/sigmoid (Glorot & Bengio 2010), as in the notes' initialization slides.
``kernel_init`` may be an ``ops.initializers`` name (e.g. 'zeros' to show the
symmetry problem) or an initializer; it then applies to every layer.
"""

from collections.abc import Sequence
import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from nets import layers
from ops import activations


class MLP(nn.Module):
  """Fully connected network: flatten, (Dense, activation, dropout)*, Dense.

  Attributes:
    hidden_sizes: widths of the hidden layers.
    num_classes: output units.
    activation: an ``ops.activations`` name.
    dropout_rate: dropout after each hidden activation (0 = off).
    kernel_init: see :func:`nets.layers.init_for`.
    dtype: computation dtype.
  """

  hidden_sizes: Sequence[int] = (256, 256)
  num_classes: int = 10
  activation: str = 'relu'
  dropout_rate: float = 0.0
  kernel_init: Any = None
  dtype: Any = None

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    """``x: [B, ...]`` -> logits ``[B, num_classes]``."""
    act = activations.get(self.activation)
    init = layers.init_for(self.activation, self.kernel_init)
    x = jnp.reshape(x, (x.shape[0], -1))
    for i, width in enumerate(self.hidden_sizes):
      x = layers.Dense(
        width, kernel_init=init, dtype=self.dtype, name=f'fc{i}'
      )(x)
      x = act(x)
      x = layers.Dropout(self.dropout_rate, name=f'drop{i}')(x, train)
    # The linear head keeps Dense's LeCun default unless an init is forced.
    head_kw = {} if self.kernel_init is None else {'kernel_init': init}
    head = layers.Dense(
      self.num_classes, dtype=self.dtype, name='head', **head_kw
    )
    return head(x)


mlp = functools.partial(MLP)

MODELS: dict = {
  'mlp': mlp,
}
