"""Flax linen layers whose math is the pure functions of ``ops/``.

Linear layers (``Dense``, ``Conv``, ``DepthwiseConv``), regularisation
(``Dropout``, ``DropPath``), the squeeze-and-excitation gate (``SEBlock``)
and pooling modules; the normalisation layers are in ``nets/norms.py``. Every
model in ``nets/`` is built from these, so one implementation of each
operation (``ops.convolution.conv2d`` for every convolution, grouped and
depthwise ones included) can be swapped in one place.

Conventions:
  * Parameters are float32. ``dtype`` is the computation dtype: the input and
    the kernel are cast to it before the op. ``dtype=None`` computes in the
    promotion of the input dtype and float32 (float32 for float32 or bfloat16
    inputs), as flax does.
  * Kernel layouts follow ``ops/``: dense ``[in, out]``, conv HWIO
    ``[kh, kw, in / groups, out]``.
  * Default initializers (``ops.initializers``): convolutions use He normal
    with ``mode='fan_out'`` (He et al. 2015, the choice of torchvision's ResNet,
    VGG-BN and MobileNet code; for grouped/depthwise kernels the fan counts the
    connections of one group). Dense layers use LeCun normal,
    ``Var[w] = 1 / fan_in`` (the notes' "Var[w_i] = 1/n" rule, flax's default);
    models whose papers differ pass ``kernel_init`` explicitly, or take it
    from the activation with :func:`init_for` (the notes' initialization
    slides, seed 001).
  * Pooling is also wrapped in modules (``MaxPool``, ``AvgPool``,
    ``AdaptiveAvgPool``) so that model summaries list pooling rows, as the
    papers' tables do; they have no parameters.
  * Random layers draw from the ``'dropout'`` rng stream.
"""

from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from ops import activations
from ops import convolution
from ops import initializers
from ops import pooling
from ops import regularization

Initializer = Callable[..., jax.Array]
Padding = str | int | Sequence[tuple[int, int]]
Dtype = Any

_SATURATING = ('sigmoid', 'tanh')
_NAMED_INITS = (
  'he_normal',
  'he_uniform',
  'xavier_normal',
  'xavier_uniform',
  'lecun_normal',
  'standard_uniform',
  'zeros',
  'ones',
)


def compute_dtype(x: jax.Array, dtype: Dtype | None) -> Dtype:
  """The computation dtype: ``dtype`` or the promotion of x and float32."""
  if dtype is not None:
    return dtype
  return jnp.result_type(x.dtype, jnp.float32)


def check_rate(rate: float, what: str) -> None:
  """Raises ValueError unless ``0 <= rate < 1`` (``what`` names the rate)."""
  if not 0.0 <= rate < 1.0:
    raise ValueError(f'{what} must be in [0, 1), got {rate}')


