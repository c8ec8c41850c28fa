"""Tests for nets/ensemble.py: fusion by averaged probabilities.

References: numpy's mean of the members' softmaxes, and for the default
ensemble the counts of its members (torchvision, GoogLeNet Table 1).
"""

import jax
import numpy as np
import pytest

import nets
from tests.nets import nets_testing

# ImageNet models whose parameter count and MACs are checked in this file.
COVERED = ('ensemble',)


@pytest.mark.slow
def test_ensemble_averages_member_probabilities():
  # The members' logits are captured from the same forward pass (one
  # compile); the fusion is checked against numpy's mean of softmaxes.
  model = nets.create('ensemble_tiny')
  x = nets_testing.normal((2, 32, 32, 3), 0)
  variables = nets_testing.fake_variables(model, x, train=False)
  names = [f'members_{i}' for i in range(3)]
  log_p, logits = nets.capture_intermediates(model, variables, x, names)
  logits = np.stack([np.asarray(logits[n], np.float64) for n in names])
  probs = np.exp(logits - logits.max(-1, keepdims=True))
  probs /= probs.sum(-1, keepdims=True)
  assert not np.allclose(probs[0], probs[1], atol=1e-3)  # diverse members
  np.testing.assert_allclose(np.exp(log_p), probs.mean(0), rtol=1e-4, atol=1e-6)


@pytest.mark.slow
def test_ensemble_train_and_eval():
  model = nets.create('ensemble_tiny')
  x = nets_testing.normal((2, 32, 32, 3), 0)
  # vgg_tiny_bn has dropout, so train outputs depend on the key.
  _, log_p = nets_testing.check_train_eval(model, x, 10)
  np.testing.assert_allclose(np.exp(log_p).sum(-1), 1.0, rtol=1e-5)


def test_ensemble_weights():
  model = nets.create(
    'ensemble', members=('vgg_tiny', 'alexnet_tiny'), weights=(1.0, 0.0)
  )
  x = nets_testing.normal((2, 32, 32, 3), 0)
  variables = nets_testing.fake_variables(model, x, train=False)
  log_p = jax.jit(model.apply)(variables, x)
  member = nets.create('vgg_tiny')
  v = {'params': variables['params']['members_0']}
  want = jax.nn.log_softmax(jax.jit(member.apply)(v, x))
  np.testing.assert_allclose(log_p, want, rtol=1e-4, atol=1e-5)
  bad = nets.create('ensemble', members=('vgg_tiny',), weights=(1.0, 2.0))
  with pytest.raises(ValueError, match='weight'):
    bad.init({'params': nets_testing.key(0)}, x)


@pytest.mark.slow
def test_default_ensemble_is_the_sum_of_its_members():
  # googlenet + resnet152 + densenet161: GoogLeNet's hand count (Table 1
  # filters, test_googlenet.py) and torchvision's counts; MACs: Table 1's
  # 1.586G and torchvision's 11.51G and 7.73G.
  model = nets.create('ensemble')
  n, out = nets_testing.trace(model, (2, 224, 224, 3), train=False)
  assert out.shape == (2, 1000)
  assert n == 6_998_552 + 60_192_808 + 28_681_000
  s = nets.summarize(model, (224, 224, 3))
  assert s.params == n
  assert s.macs / 1e9 == pytest.approx(1.586 + 11.51 + 7.73, rel=0.02)
