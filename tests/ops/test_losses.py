"""Tests for ops/losses.py: hand values from the notes, autodiff, identities."""

import math

import chex
import jax
import jax.numpy as jnp
import jax.test_util
import numpy as np
import pytest

from ops import losses

RNG = np.random.default_rng(0)
LOGITS = jnp.asarray(RNG.normal(size=(5, 4)) * 3, jnp.float32)
LABELS = jnp.array([0, 3, 1, 2, 3])


def test_softmax_beta_table_from_notes():
  s = jnp.array([1.0, 1.1])
  table = {
    1: [0.475, 0.524],
    2: [0.451, 0.550],
    5: [0.378, 0.622],
    100: [4.5e-05, 9.9e-01],
  }
  for beta, expected in table.items():
    got = losses.softmax_beta(s, beta)
    # The notes print 2-3 digits (0.99995 appears as 9.9e-01).
    np.testing.assert_allclose(got[0], expected[0], rtol=0.01, atol=1e-3)
    np.testing.assert_allclose(got[1], expected[1], atol=1e-3 * beta)
    np.testing.assert_allclose(
      losses.softmax(s, temperature=1.0 / beta), got, rtol=1e-5
    )


def test_softmax_large_beta_tends_to_argmax():
  s = jnp.array([0.3, 1.2, -0.5, 1.1])
  np.testing.assert_allclose(
    losses.softmax_beta(s, 1e4), jnp.array([0.0, 1.0, 0.0, 0.0]), atol=1e-6
  )
  p_small_t = losses.softmax(s, temperature=0.1)
  p_large_t = losses.softmax(s, temperature=10.0)
  assert p_small_t.max() > losses.softmax(s).max() > p_large_t.max()


def test_softmax_values_and_shift_invariance():
  x = jnp.array([1.0, 2.0, 3.0])
  e = np.exp([1.0, 2.0, 3.0])
  np.testing.assert_allclose(losses.softmax(x), e / e.sum(), rtol=1e-6)
  # exp(1e3) overflows float32; the max shift makes it harmless.
  np.testing.assert_allclose(losses.softmax(x + 1e3), e / e.sum(), rtol=2e-4)
  np.testing.assert_allclose(
    losses.log_softmax(LOGITS), jax.nn.log_softmax(LOGITS), atol=1e-6
  )
  with pytest.raises(ValueError, match='temperature'):
    losses.softmax(x, temperature=0.0)


def test_logsumexp_stable():
  x = jnp.array([[1e4, 1e4 - 1.0, -1e4], [0.0, 0.0, 0.0]])
  expected = [1e4 + math.log(1 + math.exp(-1)), math.log(3)]

  @jax.jit  # One compilation for the whole test.
  def run(x, logits):
    return (
      losses.logsumexp(x),
      losses.logsumexp(logits, axis=0, keepdims=True),
      jax.scipy.special.logsumexp(logits, axis=0, keepdims=True),
      losses.logsumexp(jnp.full((3,), -jnp.inf)),
      jax.grad(lambda v: losses.logsumexp(v[0]))(x),
    )

  got, by_axis, want_by_axis, all_minus_inf, grad = run(x, LOGITS)
  np.testing.assert_allclose(got, expected, rtol=1e-6)
  chex.assert_shape(by_axis, (1, 4))
  np.testing.assert_allclose(by_axis, want_by_axis, rtol=1e-6)
  assert all_minus_inf == -jnp.inf
  chex.assert_tree_all_finite(grad)


@pytest.mark.slow
def test_logsumexp_check_grads():
  # The max shift is wrapped in stop_gradient: the gradient (softmax) must
  # still be exact, to second order.
  with jax.enable_x64(True):
    x = jnp.array([[30.0, 29.0, -3.0], [0.0, 0.5, 2.0]])
    lse = jax.jit(lambda v: losses.logsumexp(v, axis=-1))  # Compiled once.
    jax.test_util.check_grads(lse, (x,), order=2)


