"""Weight initializers with JAX's signature ``init(key, shape, dtype)``.

Implements the initialization part of the lecture notes (seed 002,
"Initialization"):

* zero and "same value" (constant) initialization, which fail to break the
  symmetry between hidden units (every unit gets the same gradient);
* Gaussian initialization with a small or a large standard deviation;
* Xavier/Glorot (Glorot & Bengio, 2010): ``std = gain sqrt(2 / (fan_in +
  fan_out))``, matching the variance of consecutive layers;
* He/Kaiming (He et al., 2015): ``N(0, 2/n)`` because ReLU zeros out half of
  the activations; with a Leaky ReLU of slope ``a`` the gain is
  ``sqrt(2 / (1 + a^2))``;
* LeCun (LeCun et al., 1998): ``N(0, 1/n)``, the notes' ``Var[w] = 1/n``.

Uniform variants draw from ``U[-sqrt(3) std, sqrt(3) std]``, which has the same
variance. Normal variants draw from a plain (untruncated) Gaussian, as the
notes write them (``jax.nn.initializers`` truncates instead).

Every factory returns ``init(key, shape, dtype=jnp.float32)``, so it plugs into
``kernel_init=``. Kernel layouts: dense ``[in, out]``; conv ``[*spatial,
in / groups, out]`` (HWIO in 2-D).
"""

from collections.abc import Callable
import math

import jax
import jax.numpy as jnp

Array = jax.Array
Initializer = Callable[..., Array]

_MODES = ('fan_in', 'fan_out', 'fan_avg')


def compute_fans(shape: tuple[int, ...], groups: int = 1) -> tuple[int, int]:
  """Fan-in and fan-out of a dense or (grouped) convolution kernel.

  Dense kernels are ``[in, out]``. Convolution kernels are ``[*spatial,
  in_per_group, out]`` (``[kw, ...]`` in 1-D, HWIO ``[kh, kw, ...]`` in 2-D,
  ``[kd, kh, kw, ...]`` in 3-D), with ``in_per_group = in / groups``. With
  ``r = prod(spatial)`` the receptive field size:

  * ``fan_in = r * in_per_group``: the inputs one output unit sees;
  * ``fan_out = r * out / groups``: the outputs one input unit feeds, since in
    a grouped convolution each input channel reaches only the ``out / groups``
    filters of its own group.

  PyTorch's ``_calculate_fan_in_and_fan_out`` does not divide fan_out by
  ``groups`` (it uses ``r * out``); we do, because the fan-out should count the
  connections a unit actually has. For ``groups = 1`` the two agree.

  Args:
    shape: kernel shape, rank >= 2.
    groups: number of groups of a grouped convolution (1 = ordinary).

  Returns:
    ``(fan_in, fan_out)`` as Python ints.

  Raises:
    ValueError: rank < 2, ``groups < 1`` or ``out`` not divisible by groups.
  """
  shape = tuple(int(d) for d in shape)
  if len(shape) < 2:
    raise ValueError(
      f'fans need a kernel of rank >= 2 ([in, out] or [*spatial, in, out]), '
      f'got shape {shape}'
    )
  if groups < 1:
    raise ValueError(f'groups must be >= 1, got {groups}')
  out = shape[-1]
  if out % groups:
    raise ValueError(
      f'output channels {out} are not divisible by groups={groups}'
    )
  receptive = math.prod(shape[:-2])
  return receptive * shape[-2], receptive * out // groups


def zeros(
  key: jax.Array | None = None,
  shape: tuple[int, ...] | None = None,
  dtype: jnp.dtype = jnp.float32,
) -> Array | Initializer:
  """All-zeros initializer (biases; fails to break symmetry for weights).

  Usable directly, like ``jax.nn.initializers.zeros`` (``zeros(key, shape)``,
  ``bias_init=zeros``), and, like the other factories here, called with no
  arguments: ``zeros()`` returns the initializer itself.
  """
  if key is None and shape is None:
    return zeros
  return jnp.zeros(shape, dtype)


def ones(
  key: jax.Array | None = None,
  shape: tuple[int, ...] | None = None,
  dtype: jnp.dtype = jnp.float32,
) -> Array | Initializer:
  """All-ones initializer (norm scales); ``ones()`` returns itself."""
  if key is None and shape is None:
    return ones
  return jnp.ones(shape, dtype)


def constant(value: float) -> Initializer:
  """Every entry equal to ``value`` (the notes' "same value" initialization)."""

  def init(key, shape, dtype=jnp.float32):
    del key
    return jnp.full(shape, value, dtype)

  return init


def normal(stddev: float = 1e-2) -> Initializer:
  """Gaussian ``N(0, stddev^2)``; the notes compare a small and a large std."""
  if stddev < 0:
    raise ValueError(f'stddev must be >= 0, got {stddev}')

  def init(key, shape, dtype=jnp.float32):
    return stddev * jax.random.normal(key, shape, dtype)

  return init


