"""Regularization with explicit keys: dropout and stochastic depth (DropPath).

Implements the regularization part of the lecture notes (seed 002, "Dropout"
and "Stochastic Depth (a.k.a DropPath)"):

* inverted dropout (Srivastava et al., 2014): in training each unit is kept
  with probability ``1 - rate`` and survivors are scaled by ``1 / (1 - rate)``,
  so the expectation equals the input and evaluation is the identity;
* stochastic depth (Huang et al., 2016): a residual branch is dropped for a
  whole example. The paper writes the train block as ``x + b f(x)`` with
  ``b ~ Bernoulli(p)`` and the test block as ``x + p f(x)``. We use the
  equivalent inverted form ``x + f(x) b / p`` in training, so evaluation is the
  plain ``x + f(x)`` and the expectation is preserved;
* the linear decay rule of the notes' Fig. 2: ``p_l = 1 - (l / L)(1 - p_L)``
  for ``l = 1..L`` with ``p_0 = 1`` (the input is always kept).
"""

import jax
import jax.numpy as jnp
import numpy as np


def _check_rate(rate: float) -> float:
  """Validates a drop rate: a Python number in [0, 1)."""
  rate = float(rate)
  if not 0.0 <= rate < 1.0:
    raise ValueError(f'drop rate must be in [0, 1), got rate={rate}')
  return rate


def dropout(
  key: jax.Array, x: jax.typing.ArrayLike, *, rate: float
) -> jax.Array:
  """Inverted dropout: zero units with probability ``rate``, rescale the rest.

  Args:
    key: PRNG key; the same key gives the same mask.
    x: activations of any shape.
    rate: drop probability in [0, 1); 0 returns ``x`` unchanged.

  Returns:
    ``x * m / (1 - rate)`` with ``m ~ Bernoulli(1 - rate)`` elementwise, same
    shape and dtype as ``x``.
  """
  rate = _check_rate(rate)
  x = jnp.asarray(x)
  if rate == 0.0:
    return x
  keep = jax.random.bernoulli(key, 1.0 - rate, x.shape)
  return jnp.where(keep, x / (1.0 - rate), jnp.zeros_like(x)).astype(x.dtype)


def drop_path(
  key: jax.Array, x: jax.typing.ArrayLike, *, rate: float
) -> jax.Array:
  """Stochastic depth on a residual branch: drop whole examples along axis 0.

  Apply to the branch output ``f(x)`` before the skip connection:
  ``y = x + drop_path(key, f(x), rate=1 - p_l)``. Survivors are scaled by
  ``1 / (1 - rate)`` (inverted form), so at evaluation the block is the plain
  ``x + f(x)`` and ``E[y] = x + f(x)``.

  Args:
    key: PRNG key.
    x: branch output ``[B, ...]``.
    rate: probability of dropping an example's branch, in [0, 1).

  Returns:
    ``x`` with each example either zeroed or scaled by ``1 / (1 - rate)``.
  """
  rate = _check_rate(rate)
  x = jnp.asarray(x)
  if x.ndim < 1:
    raise ValueError('drop_path needs a batch axis, got a scalar')
  if rate == 0.0:
    return x
  mask_shape = (x.shape[0],) + (1,) * (x.ndim - 1)
  keep = jax.random.bernoulli(key, 1.0 - rate, mask_shape)
  return jnp.where(keep, x / (1.0 - rate), jnp.zeros_like(x)).astype(x.dtype)


def survival_probabilities(
  num_blocks: int, *, p_last: float = 0.5
) -> np.ndarray:
  """Linear-decay survival probabilities of stochastic depth (notes, Fig. 2).

  Args:
    num_blocks: L, the number of residual blocks.
    p_last: p_L, the survival probability of the last block, in (0, 1].

  Returns:
    float64 array ``[L]`` with ``p_l = 1 - (l / L)(1 - p_L)`` for ``l = 1..L``
    (``p_0 = 1`` is the always-kept input and is not included).
  """
  if int(num_blocks) != num_blocks or num_blocks < 1:
    raise ValueError(f'num_blocks must be a positive int, got {num_blocks}')
  if not 0.0 < p_last <= 1.0:
    raise ValueError(f'p_last must be in (0, 1], got {p_last}')
  depth = np.arange(1, int(num_blocks) + 1, dtype=np.float64)
  return 1.0 - depth / num_blocks * (1.0 - p_last)


def drop_path_rates(num_blocks: int, *, max_rate: float) -> list[float]:
  """Per-block DropPath rates ``1 - p_l`` growing linearly to ``max_rate``.

  Args:
    num_blocks: L, the number of residual blocks.
    max_rate: drop rate of the last block, ``1 - p_L``, in [0, 1).

  Returns:
    A list of L Python floats ``(l / L) * max_rate`` for ``l = 1..L``.
  """
  max_rate = _check_rate(max_rate)
  survival = survival_probabilities(num_blocks, p_last=1.0 - max_rate)
  return [float(r) for r in 1.0 - survival]
