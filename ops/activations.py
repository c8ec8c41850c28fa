"""Activation functions and their closed-form derivatives.

Implements the activation part of the lecture notes (seed 002 "Activation
Functions", seed 003 "Activation functions", seed 004 "Activation Functions"):
sigmoid ``1/(1+e^-x)`` with derivative ``s(1-s)``; tanh with ``1-tanh^2`` (and
the identity ``tanh(x) = 2 sigmoid(2x) - 1``); ReLU ``max(0,x)`` with derivative
``1(x>0)``; Leaky ReLU ``max(ax, x)`` (the notes use a = 0.01 and a = 0.1);
PReLU (Leaky ReLU with a learnable slope, He et al., 2015); ELU (Clevert et
al., 2015); Maxout ``max_k(w_k.x + b_k)`` (Goodfellow et al., 2013); Softplus
``ln(1+e^x)`` whose derivative is the sigmoid; Swish/SiLU ``x sigmoid(x)``
(Ramachandran et al., 2017); GELU as the notes write it, ``x sigmoid(1.702x)``
(``gelu_sigmoid``), and the exact ``x Phi(x)`` of Hendrycks & Gimpel (2016)
(``gelu``); and Sine.

Each ``<name>_grad(x, ...)`` is the elementwise derivative written by hand, so
it can be compared with autodiff. All functions and derivatives are written in
forms that never overflow ``exp`` (they stay finite at ``|x| = 1e4`` in
float32): the sigmoid only exponentiates ``-|x|``, softplus uses ``logaddexp``
and ELU exponentiates ``min(x, 0)``.
"""

from collections.abc import Callable
import math

import jax
import jax.numpy as jnp

Array = jax.Array
ArrayLike = jax.typing.ArrayLike

_GELU_SIGMOID_SCALE = 1.702  # The notes' constant: x sigmoid(1.702 x).


def identity(x: ArrayLike) -> Array:
  """Identity ``f(x) = x`` (a linear output layer)."""
  return jnp.asarray(x)


def identity_grad(x: ArrayLike) -> Array:
  """Derivative of the identity: ones."""
  return jnp.ones_like(jnp.asarray(x))


def sigmoid(x: ArrayLike) -> Array:
  """Logistic sigmoid ``1 / (1 + e^-x)``, stable for any ``x``.

  Only ``e^{-|x|}`` (at most 1) is computed: for ``x >= 0`` the textbook form,
  for ``x < 0`` the equivalent ``e^x / (1 + e^x)``.
  """
  x = jnp.asarray(x)
  e = jnp.exp(-jnp.abs(x))
  return jnp.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def sigmoid_grad(x: ArrayLike) -> Array:
  """Derivative of the sigmoid, ``s (1 - s)``."""
  s = sigmoid(x)
  return s * (1.0 - s)


def tanh(x: ArrayLike) -> Array:
  """Hyperbolic tangent ``(e^x - e^-x) / (e^x + e^-x)``."""
  return jnp.tanh(x)


def tanh_grad(x: ArrayLike) -> Array:
  """Derivative of tanh, ``1 - tanh(x)^2``."""
  t = jnp.tanh(x)
  return 1.0 - t * t


def relu(x: ArrayLike) -> Array:
  """Rectified linear unit ``max(0, x)``."""
  x = jnp.asarray(x)
  return jnp.where(x > 0, x, jnp.zeros_like(x))


def relu_grad(x: ArrayLike) -> Array:
  """Derivative of ReLU, ``1(x > 0)`` (0 at the kink, as autodiff gives)."""
  x = jnp.asarray(x)
  return (x > 0).astype(x.dtype)


def leaky_relu(x: ArrayLike, negative_slope: float = 0.01) -> Array:
  """Leaky ReLU ``max(a x, x)`` for ``0 <= a < 1``; a = 0.01 by default."""
  x = jnp.asarray(x)
  return jnp.where(x >= 0, x, negative_slope * x)


def leaky_relu_grad(x: ArrayLike, negative_slope: float = 0.01) -> Array:
  """Derivative of Leaky ReLU: 1 for ``x >= 0``, else ``negative_slope``."""
  x = jnp.asarray(x)
  return jnp.where(x >= 0, jnp.ones_like(x), negative_slope * jnp.ones_like(x))


def prelu(x: ArrayLike, alpha: ArrayLike) -> Array:
  """Parametric ReLU: ``x`` if ``x >= 0`` else ``alpha x``.

  Args:
    x: inputs, e.g. ``[B, H, W, C]``.
    alpha: learnable slope broadcastable to ``x`` (a scalar, or ``[C]`` for
      one slope per channel as in He et al., 2015).

  Returns:
    Array of the broadcast shape of ``x`` and ``alpha``.
  """
  x = jnp.asarray(x)
  return jnp.where(x >= 0, x, alpha * x)


