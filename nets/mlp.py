"""Multilayer perceptron (the notes' fully connected networks, seed 001).

``mlp``: flatten, then (Dense, activation, dropout) per hidden layer and a
linear classifier; it flattens its input, so it takes images as well as
vectors. Its width, depth and activation are options (``hidden_sizes``,
``activation``), as in the notes' feedforward-network chapter. With
``activation='maxout'`` each hidden layer is a maxout layer (Goodfellow et
al. 2013, the notes' activation slides): ``max_k (x W_k + b_k)`` over
``maxout_pieces`` affine pieces, so it has k times the parameters of a Dense
layer of the same width.

Initialization follows the activation (``nets.layers.init_for``): He normal
(fan_in) before ReLU-like activations (He et al. 2015), Xavier normal before
tanh/sigmoid (Glorot & Bengio 2010), as in the notes' initialization slides;
LeCun normal (``Var[w] = 1/n``) for each maxout piece, since a maxout of two
pieces keeps the second moment that ReLU halves. ``kernel_init`` may be an
``ops.initializers`` name (e.g. 'zeros' to show the symmetry problem),
``'normal:STD'`` (the notes' "small" and "large" Gaussians, e.g.
'normal:0.01') or ``'constant:VALUE'`` (the notes' "same value"
initialization), or an initializer; it then applies to every layer, the head
included.
"""

from collections.abc import Sequence
import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from nets import layers
from ops import activations
from ops import initializers

# Parametrised initializer names, 'NAME:NUMBER' -> ops.initializers factory.
_PARAMETRISED_INITS = {
  'normal': initializers.normal,
  'constant': initializers.constant,
}


def resolve_init(activation: str, kernel_init: Any = None) -> Any:
  """The kernel initializer of an MLP's layers.

  Args:
    activation: an ``ops.activations`` name or 'maxout'.
    kernel_init: None (the activation's default), ``'normal:STD'``,
      ``'constant:VALUE'``, or anything :func:`nets.layers.init_for` takes.

  Returns:
    An initializer ``init(key, shape, dtype)``.

  Raises:
    ValueError: an unknown name or a number that does not parse.
  """
  if isinstance(kernel_init, str) and ':' in kernel_init:
    name, _, number = kernel_init.partition(':')
    if name not in _PARAMETRISED_INITS:
      raise ValueError(
        f'unknown kernel_init {kernel_init!r}; parametrised names are '
        f'{", ".join(n + ":NUMBER" for n in _PARAMETRISED_INITS)}'
      )
    try:
      value = float(number)
    except ValueError:
      raise ValueError(
        f'kernel_init {kernel_init!r}: {number!r} is not a number'
      ) from None
    return _PARAMETRISED_INITS[name](value)
  if activation == 'maxout' and kernel_init is None:
    # For two i.i.d. zero-mean symmetric pieces, max(z1, z2) and -min(z1, z2)
    # have the same law, so E[max^2] = E[z^2]: maxout keeps the second
    # moment, and Var[w] = 1/n (LeCun) keeps the signal's scale, where He's
    # 2/n (for ReLU, which halves it) would double it at every layer.
    return initializers.lecun_normal()
  return layers.init_for(activation, kernel_init)


class MaxoutDense(nn.Module):
  """Maxout layer ``y = max_k (x W_k + b_k)`` (``ops.activations.maxout``).

  Attributes:
    features: output units.
    pieces: affine pieces k per unit.
    kernel_init: initializer of one piece's ``[in, out]`` kernel (each piece
      is drawn on its own, so fan-based initializers see the fans of a Dense
      layer, not k times the fan-in).
    dtype: computation dtype (params stay float32).
  """

  features: int
  pieces: int = 2
  kernel_init: layers.Initializer = initializers.he_normal()
  dtype: Any = None

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    """``x: [..., in]`` -> ``[..., features]``."""
    if self.pieces < 1:
      raise ValueError(f'maxout needs pieces >= 1, got {self.pieces}')
    x = jnp.asarray(x)

    def init(key, shape, dtype=jnp.float32):
      keys = jax.random.split(key, shape[0])
      return jnp.stack([self.kernel_init(k, shape[1:], dtype) for k in keys])

    shape = (self.pieces, x.shape[-1], self.features)
    kernel = self.param('kernel', init, shape, jnp.float32)  # [k, in, out]
    bias = self.param(
      'bias', initializers.zeros, (self.pieces, self.features), jnp.float32
    )
    dtype = layers.compute_dtype(x, self.dtype)
    return activations.maxout(
      x.astype(dtype), kernel.astype(dtype), bias.astype(dtype)
    )


class MLP(nn.Module):
  """Fully connected network: flatten, (Dense, activation, dropout)*, Dense.

  Attributes:
    hidden_sizes: widths of the hidden layers.
    num_classes: output units.
    activation: an ``ops.activations`` name, or 'maxout'.
    dropout_rate: dropout after each hidden activation (0 = off).
    kernel_init: see :func:`resolve_init`.
    maxout_pieces: affine pieces per unit when ``activation='maxout'``.
    dtype: computation dtype.
  """

  hidden_sizes: Sequence[int] = (256, 256)
  num_classes: int = 10
  activation: str = 'relu'
  dropout_rate: float = 0.0
  kernel_init: Any = None
  maxout_pieces: int = 2
  dtype: Any = None

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    """``x: [B, ...]`` -> logits ``[B, num_classes]``."""
    init = resolve_init(self.activation, self.kernel_init)
    if self.activation == 'maxout':
      act = None  # The layer itself takes the maximum.
      hidden = functools.partial(MaxoutDense, pieces=self.maxout_pieces)
    else:
      act = activations.get(self.activation)
      hidden = layers.Dense
    x = jnp.reshape(x, (x.shape[0], -1))
    for i, width in enumerate(self.hidden_sizes):
      x = hidden(width, kernel_init=init, dtype=self.dtype, name=f'fc{i}')(x)
      if act is not None:
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