def test_softmax_cross_entropy_with_integer_labels_hand_and_extreme():
  logits = jnp.array([[2.0, 1.0, 0.1], [1e4, 0.0, -1e4], [1e4, 0.0, -1e4]])
  labels = jnp.array([0, 0, 1])
  e = np.exp([2.0, 1.0, 0.1])
  expected = [-math.log(e[0] / e.sum()), 0.0, 1e4]
  loss_fn = lambda s: losses.softmax_cross_entropy_with_integer_labels(
    logits=s, labels=labels
  )
  # Value and gradient in one compilation.
  loss, vjp = jax.jit(lambda s: jax.vjp(loss_fn, s))(logits)
  np.testing.assert_allclose(loss, expected, rtol=1e-6, atol=1e-6)
  chex.assert_tree_all_finite(vjp(jnp.ones(3))[0])
  with pytest.raises(ValueError, match='labels shape'):
    losses.softmax_cross_entropy_with_integer_labels(
      logits=logits, labels=labels[:2]
    )


def test_softmax_cross_entropy_hand_gradients_match_autodiff():
  W = jnp.asarray(RNG.normal(size=(4, 6)), jnp.float32)
  x = jnp.asarray(RNG.normal(size=(5, 6)), jnp.float32)

  @jax.jit
  def hand_and_auto(logits, w):
    loss = lambda s: losses.softmax_cross_entropy_with_integer_labels(
      logits=s, labels=LABELS
    )
    mean_loss = lambda v: loss(x @ v.T).mean()
    hand = (
      losses.softmax_cross_entropy_with_integer_labels_grad(
        logits=logits, labels=LABELS
      ),
      losses.linear_softmax_cross_entropy_grad_w(w, x, LABELS),
      losses.linear_softmax_cross_entropy_grad_w(w, x[0], 3),
    )
    auto = (jax.grad(lambda s: loss(s).sum())(logits), jax.grad(mean_loss)(w))
    return hand, auto

  hand, auto = hand_and_auto(LOGITS, W)
  np.testing.assert_allclose(hand[0], auto[0], atol=1e-6)
  np.testing.assert_allclose(hand[1], auto[1], atol=1e-6)
  # A single example gives the notes' (p_j - 1[j = y]) x outer product.
  p = np.exp(W @ x[0]) / np.exp(W @ x[0]).sum()
  np.testing.assert_allclose(
    hand[2], np.outer(p - np.eye(4)[3], x[0]), atol=1e-6
  )


def test_multiclass_hinge_hand_values_and_gradient():
  scores = jnp.array([[3.2, 5.1, -1.7], [1.3, 4.9, 2.0], [2.2, 2.5, -3.1]])
  labels = jnp.array([0, 1, 2])
  # The cs231n cat/car/frog example: 2.9, 0 and 12.9 with Delta = 1.
  np.testing.assert_allclose(
    losses.multiclass_hinge(scores=scores, labels=labels),
    [2.9, 0.0, 12.9],
    rtol=1e-5,
  )
  g = losses.multiclass_hinge_grad_scores(scores=scores, labels=labels)
  np.testing.assert_allclose(
    g, [[-1.0, 1.0, 0.0], [0.0, 0.0, 0.0], [1.0, 1.0, -2.0]]
  )
  W = jnp.asarray(RNG.normal(size=(4, 6)), jnp.float32)
  x = jnp.asarray(RNG.normal(size=(5, 6)), jnp.float32)

  @jax.jit
  def hand_and_auto(w, margin):
    mean_loss = lambda v: losses.multiclass_hinge(
      scores=x @ v.T, labels=LABELS, margin=margin
    ).mean()
    hand = losses.linear_hinge_grad_w(w, x, LABELS, margin=margin)
    return hand, jax.grad(mean_loss)(w)

  for margin in (1.0, 2.5):
    hand, auto = hand_and_auto(W, margin)
    np.testing.assert_allclose(hand, auto, atol=1e-6)


