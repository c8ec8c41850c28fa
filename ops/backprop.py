"""Backpropagation by hand: the notes' derivations as code.

Implements the backpropagation parts of the lecture notes:

* seed 001, "Backpropagation in action": the delta recurrence of an L-layer
  perceptron, ``delta_L = dL/da_L * f'(z_L)``, ``delta_l = W_{l+1}^T
  delta_{l+1} * f'(z_l)``, ``dL/dW_l = delta_l a_{l-1}^T``, ``dL/db_l =
  delta_l``;
* seed 001, "CNN back-propagation": for a valid convolution (cross-correlation)
  ``x_ij = sum_ab w_ab y_(i+a)(j+b)``, the weight gradient ``dE/dw_ab =
  sum_ij dE/dx_ij y_(i+a)(j+b)`` sums over the whole output map and the input
  gradient ``dE/dy_ij = sum_ab dE/dx_(i-a)(j-b) w_ab`` over a filter window;
* seed 003, the 2-layer network trained "in about 20 lines" (sigmoid hidden
  layer, squared loss, hand-written backward pass);
* seed 004, "Backpropagation vs. numerical differentiation": central
  differences need ``2 |theta|`` evaluations of an ``O(|theta|)`` function,
  ``O(|theta|^2)`` work, against one forward and one backward pass.

Layout: the notes write column vectors, ``z = W a + b`` with ``W [out, in]``.
Here a batch is rows and dense kernels are ``[in, out]`` (as everywhere in the
codebase), so the same formulas read ``z = a W + b``, ``delta_l = (delta_{l+1}
W_{l+1}^T) * f'(z_l)`` and ``dW_l = a_{l-1}^T delta_l``, summed over the batch.
Images are NHWC and kernels HWIO, as in ``lax.conv_general_dilated``.
"""

from collections.abc import Callable, Sequence
import functools
import itertools

import jax
import jax.numpy as jnp

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


def _check_valid_window(image_hw, kernel_hw) -> None:
  if any(k > n for k, n in zip(kernel_hw, image_hw, strict=True)):
    raise ValueError(
      f'kernel {tuple(kernel_hw)} is larger than the image {tuple(image_hw)}'
    )


def _check_output_map(image_hw, kernel_hw, out_hw) -> None:
  """The error map of a valid conv must be ``image - kernel + 1`` per axis."""
  want = tuple(n - k + 1 for n, k in zip(image_hw, kernel_hw, strict=True))
  if tuple(out_hw) != want:
    raise ValueError(
      f'dE/dx map {tuple(out_hw)} does not match image {tuple(image_hw)} and '
      f'kernel {tuple(kernel_hw)}: a valid conv outputs {want}'
    )


def conv2d_single(y: ArrayLike, w: ArrayLike) -> Array:
  """Single-channel valid cross-correlation ``x_ij = sum_ab w_ab y_(i+a)(j+b)``.

  Args:
    y: image ``[N, M]``.
    w: filter ``[m, n]``.

  Returns:
    ``[N - m + 1, M - n + 1]``.
  """
  y, w = jnp.asarray(y), jnp.asarray(w)
  if y.ndim != 2 or w.ndim != 2:
    raise ValueError(f'need a 2-D image and filter, got {y.shape}, {w.shape}')
  _check_valid_window(y.shape, w.shape)
  ho, wo = y.shape[0] - w.shape[0] + 1, y.shape[1] - w.shape[1] + 1
  out = jnp.zeros((ho, wo), jnp.result_type(y, w))
  for a in range(w.shape[0]):
    for b in range(w.shape[1]):
      out = out + w[a, b] * y[a : a + ho, b : b + wo]
  return out


def conv2d_single_weight_grad(
  y: ArrayLike, dE_dx: ArrayLike, kernel_shape: tuple[int, int]
) -> Array:
  """``dE/dw_ab = sum_ij dE/dx_ij y_(i+a)(j+b)``, summed over the output map."""
  y, dE_dx = jnp.asarray(y), jnp.asarray(dE_dx)
  if y.ndim != 2 or dE_dx.ndim != 2:
    raise ValueError(f'need 2-D image and map, got {y.shape}, {dE_dx.shape}')
  _check_output_map(y.shape, kernel_shape, dE_dx.shape)
  ho, wo = dE_dx.shape
  rows = [
    [jnp.sum(dE_dx * y[a : a + ho, b : b + wo]) for b in range(kernel_shape[1])]
    for a in range(kernel_shape[0])
  ]
  return jnp.array(rows)


