"""The depth study: plain vs residual 6n+2 twins (He et al. 2016, Fig. 6).

The design's arithmetic (parameters, recipe, margins and seeds from the
pilot) is checked by hand; the verdicts on stand-in numbers and on stand-in
training (no real training); the slow test runs `--quick` and asserts only
what holds at that size: the files, the kinds of the sub-claims, the
preconditions' names and that 20 steps fit no net (so 'not tested').
"""

import math

import numpy as np
import pytest

from experiments.studies import depth
from experiments.studies import report
from experiments.studies import verdict
from experiments.studies.depth import design
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
  expected = _by_hand(design.WIDTHS, 3)
  assert expected == 23_314
  assert design.param_count(20, residual=True) == expected
  assert design.param_count(20, residual=False) == expected


def test_the_config_is_he_et_al_recipe_on_mnist1d():
  config = design.config_for(depth=56, residual=False, seed=2)
  assert config.model == 'resnet56_cifar'
  assert config.model_kw.to_dict() == {
    'residual': False,
    'widths': (8, 16, 32),
    'spatial_dims': 1,
  }
  assert (config.data.name, config.seed) == ('mnist1d', 2)
  assert (config.optimizer, config.optimizer_kw.momentum) == ('momentum', 0.9)
  assert (config.lr, config.batch_size, config.total_steps) == (0.1, 128, 1500)
  assert (config.weight_decay, config.weight_decay_mode) == (1e-4, 'l2')
  # lr / 10 at 50% and 75% of the run, as 32k and 48k of 64k iterations.
  assert config.schedule == 'step'
  assert tuple(config.schedule_kw.boundaries) == (750, 1125)
  assert config.schedule_kw.decay_factor == 0.1
  assert config.warmup_steps == 0 and config.label_smoothing == 0.0
  assert config.augment.crop_padding == 0 and config.augment.mixup_alpha == 0
  # 1,500 steps of 128 on 4,000 signals: 48 of the paper's 164 epochs.
  assert design.epochs(design.STEPS) == 48


def test_eval_mode_fit_by_hand():
  probs = np.asarray([[0.5, 0.25, 0.25], [0.1, 0.8, 0.1], [0.6, 0.2, 0.2]])
  labels = np.asarray([0, 1, 1])
  error, loss = depth.eval_mode_fit(probs, labels)
  assert error == pytest.approx(100 / 3)
  assert loss == pytest.approx(-(np.log(0.5) + np.log(0.8) + np.log(0.2)) / 3)


def test_the_margins_are_the_pilots_seed_spread():
  # ResNet-20's pilot errors are equal (sd 0); ResNet-56's differ by 0.225:
  # sd 0.225 / sqrt(2), margin 1.96 sd.
  points, loss = design.MARGIN_POINTS, design.MARGIN_LOSS
  assert points == pytest.approx(1.96 * 0.225 / math.sqrt(2))
  sd20, sd56 = (0.00179 - 0.00107) / math.sqrt(2), 0.01175 / math.sqrt(2)
  assert loss == pytest.approx(1.96 * math.hypot(sd20, sd56))
  assert loss == pytest.approx(0.0163, abs=1e-4)


def test_the_seeds_come_from_the_pilot_and_apart_from_it():
  seeds = design.SEEDS
  assert seeds == tuple(range(8))
  assert not set(design.SEEDS) & set(design.PILOT_SEEDS)
  # ResNet-56 minus ResNet-20 loss in the pilot: -0.00112 and 0.01135, mean
  # 0.005115, sd 0.008818; 0.0112 below the margin: t(4) 2.776 * 0.008818 /
  # sqrt(5) = 0.01095 resolves it with 5 seeds.
  why = depth.seeds_why(
    'resnet56', 'resnet20', 'final_loss', design.MARGIN_LOSS, above=False
  )
  assert 'resolves that with 5 seeds' in why
  assert 'paired difference 0.00512, sd 0.00882' in why
  assert 'e-0' not in why  # No scientific notation for a student.


def _per_seed(plain56, resnet56_loss, plain20=(0.1, 0.0, 0.05, 0.0, 0.1)):
  """Stand-in values over 5 seeds: errors (points) and losses by arm."""
  resnet20_loss = (0.002, 0.001, 0.0015, 0.0012, 0.0018)
  return {
    (20, False): {'final_error': list(plain20), 'final_loss': [0.005] * 5},
    (56, False): {
      'final_error': list(plain56),
      'final_loss': [e / 40 for e in plain56],
    },
    (20, True): {'final_error': [0.0] * 5, 'final_loss': list(resnet20_loss)},
    (56, True): {
      'final_error': [0.0, 0.1, 0.0, 0.0, 0.05],
      'final_loss': list(resnet56_loss),
    },
  }


PARAMS = {(d, r): 100 * d for d in (20, 56) for r in (False, True)}