def prelu_grad(x: ArrayLike, alpha: ArrayLike) -> Array:
  """Derivative of PReLU w.r.t. ``x``: 1 for ``x >= 0``, ``alpha`` otherwise."""
  x = jnp.asarray(x)
  alpha = jnp.asarray(alpha, x.dtype)
  return jnp.where(x >= 0, jnp.ones_like(x), alpha * jnp.ones_like(x))


def prelu_grad_alpha(x: ArrayLike, alpha: ArrayLike) -> Array:
  """Elementwise derivative of PReLU w.r.t. ``alpha``: ``min(x, 0)``.

  The gradient of a loss w.r.t. a shared slope is this times the upstream
  gradient, summed over the positions that share the slope ("backprop into
  alpha" in the notes).
  """
  x = jnp.asarray(x)
  alpha = jnp.asarray(alpha, x.dtype)
  return jnp.where(x >= 0, jnp.zeros_like(x), x) + jnp.zeros_like(alpha)


def elu(x: ArrayLike, alpha: float = 1.0) -> Array:
  """Exponential linear unit: ``x`` if ``x > 0`` else ``alpha (e^x - 1)``."""
  x = jnp.asarray(x)
  # exp of min(x, 0) never overflows, and keeps the unused branch finite so
  # gradients through jnp.where are not NaN.
  return jnp.where(x > 0, x, alpha * jnp.expm1(jnp.minimum(x, 0.0)))


def elu_grad(x: ArrayLike, alpha: float = 1.0) -> Array:
  """Derivative of ELU: 1 for ``x > 0``, ``alpha e^x`` otherwise."""
  x = jnp.asarray(x)
  return jnp.where(
    x > 0, jnp.ones_like(x), alpha * jnp.exp(jnp.minimum(x, 0.0))
  )


def softplus(x: ArrayLike) -> Array:
  """Softplus ``ln(1 + e^x)``, computed as ``logaddexp(x, 0)`` (no overflow)."""
  x = jnp.asarray(x)
  return jnp.logaddexp(x, jnp.zeros_like(x))


def softplus_grad(x: ArrayLike) -> Array:
  """Derivative of softplus: the sigmoid (as the notes point out)."""
  return sigmoid(x)


def swish(x: ArrayLike) -> Array:
  """Swish / SiLU ``x sigmoid(x)`` (Ramachandran et al., 2017)."""
  x = jnp.asarray(x)
  return x * sigmoid(x)


def swish_grad(x: ArrayLike) -> Array:
  """Derivative of Swish: ``s + x s (1 - s)`` with ``s = sigmoid(x)``."""
  x = jnp.asarray(x)
  s = sigmoid(x)
  return s + x * s * (1.0 - s)


silu = swish
silu_grad = swish_grad


def gelu_sigmoid(x: ArrayLike) -> Array:
  """GELU as the notes write it: ``x sigmoid(1.702 x)``.

  The notes and the paper differ: Hendrycks & Gimpel (2016) define GELU as
  ``x Phi(x)`` (``gelu`` here) and give ``x sigmoid(1.702 x)`` only as a fast
  approximation of it; the two differ by at most about 0.021.
  """
  x = jnp.asarray(x)
  return x * sigmoid(_GELU_SIGMOID_SCALE * x)


def gelu_sigmoid_grad(x: ArrayLike) -> Array:
  """Derivative of ``x sigmoid(c x)``: ``s + c x s (1 - s)``, ``s = s(c x)``."""
  x = jnp.asarray(x)
  s = sigmoid(_GELU_SIGMOID_SCALE * x)
  return s + _GELU_SIGMOID_SCALE * x * s * (1.0 - s)


def gelu(x: ArrayLike) -> Array:
  """Exact GELU ``x Phi(x) = x (1 + erf(x / sqrt 2)) / 2`` (Hendrycks 2016)."""
  x = jnp.asarray(x)
  return 0.5 * x * (1.0 + jax.lax.erf(x / math.sqrt(2.0)))


def gelu_grad(x: ArrayLike) -> Array:
  """Derivative of exact GELU: ``Phi(x) + x phi(x)``, phi the normal density."""
  x = jnp.asarray(x)
  cdf = 0.5 * (1.0 + jax.lax.erf(x / math.sqrt(2.0)))
  pdf = jnp.exp(-0.5 * x * x) / math.sqrt(2.0 * math.pi)
  return cdf + x * pdf


def sine(x: ArrayLike) -> Array:
  """Sine activation ``sin(x)``."""
  return jnp.sin(x)


