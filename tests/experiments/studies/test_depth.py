"""The depth study: plain vs residual 6n+2 twins (He et al. 2016, Fig. 6)."""

import numpy as np
import pytest

from experiments.studies import depth
from experiments.studies import report
from tests.experiments.studies import studies_testing


def _by_hand(widths, n, classes=10):
  """He et al.'s 6n+2 net with 3 x 1 kernels on one channel, conv + BN."""
  conv_bn = lambda c_in, c_out: 3 * c_in * c_out + 2 * c_out
  total, c_in = conv_bn(1, widths[0]), widths[0]
  for w in widths:
    for _ in range(n):
      total += conv_bn(c_in, w) + conv_bn(w, w)
      c_in = w
  return total + widths[-1] * classes + classes


def test_plain_and_residual_twins_have_the_same_parameters():
  expected = _by_hand(depth.WIDTHS, 3)
  assert expected == 23_314
  assert depth.param_count(20, residual=True) == expected
  assert depth.param_count(20, residual=False) == expected


def test_the_config_is_he_et_al_recipe_on_mnist1d():
  config = depth.config_for(depth=56, residual=False, seed=2)
  assert config.model == 'resnet56_cifar'
  assert config.model_kw.to_dict() == {
    'residual': False,
    'widths': (8, 16, 32),
    'spatial_dims': 1,
  }
  assert (config.data.name, config.seed) == ('mnist1d', 2)
  assert (config.optimizer, config.optimizer_kw.momentum) == ('momentum', 0.9)
  assert (config.lr, config.batch_size) == (0.1, 128)
  assert (config.weight_decay, config.weight_decay_mode) == (1e-4, 'l2')
  # lr / 10 at 50% and 75% of the run, as 32k and 48k of 64k iterations.
  assert config.schedule == 'step'
  assert tuple(config.schedule_kw.boundaries) == (150, 225)
  assert config.schedule_kw.decay_factor == 0.1
  assert config.warmup_steps == 0 and config.label_smoothing == 0.0
  assert config.augment.crop_padding == 0 and config.augment.mixup_alpha == 0


def test_eval_mode_fit_by_hand():
  probs = np.asarray([[0.5, 0.25, 0.25], [0.1, 0.8, 0.1], [0.6, 0.2, 0.2]])
  labels = np.asarray([0, 1, 1])
  error, loss = depth.eval_mode_fit(probs, labels)
  assert error == pytest.approx(100 / 3)
  assert loss == pytest.approx(-(np.log(0.5) + np.log(0.8) + np.log(0.2)) / 3)


def _per_seed(plain56, resnet56, plain20=(10.0, 11.0, 12.0)):
  """Stand-in per-seed numbers: final and over-the-run errors alike."""
  resnet20 = (8.0, 9.0, 8.5)
  arms = {(20, False): plain20, (56, False): plain56}
  arms.update({(20, True): resnet20, (56, True): resnet56})
  return {
    arm: {'final_error': list(v), 'run_error': [x + 5 for x in v]}
    for arm, v in arms.items()
  }


def test_subclaims_hold_on_the_paper_pattern_and_flip_on_wrong_input():
  # He et al.'s pattern: plain-56 worse than plain-20, ResNet-56 better.
  claims = depth.subclaims(_per_seed((20.0, 22.0, 21.0), (6.0, 7.5, 6.5)))
  assert [c.verdict for c in claims] == ['holds'] * 5
  first = claims[0]
  assert first.estimate == pytest.approx(10.0)
  # Paired: per-seed differences 10, 11, 9 -> sd 1, t(2) = 4.303.
  assert first.ci_high - first.estimate == pytest.approx(4.303 / 3**0.5, 1e-3)
  # No degradation: plain-56 clearly below plain-20 -> 'does not hold'.
  claims = depth.subclaims(_per_seed((5.0, 6.0, 5.5), (6.0, 7.5, 6.5)))
  assert claims[0].verdict == 'does not hold'
  assert claims[1].verdict == 'does not hold'
  # The deep ResNet degrades by 5 points: beyond the margin.
  claims = depth.subclaims(_per_seed((20.0, 22.0, 21.0), (13.0, 14.0, 13.5)))
  assert claims[2].verdict == 'does not hold'
  assert claims[3].verdict == 'does not hold'
  # ResNet-56 at the margin, with seed noise: the interval straddles it.
  claims = depth.subclaims(_per_seed((20.0, 22.0, 21.0), (7.0, 11.0, 9.0)))
  assert claims[2].verdict == 'inconclusive'


@pytest.mark.slow
def test_quick_cli(tmp_path):
  record = studies_testing.run_quick('depth', tmp_path)
  values = record['values']
  # Robust at any size: option-A twins share every parameter.
  assert values['twins_have_equal_params'] is True
  assert values['params']['plain8'] == values['params']['resnet8']
  per_seed = values['per_seed']
  assert set(per_seed) == {'plain8', 'resnet8', 'plain20', 'resnet20'}
  for arm in per_seed.values():
    assert all(0 <= e <= 100 for e in arm['final_error'] + arm['run_error'])
    assert len(arm['final_error']) == 1
  assert len(record['subclaims']) == 5


def test_run_turns_stand_in_training_into_the_result(monkeypatch):
  # report.train and report.predict stand-ins: plain-20 ends at 10%, plain-8
  # at 20% on every seed, so 'plain-20 ends higher' is false by 10 points.
  final = {'plain8': 20.0, 'resnet8': 6.0, 'plain20': 10.0, 'resnet20': 4.0}

  def arm(config):
    kind = 'resnet' if config.model_kw.residual else 'plain'
    return kind + ('8' if 'tiny' in config.model else '20')

  def train(config):
    err = final[arm(config)] / 100
    steps = range(5, config.total_steps + 1, 5)
    line = {'split': 'train', 'accuracy': 1 - err, 'loss': 1.0}
    records = [dict(line, step=s) for s in steps]
    records.append(
      {'step': config.total_steps, 'split': 'eval', 'accuracy': 0.5}
    )
    return report.TrainRun(records=records, state=config)

  def predict(config, state, split):
    assert split == 'train'
    n_wrong = int(final[arm(config)])
    labels = np.zeros(100, int)
    probs = np.tile([[0.9, 0.1]], (100, 1))
    probs[:n_wrong] = [0.1, 0.9]
    return probs, labels

  monkeypatch.setattr(report, 'train', train)
  monkeypatch.setattr(report, 'predict', predict)
  result = depth.run(quick=True)
  got = result.values['per_seed']
  assert got['plain20']['final_error'] == [10.0]
  assert got['resnet20']['run_error'] == pytest.approx([4.0])
  verdicts = [c.verdict for c in result.subclaims]
  assert verdicts == ['does not hold'] * 2 + ['holds'] * 3
  assert result.verdict == 'does not hold'
  assert [row[0] for row in result.rows] == [
    'plain-8',
    'ResNet-8',
    'plain-20',
    'ResNet-20',
  ]
