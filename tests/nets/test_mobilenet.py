"""Tests for nets/mobilenet.py (ShuffleNet: test_shufflenet.py).

Published references: MobileNet Table 6 (Howard et al. 2017), TF-Slim's
checkpoint size and the notes' depthwise separable cost example.
"""

from fractions import Fraction

import pytest

import nets
from ops import cost
from tests.nets import nets_testing

# Howard et al. Table 6: (million params, million mult-adds), 224x224.
# Rounded, so every width is also checked exactly against a hand count.
MOBILENET = {
  'mobilenet_v1': (4.2, 569),
  'mobilenet_v1_075': (2.6, 325),
  'mobilenet_v1_050': (1.3, 149),
  'mobilenet_v1_025': (0.5, 41),
}


# ImageNet models whose parameter count and MACs are checked in this file.
COVERED = tuple(MOBILENET)


def _params_and_output(name, shape=(224, 224, 3)):
  return nets_testing.trace(nets.create(name), (2, *shape), train=False)


@pytest.mark.parametrize(
  'name',
  [
    n if n == 'mobilenet_v1' else pytest.param(n, marks=pytest.mark.slow)
    for n in sorted(MOBILENET)
  ],
)
def test_mobilenet_table6(name):
  want_params, want_macs = MOBILENET[name]
  n, out = _params_and_output(name)
  assert out.shape == (2, 1000)
  assert round(n / 1e6, 1) == want_params
  macs = nets.summarize(nets.create(name), (224, 224, 3)).macs
  assert abs(macs / 1e6 - want_macs) / want_macs < 0.02


def _mobilenet_hand(alpha, classes=1000):
  """(params, MACs) of Table 1 at width alpha, 224x224, by hand.

  Every conv is bias-free and followed by a BatchNorm (2c params); a
  depthwise 3x3 costs 9 c h w, a pointwise 1x1 c_in c_out h w.
  """
  width = lambda c: int(c * alpha)
  c, h = width(32), 112
  params, macs = 27 * c + 2 * c, 27 * c * h * h
  blocks = [(64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2)]
  blocks += [(512, 1)] * 5 + [(1024, 2), (1024, 1)]
  for out, stride in blocks:
    h //= stride
    params += 9 * c + 2 * c + c * width(out) + 2 * width(out)
    macs += h * h * (9 * c + c * width(out))
    c = width(out)
  return params + c * classes + classes, macs + c * classes


@pytest.mark.parametrize(
  'name',
  [
    n if n == 'mobilenet_v1_025' else pytest.param(n, marks=pytest.mark.slow)
    for n in sorted(MOBILENET)
  ],
)
def test_mobilenet_hand_count(name):
  alpha = {'': 1.0, '_075': 0.75, '_050': 0.5, '_025': 0.25}[name[12:]]
  s = nets.summarize(nets.create(name), (224, 224, 3))
  assert (s.params, s.macs) == _mobilenet_hand(alpha)
  if alpha == 1.0:
    # TF-Slim's MobileNet v1 1.0 checkpoint holds 4,231,976 parameters.
    assert s.params == 4_231_976


def _conv_mobilenet_hand(classes=1000):
  """(params, MACs) of Table 4's full-convolution MobileNet by hand.

  Each separable block becomes one bias-free 3x3 conv (9 c_in c_out
  parameters, 9 c_in c_out h w MACs) and its BatchNorm (2 c_out).
  """
  c, h = 32, 112
  params, macs = 27 * c + 2 * c, 27 * c * h * h
  blocks = [(64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2)]
  blocks += [(512, 1)] * 5 + [(1024, 2), (1024, 1)]
  for out, stride in blocks:
    h //= stride
    params += 9 * c * out + 2 * out
    macs += h * h * 9 * c * out
    c = out
  return params + c * classes + classes, macs + c * classes


def test_conv_mobilenet_table4():
  # The notes' Table 4 (Howard et al.): Conv MobileNet 29.3M parameters,
  # 4866M mult-adds (we count 4867.3M, 0.03% more; without the classifier's
  # 1.0M it would be 4866.3M).
  model = nets.create('mobilenet_v1', separable=False)
  s = nets.summarize(model, (224, 224, 3))
  assert (s.params, s.macs) == _conv_mobilenet_hand()
  assert round(s.params / 1e6, 1) == 29.3
  assert abs(s.macs / 1e6 - 4866) / 4866 < 0.001
  names = {r.name for r in s.rows}
  assert {f'conv{i}' for i in range(14)} <= names
  assert not any(n.startswith(('dw', 'pw')) for n in names)


def test_depthwise_separable_cost_ratio_on_a_mobilenet_layer():
  # On a 256x256 input, block 3 runs on the notes' example: M = N = 128,
  # D_K = 3, D_F = 64.
  s = nets.summarize(nets.create('mobilenet_v1'), (256, 256, 3))
  rows = {r.name: r for r in s.rows}
  assert rows['dw3'].output_shape == (64, 64, 128)
  assert rows['pw3'].output_shape == (64, 64, 128)
  separable = rows['dw3'].macs + rows['pw3'].macs
  standard = cost.conv_macs(3, 3, 128, 128, 64, 64)
  assert separable == 71_827_456 and standard == 603_979_776
  assert Fraction(separable, standard) == Fraction(1, 128) + Fraction(1, 9)


@pytest.mark.slow
def test_mobilenet_tiny_forward():
  model = nets.create('mobilenet_v1_tiny', dropout_rate=0.5)
  x = nets_testing.normal((2, 32, 32, 3), 0)
  nets_testing.check_train_eval(model, x, 10)