def sine_grad(x: ArrayLike) -> Array:
  """Derivative of the sine activation, ``cos(x)``."""
  return jnp.cos(x)


def _maxout_pieces(x: ArrayLike, w: ArrayLike, b: ArrayLike) -> Array:
  """The k affine pieces ``w_k.x + b_k``: ``[..., k, out]``."""
  x = jnp.asarray(x)
  w = jnp.asarray(w)
  b = jnp.asarray(b)
  if w.ndim != 3 or b.shape != (w.shape[0], w.shape[2]):
    raise ValueError(
      f'maxout needs w [k, in, out] and b [k, out], got w {w.shape}, '
      f'b {b.shape}'
    )
  if x.shape[-1] != w.shape[1]:
    raise ValueError(
      f'maxout input has {x.shape[-1]} features, w expects {w.shape[1]}'
    )
  return jnp.einsum('...i,kio->...ko', x, w) + b


def maxout(x: ArrayLike, w: ArrayLike, b: ArrayLike) -> Array:
  """Maxout unit ``max_k (w_k^T x + b_k)`` with k linear pieces.

  Args:
    x: inputs ``[..., in]``.
    w: piece weights ``[k, in, out]``.
    b: piece biases ``[k, out]``.

  Returns:
    ``[..., out]``, the elementwise maximum over the k pieces.
  """
  return jnp.max(_maxout_pieces(x, w, b), axis=-2)


def _maxout_selection(x: ArrayLike, w: ArrayLike, b: ArrayLike) -> Array:
  """One-hot ``[..., k, out]`` marking the winning piece of each output."""
  pieces = _maxout_pieces(x, w, b)
  winner = jnp.argmax(pieces, axis=-2)  # [..., out]
  k = pieces.shape[-2]
  return jax.nn.one_hot(winner, k, axis=-2, dtype=pieces.dtype)


def maxout_grad(x: ArrayLike, w: ArrayLike, b: ArrayLike) -> Array:
  """Jacobian of maxout w.r.t. ``x``: ``[..., out, in]``.

  Only the winning piece ``k*`` of each output passes gradient, so
  ``d y_o / d x_i = w[k*(o), i, o]``.
  """
  sel = _maxout_selection(x, w, b)  # [..., k, out]
  return jnp.einsum('...ko,kio->...oi', sel, jnp.asarray(w))


def maxout_vjp(
  x: ArrayLike, w: ArrayLike, b: ArrayLike, g: ArrayLike
) -> tuple[Array, Array, Array]:
  """Backprop through a batch of maxout units by hand.

  Args:
    x: inputs ``[B, in]``.
    w: piece weights ``[k, in, out]``.
    b: piece biases ``[k, out]``.
    g: upstream gradient ``dL/dy``, ``[B, out]``.

  Returns:
    ``(dL/dx [B, in], dL/dw [k, in, out], dL/db [k, out])``: only the winning
    piece of each output receives gradient.
  """
  x = jnp.asarray(x)
  sel = _maxout_selection(x, w, b) * jnp.asarray(g)[:, None, :]  # [B, k, out]
  dx = jnp.einsum('bko,kio->bi', sel, jnp.asarray(w))
  dw = jnp.einsum('bi,bko->kio', x, sel)
  db = jnp.sum(sel, axis=0)
  return dx, dw, db


_REGISTRY: dict[str, tuple[Callable[..., Array], Callable[..., Array]]] = {
  'relu': (relu, relu_grad),
  'sigmoid': (sigmoid, sigmoid_grad),
  'tanh': (tanh, tanh_grad),
  'leaky_relu': (leaky_relu, leaky_relu_grad),
  'elu': (elu, elu_grad),
  'softplus': (softplus, softplus_grad),
  'swish': (swish, swish_grad),
  'silu': (silu, silu_grad),
  'gelu': (gelu, gelu_grad),
  'gelu_sigmoid': (gelu_sigmoid, gelu_sigmoid_grad),
  'sine': (sine, sine_grad),
  'identity': (identity, identity_grad),
}

NAMES: tuple[str, ...] = tuple(_REGISTRY)


def _lookup(name: str) -> tuple[Callable[..., Array], Callable[..., Array]]:
  if name not in _REGISTRY:
    raise ValueError(
      f'unknown activation {name!r}; known activations: {", ".join(NAMES)}'
    )
  return _REGISTRY[name]


def get(name: str) -> Callable[..., Array]:
  """Elementwise activation by name (one of ``NAMES``); ValueError otherwise."""
  return _lookup(name)[0]


def get_grad(name: str) -> Callable[..., Array]:
  """Closed-form derivative of the activation ``name`` (one of ``NAMES``)."""
  return _lookup(name)[1]
