"""Normalisation layers: BatchNorm, GroupNorm, LayerNorm, and norms by name.

The notes' "Normalization Methods" (seed 002): batch normalization (Ioffe &
Szegedy 2015) normalises each channel over the batch and spatial axes, layer
normalization (Ba et al. 2016) each example over its features, group
normalization (Wu & He 2018) each example over groups of channels. The math
is ``ops.normalization``; these modules add the learned per-channel ``scale``
(gamma) and ``bias`` (beta) and, for BatchNorm, the running statistics.

Blocks take their normalisation as a module constructor (``norm: ModuleDef``,
as in flax's ``examples/imagenet/models.py``) and call
``norm(name='norm1')(x, train)``; every module here takes ``train`` so that
any of them fits. Models that configs build by name accept ``norm='batch'``
or ``'group'`` and turn it into a constructor with :func:`by_name`, the one
place that maps names to modules.

BatchNorm keeps its running statistics in the ``'batch_stats'`` collection
(``'mean'``, ``'var'``) with momentum 0.9 (weight of the old value).
Parameters and statistics are float32 whatever ``dtype``.
"""

from collections.abc import Callable
import functools
import math

import flax.linen as nn
import jax
import jax.numpy as jnp

from nets import layers
from ops import initializers
from ops import normalization

ModuleDef = Callable[..., nn.Module]


def _scale_bias(
  module: nn.Module, features: int
) -> tuple[jax.Array | None, jax.Array | None]:
  """Creates the per-channel gamma and beta params of a norm layer."""
  scale = bias = None
  if module.use_scale:
    scale = module.param('scale', module.scale_init, (features,), jnp.float32)
  if module.use_bias:
    bias = module.param('bias', module.bias_init, (features,), jnp.float32)
  return scale, bias