def test_multilabel_and_binary_losses():
  f = jnp.array([[2.0, -0.5, 0.3]])
  y_pm = jnp.array([[1.0, -1.0, -1.0]])
  np.testing.assert_allclose(
    losses.multilabel_hinge(scores=f, targets=y_pm),
    [0.0 + 0.5 + 1.3],
    rtol=1e-6,
  )
  y01 = (y_pm + 1) / 2
  sig = 1 / (1 + np.exp(-np.asarray(f)))
  expected = -np.sum(y01 * np.log(sig) + (1 - y01) * np.log(1 - sig))
  np.testing.assert_allclose(
    losses.multilabel_logistic(logits=f, targets=y01), [expected], rtol=1e-6
  )
  big = jnp.array([[1e4, -1e4]])
  np.testing.assert_allclose(
    losses.multilabel_logistic(logits=big, targets=jnp.array([[0.0, 1.0]])),
    [2e4],
  )
  # Binary logistic log(1 + e^{-yf}) is the 2-label case of multi-label
  # logistic with y in {0, 1}.
  np.testing.assert_allclose(
    losses.binary_logistic(scores=f[0], labels=y_pm[0]).sum(),
    expected,
    rtol=1e-6,
  )
  np.testing.assert_allclose(
    losses.binary_logistic(scores=jnp.array([-1e4, 1e4]), labels=1.0), [1e4, 0]
  )
  np.testing.assert_allclose(
    losses.binary_zero_one_loss(scores=f[0], labels=y_pm[0]), [0, 0, 1]
  )


def test_zero_one_and_topk():
  logits = jnp.array([[0.1, 0.5, 0.2, 0.9], [3.0, 1.0, 2.0, 0.0]])
  labels = jnp.array([2, 2])
  np.testing.assert_allclose(
    losses.zero_one_loss(logits=logits, labels=labels), [1.0, 1.0]
  )
  np.testing.assert_allclose(losses.topk_correct(logits, labels, 1), [0, 0])
  np.testing.assert_allclose(losses.topk_correct(logits, labels, 2), [0, 1])
  np.testing.assert_allclose(losses.topk_correct(logits, labels, 3), [1, 1])
  np.testing.assert_allclose(
    losses.topk_correct(LOGITS, LABELS, 1),
    1 - losses.zero_one_loss(logits=LOGITS, labels=LABELS),
  )
  with pytest.raises(ValueError, match='k must be'):
    losses.topk_correct(logits, labels, 5)


def test_lq_losses():
  pred = jnp.array([[1.0, -2.0, 0.5]])
  target = jnp.array([[0.0, 1.0, 0.5]])
  np.testing.assert_allclose(
    losses.l1_loss(predictions=pred, targets=target), [4.0]
  )
  np.testing.assert_allclose(
    losses.l2_loss(predictions=pred, targets=target), [10.0]
  )
  np.testing.assert_allclose(
    losses.lq_loss(predictions=pred, targets=target, q=3), [28.0]
  )
  np.testing.assert_allclose(
    losses.lq_loss(predictions=pred, targets=target, q=0.5),
    [1 + math.sqrt(3)],
    rtol=1e-6,
  )
  with pytest.raises(ValueError, match='q must be'):
    losses.lq_loss(predictions=pred, targets=target, q=0)


def test_car_example_entropy_in_bits():
  p = jnp.array([0.8, 0.15, 0.05])
  # The notes' table: optimal code lengths log2(1/p) = 0.32, 2.74, 4.32 bits.
  np.testing.assert_allclose(-np.log2(p), [0.32, 2.74, 4.32], atol=6e-3)
  h = 0.8 * math.log2(1 / 0.8) + 0.15 * math.log2(1 / 0.15)
  h += 0.05 * math.log2(1 / 0.05)
  np.testing.assert_allclose(losses.entropy(p=p, base=2), h, rtol=1e-6)
  np.testing.assert_allclose(losses.entropy(p=p, base=2), 0.884, atol=1e-3)
  np.testing.assert_allclose(losses.entropy(p=p), h * math.log(2), rtol=1e-6)
  # A fair coin pair: log2(4) = 2 bits.
  np.testing.assert_allclose(losses.entropy(p=jnp.full(4, 0.25), base=2), 2.0)


