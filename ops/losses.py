"""Losses, probabilities and information measures.

Implements the loss part of the lecture notes (seed 004, "More on loss
functions" and "Derive the gradients of hinge loss / NLL loss"):

* softmax, softmax with an inverse temperature ``beta = 1/T``
  (``sm_beta(s)_i = e^{beta s_i} / sum_j e^{beta s_j}``, tending to arg max as
  ``beta -> inf``) and the log-sum-exp trick (subtract the max);
* softmax cross-entropy ``L_i = -s_y + log sum_j e^{s_j}`` and its hand-derived
  gradient ``dL/ds_j = p_j - 1[j = y]`` (so ``dL/dw_jk = (p_j - 1[j=y]) x_k``
  for a linear classifier ``s = W x``);
* the multiclass hinge loss of Weston & Watkins ``sum_{j != y} max(0, s_j - s_y
  + Delta)`` and its hand-derived gradient;
* multi-label hinge and logistic losses, binary logistic ``log(1 + e^{-y f})``,
  the 0-1 loss, absolute / squared / general ``L_q`` losses;
* entropy ``H(p)``, cross-entropy ``H(p, q)`` and ``KL(p || q)`` in bits or
  nats, related by ``H(p, q) = H(p) + KL(p || q)``;
* soft-target cross-entropy (mixup labels), label smoothing (Szegedy et al.,
  2016), one-hot encoding and a top-k accuracy helper.

Losses take keyword-only arguments and return one value per example ``[B]``;
reduce them (mean, masked sum) in the caller.
"""

import math

import jax
import jax.numpy as jnp

Array = jax.Array
ArrayLike = jax.typing.ArrayLike


def _check_positive(name: str, value: float) -> None:
  """Raises ValueError for a non-positive Python number (traced values pass)."""
  if isinstance(value, int | float) and not value > 0:
    raise ValueError(f'{name} must be > 0, got {value}')


def one_hot(
  labels: ArrayLike, num_classes: int, dtype: jnp.dtype = jnp.float32
) -> Array:
  """One-hot encoding: ``[...]`` int labels -> ``[..., num_classes]``."""
  labels = jnp.asarray(labels)
  if not jnp.issubdtype(labels.dtype, jnp.integer):
    raise ValueError(f'one_hot needs integer labels, got {labels.dtype}')
  if num_classes < 1:
    raise ValueError(f'num_classes must be >= 1, got {num_classes}')
  return (labels[..., None] == jnp.arange(num_classes)).astype(dtype)


def logsumexp(x: ArrayLike, axis: int = -1, keepdims: bool = False) -> Array:
  """``log sum_j e^{x_j}`` with the max subtracted first (never overflows).

  ``log sum e^{x_j} = m + log sum e^{x_j - m}`` for ``m = max_j x_j``: every
  exponent is <= 0. The shift is held constant for autodiff (the result does
  not depend on it), and an all ``-inf`` row gives ``-inf`` rather than NaN.
  """
  x = jnp.asarray(x)
  m = jax.lax.stop_gradient(jnp.max(x, axis=axis, keepdims=True))
  m = jnp.where(jnp.isfinite(m), m, jnp.zeros_like(m))
  out = m + jnp.log(jnp.sum(jnp.exp(x - m), axis=axis, keepdims=True))
  return out if keepdims else jnp.squeeze(out, axis=axis)


def log_softmax(
  x: ArrayLike, axis: int = -1, temperature: float = 1.0
) -> Array:
  """``log softmax(x / T)`` computed as ``x/T - logsumexp(x/T)``."""
  _check_positive('temperature', temperature)
  z = jnp.asarray(x) / temperature
  return z - logsumexp(z, axis=axis, keepdims=True)


def softmax(x: ArrayLike, axis: int = -1, temperature: float = 1.0) -> Array:
  """Softmax with temperature: ``e^{x_i/T} / sum_j e^{x_j/T}`` (stable).

  ``T = 1`` is the plain softmax; a larger ``T`` flattens the distribution,
  a smaller one sharpens it towards the arg max.
  """
  return jnp.exp(log_softmax(x, axis=axis, temperature=temperature))


def softmax_beta(x: ArrayLike, beta: float, axis: int = -1) -> Array:
  """The notes' ``sm_beta(s)_i = e^{beta s_i} / sum_j e^{beta s_j}`` (1/T)."""
  _check_positive('beta', beta)
  z = beta * jnp.asarray(x)
  return jnp.exp(z - logsumexp(z, axis=axis, keepdims=True))