def init_for(
  activation: str, kernel_init: str | Initializer | None = None
) -> Initializer:
  """The kernel initializer for layers followed by ``activation``.

  He normal (fan_in) before ReLU-like activations (He et al. 2015), Xavier
  normal before tanh/sigmoid (Glorot & Bengio 2010).

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


class Dense(nn.Module):
  """Fully connected layer ``y = x W + b`` on the last axis.

  Attributes:
    features: number of output units.
    use_bias: whether to add a bias.
    kernel_init: initializer of ``W: [in, out]``.
    bias_init: initializer of ``b: [out]``.
    dtype: computation dtype (params stay float32).
  """

  features: int
  use_bias: bool = True
  kernel_init: Initializer = initializers.lecun_normal()
  bias_init: Initializer = initializers.zeros
  dtype: Dtype | None = None

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    """Applies the layer to ``x: [..., in]`` -> ``[..., features]``."""
    x = jnp.asarray(x)
    kernel = self.param(
      'kernel', self.kernel_init, (x.shape[-1], self.features), jnp.float32
    )
    dtype = compute_dtype(x, self.dtype)
    if dtype == jnp.bfloat16 and jax.default_backend() == 'cpu':
      # XLA:CPU has no fast bfloat16 matmul: VGG's 8192x4096 layer at batch
      # 16, forward and backward, took 170 ms in bfloat16 and 66 ms in
      # float32 (AMD EPYC with avx512_bf16, 2 cores). The float32 kernel is
      # used as it is (no cast) and the result rounded to bfloat16.
      y = jnp.dot(x.astype(jnp.float32), kernel).astype(dtype)
    else:
      y = jnp.dot(x.astype(dtype), kernel.astype(dtype))
    if self.use_bias:
      bias = self.param('bias', self.bias_init, (self.features,), jnp.float32)
      y = y + bias.astype(dtype)
    return y


def _conv(
  module: nn.Module, x: jax.Array, features: int, groups: int
) -> jax.Array:
  """Convolution math shared by :class:`Conv` and :class:`DepthwiseConv`."""
  x = jnp.asarray(x)
  if x.ndim != 4:
    raise ValueError(f'convolution needs NHWC input, got shape {x.shape}')
  in_features = x.shape[-1]
  if in_features % groups or features % groups:
    raise ValueError(
      f'groups={groups} must divide both input channels ({in_features}) '
      f'and features ({features})'
    )
  kh, kw = convolution.as_pair(module.kernel_size, 'kernel_size')
  init = module.kernel_init or initializers.he_normal(
    mode='fan_out', groups=groups
  )
  shape = (kh, kw, in_features // groups, features)
  kernel = module.param('kernel', init, shape, jnp.float32)
  dtype = compute_dtype(x, module.dtype)
  y = convolution.conv2d(
    x.astype(dtype),
    kernel.astype(dtype),
    strides=module.strides,
    padding=module.padding,
    dilation=module.dilation,
    groups=groups,
  )
  if module.use_bias:
    bias = module.param('bias', module.bias_init, (features,), jnp.float32)
    y = y + bias.astype(dtype)
  return y


class Conv(nn.Module):
  """2-D convolution on NHWC inputs via ``ops.convolution.conv2d``.

  Attributes:
    features: output channels.
    kernel_size: int or ``(kh, kw)``.
    strides: int or pair.
    padding: 'SAME', 'VALID', an int, or ``((top, bottom), (left, right))``.
    dilation: int or pair.
    groups: number of channel groups (AlexNet's two towers, ResNeXt,
      ShuffleNet); the kernel is ``[kh, kw, in / groups, features]``.
    use_bias: whether to add a bias (off by default: most convs feed a norm).
    kernel_init: kernel initializer; None means
      ``he_normal(mode='fan_out', groups=groups)``.
    bias_init: bias initializer.
    dtype: computation dtype (params stay float32).
  """

  features: int
  kernel_size: int | Sequence[int]
  strides: int | Sequence[int] = 1
  padding: Padding = 'SAME'
  dilation: int | Sequence[int] = 1
  groups: int = 1
  use_bias: bool = False
  kernel_init: Initializer | None = None
  bias_init: Initializer = initializers.zeros
  dtype: Dtype | None = None

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    """Applies the convolution to ``x: [B, H, W, C]``."""
    return _conv(self, x, self.features, self.groups)


class DepthwiseConv(nn.Module):
  """Depthwise convolution: one ``kh x kw`` filter per input channel.

  Implemented as ``conv2d`` with ``groups = C`` (kernel
  ``[kh, kw, 1, C * multiplier]``, the layout of
  ``ops.convolution.depthwise_conv2d``), so every convolution in ``nets/``
  runs through the same op. MobileNet (Howard et al. 2017) follows it with a
  1x1 pointwise ``Conv``.

  Attributes:
    kernel_size: int or pair.
    strides: int or pair.
    padding: as for :class:`Conv`.
    multiplier: output channels per input channel.
    dilation: int or pair.
    use_bias: whether to add a bias.
    kernel_init: None means ``he_normal(mode='fan_out', groups=C)``.
    bias_init: bias initializer.
    dtype: computation dtype.
  """

  kernel_size: int | Sequence[int]
  strides: int | Sequence[int] = 1
  padding: Padding = 'SAME'
  multiplier: int = 1
  dilation: int | Sequence[int] = 1
  use_bias: bool = False
  kernel_init: Initializer | None = None
  bias_init: Initializer = initializers.zeros
  dtype: Dtype | None = None

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    """Applies the depthwise convolution to ``x: [B, H, W, C]``."""
    channels = jnp.shape(x)[-1]
    return _conv(self, x, channels * self.multiplier, channels)


class Dropout(nn.Module):
  """Inverted dropout (Srivastava et al. 2014); identity when not training.

  Attributes:
    rate: drop probability in [0, 1).
  """

  rate: float

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    """Drops units of ``x`` with the ``'dropout'`` rng when ``train``."""
    check_rate(self.rate, 'dropout rate')
    if not train or self.rate == 0.0:
      return x
    return regularization.dropout(self.make_rng('dropout'), x, rate=self.rate)


class DropPath(nn.Module):
  """Stochastic depth (Huang et al. 2016) on a residual branch output.

  Attributes:
    rate: probability of dropping an example's branch, in [0, 1).
  """

  rate: float

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    """Drops whole examples of ``x`` with the ``'dropout'`` rng."""
    check_rate(self.rate, 'drop-path rate')
    if not train or self.rate == 0.0:
      return x
    key = self.make_rng('dropout')
    return regularization.drop_path(key, x, rate=self.rate)


class SEBlock(nn.Module):
  """Squeeze-and-excitation (Hu et al. 2018): channel gates from pooled stats.

  ``s = sigmoid(W2 relu(W1 GAP(x)))`` with ``W1: C -> C / reduction`` and
  ``W2: C / reduction -> C`` (fully connected layers with biases, as in the
  paper); the output is ``x * s`` per channel.

  Attributes:
    reduction: the ratio r of the bottleneck.
    dtype: computation dtype.
  """

  reduction: int = 16
  dtype: Dtype | None = None

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    """Gates the channels of ``x: [B, H, W, C]``."""
    x = jnp.asarray(x)
    channels = x.shape[-1]
    hidden = max(1, channels // self.reduction)
    s = pooling.global_avg_pool(x)  # [B, C]
    s = Dense(hidden, dtype=self.dtype, name='reduce')(s)
    s = activations.relu(s)
    s = Dense(channels, dtype=self.dtype, name='expand')(s)
    s = activations.sigmoid(s)
    return x * s[:, None, None, :].astype(x.dtype)


class MaxPool(nn.Module):
  """Max pooling as a module, so summaries list pooling rows.

  Attributes:
    window: int or pair.
    strides: int or pair; None means the window (non-overlapping).
    padding: 'VALID', 'SAME', an int or explicit pairs.
  """

  window: int | Sequence[int]
  strides: int | Sequence[int] | None = None
  padding: Padding = 'VALID'

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    """Pools ``x: [B, H, W, C]`` with ``ops.pooling.max_pool``."""
    return pooling.max_pool(
      x, self.window, strides=self.strides, padding=self.padding
    )


class AvgPool(nn.Module):
  """Average pooling as a module, so summaries list pooling rows.

  Attributes:
    window: int or pair.
    strides: int or pair; None means the window.
    padding: 'VALID', 'SAME', an int or explicit pairs.
    count_include_pad: divide by the full window (True) or by the real
      positions only.
  """

  window: int | Sequence[int]
  strides: int | Sequence[int] | None = None
  padding: Padding = 'VALID'
  count_include_pad: bool = True

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    """Pools ``x: [B, H, W, C]`` with ``ops.pooling.avg_pool``."""
    return pooling.avg_pool(
      x,
      self.window,
      strides=self.strides,
      padding=self.padding,
      count_include_pad=self.count_include_pad,
    )


def _adaptive_bins(n_in: int, n_out: int) -> list[tuple[int, int]]:
  """PyTorch's adaptive pooling bins: [floor(i n/m), ceil((i+1) n/m))."""
  return [
    (i * n_in // n_out, -(-(i + 1) * n_in // n_out)) for i in range(n_out)
  ]


class AdaptiveAvgPool(nn.Module):
  """Average pooling to a fixed ``output_size`` (torchvision's classifiers).

  Bins follow ``torch.nn.AdaptiveAvgPool2d``; when the input size is a
  multiple of the output size this is ``ops.pooling.avg_pool`` (identity
  when equal, as for AlexNet and VGG at 224x224).

  Attributes:
    output_size: int or pair.
  """

  output_size: int | Sequence[int]

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    """Pools ``x: [B, H, W, C]`` to ``[B, oh, ow, C]``."""
    oh, ow = convolution.as_pair(self.output_size, 'output_size')
    h, w = x.shape[1:3]
    if h % oh == 0 and w % ow == 0:
      return pooling.avg_pool(x, (h // oh, w // ow))
    rows = []
    for h0, h1 in _adaptive_bins(h, oh):
      cols = [
        jnp.mean(x[:, h0:h1, w0:w1, :], axis=(1, 2))
        for w0, w1 in _adaptive_bins(w, ow)
      ]
      rows.append(jnp.stack(cols, axis=1))  # [B, ow, C]
    return jnp.stack(rows, axis=1)
