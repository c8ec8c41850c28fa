"""Backpropagation by hand for fully connected networks, and its check.

Implements the backpropagation parts of the lecture notes for dense layers:

* seed 001, "Backpropagation in action": the delta recurrence of an L-layer
  perceptron, ``delta_L = dL/da_L * f'(z_L)``, ``delta_l = W_{l+1}^T
  delta_{l+1} * f'(z_l)``, ``dL/dW_l = delta_l a_{l-1}^T``, ``dL/db_l =
  delta_l``: ``mlp_forward``, ``mlp_backward``;
* seed 003, the 2-layer network trained "in about 20 lines" (sigmoid hidden
  layer, squared loss, hand-written backward pass): ``two_layer_net_grads``,
  ``train_two_layer_net``;
* seed 004, "Backpropagation vs. numerical differentiation": central
  differences need ``2 |theta|`` evaluations of an ``O(|theta|)`` function,
  ``O(|theta|^2)`` work, against one forward and one backward pass:
  ``numerical_grad``.

The notes' backprop through a convolution layer (seed 001, "CNN
back-propagation") sits with the other convolution formulas in
``ops/conv_reference.py`` (``conv_layer_backward``).

Layout: the notes write column vectors, ``z = W a + b`` with ``W [out, in]``.
Here a batch is rows and dense kernels are ``[in, out]`` (as everywhere in the
codebase), so the same formulas read ``z = a W + b``, ``delta_l = (delta_{l+1}
W_{l+1}^T) * f'(z_l)`` and ``dW_l = a_{l-1}^T delta_l``, summed over the batch.
"""

from collections.abc import Callable, Sequence
import functools
import itertools

import jax
import jax.numpy as jnp
import numpy as np

from ops import activations
from ops import losses

Array = jax.Array
ArrayLike = jax.typing.ArrayLike
Params = Sequence[tuple[Array, Array]]

_LOSSES = ('squared', 'softmax_cross_entropy_with_integer_labels')


def _forward_cache(
  params: Params, x: ArrayLike, activation: str, output_activation: str
) -> tuple[list[Array], list[Array]]:
  """Forward pass keeping pre-activations ``z_l`` and activations ``a_l``."""
  a = jnp.asarray(x)
  zs, acts = [], [a]
  for layer, (w, b) in enumerate(params):
    z = a @ w + b  # [B, out_l]
    last = layer == len(params) - 1
    a = activations.get(output_activation if last else activation)(z)
    zs.append(z)
    acts.append(a)
  return zs, acts


def mlp_forward(
  params: Params,
  x: ArrayLike,
  activation: str = 'relu',
  *,
  output_activation: str = 'identity',
) -> Array:
  """An L-layer perceptron ``a_l = f(a_{l-1} W_l + b_l)``.

  Args:
    params: ``[(W_1, b_1), ..., (W_L, b_L)]`` with ``W_l [in, out]``.
    x: inputs ``[B, in]``.
    activation: hidden activation, a name in ``ops.activations.NAMES``.
    output_activation: activation of the last layer (``'identity'`` for
      scores).

  Returns:
    ``a_L``, ``[B, out]``.
  """
  return _forward_cache(params, x, activation, output_activation)[1][-1]


def _loss_and_output_grad(
  out: Array, y: ArrayLike, loss: str
) -> tuple[Array, Array]:
  """Mean loss over the batch and ``dL/da_L``."""
  batch = out.shape[0]
  if loss == 'squared':
    diff = out - jnp.asarray(y)
    return 0.5 * jnp.sum(diff * diff) / batch, diff / batch
  value = losses.softmax_cross_entropy_with_integer_labels(
    logits=out, labels=y
  ).mean()
  grad = losses.softmax_cross_entropy_with_integer_labels_grad(
    logits=out, labels=y
  )
  return value, grad / batch


def mlp_backward(
  params: Params,
  x: ArrayLike,
  y: ArrayLike,
  activation: str = 'relu',
  loss: str = 'squared',
  *,
  output_activation: str = 'identity',
) -> tuple[Array, list[tuple[Array, Array]]]:
  """Loss and gradients of an MLP by the delta recurrence (no autodiff).

  Args:
    params: ``[(W_l [in, out], b_l [out])]``.
    x: inputs ``[B, in]``.
    y: targets ``[B, out]`` for ``loss='squared'`` (``1/2 ||a_L - y||^2`` per
      example) or integer labels ``[B]`` for
      ``'softmax_cross_entropy_with_integer_labels'``.
    activation: hidden activation name (``ops.activations.NAMES``).
    loss: ``'squared'`` or ``'softmax_cross_entropy_with_integer_labels'``;
      averaged over the batch.
    output_activation: activation name of the last layer.

  Returns:
    ``(loss, [(dL/dW_l, dL/db_l)])``, the same structure as ``params``.
  """
  if loss not in _LOSSES:
    raise ValueError(f'loss must be one of {_LOSSES}, got {loss!r}')
  f_grad = activations.get_grad(activation)
  out_grad = activations.get_grad(output_activation)
  zs, acts = _forward_cache(params, x, activation, output_activation)
  value, d_out = _loss_and_output_grad(acts[-1], y, loss)
  delta = d_out * out_grad(zs[-1])  # delta_L, [B, out_L]
  grads = []
  for k in reversed(range(len(params))):  # Layer k + 1 of the notes.
    grads.append((acts[k].T @ delta, jnp.sum(delta, axis=0)))
    if k > 0:
      delta = (delta @ params[k][0].T) * f_grad(zs[k - 1])
  return value, grads[::-1]