def _check_labels(logits: Array, labels: Array) -> None:
  if labels.shape != logits.shape[:-1]:
    raise ValueError(
      f'labels shape {labels.shape} does not match logits shape '
      f'{logits.shape} without its class axis'
    )
  if not jnp.issubdtype(labels.dtype, jnp.integer):
    raise ValueError(f'labels must be integers, got {labels.dtype}')


def _check_same_shape(what: str, a: Array, b: Array) -> None:
  """Raises ValueError unless two per-class arrays have the same shape.

  Broadcasting would silently turn e.g. ``[B, 1]`` and ``[B]`` into ``[B, B]``.
  """
  if a.shape != b.shape:
    raise ValueError(f'{what}: shapes {a.shape} and {b.shape} differ')


def _check_broadcasts_to(what: str, labels: Array, scores: Array) -> None:
  """Raises ValueError unless ``labels`` broadcasts to the shape of scores."""
  try:
    shape = jnp.broadcast_shapes(labels.shape, scores.shape)
  except ValueError:
    shape = None
  if shape != scores.shape:
    raise ValueError(
      f'{what}: labels shape {labels.shape} does not broadcast to scores '
      f'shape {scores.shape}'
    )


def _take_label(scores: Array, labels: Array) -> Array:
  """``scores[..., labels]`` per example: ``[...]``."""
  return jnp.take_along_axis(scores, labels[..., None], axis=-1)[..., 0]


def softmax_cross_entropy_with_integer_labels(
  *, logits: ArrayLike, labels: ArrayLike
) -> Array:
  """Softmax cross-entropy ``-s_y + log sum_j e^{s_j}`` per example.

  Args:
    logits: scores ``[B, K]`` (any leading shape).
    labels: integer classes ``[B]``.

  Returns:
    Loss in nats, ``[B]``; finite even for logits of order 1e4.
  """
  logits = jnp.asarray(logits)
  labels = jnp.asarray(labels)
  _check_labels(logits, labels)
  return logsumexp(logits) - _take_label(logits, labels)


def softmax_cross_entropy_with_integer_labels_grad(
  *, logits: ArrayLike, labels: ArrayLike
) -> Array:
  """Hand-derived ``dL_i/ds_j = p_j - 1[j = y_i]`` (per example), ``[B, K]``."""
  logits = jnp.asarray(logits)
  labels = jnp.asarray(labels)
  _check_labels(logits, labels)
  return softmax(logits) - one_hot(labels, logits.shape[-1], logits.dtype)


def linear_softmax_cross_entropy_grad_w(
  W: ArrayLike, x: ArrayLike, y: ArrayLike
) -> Array:
  """Gradient of softmax CE of a linear classifier ``s = W x`` w.r.t. ``W``.

  The notes' ``dL_i/dw_jk = (p_j - 1[j = y_i]) x_ik``, averaged over the batch.

  Args:
    W: weights ``[K, D]`` (row ``j`` scores class ``j``).
    x: inputs ``[B, D]`` or a single example ``[D]``.
    y: integer labels ``[B]`` (or a scalar for a single example).

  Returns:
    ``d mean_i L_i / dW``, ``[K, D]``.
  """
  W = jnp.asarray(W)
  x = jnp.atleast_2d(jnp.asarray(x))
  y = jnp.atleast_1d(jnp.asarray(y))
  delta = softmax_cross_entropy_with_integer_labels_grad(
    logits=x @ W.T, labels=y
  )  # [B, K]
  return delta.T @ x / x.shape[0]


def multiclass_hinge(
  *, scores: ArrayLike, labels: ArrayLike, margin: float = 1.0
) -> Array:
  """Weston-Watkins hinge ``sum_{j != y} max(0, s_j - s_y + Delta)``: [B]."""
  scores = jnp.asarray(scores)
  labels = jnp.asarray(labels)
  _check_labels(scores, labels)
  viol = jnp.maximum(
    0.0, scores - _take_label(scores, labels)[..., None] + margin
  )
  not_y = 1.0 - one_hot(labels, scores.shape[-1], scores.dtype)
  return jnp.sum(viol * not_y, axis=-1)


