"""Tests for nets/small_cnn.py: the 1-D CNN for MNIST-1D and the 8x8 CNN.

The train/eval contract of every model (nets_testing.check_train_eval) on
small inputs, and the 1-D net's two accepted input ranks.
"""

import jax
import numpy as np

import nets
from tests.nets import nets_testing


def test_cnn1d_accepts_both_input_ranks():
  model = nets.create('cnn1d', dropout_rate=0.5)
  x = nets_testing.normal((2, 40), 0)
  _, y = nets_testing.check_train_eval(model, x, 10)
  variables = nets_testing.fake_variables(model, x, train=False)
  np.testing.assert_allclose(
    y, jax.jit(model.apply)(variables, x[..., None]), rtol=1e-5
  )


def test_cnn_small_on_digits():
  model = nets.create('cnn_small', dropout_rate=0.5)
  x = nets_testing.normal((2, 8, 8, 1), 0)
  nets_testing.check_train_eval(model, x, 10)