def uniform(scale: float = 1e-2) -> Initializer:
  """Uniform on ``[-scale, scale]`` (symmetric, unlike jax's ``[0, scale)``)."""
  if scale < 0:
    raise ValueError(f'scale must be >= 0, got {scale}')

  def init(key, shape, dtype=jnp.float32):
    return jax.random.uniform(key, shape, dtype, minval=-scale, maxval=scale)

  return init


def _check_mode(mode: str) -> None:
  if mode not in _MODES:
    raise ValueError(f'mode must be one of {_MODES}, got {mode!r}')


def variance_scaling(
  scale: float,
  mode: str,
  distribution: str,
  groups: int = 1,
) -> Initializer:
  """Zero-mean draws with ``Var[w] = scale / n``, ``n`` picked by ``mode``.

  Args:
    scale: numerator of the variance (``gain^2``).
    mode: ``'fan_in'``, ``'fan_out'`` or ``'fan_avg'`` (``(in + out) / 2``).
    distribution: ``'normal'`` (untruncated) or ``'uniform'``
      (``U[-sqrt(3) std, sqrt(3) std]``).
    groups: groups of a grouped convolution kernel (see ``compute_fans``).

  Returns:
    ``init(key, shape, dtype=jnp.float32)``.
  """
  _check_mode(mode)
  if distribution not in ('normal', 'uniform'):
    raise ValueError(
      f"distribution must be 'normal' or 'uniform', got {distribution!r}"
    )
  if scale < 0:
    raise ValueError(f'scale must be >= 0, got {scale}')

  def init(key, shape, dtype=jnp.float32):
    fan_in, fan_out = compute_fans(shape, groups)
    n = {'fan_in': fan_in, 'fan_out': fan_out}.get(mode, (fan_in + fan_out) / 2)
    std = math.sqrt(scale / n)
    if distribution == 'normal':
      return std * jax.random.normal(key, shape, dtype)
    bound = math.sqrt(3.0) * std
    return jax.random.uniform(key, shape, dtype, minval=-bound, maxval=bound)

  return init


def xavier_normal(gain: float = 1.0, groups: int = 1) -> Initializer:
  """Glorot: ``N(0, std^2)``, ``std = gain sqrt(2 / (fan_in + fan_out))``."""
  return variance_scaling(gain**2, 'fan_avg', 'normal', groups)


def xavier_uniform(gain: float = 1.0, groups: int = 1) -> Initializer:
  """Glorot uniform: ``U[-a, a]``, ``a = gain sqrt(6 / (fan_in + fan_out))``."""
  return variance_scaling(gain**2, 'fan_avg', 'uniform', groups)


def _he_scale(mode: str, negative_slope: float) -> float:
  if mode not in ('fan_in', 'fan_out'):
    raise ValueError(
      f"He init mode must be 'fan_in' or 'fan_out', got {mode!r}"
    )
  return 2.0 / (1.0 + negative_slope**2)


def he_normal(
  mode: str = 'fan_in', negative_slope: float = 0.0, groups: int = 1
) -> Initializer:
  """He/Kaiming normal ``N(0, 2 / ((1 + a^2) n))``, ``n`` the fan of ``mode``.

  Args:
    mode: ``'fan_in'`` keeps forward activations' variance, ``'fan_out'``
      keeps backward gradients' variance.
    negative_slope: slope ``a`` of a Leaky ReLU / PReLU (0 for ReLU).
    groups: groups of a grouped convolution kernel.
  """
  return variance_scaling(
    _he_scale(mode, negative_slope), mode, 'normal', groups
  )


def he_uniform(
  mode: str = 'fan_in', negative_slope: float = 0.0, groups: int = 1
) -> Initializer:
  """He uniform: the variance of ``he_normal``, bound ``sqrt(3) std``."""
  return variance_scaling(
    _he_scale(mode, negative_slope), mode, 'uniform', groups
  )


def lecun_normal(mode: str = 'fan_in', groups: int = 1) -> Initializer:
  """LeCun normal ``N(0, 1/n)`` (the notes' ``Var[w_i] = 1/n``)."""
  return variance_scaling(1.0, mode, 'normal', groups)


def lecun_uniform(mode: str = 'fan_in', groups: int = 1) -> Initializer:
  """LeCun uniform: variance ``1/n``, bound ``sqrt(3/n)``."""
  return variance_scaling(1.0, mode, 'uniform', groups)


def standard_uniform(groups: int = 1) -> Initializer:
  """Glorot & Bengio's "standard" init: ``U[-1/sqrt(n), 1/sqrt(n)]``.

  ``n`` is the fan-in; the variance is ``1/(3n)``, a third of LeCun's. The
  heuristic their paper starts from (and the saturation study trains).
  """
  return variance_scaling(1.0 / 3.0, 'fan_in', 'uniform', groups)