def multiclass_hinge_grad_scores(
  *, scores: ArrayLike, labels: ArrayLike, margin: float = 1.0
) -> Array:
  """Hand-derived gradient of the multiclass hinge w.r.t. scores, ``[B, K]``.

  Entry ``j != y`` is ``1(s_j - s_y + Delta > 0)``; entry ``y`` is minus the
  number of classes violating the margin.
  """
  scores = jnp.asarray(scores)
  labels = jnp.asarray(labels)
  _check_labels(scores, labels)
  not_y = 1.0 - one_hot(labels, scores.shape[-1], scores.dtype)
  active = (
    scores - _take_label(scores, labels)[..., None] + margin > 0
  ) * not_y
  count = jnp.sum(active, axis=-1, keepdims=True)
  return active - count * (1.0 - not_y)


def linear_hinge_grad_w(
  W: ArrayLike, x: ArrayLike, y: ArrayLike, *, margin: float = 1.0
) -> Array:
  """Gradient of the multiclass hinge of ``s = W x`` w.r.t. ``W`` (batch mean).

  The notes' rows: ``dL_i/dw_j = 1(s_j - s_y + Delta > 0) x_i`` for ``j != y``
  and ``dL_i/dw_y = -sum_{j != y} 1(s_j - s_y + Delta > 0) x_i``.

  Args:
    W: weights ``[K, D]``.
    x: inputs ``[B, D]`` or ``[D]``.
    y: integer labels ``[B]`` or a scalar.
    margin: the margin Delta.

  Returns:
    ``[K, D]``.
  """
  W = jnp.asarray(W)
  x = jnp.atleast_2d(jnp.asarray(x))
  y = jnp.atleast_1d(jnp.asarray(y))
  g = multiclass_hinge_grad_scores(scores=x @ W.T, labels=y, margin=margin)
  return g.T @ x / x.shape[0]


def multilabel_hinge(*, scores: ArrayLike, targets: ArrayLike) -> Array:
  """Multi-label hinge ``sum_j max(0, 1 - y_j f_j)``, targets in {-1, +1}."""
  scores = jnp.asarray(scores)
  targets = jnp.asarray(targets)
  _check_same_shape('multilabel_hinge scores and targets', scores, targets)
  return jnp.sum(jnp.maximum(0.0, 1.0 - targets * scores), axis=-1)


def multilabel_logistic(*, logits: ArrayLike, targets: ArrayLike) -> Array:
  """Independent sigmoid per label, targets in {0, 1} (or soft), ``[B]``.

  ``-sum_j [y_j log s(f_j) + (1 - y_j) log(1 - s(f_j))]`` (the notes write the
  sum without the minus sign, i.e. the log-likelihood). Written as
  ``sum_j softplus(f_j) - y_j f_j``, which never takes the log of 0.
  """
  logits = jnp.asarray(logits)
  targets = jnp.asarray(targets)
  _check_same_shape('multilabel_logistic logits and targets', logits, targets)
  softplus = jnp.logaddexp(logits, 0.0)
  return jnp.sum(softplus - targets * logits, axis=-1)


def binary_logistic(*, scores: ArrayLike, labels: ArrayLike) -> Array:
  """Binary logistic loss ``log(1 + e^{-y f})`` for labels in {-1, +1}."""
  scores, labels = jnp.asarray(scores), jnp.asarray(labels)
  _check_broadcasts_to('binary_logistic', labels, scores)
  margin = labels * scores
  return jnp.logaddexp(0.0, -margin)


def zero_one_loss(*, logits: ArrayLike, labels: ArrayLike) -> Array:
  """0-1 loss ``1(argmax_j s_j != y)`` per example (evaluation only)."""
  logits = jnp.asarray(logits)
  labels = jnp.asarray(labels)
  _check_labels(logits, labels)
  return (jnp.argmax(logits, axis=-1) != labels).astype(jnp.float32)


def binary_zero_one_loss(*, scores: ArrayLike, labels: ArrayLike) -> Array:
  """Binary 0-1 loss ``1(y f < 0)`` for labels in {-1, +1}."""
  scores, labels = jnp.asarray(scores), jnp.asarray(labels)
  _check_broadcasts_to('binary_zero_one_loss', labels, scores)
  margin = labels * scores
  return (margin < 0).astype(jnp.float32)


def lq_loss(*, predictions: ArrayLike, targets: ArrayLike, q: float) -> Array:
  """``L_q = sum_j |s_j - y_j|^q`` over the last axis, ``[B]`` (q > 0)."""
  _check_positive('q', q)
  predictions, targets = jnp.asarray(predictions), jnp.asarray(targets)
  _check_same_shape('lq_loss predictions and targets', predictions, targets)
  diff = jnp.abs(predictions - targets)
  return jnp.sum(diff**q, axis=-1)


