"""Tests for train_lib/evaluate.py: masked sums against hand-computed values.

The model is the identity (the inputs are the logits), so every loss and
top-k count below is worked out by hand from the numbers in the test.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from train_lib import evaluate
from train_lib.state import create_train_state


class Identity(nn.Module):
  """Returns its input as logits (plus a zero-initialised bias)."""

  num_classes: int = 7

  @nn.compact
  def __call__(self, x, train: bool):
    del train
    return x + self.param('bias', nn.initializers.zeros, (x.shape[-1],))


def test_eval_masking_hand_example():
  # K = 7; logits are the inputs. The last row is padding with a huge loss.
  logits = np.zeros((4, 7), np.float32)
  logits[0, 0] = 2.0  # label 0: correct, loss log(e^2 + 6) - 2
  logits[1] = [0.0, 5, 4, 3, 2, 1, -1]  # label 0: wrong, outside top 5
  logits[2] = [0.0, 0, 0.5, 1, -1, -1, -1]  # label 2: wrong, in top 5
  logits[3] = [-1.0, 0, 0, 0, 0, 0, 100]  # padding, label 0: outside top 5
  batch = {
    'image': jnp.asarray(logits),
    'label': jnp.asarray([0, 0, 2, 0], jnp.int32),
    'mask': jnp.asarray([1.0, 1.0, 1.0, 0.0]),
  }
  model = Identity()
  state = create_train_state(
    model=model,
    tx=optax.sgd(0.1),
    init_key=jax.random.key(0),
    example_input=batch['image'],
    ema=False,
  )
  sums = jax.jit(lambda s, b: evaluate.eval_step(s, b, model=model))(
    state, batch
  )
  loss0 = np.log(np.exp(2.0) + 6) - 2.0
  loss1 = np.log(np.sum(np.exp(logits[1])))
  loss2 = np.log(np.sum(np.exp(logits[2]))) - 0.5
  assert float(sums['count']) == 3.0
  assert float(sums['correct']) == 1.0
  assert float(sums['correct_top5']) == 2.0
  np.testing.assert_allclose(sums['loss_sum'], loss0 + loss1 + loss2, rtol=1e-6)
  # A second batch with no padding; totals count every example once.
  total = evaluate.add_eval_sums(None, sums)
  total = evaluate.add_eval_sums(
    total, evaluate.eval_step(state, batch | {'mask': jnp.ones(4)}, model=model)
  )
  means = evaluate.finalize_eval(total)
  np.testing.assert_allclose(means['accuracy'], 2.0 / 7.0, rtol=1e-6)
  np.testing.assert_allclose(means['top5_accuracy'], 4.0 / 7.0, rtol=1e-6)
  loss3 = 100.0 + np.log1p(np.sum(np.exp(logits[3, :6] - 100.0))) + 1.0
  want = (2 * (loss0 + loss1 + loss2) + loss3) / 7
  np.testing.assert_allclose(means['loss'], want, rtol=1e-5)
  with pytest.raises(ValueError, match='count'):
    evaluate.finalize_eval({k: 0.0 for k in sums})
  with pytest.raises(ValueError, match='EMA'):
    evaluate.eval_step(state, batch, model=model, use_ema=True)