def conv2d_single_input_grad(w: ArrayLike, dE_dx: ArrayLike) -> Array:
  """``dE/dy_ij = sum_ab dE/dx_(i-a)(j-b) w_ab``: a sum over a filter window.

  Terms with ``(i - a, j - b)`` outside the output map are zero, which is
  what padding ``dE/dx`` by ``m - 1`` on every side gives.
  """
  w, dE_dx = jnp.asarray(w), jnp.asarray(dE_dx)
  if w.ndim != 2 or dE_dx.ndim != 2:
    raise ValueError(f'need 2-D filter and map, got {w.shape}, {dE_dx.shape}')
  m, n = w.shape
  h, wd = dE_dx.shape[0] + m - 1, dE_dx.shape[1] + n - 1
  padded = jnp.pad(dE_dx, ((m - 1, m - 1), (n - 1, n - 1)))
  out = jnp.zeros((h, wd), padded.dtype)
  for a in range(m):
    for b in range(n):
      # window[i, j] = padded[i - a + m - 1, j - b + n - 1] = dE/dx_(i-a)(j-b).
      top, left = m - 1 - a, n - 1 - b
      window = padded[top : top + h, left : left + wd]
      out = out + w[a, b] * window
  return out


def conv2d_valid(y: ArrayLike, w: ArrayLike) -> Array:
  """Multi-channel valid cross-correlation as a direct sum over the window.

  ``x[n, i, j, o] = sum_{a, b, c} w[a, b, c, o] y[n, i + a, j + b, c]``.

  Args:
    y: images ``[B, H, W, C_in]``.
    w: kernel ``[kh, kw, C_in, C_out]``.

  Returns:
    ``[B, H - kh + 1, W - kw + 1, C_out]``.
  """
  y, w = jnp.asarray(y), jnp.asarray(w)
  if y.ndim != 4 or w.ndim != 4 or y.shape[3] != w.shape[2]:
    raise ValueError(
      f'need NHWC images and an HWIO kernel with matching channels, got '
      f'{y.shape} and {w.shape}'
    )
  _check_valid_window(y.shape[1:3], w.shape[:2])
  kh, kw = w.shape[:2]
  ho, wo = y.shape[1] - kh + 1, y.shape[2] - kw + 1
  out = 0.0
  for a in range(kh):
    for b in range(kw):
      out = out + jnp.einsum(
        'nijc,co->nijo', y[:, a : a + ho, b : b + wo], w[a, b]
      )
  return out


def conv2d_weight_grad(
  y: ArrayLike, dE_dx: ArrayLike, kernel_hw: tuple[int, int]
) -> Array:
  """Weight gradient of ``conv2d_valid``: ``[kh, kw, C_in, C_out]``.

  ``dE/dw[a, b, c, o] = sum_{n, i, j} dE/dx[n, i, j, o] y[n, i + a, j + b, c]``,
  the notes' sum over the entire output map (and the batch).
  """
  y, dE_dx = jnp.asarray(y), jnp.asarray(dE_dx)
  if y.ndim != 4 or dE_dx.ndim != 4 or y.shape[0] != dE_dx.shape[0]:
    raise ValueError(
      f'need NHWC images and error maps with one batch, got {y.shape} and '
      f'{dE_dx.shape}'
    )
  _check_output_map(y.shape[1:3], kernel_hw, dE_dx.shape[1:3])
  ho, wo = dE_dx.shape[1:3]
  rows = [
    [
      jnp.einsum('nijo,nijc->co', dE_dx, y[:, a : a + ho, b : b + wo])
      for b in range(kernel_hw[1])
    ]
    for a in range(kernel_hw[0])
  ]
  return jnp.stack([jnp.stack(r) for r in rows])


