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


def test_he_keeps_relu_std_and_a_small_gaussian_collapses_it():
  he, _ = initialization.activation_stds('relu', 'he_normal', width=128)
  small, _ = initialization.activation_stds('relu', 'normal:0.01', width=128)
  assert len(he) == initialization.DEPTH == 10
  assert he.max() / he.min() <= 2.0  # Every layer within a factor of 2.
  # Each layer multiplies the std by 0.01 sqrt(128 / 2) = 0.08 (the
  # notes' Var[y] = n Var[w] Var[x], halved by the ReLU).
  assert small[-1] / small[0] < 1e-6
  assert small[-1] / small[0] == pytest.approx(0.08**9, rel=0.5)


@pytest.mark.slow
def test_quick_cli_symmetry_stays_exactly_unbroken(tmp_path):
  record = studies_testing.run_quick('initialization', tmp_path)
  values = record['values']
  assert values['symmetry_distance']['tanh/zeros'] == 0.0
  assert values['symmetry_distance']['tanh/constant 0.01'] == 0.0
  # Training did move the constant-init weights: the symmetry is kept, not
  # frozen.
  assert values['weight_change']['tanh/constant 0.01'] > 0
  assert 0.5 <= values['he_relu_std_ratio'] <= 2.0
  assert values['small_relu_std_ratio'] < 1e-4
  assert values['large_tanh_saturated_fraction'] > 0.5


def _result(sym_distance):
  """The verdict on a hand-made probe and training outcome."""
  depth = initialization.DEPTH
  flat = np.ones(depth)
  probe = {
    ('tanh', 'N(0, 0.01^2)'): (0.1 ** np.arange(depth), np.zeros(4)),
    ('tanh', 'N(0, 1)'): (flat, np.ones(4)),
    ('tanh', 'Xavier'): (flat, np.zeros(4)),
    ('relu', 'N(0, 0.01^2)'): (0.1 ** np.arange(depth), np.zeros(4)),
    ('relu', 'He'): (flat, np.zeros(4)),
  }
  trained = {
    ('tanh', 'zeros'): (0.1, 0.0, 0.0),
    ('tanh', 'constant 0.01'): (0.2, sym_distance, 0.5),
  }
  fig, _ = report.new_figure()
  return initialization._result(fig, probe, trained, 8, True)


def test_the_verdict_fails_when_the_symmetry_breaks():
  held = _result(0.0)
  assert held.holds and held.values['symmetry_distance'] == {
    'tanh/zeros': 0.0,
    'tanh/constant 0.01': 0.0,
  }
  broken = _result(1e-7)
  assert not broken.holds
  assert 'symmetry never broken' in broken.verdict