class BatchNorm(nn.Module):
  """Batch normalization (Ioffe & Szegedy 2015), per channel on ``[..., C]``.

  ``train=True`` normalises with the batch statistics (float32, biased
  variance) and, when the ``'batch_stats'`` collection is mutable and the
  module is not being initialised, updates the running averages
  ``r <- momentum r + (1 - momentum) batch``. ``train=False`` uses the running
  averages and changes nothing.

  Attributes:
    momentum: weight of the old running value.
    epsilon: added to the variance.
    use_scale: learn gamma.
    use_bias: learn beta.
    scale_init: gamma initializer (``zeros`` for the last BN of a residual
      branch, Goyal et al. 2017).
    bias_init: beta initializer.
    dtype: computation dtype of the output (statistics stay float32).
    group_size: None (the default): statistics over the whole batch. An
      integer g: "per-device" BatchNorm (Wu & He 2018, Sec. 2 and Fig. 1:
      BN's statistics are computed per GPU, over the examples one device
      holds): in training the batch is cut into consecutive groups of g
      examples (B must be a multiple of g) and each group is normalised
      with its own mean and variance, as if each group sat on its own
      device. The running averages are updated from the mean over groups of
      the group means and of the group variances: the average of what each
      device would accumulate, so evaluation sees the statistics of g
      examples, as per-device BN's does. ``train=False`` is unchanged.
  """

  momentum: float = 0.9
  epsilon: float = 1e-5
  use_scale: bool = True
  use_bias: bool = True
  scale_init: layers.Initializer = initializers.ones
  bias_init: layers.Initializer = initializers.zeros
  dtype: layers.Dtype | None = None
  group_size: int | None = None

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    """Normalises ``x``; see the class docstring for ``train``."""
    x = jnp.asarray(x)
    features = x.shape[-1]
    running_mean = self.variable(
      'batch_stats', 'mean', jnp.zeros, (features,), jnp.float32
    )
    running_var = self.variable(
      'batch_stats', 'var', jnp.ones, (features,), jnp.float32
    )
    scale, bias = _scale_bias(self, features)
    if train and self.group_size is not None:
      return self._grouped(x, scale, bias, running_mean, running_var)
    dtype = layers.compute_dtype(x, self.dtype)
    if train:
      # One op with a hand-written gradient: far fewer passes over x than
      # the autodiff of batch_norm_stats + batch_norm (same values up to
      # rounding).
      y, mean, var = normalization.batch_norm_train(
        x, scale=scale, bias=bias, eps=self.epsilon, dtype=dtype
      )
      if self.is_mutable_collection('batch_stats') and (
        not self.is_initializing()
      ):
        running_mean.value = normalization.update_running(
          running_mean.value, mean, self.momentum
        )
        running_var.value = normalization.update_running(
          running_var.value, var, self.momentum
        )
      return y
    mean, var = running_mean.value, running_var.value
    x = x.astype(dtype)
    return normalization.batch_norm(
      x, mean=mean, var=var, scale=scale, bias=bias, eps=self.epsilon
    )

  def _grouped(self, x, scale, bias, running_mean, running_var) -> jax.Array:
    """Training with statistics per group of ``group_size`` examples."""
    g, batch = self.group_size, x.shape[0]
    if g < 1 or batch % g:
      raise ValueError(
        f'BatchNorm group_size {g} must be >= 1 and divide the batch {batch}'
      )
    xg = x.reshape(batch // g, g, *x.shape[1:])  # [B/g, g, ..., C]
    # Per group and channel: reduce the g examples and the spatial axes.
    mean, var = normalization.batch_norm_stats(xg, tuple(range(1, xg.ndim - 1)))
    if self.is_mutable_collection('batch_stats') and not self.is_initializing():
      running_mean.value = normalization.update_running(
        running_mean.value, mean.mean(0), self.momentum
      )
      running_var.value = normalization.update_running(
        running_var.value, var.mean(0), self.momentum
      )
    stats_shape = (batch // g,) + (1,) * (xg.ndim - 2) + (x.shape[-1],)
    xg = xg.astype(layers.compute_dtype(x, self.dtype))
    y = normalization.batch_norm(
      xg,
      mean=mean.reshape(stats_shape),
      var=var.reshape(stats_shape),
      scale=scale,
      bias=bias,
      eps=self.epsilon,
    )
    return y.reshape(x.shape)


class GroupNorm(nn.Module):
  """Group normalization (Wu & He 2018); batch independent.

  Attributes:
    num_groups: number of channel groups; must divide the channels unless
      ``fit_groups``.
    fit_groups: use ``gcd(num_groups, C)`` groups, the most up to
      ``num_groups`` that divide C, so that one constructor fits every layer
      of a net (narrow layers of 16 or 24 channels included).
    epsilon: added to the variance.
    use_scale: learn gamma.
    use_bias: learn beta.
    scale_init: gamma initializer.
    bias_init: beta initializer.
    dtype: computation dtype.
  """

  num_groups: int = 32
  fit_groups: bool = False
  epsilon: float = 1e-5
  use_scale: bool = True
  use_bias: bool = True
  scale_init: layers.Initializer = initializers.ones
  bias_init: layers.Initializer = initializers.zeros
  dtype: layers.Dtype | None = None

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    """Normalises ``x: [B, ..., C]``; ``train`` is accepted and ignored."""
    del train
    x = jnp.asarray(x)
    channels = x.shape[-1]
    groups = self.num_groups
    if self.fit_groups:
      groups = math.gcd(groups, channels)
    scale, bias = _scale_bias(self, channels)
    x = x.astype(layers.compute_dtype(x, self.dtype))
    return normalization.group_norm(
      x, num_groups=groups, scale=scale, bias=bias, eps=self.epsilon
    )


class LayerNorm(nn.Module):
  """Layer normalization (Ba et al. 2016) over the last axis.

  Attributes:
    epsilon: added to the variance.
    use_scale: learn gamma.
    use_bias: learn beta.
    scale_init: gamma initializer.
    bias_init: beta initializer.
    dtype: computation dtype.
  """

  epsilon: float = 1e-6
  use_scale: bool = True
  use_bias: bool = True
  scale_init: layers.Initializer = initializers.ones
  bias_init: layers.Initializer = initializers.zeros
  dtype: layers.Dtype | None = None

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    """Normalises ``x: [..., C]``; ``train`` is accepted and ignored."""
    del train
    x = jnp.asarray(x)
    scale, bias = _scale_bias(self, x.shape[-1])
    x = x.astype(layers.compute_dtype(x, self.dtype))
    return normalization.layer_norm(
      x, scale=scale, bias=bias, eps=self.epsilon, axes=(-1,)
    )


class Identity(nn.Module):
  """No normalisation: the same net without its norms (``norm='none'``).

  Nets whose convolutions drop their bias before a norm keep no bias with
  this one either; the normalization study compares a net with BatchNorm
  against this twin.

  Attributes:
    dtype: accepted (as every norm here) and unused.
  """

  dtype: layers.Dtype | None = None

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    """Returns ``x``; ``train`` is accepted and ignored."""
    del train
    return x


# The norms a config can name (``--config.model_kw.norm=group``). GroupNorm
# uses 32 groups where the channels allow, fewer in narrow layers.
NORMS: dict[str, ModuleDef] = {
  'batch': BatchNorm,
  'group': functools.partial(GroupNorm, num_groups=32, fit_groups=True),
  'none': Identity,
}


def by_name(name: str, dtype: layers.Dtype | None = None) -> ModuleDef:
  """The norm constructor registered as ``name``, computing in ``dtype``.

  Args:
    name: a key of :data:`NORMS` ('batch', 'group' or 'none'); or
      'batch:G' for BatchNorm with statistics per group of G examples
      (``group_size``), 'group:G' for GroupNorm with at most G groups
      (``fit_groups``: fewer in layers whose channels G does not divide).
    dtype: computation dtype passed to every norm it builds.

  Returns:
    A constructor: ``by_name('batch')(name='norm1')`` is a BatchNorm.
  """
  base, _, number = name.partition(':')
  if base in ('batch', 'group') and number:
    if not number.isdigit() or int(number) < 1:
      raise ValueError(f"norm '{base}:G' needs an integer G >= 1: {name!r}")
    if base == 'batch':
      return functools.partial(BatchNorm, dtype=dtype, group_size=int(number))
    return functools.partial(
      GroupNorm, dtype=dtype, num_groups=int(number), fit_groups=True
    )
  if name not in NORMS:
    raise ValueError(
      f"norm must be one of {sorted(NORMS)}, 'batch:G' or 'group:G', got "
      f'{name!r}'
    )
  return functools.partial(NORMS[name], dtype=dtype)
