"""Small models for the small data sets: an MLP and two small CNNs.

* ``mlp``: a multilayer perceptron of any depth and activation (the notes'
  fully connected networks, seed 001); it flattens its input, so it takes
  images as well as vectors.
* ``cnn1d``: a 1-D CNN for MNIST-1D signals ``[B, L]`` or ``[B, L, 1]``
  (Greydanus 2020 uses three 1-D convolutions and a linear classifier). The
  1-D convolutions are 2-D convolutions with a ``k x 1`` kernel on
  ``[B, L, 1, C]``, so every network runs on ``ops.convolution.conv2d``.
* ``cnn_small``: a small 2-D CNN for 8x8 digits (any ``H x W x C`` input):
  two 3x3 conv stages, global average pooling and a linear classifier.

Initialization follows the activation: He normal (fan_in) before ReLU-like
activations (He et al. 2015), Xavier normal before tanh/sigmoid (Glorot &
Bengio 2010), as in the notes' initialization slides. ``kernel_init`` may be
an ``ops.initializers`` name (e.g. 'zeros' to show the symmetry problem) or an
initializer; it then applies to every layer.
"""

from collections.abc import Callable, Sequence
import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from nets import layers
from ops import activations
from ops import initializers
from ops import pooling

_SATURATING = ('sigmoid', 'tanh')
_NAMED_INITS = (
  'he_normal',
  'he_uniform',
  'xavier_normal',
  'xavier_uniform',
  'lecun_normal',
  'zeros',
  'ones',
)


def init_for(
  activation: str, kernel_init: str | Callable[..., jax.Array] | None = None
) -> Callable[..., jax.Array]:
  """The kernel initializer for layers followed by ``activation``.

  Args:
    activation: an ``ops.activations`` name.
    kernel_init: None for the activation's default, an ``ops.initializers``
      factory name from ``_NAMED_INITS`` or an initializer function.

  Returns:
    An initializer ``init(key, shape, dtype)``.
  """
  if callable(kernel_init):
    return kernel_init
  if kernel_init is None:
    if activation in _SATURATING:
      return initializers.xavier_normal()
    return initializers.he_normal(mode='fan_in')
  if kernel_init not in _NAMED_INITS:
    raise ValueError(
      f'unknown kernel_init {kernel_init!r}; expected one of {_NAMED_INITS}'
    )
  factory = getattr(initializers, kernel_init)
  return factory if kernel_init in ('zeros', 'ones') else factory()


class MLP(nn.Module):
  """Fully connected network: flatten, (Dense, activation, dropout)*, Dense.

  Attributes:
    hidden_sizes: widths of the hidden layers.
    num_classes: output units.
    activation: an ``ops.activations`` name.
    dropout_rate: dropout after each hidden activation (0 = off).
    kernel_init: see :func:`init_for`.
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
    init = init_for(self.activation, self.kernel_init)
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


class CNN1D(nn.Module):
  """1-D CNN for MNIST-1D: strided k-wide convs, flatten, Dense.

  Attributes:
    channels: output channels of each conv.
    kernel_size: temporal kernel width.
    strides: stride of each conv.
    num_classes: output units.
    activation: an ``ops.activations`` name.
    dropout_rate: dropout before the classifier.
    dtype: computation dtype.
  """

  channels: Sequence[int] = (32, 32, 32)
  kernel_size: int = 5
  strides: Sequence[int] = (1, 2, 2)
  num_classes: int = 10
  activation: str = 'relu'
  dropout_rate: float = 0.0
  dtype: Any = None

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    """``x: [B, L]`` or ``[B, L, C]`` -> logits ``[B, num_classes]``."""
    if x.ndim == 2:
      x = x[..., None]
    if x.ndim != 3:
      raise ValueError(f'cnn1d needs [B, L] or [B, L, C], got {x.shape}')
    if len(self.channels) != len(self.strides):
      raise ValueError('channels and strides must have the same length')
    act = activations.get(self.activation)
    x = x[:, :, None, :]  # [B, L, 1, C]: a 1-D conv is a k x 1 2-D conv
    for i, (c, s) in enumerate(zip(self.channels, self.strides, strict=True)):
      x = layers.Conv(
        c,
        (self.kernel_size, 1),
        strides=(s, 1),
        use_bias=True,
        kernel_init=init_for(self.activation),
        dtype=self.dtype,
        name=f'conv{i}',
      )(x)
      x = act(x)
    x = jnp.reshape(x, (x.shape[0], -1))
    x = layers.Dropout(self.dropout_rate, name='drop')(x, train)
    return layers.Dense(self.num_classes, dtype=self.dtype, name='head')(x)


class CNNSmall(nn.Module):
  """Small 2-D CNN: [conv3x3 x2, max-pool] stages, global pool, Dense.

  Attributes:
    stage_channels: channels of the two convs of each stage.
    num_classes: output units.
    activation: an ``ops.activations`` name.
    dropout_rate: dropout before the classifier.
    dtype: computation dtype.
  """

  stage_channels: Sequence[int] = (32, 64)
  num_classes: int = 10
  activation: str = 'relu'
  dropout_rate: float = 0.0
  dtype: Any = None

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    """``x: [B, H, W, C]`` (or ``[B, H, W]``) -> ``[B, num_classes]``."""
    if x.ndim == 3:
      x = x[..., None]
    act = activations.get(self.activation)
    init = init_for(self.activation)
    for i, c in enumerate(self.stage_channels):
      for j in range(2):
        x = layers.Conv(
          c,
          3,
          use_bias=True,
          kernel_init=init,
          dtype=self.dtype,
          name=f'conv{i}_{j}',
        )(x)
        x = act(x)
      if min(x.shape[1:3]) >= 2:  # 8x8 digits -> 4x4 -> 2x2
        x = layers.MaxPool(2, padding='SAME', name=f'pool{i}')(x)
    x = pooling.global_avg_pool(x)
    x = layers.Dropout(self.dropout_rate, name='drop')(x, train)
    return layers.Dense(self.num_classes, dtype=self.dtype, name='head')(x)


mlp = functools.partial(MLP)
cnn1d = functools.partial(CNN1D)
cnn_small = functools.partial(CNNSmall)

MODELS: dict = {
  'mlp': mlp,
  'cnn1d': cnn1d,
  'cnn_small': cnn_small,
}
