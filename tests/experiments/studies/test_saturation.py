"""The saturation study: unit counts, the probe against jax.grad, verdict."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments.studies import saturation
import nets
from ops import losses
from tests.experiments.studies import studies_testing


def test_saturated_units_needs_every_example_below_threshold():
  slopes = np.array([[0.0, 0.5, 1e-4], [1e-4, 0.2, 0.3]])
  # Unit 0 is below 1e-3 on both rows; unit 2 only on one.
  assert float(saturation.saturated_units(slopes)) == pytest.approx(1 / 3)
  assert float(saturation.saturated_units(slopes, threshold=1.0)) == 1.0


def test_one_signed_rows_hand_values():
  x = np.array([[1.0, 2.0], [-1.0, 2.0], [-1.0, -3.0], [0.0, 0.0]])
  assert float(saturation.one_signed_rows(x)) == pytest.approx(0.75)


def test_probe_matches_an_independent_gradient_and_forward_pass():
  model = nets.create(
    'mlp', hidden_sizes=(6,) * saturation.DEPTH, activation='sigmoid'
  )
  x = jax.random.normal(jax.random.key(1), (5, 7))
  y = jnp.array([0, 1, 2, 3, 4])
  params = model.init({'params': jax.random.key(0)}, x)['params']
  stats = saturation.make_probe(model, 'sigmoid')(params, x, y)

  def loss(p):
    logits = model.apply({'params': p}, x)
    return losses.softmax_cross_entropy_with_integer_labels(
      logits=logits, labels=y
    ).mean()

  grads = jax.grad(loss)(params)
  want = [
    float(jnp.linalg.norm(grads[f'fc{i}']['kernel']))
    for i in range(saturation.DEPTH)
  ]
  np.testing.assert_allclose(stats['grad_norm'], want, rtol=1e-5)
  _, acts = nets.capture_intermediates(model, {'params': params}, x, ['drop3'])
  assert stats['mean'][3] == pytest.approx(float(acts['drop3'].mean()), 1e-6)
  # Sigmoid outputs are positive: every layer's output is one-signed.
  assert stats['one_signed'] == [1.0] * saturation.DEPTH


@pytest.mark.slow
def test_quick_cli_sigmoid_gradient_vanishes(tmp_path):
  record = studies_testing.run_quick('saturation', tmp_path)
  decay = record['values']['grad_decay_layer1_over_last']
  assert decay['sigmoid'] < 1e-3
  assert decay['tanh'] > 0.1 and decay['relu'] > 0.1
  mean = record['values']['mean_activation']
  assert mean['sigmoid'] == pytest.approx(0.5, abs=0.05)
  assert abs(mean['tanh']) < 0.1
  assert record['values']['one_signed_inputs']['sigmoid'] == 1.0
  assert record['holds'] is True