def test_cross_entropy_equals_entropy_plus_kl():
  p = jnp.array([[0.8, 0.15, 0.05, 0.0], [0.25, 0.25, 0.25, 0.25]])
  q = jnp.array([[0.25, 0.25, 0.25, 0.25], [0.7, 0.1, 0.1, 0.1]])
  for base in (2, math.e):
    h_pq = losses.cross_entropy(p=p, q=q, base=base)
    np.testing.assert_allclose(
      h_pq,
      losses.entropy(p=p, base=base)
      + losses.kl_divergence(p=p, q=q, base=base),
      rtol=1e-6,
    )
  np.testing.assert_allclose(losses.kl_divergence(p=p, q=p), [0.0, 0.0])
  # 0 log 0 = 0: a zero-probability class contributes nothing.
  np.testing.assert_allclose(
    losses.cross_entropy(p=p, q=q, base=2)[0], 2.0, rtol=1e-6
  )
  # Softmax CE is the cross-entropy against a one-hot p, in nats.
  np.testing.assert_allclose(
    losses.cross_entropy(p=losses.one_hot(LABELS, 4), q=losses.softmax(LOGITS)),
    losses.softmax_cross_entropy_with_integer_labels(
      logits=LOGITS, labels=LABELS
    ),
    rtol=1e-5,
  )
  with pytest.raises(ValueError, match='base'):
    losses.entropy(p=p, base=1)


def test_soft_targets_and_label_smoothing():
  targets = losses.one_hot(LABELS, 4)
  np.testing.assert_allclose(
    losses.softmax_cross_entropy(logits=LOGITS, labels=targets),
    losses.softmax_cross_entropy_with_integer_labels(
      logits=LOGITS, labels=LABELS
    ),
    rtol=1e-6,
  )
  smooth = losses.smooth_labels(targets, 0.1)
  np.testing.assert_allclose(smooth[0], [0.925, 0.025, 0.025, 0.025])
  np.testing.assert_allclose(smooth.sum(-1), 1.0, rtol=1e-6)
  # Mixup targets: the loss is linear in the targets.
  lam = 0.3
  mixed = lam * targets + (1 - lam) * targets[::-1]
  np.testing.assert_allclose(
    losses.softmax_cross_entropy(logits=LOGITS, labels=mixed),
    lam * losses.softmax_cross_entropy(logits=LOGITS, labels=targets)
    + (1 - lam)
    * losses.softmax_cross_entropy(logits=LOGITS, labels=targets[::-1]),
    rtol=1e-5,
  )
  with pytest.raises(ValueError, match='alpha'):
    losses.smooth_labels(targets, 1.5)
  with pytest.raises(ValueError, match='labels shape .* must equal'):
    losses.softmax_cross_entropy(logits=LOGITS, labels=targets[:, :3])


def test_one_hot():
  np.testing.assert_array_equal(
    losses.one_hot(jnp.array([2, 0]), 3), [[0, 0, 1], [1, 0, 0]]
  )
  with pytest.raises(ValueError, match='integer'):
    losses.one_hot(jnp.array([0.0]), 3)