def numerical_grad(
  f: Callable[[Array], Array], theta: ArrayLike, eps: float = 1e-5
) -> Array:
  """Central differences ``(f(theta + eps e_i) - f(theta - eps e_i)) / 2eps``.

  Calls ``f`` exactly ``2 |theta|`` times (one Python call per perturbation,
  so the count is observable); if ``f`` costs ``O(|theta|)``, the total work
  is ``O(|theta|^2)``, against ``O(|theta|)`` for backprop. Use float64 for
  accuracy. ``f`` runs eagerly (the loop and the count are Python), so
  ``numerical_grad`` is not meant to be traced under ``jax.jit``.

  Args:
    f: scalar function of an array.
    theta: point ``[...]``.
    eps: step size.

  Returns:
    Gradient estimate with the shape of ``theta``.
  """
  theta = jnp.asarray(theta)
  flat = theta.ravel()
  plus, minus = [], []
  for i in range(flat.size):
    # One compiled call makes both perturbed points: eager `.at[i].add`
    # costs milliseconds of dispatch, which would hide the O(|theta|) cost
    # of `f` that this function exists to show.
    up, down = _perturbed(flat, i, eps, theta.shape)
    plus.append(f(up))
    minus.append(f(down))
  # One transfer of all the values: stacking 2 |theta| device scalars with
  # `jnp.stack` dispatches one op per scalar, as costly as `f` itself.
  plus, minus = (
    np.asarray(jax.device_get(plus)),
    np.asarray(jax.device_get(minus)),
  )
  return jnp.asarray((plus - minus) / (2.0 * eps)).reshape(theta.shape)


@functools.partial(jax.jit, static_argnums=3)
def _perturbed(
  flat: Array, i: Array, eps: Array, shape: tuple[int, ...]
) -> tuple[Array, Array]:
  """``theta + eps e_i`` and ``theta - eps e_i``, shaped like ``theta``."""
  return flat.at[i].add(eps).reshape(shape), flat.at[i].add(-eps).reshape(shape)


def two_layer_net_grads(
  w1: ArrayLike, w2: ArrayLike, x: ArrayLike, y: ArrayLike
) -> tuple[Array, Array, Array]:
  """The notes' hand backward pass for ``y_pred = sigmoid(x w1) w2``.

  Loss ``sum (y_pred - y)^2`` (no 1/2, no mean, as in the numpy example).

  Returns:
    ``(loss, dloss/dw1 [D_in, H], dloss/dw2 [H, D_out])``.
  """
  h = activations.sigmoid(x @ w1)  # [N, H]
  y_pred = h @ w2  # [N, D_out]
  loss = jnp.sum(jnp.square(y_pred - y))
  grad_y_pred = 2.0 * (y_pred - y)
  grad_w2 = h.T @ grad_y_pred
  grad_h = grad_y_pred @ jnp.asarray(w2).T
  grad_w1 = jnp.asarray(x).T @ (grad_h * h * (1.0 - h))
  return loss, grad_w1, grad_w2


def train_two_layer_net(
  key: jax.Array,
  steps: int,
  *,
  n: int = 64,
  d_in: int = 1000,
  hidden: int = 100,
  d_out: int = 10,
  lr: float = 1e-4,
) -> list[float]:
  """Trains the notes' 2-layer net on random data with hand gradients.

  ``x, y, w1, w2`` are standard normal, as ``randn`` in the notes; each step
  is plain gradient descent ``w -= lr * grad``.

  Args:
    key: PRNG key for the data and the weights.
    steps: number of gradient steps.
    n, d_in, hidden, d_out: the notes' ``N, D_in, H, D_out``.
    lr: learning rate.

  Returns:
    The loss before each step, ``steps`` Python floats.
  """
  shapes = ((n, d_in), (n, d_out), (d_in, hidden), (hidden, d_out))
  history = _train(key, lr, shapes, steps)
  return [float(v) for v in history]


@functools.partial(jax.jit, static_argnums=(2, 3))
def _train(key, lr, shapes, steps):
  """Draws the data and weights, then runs ``steps`` descent steps.

  One compiled program: the draw and the loop compile together, and the
  data is computed from the key rather than closed over as a constant,
  which XLA would fold at compile time (slow for the notes' 64 x 1000).

  Returns:
    The loss before each step, ``[steps]``.
  """
  sizes = [a * b for a, b in shapes]
  flat = jax.random.normal(key, (sum(sizes),))
  parts = jnp.split(flat, list(itertools.accumulate(sizes))[:-1])
  x, y, w1, w2 = (p.reshape(s) for p, s in zip(parts, shapes, strict=True))

  def step(carry, _):
    w1, w2 = carry
    loss, g1, g2 = two_layer_net_grads(w1, w2, x, y)
    return (w1 - lr * g1, w2 - lr * g2), loss

  return jax.lax.scan(step, (w1, w2), None, length=steps)[1]