def l1_loss(*, predictions: ArrayLike, targets: ArrayLike) -> Array:
  """Absolute value loss (``q = 1``), ``[B]``."""
  return lq_loss(predictions=predictions, targets=targets, q=1.0)


def l2_loss(*, predictions: ArrayLike, targets: ArrayLike) -> Array:
  """Squared error loss (``q = 2``, no 1/2 factor), ``[B]``."""
  return lq_loss(predictions=predictions, targets=targets, q=2.0)


def _log(x: Array, base: float) -> Array:
  _check_positive('base', base)
  if isinstance(base, int | float) and base == 1:
    raise ValueError('log base must not be 1')
  return jnp.log(x) / math.log(base)


def _safe_plogq(p: Array, q: Array, base: float) -> Array:
  """``p log q`` elementwise with the convention ``0 log 0 = 0``."""
  positive = p > 0
  return jnp.where(positive, p * _log(jnp.where(positive, q, 1.0), base), 0.0)


def entropy(*, p: ArrayLike, base: float = math.e) -> Array:
  """Shannon entropy ``H(p) = -sum_i p_i log p_i`` over the last axis.

  Args:
    p: probabilities ``[..., K]``.
    base: 2 for bits, ``math.e`` for nats.
  """
  p = jnp.asarray(p)
  return -jnp.sum(_safe_plogq(p, p, base), axis=-1)


def _check_distributions(p: Array, q: Array) -> None:
  """Same number of classes (last axis); leading axes may broadcast."""
  if p.ndim < 1 or q.ndim < 1 or p.shape[-1] != q.shape[-1]:
    raise ValueError(
      f'p and q need the same class axis (last), got shapes {p.shape} and '
      f'{q.shape}'
    )


def cross_entropy(*, p: ArrayLike, q: ArrayLike, base: float = math.e) -> Array:
  """Cross-entropy ``H(p, q) = -sum_i p_i log q_i`` (bits with ``base=2``)."""
  p, q = jnp.asarray(p), jnp.asarray(q)
  _check_distributions(p, q)
  return -jnp.sum(_safe_plogq(p, q, base), axis=-1)


def kl_divergence(*, p: ArrayLike, q: ArrayLike, base: float = math.e) -> Array:
  """``KL(p || q) = sum_i p_i log(p_i / q_i)``; zero when ``p == q``."""
  p = jnp.asarray(p)
  q = jnp.asarray(q)
  _check_distributions(p, q)
  return jnp.sum(_safe_plogq(p, p, base) - _safe_plogq(p, q, base), axis=-1)


def softmax_cross_entropy(*, logits: ArrayLike, labels: ArrayLike) -> Array:
  """Cross-entropy with probability targets (mixup, label smoothing), ``[B]``.

  ``-sum_j t_j log softmax(s)_j`` where ``t = labels``, as in optax: the labels
  are a distribution over the K classes, shaped like the logits. It equals
  ``softmax_cross_entropy_with_integer_labels`` for one-hot labels.
  """
  logits = jnp.asarray(logits)
  labels = jnp.asarray(labels)
  if labels.shape != logits.shape:
    raise ValueError(
      f'labels shape {labels.shape} must equal logits shape {logits.shape}'
    )
  return -jnp.sum(labels * log_softmax(logits), axis=-1)


def smooth_labels(labels_onehot: ArrayLike, alpha: float) -> Array:
  """Label smoothing: ``(1 - alpha) y + alpha / K`` (Szegedy et al., 2016)."""
  if isinstance(alpha, int | float) and not 0.0 <= alpha <= 1.0:
    raise ValueError(f'label smoothing alpha must be in [0, 1], got {alpha}')
  y = jnp.asarray(labels_onehot)
  return (1.0 - alpha) * y + alpha / y.shape[-1]


def topk_correct(logits: ArrayLike, labels: ArrayLike, k: int) -> Array:
  """Whether the label is among the ``k`` largest logits, float32 ``[B]``.

  Sum it for a top-k correct count; ``k = 1`` is ``1 - zero_one_loss``.
  """
  logits = jnp.asarray(logits)
  labels = jnp.asarray(labels)
  _check_labels(logits, labels)
  if not 1 <= k <= logits.shape[-1]:
    raise ValueError(f'k must be in [1, {logits.shape[-1]}], got k={k}')
  _, top = jax.lax.top_k(logits, k)  # [B, k]
  return jnp.any(top == labels[..., None], axis=-1).astype(jnp.float32)
