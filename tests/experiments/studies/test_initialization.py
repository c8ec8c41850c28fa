"""The initialization study: symmetry distance and the depth probe."""

import jax
import numpy as np
import pytest

from experiments.studies import initialization
from experiments.studies import report
import nets
from tests.experiments.studies import studies_testing


def test_max_pairwise_distance_hand_values():
  kernel = np.array([[0.0, 3.0, 0.0], [0.0, 4.0, 0.0]])  # units are columns
  assert initialization.max_pairwise_distance(kernel) == pytest.approx(5.0)
  same = np.ones((4, 3))
  assert initialization.max_pairwise_distance(same) == 0.0
  # The bias belongs to a unit's vector: equal kernels, different biases.
  assert initialization.max_pairwise_distance(
    same, np.array([0.0, 0.0, 2.0])
  ) == pytest.approx(2.0)


def test_symmetry_distance_is_positive_for_a_random_init():
  model = nets.create('mlp', hidden_sizes=(8,) * initialization.DEPTH)
  params = model.init({'params': jax.random.key(0)}, np.ones((1, 5)))['params']
  assert initialization.symmetry_distance(params, initialization.DEPTH) > 0.1
  zero = nets.create(
    'mlp', hidden_sizes=(8,) * initialization.DEPTH, kernel_init='zeros'
  )
  params = zero.init({'params': jax.random.key(0)}, np.ones((1, 5)))['params']
  assert initialization.symmetry_distance(params, initialization.DEPTH) == 0


@pytest.mark.slow
def test_he_keeps_relu_std_and_a_small_gaussian_collapses_it():
  he, _ = initialization.activation_stds('relu', 'he_normal', width=128)
  small, _ = initialization.activation_stds('relu', 'normal:0.01', width=128)
  assert len(he) == initialization.DEPTH == 10
  assert he.max() / he.min() <= 2.0  # Every layer within a factor of 2.
  # Each layer multiplies the std by 0.01 sqrt(128 / 2) = 0.08 (the
  # notes' Var[y] = n Var[w] Var[x], halved by the ReLU).
  assert small[-1] / small[0] < 1e-6
  assert small[-1] / small[0] == pytest.approx(0.08**9, rel=0.5)


def test_predicted_stds_by_hand():
  # ReLU with He's gain 2 on inputs of second moment 1: q_1 = 2, and
  # E[relu(z)^2] = q / 2 keeps q = 2; E[relu(z)] = sqrt(q / (2 pi)), so the
  # std is sqrt(1 - 1/pi) at every layer.
  he = initialization.predicted_stds('relu', 2.0, depth=4)
  np.testing.assert_allclose(he, np.sqrt(1 - 1 / np.pi), rtol=1e-12)
  # Small weights, tanh ~ identity near 0: the std shrinks by sqrt(gain)
  # per layer (gain 0.05 for N(0, 0.01^2) on 500 units), less a small
  # curvature term (tanh(z) ~ z - z^3/3: 0.2% at std 0.22).
  small = initialization.predicted_stds('tanh', 0.05, depth=3)
  np.testing.assert_allclose(small[1:] / small[:-1], np.sqrt(0.05), rtol=5e-3)
  assert np.all(small[1:] / small[:-1] < np.sqrt(0.05))
  # One tanh layer on N(0, 1): E[tanh(z)^2] = 0.394294 (numerical
  # integration, independent of the quadrature used here).
  one = initialization.predicted_stds('tanh', 1.0, depth=1)
  assert one[0] == pytest.approx(np.sqrt(0.394294), abs=1e-5)


@pytest.mark.slow
def test_measured_stds_follow_the_recursion():
  for act, scheme in (('tanh', 'Xavier'), ('relu', 'He')):
    stds, _ = initialization.activation_stds(
      act, initialization.SCHEMES[scheme], width=256
    )
    predicted = initialization.predicted_stds(
      act, initialization.GAIN[scheme](256)
    )
    assert np.max(np.abs(np.log(stds / predicted))) < 0.25, (act, scheme)


def _probe():
  """Stand-in probes (one seed): stds per layer and last activations."""
  depth = initialization.DEPTH
  flat = np.ones(depth)
  probe = {}
  for act in ('tanh', 'relu'):
    for scheme in initialization.SCHEMES:
      stds = flat.copy()
      if scheme in initialization.GAIN:
        stds = initialization.predicted_stds(
          act, initialization.GAIN[scheme](8)
        )
      probe[act, scheme] = [(stds, np.zeros(4))]
  probe['tanh', 'N(0, 1)'] = [(probe['tanh', 'N(0, 1)'][0][0], np.ones(4))]
  return probe


def _he_arms(xavier_final=2.3):
  def arm(final):
    return [{'steps': [0, 10], 'loss': [2.3, final]} for _ in range(3)]

  return {
    (22, 'Xavier'): arm(1.0),
    (22, 'He'): arm(0.3),
    (30, 'Xavier'): arm(xavier_final),
    (30, 'He'): arm(0.3),
  }


def _result(sym_distance, xavier_final=2.3):
  symmetric = {
    'zeros': (0.1, 0.0, 0.0),
    'constant 0.01': (0.2, sym_distance, 0.5),
  }
  fig, _ = report.new_figure()
  return initialization.initialization_result(
    fig, _probe(), symmetric, _he_arms(xavier_final), 8, True
  )


@pytest.mark.slow
def test_the_verdict_follows_the_symmetry_and_the_stall():
  held = _result(0.0)
  verdicts = [s.verdict for s in held.subclaims]
  # Seeds: one stand-in value each, so every interval is its point.
  assert verdicts == ['holds'] * 8, [
    (s.claim, s.estimate) for s in held.subclaims
  ]
  assert held.values['symmetry_distance'] == {
    'zeros': 0.0,
    'constant 0.01': 0.0,
  }
  broken = _result(1e-3)
  assert broken.subclaims[0].verdict == 'does not hold'
  # A 30-layer Xavier net that trains is not He et al.'s stall.
  trains = _result(0.0, xavier_final=0.4)
  assert trains.subclaims[5].verdict == 'does not hold'
  assert trains.verdict == 'does not hold'


@pytest.mark.slow
def test_quick_cli_symmetry_stays_unbroken(tmp_path):
  record = studies_testing.run_quick('initialization', tmp_path)
  values = record['values']
  # Identical units stay identical up to float32 round-off (the CPU's
  # matmul may sum the columns of one layer in different orders).
  distance = values['symmetry_distance']
  assert max(distance.values()) < initialization.SYMMETRY_TOLERANCE
  # Training did move the constant-init weights, 10,000 times further
  # than the units moved apart: the symmetry is kept, not frozen.
  assert (
    values['weight_change']['constant 0.01'] > 1e4 * distance['constant 0.01']
  )
  verdicts = [s['verdict'] for s in record['subclaims']]
  # The symmetry and the three probes hold at width 128 too; the
  # recursion's 20% is for 500 units (at 128 the ReLU nets drift further
  # from the infinite-width prediction), and the 40-step deep runs are
  # not asserted.
  assert verdicts[:4] == ['holds'] * 4
  assert set(values['he_check_final_loss']) == {'30/Xavier', '30/He'}
