"""Two small CNNs for the small data sets: MNIST-1D signals and 8x8 digits.

* ``cnn1d``: a 1-D CNN for MNIST-1D signals ``[B, L]`` or ``[B, L, 1]``
  (Greydanus 2020 uses three 1-D convolutions and a linear classifier). The
  1-D convolutions are 2-D convolutions with a ``k x 1`` kernel on
  ``[B, L, 1, C]``, so every network runs on ``ops.convolution.conv2d``.
* ``cnn_small``: a small 2-D CNN for 8x8 digits (any ``H x W x C`` input):
  two 3x3 conv stages, global average pooling and a linear classifier.
  ``norm='batch'`` or ``'group'`` puts a normalisation layer after every
  convolution (the notes' "Batch Normalization in CNN"), the same net with
  and without it, which the normalization study compares.

Convolutions as in the notes' convnet chapter (seed 002); kernels initialised
for their activation with ``nets.layers.init_for`` (He normal before ReLU,
Xavier normal before tanh/sigmoid).
"""

from collections.abc import Sequence
import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from nets import layers
from nets import mlp
from nets import norms
from ops import activations
from ops import pooling


class CNN1D(nn.Module):
  """1-D CNN for MNIST-1D: strided k-wide convs, flatten, Dense.

  Attributes:
    channels: output channels of each conv.
    kernel_size: temporal kernel width.
    strides: stride of each conv.
    num_classes: output units.
    activation: an ``ops.activations`` name.
    dropout_rate: dropout before the classifier.
    kernel_init: None (the activation's init, ``nets.layers.init_for``) or
      any name ``nets.mlp.resolve_init`` takes, e.g. ``'normal:0.01'``:
      then every layer, the classifier too, draws from it (Krizhevsky et
      al. 2012 use one small Gaussian for every activation).
    dtype: computation dtype.
  """

  channels: Sequence[int] = (32, 32, 32)
  kernel_size: int = 5
  strides: Sequence[int] = (1, 2, 2)
  num_classes: int = 10
  activation: str = 'relu'
  dropout_rate: float = 0.0
  kernel_init: Any = None
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
    init = mlp.resolve_init(self.activation, self.kernel_init)
    x = x[:, :, None, :]  # [B, L, 1, C]: a 1-D conv is a k x 1 2-D conv
    for i, (c, s) in enumerate(zip(self.channels, self.strides, strict=True)):
      x = layers.Conv(
        c,
        (self.kernel_size, 1),
        strides=(s, 1),
        use_bias=True,
        kernel_init=init,
        dtype=self.dtype,
        name=f'conv{i}',
      )(x)
      x = act(x)
    x = jnp.reshape(x, (x.shape[0], -1))
    x = layers.Dropout(self.dropout_rate, name='drop')(x, train)
    # The head keeps Dense's default unless an init is forced (as nets.mlp).
    head_kw = {} if self.kernel_init is None else {'kernel_init': init}
    return layers.Dense(
      self.num_classes, dtype=self.dtype, name='head', **head_kw
    )(x)


class CNNSmall(nn.Module):
  """Small 2-D CNN: [conv3x3 x2, max-pool] stages, global pool, Dense.

  Attributes:
    stage_channels: channels of the two convs of each stage.
    num_classes: output units.
    activation: an ``ops.activations`` name.
    dropout_rate: dropout before the classifier.
    norm: None (no normalisation, the default) or a ``nets.norms.NORMS``
      name ('batch', 'group') for a norm after every conv, before the
      activation, as Ioffe & Szegedy place it. The convs then have no bias:
      the norm subtracts it and its beta takes its place (their Sec. 3.2).
    norm_groups: with ``norm='group'``, the most groups per layer (the
      largest divisor of the channels up to it); None keeps the registry's
      32, which in layers of 32 channels or fewer is one channel per group.
    dtype: computation dtype.
  """

  stage_channels: Sequence[int] = (32, 64)
  num_classes: int = 10
  activation: str = 'relu'
  dropout_rate: float = 0.0
  norm: str | None = None
  norm_groups: int | None = None
  dtype: Any = None

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    """``x: [B, H, W, C]`` (or ``[B, H, W]``) -> ``[B, num_classes]``."""
    if x.ndim == 3:
      x = x[..., None]
    act = activations.get(self.activation)
    init = layers.init_for(self.activation)
    norm = None if self.norm is None else norms.by_name(self.norm, self.dtype)
    if self.norm_groups is not None:
      if self.norm != 'group':
        raise ValueError(f"norm_groups needs norm='group', got {self.norm!r}")
      norm = functools.partial(norm, num_groups=self.norm_groups)
    for i, c in enumerate(self.stage_channels):
      for j in range(2):
        x = layers.Conv(
          c,
          3,
          use_bias=norm is None,
          kernel_init=init,
          dtype=self.dtype,
          name=f'conv{i}_{j}',
        )(x)
        if norm is not None:
          x = norm(name=f'norm{i}_{j}')(x, train)
        x = act(x)
      if min(x.shape[1:3]) >= 2:  # 8x8 digits -> 4x4 -> 2x2
        x = layers.MaxPool(2, padding='SAME', name=f'pool{i}')(x)
    x = pooling.global_avg_pool(x)
    x = layers.Dropout(self.dropout_rate, name='drop')(x, train)
    return layers.Dense(self.num_classes, dtype=self.dtype, name='head')(x)


cnn1d = functools.partial(CNN1D)
cnn_small = functools.partial(CNNSmall)

MODELS: dict = {
  'cnn1d': cnn1d,
  'cnn_small': cnn_small,
}
