"""The saturation study: unit counts, the probe against jax.grad, verdict."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments.studies import saturation
from experiments.studies import saturation_glorot as glorot
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


@pytest.mark.slow
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
def test_glorot_layer_stats_match_a_numpy_forward_pass():
  model = nets.create(
    'mlp',
    hidden_sizes=(7,) * glorot.DEPTH,
    activation='sigmoid',
    kernel_init='standard_uniform',
  )
  x = np.asarray(jax.random.normal(jax.random.key(2), (6, 5)), np.float64)
  params = model.init({'params': jax.random.key(0)}, x)['params']
  # Big biases push some units into saturation, so the share is not 0.
  params = jax.tree.map(np.asarray, params)
  params['fc1']['bias'] = np.linspace(-6, 6, 7).astype(np.float32)
  stats = glorot.layer_stats(model, params, jnp.asarray(x, jnp.float32))
  h, means, shares = x, [], []
  for i in range(glorot.DEPTH):
    z = h @ params[f'fc{i}']['kernel'] + params[f'fc{i}']['bias']
    h = 1 / (1 + np.exp(-z))
    means.append(h.mean())
    shares.append(np.mean(h * (1 - h) < glorot.SLOPE_CUT))
  np.testing.assert_allclose(stats['mean'], means, rtol=1e-5)
  np.testing.assert_allclose(stats['saturated'], shares)
  assert stats['saturated'][1] > 0  # Biases +-6: slope < 0.05 there.


def test_glorot_config_is_their_protocol():
  cfg = glorot.config(seed=1, quick=False)
  assert cfg.model_kw.hidden_sizes == (1000,) * 4
  assert cfg.model_kw.activation == 'sigmoid'
  assert cfg.model_kw.kernel_init == 'standard_uniform'
  assert cfg.optimizer == 'sgd' and cfg.batch_size == 10
  assert cfg.schedule == 'constant' and cfg.seed == 1
  assert cfg.checkpoint_every_steps == glorot.PROBE_EVERY
  assert cfg.keep_checkpoints >= cfg.total_steps // glorot.PROBE_EVERY


def _glorot_run(top_mean_low, top_saturated_high):
  mean = np.full((3, glorot.DEPTH), 0.5)
  mean[1, -1] = top_mean_low
  saturated = np.zeros((3, glorot.DEPTH))
  saturated[2, -1] = top_saturated_high
  return {'steps': [0, 1, 2], 'mean': mean, 'saturated': saturated}


@pytest.mark.parametrize(
  ('low', 'high', 'want'),
  [(0.02, 0.9, 'holds'), (0.4, 0.2, 'does not hold')],
)
def test_glorot_subclaims_follow_the_top_layer(low, high, want):
  runs = [_glorot_run(low + d, high - d) for d in (0.0, 0.005, 0.01)]
  subs = saturation._glorot_subclaims(runs)
  assert [s.verdict for s in subs] == [want, want]
  assert subs[0].estimate == pytest.approx(low + 0.005)
  assert subs[1].seeds == 3


def _probe(decay, mean):
  norms = [1.0] * (saturation.DEPTH - 1) + [1.0 / decay]
  return {'grad_norm': norms, 'mean': [mean] * saturation.DEPTH}


def test_init_subclaims_flip_when_the_sigmoid_gradient_survives():
  def seeds(sigmoid_decay):
    return {
      'sigmoid': [_probe(sigmoid_decay * f, 0.5) for f in (1, 1.2, 0.9)],
      'tanh': [_probe(1.0 * f, 0.01) for f in (1, 1.1, 0.8)],
      'relu': [_probe(0.8 * f, 0.6) for f in (1, 1.1, 0.8)],
    }

  held = saturation._init_subclaims(seeds(1e-5))
  assert [s.verdict for s in held] == ['holds'] * 5
  assert held[0].estimate == pytest.approx(1e-5 * (1.2 * 0.9) ** (1 / 3))
  failed = saturation._init_subclaims(seeds(0.5))
  assert [s.verdict for s in failed[:3]] == ['does not hold'] * 3


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
  # The probes at init hold at any width; the 40-step Glorot & Bengio run
  # is too short to assert on.
  verdicts = [s['verdict'] for s in record['subclaims']]
  assert verdicts[:5] == ['holds'] * 5
  assert len(record['values']['glorot'][0]['steps']) == 3  # init, 20, 40