def test_subclaims_hold_on_the_paper_pattern_and_flip_on_wrong_input():
  plain56 = (55.0, 70.0, 60.0, 65.0, 58.0)
  resnet56 = (0.001, 0.012, 0.002, 0.003, 0.0009)
  claims = depth.subclaims(_per_seed(plain56, resnet56), params=PARAMS)
  assert [c.kind for c in claims] == ['check'] + ['claim'] * 4
  assert [c.verdict for c in claims] == ['passes'] + ['holds'] * 4
  assert all(
    c.seeds == 5 and 'verdict.seeds_for' in c.seeds_why for c in claims[1:]
  )
  first = claims[1]
  assert first.estimate == pytest.approx(np.mean(plain56) - 0.05)
  assert first.threshold == design.MARGIN_POINTS
  # No degradation of the plain net: plain-56 fits as plain-20 does.
  claims = depth.subclaims(_per_seed((0.1, 0.0, 0.0, 0.05, 0.0), resnet56))
  assert [c.verdict for c in claims[:2]] == ['does not hold'] * 2
  # The deep ResNet degrades: its loss 0.05 above ResNet-20's, every seed.
  worse = tuple(x + 0.05 for x in resnet56)
  claims = depth.subclaims(_per_seed(plain56, worse))
  assert claims[2].verdict == 'does not hold'
  # At the margin, with seed noise: the interval straddles it.
  noisy = (0.001, 0.04, 0.002, 0.03, 0.0009)
  assert depth.subclaims(_per_seed(plain56, noisy))[2].verdict == (
    'inconclusive'
  )


def test_a_plain_twin_with_other_parameters_fails_the_check():
  params = dict(PARAMS)
  params[(56, False)] += 2
  plain56, resnet56 = (55.0, 70.0, 60.0, 65.0, 58.0), (0.001,) * 4 + (0.002,)
  with pytest.raises(verdict.CheckFailedError, match='residual twin'):
    depth.subclaims(_per_seed(plain56, resnet56), params=params)


def test_shallow_nets_that_do_not_fit_make_it_not_tested():
  per_seed = _per_seed((55.0, 70.0, 60.0, 65.0, 58.0), (0.001,) * 5)
  per_seed[(20, False)]['final_error'] = [2.0, 1.5, 3.0, 2.5, 2.0]
  pre = depth.preconditions(per_seed)
  assert [p.met for p in pre] == [False, True]
  assert (
    pre[0].name.startswith('plain-20 fits the training set')
    and pre[0].measured == 2.2
  )
  claims = depth.subclaims(per_seed)
  assert verdict.headline(claims, pre) == 'not tested'


def _stand_in_training(monkeypatch):
  """report.train / predict fakes: the paper's pattern at quick size.

  The 8-layer nets fit (no error), plain-20 misclassifies 30% + seed %,
  ResNet-20 nothing; losses vary with the seed by small amounts.
  """
  wrong = {'plain8': 0, 'resnet8': 0, 'plain20': 30, 'resnet20': 0}

  def arm(config):
    kind = 'resnet' if config.model_kw.residual else 'plain'
    return kind + ('8' if 'tiny' in config.model else '20')

  def train(config):
    records = [{'step': config.total_steps, 'split': 'eval', 'accuracy': 0.5}]
    return report.TrainRun(records=records, state=config)

  def predict(config, state, split):
    assert split == 'train'
    n_wrong = wrong[arm(config)] + config.seed * (wrong[arm(config)] > 0)
    sure = 1 - 0.001 * (1 + config.seed) * (1 + (arm(config) == 'resnet20'))
    probs = np.tile([[sure, 1 - sure]], (100, 1))
    probs[:n_wrong] = [0.1, 0.9]
    return probs, np.zeros(100, int)

  monkeypatch.setattr(report, 'train', train)
  monkeypatch.setattr(report, 'predict', predict)


def test_run_turns_stand_in_training_into_the_result(monkeypatch):
  _stand_in_training(monkeypatch)
  monkeypatch.setattr(depth, 'QUICK_SEEDS', tuple(range(5)))
  result = depth.run(quick=True)
  got = result.values['per_seed']
  assert got['plain20']['final_error'] == [30.0, 31.0, 32.0, 33.0, 34.0]
  assert got['resnet8']['final_error'] == [0.0] * 5
  assert got['plain8']['test_error'] == [50.0] * 5
  assert [p.met for p in result.preconditions] == [True, True]
  assert [c.verdict for c in result.subclaims] == ['passes'] + ['holds'] * 4
  assert result.verdict == 'holds'
  assert [row[0] for row in result.rows] == [
    'plain-8',
    'ResNet-8',
    'plain-20',
    'ResNet-20',
  ]
  assert "of the paper's 164 epochs" in result.caption
  assert 'e-0' not in result.summary + result.lead


def test_one_seed_makes_no_claim(monkeypatch):
  _stand_in_training(monkeypatch)
  result = depth.run(quick=True)  # One seed: the check alone.
  assert [c.kind for c in result.subclaims] == ['check']
  assert result.verdict == 'checks pass'
  assert 'No claim is made: a claim needs 5 seeds.' in result.summary


@pytest.mark.slow
def test_quick_cli(tmp_path):
  record = studies_testing.run_quick('depth', tmp_path)
  assert record['format'] == 2
  # One seed: the check, and no claim (a claim needs 5 seeds).
  assert [s['kind'] for s in record['subclaims']] == ['check']
  assert record['subclaims'][0]['verdict'] == 'passes'
  values = record['values']
  assert values['params']['plain8'] == values['params']['resnet8']
  per_seed = values['per_seed']
  assert set(per_seed) == {'plain8', 'resnet8', 'plain20', 'resnet20'}
  for arm in per_seed.values():
    assert len(arm['final_error']) == 1
    assert all(0 <= e <= 100 for e in arm['final_error'] + arm['test_error'])
  # 20 steps fit no net: the shallow nets miss the precondition.
  names = [p['name'] for p in record['preconditions']]
  assert [n.split(' fits')[0] for n in names] == ['plain-8', 'ResNet-8']
  assert [p['met'] for p in record['preconditions']] == [False, False]
  assert record['verdict'] == 'not tested'
