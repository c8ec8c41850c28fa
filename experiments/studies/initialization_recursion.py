"""The variance recursion of the notes' initialization slides, predicted.

Notes (seed 002, "Initialization"): ``Var[sum_i w_i x_i] = n Var[w] Var[x]``
for zero-mean i.i.d. weights independent of the inputs. Followed through a
deep net with biases 0 (the mean-field recursion, exact for infinitely wide
layers): layer l's pre-activation ``z_l ~ N(0, q_l)`` with
``q_l = n Var[w] E[a_{l-1}^2]``, and ``a_l = f(z_l)``. The second moment, not
the variance, of the input enters, which matters for ReLU's non-centred
outputs. Used by the initialization study to predict each layer's scale.
"""

import math

import numpy as np

DEPTH = 10


def _gaussian_moments(activation: str, q: float) -> tuple[float, float]:
  """(E[f(z)], E[f(z)^2]) for z ~ N(0, q): closed form for ReLU, else
  Gauss-Hermite quadrature (101 nodes: exact to float64 for smooth f)."""
  if q == 0:
    return 0.0, 0.0
  if activation == 'relu':
    return math.sqrt(q / (2 * math.pi)), q / 2
  nodes, weights = np.polynomial.hermite_e.hermegauss(101)
  weights = weights / math.sqrt(2 * math.pi)
  fz = {'tanh': np.tanh, 'sigmoid': lambda z: 1 / (1 + np.exp(-z))}[activation](
    math.sqrt(q) * nodes
  )
  return float(weights @ fz), float(weights @ fz**2)


def predicted_stds(
  activation: str, gain: float, depth: int = DEPTH, input_var: float = 1.0
) -> np.ndarray:
  """The variance recursion's activation std per layer (biases 0).

  Layer l's pre-activation has variance ``q_l = gain * E[a_{l-1}^2]``
  (``gain = n Var[w]``; ``E[a_0^2] = input_var``), the notes'
  ``Var[sum w_i x_i] = n Var[w] Var[x]`` with the second moment of a
  non-centred input; then ``a_l = f(z_l)`` with ``z_l ~ N(0, q_l)``.

  Returns:
    ``[depth]`` standard deviations ``sqrt(E[a^2] - E[a]^2)``.
  """
  second, stds = input_var, []
  for _ in range(depth):
    mean, second = _gaussian_moments(activation, gain * second)
    stds.append(math.sqrt(max(second - mean**2, 0.0)))
  return np.array(stds)
