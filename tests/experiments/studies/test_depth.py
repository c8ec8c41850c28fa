"""The depth study: plain vs residual twins (He et al. 2016, Fig. 4/6)."""

import numpy as np
import pytest

from experiments.studies import depth
from experiments.studies import report
from tests.experiments.studies import studies_testing


def _by_hand(widths, n, classes=10):
  """He et al.'s 6n+2 net on one input channel, conv + BN, by hand."""
  conv_bn = lambda c_in, c_out: 9 * c_in * c_out + 2 * c_out
  total, c_in = conv_bn(1, widths[0]), widths[0]
  for w in widths:
    for _ in range(n):
      total += conv_bn(c_in, w) + conv_bn(w, w)
      c_in = w
  return total + widths[-1] * classes + classes


@pytest.mark.parametrize('layers', [8, 20])
def test_plain_and_residual_twins_have_the_same_parameters(layers):
  n = (layers - 2) // 6
  expected = _by_hand(depth.WIDTHS, n)
  assert depth.param_count(layers, residual=True) == expected
  assert depth.param_count(layers, residual=False) == expected


def test_model_names_and_the_config_of_a_plain_twin():
  assert depth.model_name(8) == 'resnet8_cifar_tiny'
  assert depth.model_name(20) == 'resnet20_cifar'
  config = depth.config_for(
    depth=20,
    residual=False,
    seed=1,
    lr=0.05,
    total_steps=10,
    log_every_steps=5,
    eval_every_steps=5,
  )
  assert config.model == 'resnet20_cifar'
  assert config.model_kw.to_dict() == {'residual': False, 'widths': (8, 16, 32)}
  assert (config.data.name, config.augment.crop_padding) == ('mnist', 0)


def test_final_error_averages_the_last_windows():
  assert depth.final_error([50.0, 10.0, 4.0, 2.0], last=2) == 3.0
  assert depth.final_error(np.asarray([9.0, 1.0, 2.0]), last=2) == 1.5
  with pytest.raises(ValueError, match='no training error'):
    depth.final_error([])


@pytest.mark.slow
def test_quick_cli(tmp_path):
  record = studies_testing.run_quick('depth', tmp_path)
  values = record['values']
  # Robust at any size: option-A twins share every parameter.
  assert values['twins_have_equal_params'] is True
  assert values['params']['plain8'] == values['params']['resnet8']
  errors = values['final_train_error_pct']
  assert set(errors) == {'plain8', 'resnet8', 'plain20', 'resnet20'}
  assert all(0 <= e <= 100 for e in errors.values())


def _fake_train(final_errors):
  """A report.train stand-in: each arm's training error falls to its final."""

  def train(config):
    arm = ('resnet' if config.model_kw.residual else 'plain') + str(
      20 if '20' in config.model else 8
    )
    end = final_errors[arm] / 100
    steps = range(10, config.total_steps + 1, 10)
    last_early = config.total_steps - 10 * depth.LAST_LOGS
    records = [
      {
        'step': s,
        'split': 'train',
        # The last LAST_LOGS lines, which final_error averages, sit at `end`.
        'accuracy': 1 - (end if s > last_early else max(end, 0.5 / s)),
      }
      for s in steps
    ] + [{'step': config.total_steps, 'split': 'eval', 'accuracy': 0.9}]
    return report.TrainRun(records=records, state=None)

  return train


@pytest.mark.parametrize(
  'plain20,resnet20,holds',
  [(6.0, 1.0, True), (2.0, 1.0, False), (6.0, 5.0, False)],
)
def test_verdict_follows_the_final_training_errors(
  monkeypatch, plain20, resnet20, holds
):
  errors = {'plain8': 2.0, 'resnet8': 2.0, 'plain20': plain20}
  errors['resnet20'] = resnet20
  monkeypatch.setattr(report, 'train', _fake_train(errors))
  result = depth.run(quick=True)
  got = result.values['final_train_error_pct']
  assert got == pytest.approx(errors)
  assert result.holds is holds
  assert result.values['plain_degrades'] is (plain20 > 2.5)
  assert ('does NOT' in result.verdict) is (plain20 < 2.5)