def conv2d_input_grad(w: ArrayLike, dE_dx: ArrayLike) -> Array:
  """Input gradient of ``conv2d_valid``: ``[B, H, W, C_in]``.

  ``dE/dy[n, p, q, c] = sum_{a, b, o} dE/dx[n, p - a, q - b, o] w[a, b, c, o]``:
  each output position scatters its error back over the filter window it saw.
  """
  w, dE_dx = jnp.asarray(w), jnp.asarray(dE_dx)
  if w.ndim != 4 or dE_dx.ndim != 4 or dE_dx.shape[3] != w.shape[3]:
    raise ValueError(
      f'need an HWIO kernel and an NHWC error map with matching output '
      f'channels, got {w.shape} and {dE_dx.shape}'
    )
  kh, kw = w.shape[:2]
  bsz, ho, wo, _ = dE_dx.shape
  out = jnp.zeros((bsz, ho + kh - 1, wo + kw - 1, w.shape[2]), dE_dx.dtype)
  for a in range(kh):
    for b in range(kw):
      contrib = jnp.einsum('nijo,co->nijc', dE_dx, w[a, b])
      out = out.at[:, a : a + ho, b : b + wo].add(contrib)
  return out


def conv_layer_backward(
  y_prev: ArrayLike, w: ArrayLike, dE_dy: ArrayLike, activation: str
) -> tuple[Array, Array]:
  """Backprop through ``y = sigma(conv2d_valid(y_prev, w))`` as in the notes.

  ``dE/dx = dE/dy * sigma'(x)``, then the weight gradient (sum over the output
  map) and the input gradient (sum over a filter window).

  Returns:
    ``(dE/dw [kh, kw, C_in, C_out], dE/dy_prev [B, H, W, C_in])``.
  """
  w = jnp.asarray(w)
  x = conv2d_valid(y_prev, w)
  dE_dx = jnp.asarray(dE_dy) * activations.get_grad(activation)(x)
  dE_dw = conv2d_weight_grad(y_prev, dE_dx, w.shape[:2])
  return dE_dw, conv2d_input_grad(w, dE_dx)


def numerical_grad(
  f: Callable[[Array], Array], theta: ArrayLike, eps: float = 1e-5
) -> Array:
  """Central differences ``(f(theta + eps e_i) - f(theta - eps e_i)) / 2eps``.

  Calls ``f`` exactly ``2 |theta|`` times (one Python call per perturbation,
  so the count is observable); if ``f`` costs ``O(|theta|)``, the total work
  is ``O(|theta|^2)``, against ``O(|theta|)`` for backprop. Use float64 for
  accuracy.

  Args:
    f: scalar function of an array.
    theta: point ``[...]``.
    eps: step size.

  Returns:
    Gradient estimate with the shape of ``theta``.
  """
  theta = jnp.asarray(theta)
  flat = theta.ravel()
  grads = []
  for i in range(flat.size):
    plus = f(flat.at[i].add(eps).reshape(theta.shape))
    minus = f(flat.at[i].add(-eps).reshape(theta.shape))
    grads.append((plus - minus) / (2.0 * eps))
  return jnp.stack(grads).reshape(theta.shape)


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
  sizes = [a * b for a, b in shapes]
  # One draw split four ways: each distinct shape would cost a compilation.
  flat = jax.random.normal(key, (sum(sizes),))
  parts = jnp.split(flat, list(itertools.accumulate(sizes))[:-1])
  x, y, w1, w2 = (p.reshape(s) for p, s in zip(parts, shapes, strict=True))

  return [float(v) for v in _gradient_descent(w1, w2, x, y, lr, steps)]


@functools.partial(jax.jit, static_argnums=5)
def _gradient_descent(w1, w2, x, y, lr, steps):
  """``steps`` hand-gradient descent steps; the loss before each step."""

  def step(carry, _):
    w1, w2 = carry
    loss, g1, g2 = two_layer_net_grads(w1, w2, x, y)
    return (w1 - lr * g1, w2 - lr * g2), loss

  # x and y are arguments, not closed-over constants, which XLA would fold
  # at compile time (slow for the notes' 64 x 1000 inputs).
  return jax.lax.scan(step, (w1, w2), None, length=steps)[1]
