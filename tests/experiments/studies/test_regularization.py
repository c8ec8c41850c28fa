"""The regularization study: its arms, its paired sub-claims, the CLI."""

import numpy as np
import pytest

from experiments.studies import regularization
from experiments.studies import report
from tests.experiments.studies import studies_testing


def _config(arm_name, steps=10, seed=0):
  for arm, _, model, model_kw, augment in regularization.ARMS:
    if arm == arm_name:
      return regularization.arm_config(
        model, model_kw, augment, steps=steps, seed=seed
      )
  raise KeyError(arm_name)


def test_baselines_have_no_regulariser_and_each_arm_adds_one():
  for name, model in (('MLP', 'mlp'), ('LeNet-5', 'lenet5')):
    base = _config(name)
    assert base.model == model and base.data.name == 'mnist'
    assert base.data.validation_fraction == 0.0  # All 4,000 images train.
    assert base.augment.to_dict() == {
      'crop_padding': 0,
      'random_flip': False,
      'cutout_size': 0,
      'mixup_alpha': 0.0,
      'cutmix_alpha': 0.0,
    }
    assert base.weight_decay == 0.0 and base.label_smoothing == 0.0
    assert (base.optimizer, base.schedule) == ('momentum', 'cosine')
  assert _config('MLP').model_kw.dropout_rate == 0.0
  assert _config('MLP + dropout 0.5').model_kw.to_dict() == {
    'hidden_sizes': (512, 512),
    'dropout_rate': 0.5,
  }
  arms = [a for a, base, *_ in regularization.ARMS if base == 'LeNet-5']
  changed = [_config(a).augment.to_dict() for a in arms]
  assert [c['crop_padding'] for c in changed] == [2, 0, 0]
  assert [c['cutout_size'] for c in changed] == [0, 8, 0]
  assert [c['mixup_alpha'] for c in changed] == [0.0, 0.0, 0.2]
  assert not any(c['random_flip'] for c in changed)


def test_subclaims_pair_each_seed_with_its_baseline():
  test_error = {
    'MLP': [6.0, 5.0, 7.0],
    'MLP + dropout 0.5': [5.0, 4.2, 6.1],
    'LeNet-5': [2.0, 3.0, 2.5],
    'LeNet-5 + crop (pad 2)': [1.5, 2.6, 2.0],
  }
  claims = regularization.subclaims(test_error)
  assert [c.claim.split(' lowers')[0] for c in claims] == [
    'dropout 0.5',
    'crop (pad 2)',
  ]
  # Per-seed changes -1, -0.8, -0.9: mean -0.9, sd 0.1, t(2) = 4.303.
  dropout = claims[0]
  assert dropout.estimate == pytest.approx(-0.9)
  assert dropout.ci_high == pytest.approx(-0.9 + 4.303 * 0.1 / 3**0.5, 1e-3)
  assert dropout.verdict == 'holds'
  # Unpaired, the seeds' spread (1 point) would swamp the change; swapping
  # two seeds of the dropout arm breaks the pairing: inconclusive.
  swapped = dict(test_error, **{'MLP + dropout 0.5': [4.2, 5.0, 6.1]})
  assert regularization.subclaims(swapped)[0].verdict == 'inconclusive'
  # A regulariser that raises the error on every seed: 'does not hold'.
  worse = dict(test_error, **{'LeNet-5 + crop (pad 2)': [2.5, 3.4, 3.0]})
  assert regularization.subclaims(worse)[1].verdict == 'does not hold'


@pytest.mark.slow
def test_quick_cli_writes_the_files(tmp_path):
  record = studies_testing.run_quick('regularization', tmp_path)
  values = record['values']
  train, test = values['train_error_pct'], values['test_error_pct']
  assert set(test) == set(regularization.QUICK_ARMS)
  assert all(
    0 <= e <= 100 for v in (*train.values(), *test.values()) for e in v
  )
  # Robust at any size: the nets learn (chance is 90% error).
  assert max(test['MLP'][0], test['LeNet-5'][0]) < 50
  assert len(record['subclaims']) == 2
  assert any(row[0] == 'stochastic depth' for row in record['protocol'])


def test_run_turns_stand_in_training_into_the_result(monkeypatch):
  # Stand-ins: each arm's held-out error is fixed per arm, +0.1 per seed, so
  # every change is exact; dropout and crop help, cutout and mixup hurt.
  held_out = {'mlp': 5.0, 'dropout': 4.0, 'lenet5': 2.0, 'crop': 1.5}
  held_out.update({'cutout': 2.5, 'mixup': 2.2})

  def arm(config):
    if config.model == 'mlp':
      return 'dropout' if config.model_kw.dropout_rate else 'mlp'
    aug = config.augment
    for name, on in (
      ('crop', aug.crop_padding),
      ('cutout', aug.cutout_size),
      ('mixup', aug.mixup_alpha),
    ):
      if on:
        return name
    return 'lenet5'

  def predict(config, state, split):
    n_wrong = 0 if split == 'train' else held_out[arm(config)] + config.seed
    labels = np.zeros(1000, int)
    probs = np.tile([[0.9, 0.1]], (1000, 1))
    probs[: int(round(10 * n_wrong))] = [0.1, 0.9]
    return probs, labels

  monkeypatch.setattr(report, 'train', lambda c: report.TrainRun([], c))
  monkeypatch.setattr(report, 'predict', predict)
  result = regularization.run(quick=False)
  assert result.values['test_error_pct']['MLP'] == pytest.approx([5, 6, 7])
  changes = [c.estimate for c in result.subclaims]
  assert changes == pytest.approx([-1.0, -0.5, 0.5, 0.2])
  verdicts = [c.verdict for c in result.subclaims]
  assert verdicts == ['holds', 'holds', 'does not hold', 'does not hold']
  assert result.verdict == 'does not hold'