def test_jit():
  @jax.jit
  def all_losses(logits, labels):
    return (
      losses.softmax_cross_entropy_with_integer_labels(
        logits=logits, labels=labels
      ),
      losses.multiclass_hinge(scores=logits, labels=labels),
      losses.topk_correct(logits, labels, 2),
      losses.entropy(p=losses.softmax(logits), base=2),
    )

  got = all_losses(LOGITS, LABELS)
  np.testing.assert_allclose(
    got[0],
    losses.softmax_cross_entropy_with_integer_labels(
      logits=LOGITS, labels=LABELS
    ),
    rtol=1e-6,
  )
  np.testing.assert_allclose(
    got[1], losses.multiclass_hinge(scores=LOGITS, labels=LABELS), rtol=1e-6
  )
  np.testing.assert_allclose(got[2], losses.topk_correct(LOGITS, LABELS, 2))


def test_mismatched_shapes_raise_instead_of_broadcasting():
  pred, col = jnp.ones((4, 3)), jnp.ones((4, 1))
  with pytest.raises(ValueError, match='lq_loss predictions and targets'):
    # [4, 1] against [4] would broadcast to [4, 4] and sum the wrong terms.
    losses.l2_loss(predictions=col, targets=jnp.ones(4))
  with pytest.raises(ValueError, match='multilabel_hinge'):
    losses.multilabel_hinge(scores=pred, targets=col)
  with pytest.raises(ValueError, match='multilabel_logistic'):
    losses.multilabel_logistic(logits=pred, targets=col)
  with pytest.raises(ValueError, match='labels shape'):
    losses.binary_logistic(scores=jnp.ones(4), labels=jnp.ones((4, 1)))
  with pytest.raises(ValueError, match='labels shape'):
    losses.binary_zero_one_loss(scores=jnp.ones(4), labels=jnp.ones(3))
  with pytest.raises(ValueError, match='class axis'):
    losses.cross_entropy(p=pred / 3, q=col)
  with pytest.raises(ValueError, match='class axis'):
    losses.kl_divergence(p=pred / 3, q=jnp.ones((4, 2)) / 2)
  # A shared q (one distribution for the whole batch) still broadcasts.
  np.testing.assert_allclose(
    losses.cross_entropy(p=pred / 3, q=jnp.ones(3) / 3), [math.log(3)] * 4,
    rtol=1e-6,
  )  # fmt: skip


def test_every_loss_under_jit_matches_eager():
  probs = losses.softmax(LOGITS)
  pm = jnp.where(losses.one_hot(LABELS, 4) > 0, 1.0, -1.0)
  calls = {
    'softmax_beta': lambda s: losses.softmax_beta(s, 2.0),
    'log_softmax_t': lambda s: losses.log_softmax(s, temperature=3.0),
    'zero_one': lambda s: losses.zero_one_loss(logits=s, labels=LABELS),
    'ce_grad': lambda s: losses.softmax_cross_entropy_with_integer_labels_grad(
      logits=s, labels=LABELS
    ),
    'hinge_grad': lambda s: losses.multiclass_hinge_grad_scores(
      scores=s, labels=LABELS, margin=2.0
    ),
    'ml_hinge': lambda s: losses.multilabel_hinge(scores=s, targets=pm),
    'ml_logistic': lambda s: losses.multilabel_logistic(
      logits=s, targets=(pm + 1) / 2
    ),
    'binary': lambda s: losses.binary_logistic(scores=s, labels=pm),
    'binary_01': lambda s: losses.binary_zero_one_loss(scores=s, labels=pm),
    'lq': lambda s: losses.lq_loss(predictions=s, targets=pm, q=1.5),
    'kl': lambda s: losses.kl_divergence(p=probs, q=losses.softmax(s), base=2),
    'xent': lambda s: losses.cross_entropy(p=probs, q=losses.softmax(s)),
    'soft_ce': lambda s: losses.softmax_cross_entropy(
      logits=s, labels=losses.smooth_labels(losses.one_hot(LABELS, 4), 0.1)
    ),
  }
  jitted = jax.jit(lambda s: {k: f(s) for k, f in calls.items()})(LOGITS)
  for name, f in calls.items():
    np.testing.assert_allclose(
      jitted[name], f(LOGITS), rtol=1e-5, atol=1e-6, err_msg=name
    )
