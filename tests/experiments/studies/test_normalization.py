"""The normalization study (BatchNorm vs none, BN vs GroupNorm by batch)."""

import pytest

from experiments.studies import normalization
from experiments.studies import report
from tests.experiments.studies import studies_testing
from train_lib import trainer


def test_diverged_step_reads_the_trainers_message():
  error = trainer.DivergedError(
    'loss is nan at step 37: training stopped without saving this state; '
    'no checkpoint was saved yet'
  )
  assert normalization.diverged_step(error) == 37
  assert normalization.diverged_step(ValueError('no step here')) is None


def test_steps_to_reach_is_the_first_logged_step_at_or_under_target():
  steps, losses = [10, 20, 30, 40], [2.0, 0.31, 0.3, 0.1]
  assert normalization.steps_to_reach(steps, losses, 0.3) == 30
  assert normalization.steps_to_reach(steps, losses, 0.05) is None


def test_batch_spread_and_trained():
  assert normalization.batch_spread({2: 0.30, 4: 0.1, 32: 0.05}) == (
    pytest.approx(0.25)
  )
  trained = normalization.Arm(steps=[1], losses=[0.1], accuracies=[0.9])
  stuck = normalization.Arm(steps=[1], losses=[2.3], accuracies=[0.1])
  gone = normalization.Arm(steps=[], losses=[], accuracies=[], diverged_at=3)
  assert trained.trained and not stuck.trained and not gone.trained


def test_a_divergence_is_recorded_with_its_step(monkeypatch):
  def diverge(config):
    raise trainer.DivergedError('loss is inf at step 12: training stopped')

  monkeypatch.setattr(report, 'train', diverge)
  arm = normalization.train_arm(None)
  assert arm.diverged_at == 12 and not arm.trained


def test_other_training_errors_are_not_swallowed(monkeypatch):
  def bad_config(config):
    raise trainer.ConfigError('unknown model')

  monkeypatch.setattr(report, 'train', bad_config)
  with pytest.raises(trainer.ConfigError):
    normalization.train_arm(None)


def test_config_changes_only_the_norm():
  kw = dict(
    lr=0.1,
    batch_size=32,
    total_steps=10,
    log_every_steps=5,
    stage_channels=(8, 16),
  )
  plain = normalization.config_for(norm=None, **kw).to_dict()
  bn = normalization.config_for(norm='batch', **kw).to_dict()
  assert bn['model_kw'].pop('norm') == 'batch'
  assert plain == bn
  assert plain['model'] == 'cnn_small' and plain['data']['name'] == 'digits'


@pytest.mark.slow
def test_quick_cli(tmp_path):
  record = studies_testing.run_quick('normalization', tmp_path)
  values = record['values']
  # Robust at quick size: at lr 0.3 the plain CNN does not train (its
  # training accuracy stays near chance), with BN it does.
  assert values['lrs_only_bn_trains'] == [0.3]
  assert set(values['bn_error_by_batch']) == {'4', '32'}


def _fake_train(test_accuracy):
  """A report.train stand-in: BN trains, no norm stays at chance at lr 0.3."""

  def train(config):
    norm = config.model_kw.to_dict().get('norm')
    steps = list(range(5, config.total_steps + 1, 5))
    if norm is None:
      losses, accuracy = [2.3] * len(steps), 0.1
    else:
      losses, accuracy = [1.0 / s for s in steps], 0.95
    records = [
      {'step': s, 'split': 'train', 'loss': loss, 'accuracy': accuracy}
      for s, loss in zip(steps, losses, strict=True)
    ]
    acc = test_accuracy.get((norm, config.batch_size), 0.9)
    records.append({'step': steps[-1], 'split': 'eval', 'accuracy': acc})
    return report.TrainRun(records=records, state=None)

  return train


@pytest.mark.parametrize(
  'bn_small_batch_acc,holds', [(0.6, True), (0.9, False)]
)
def test_verdict_follows_the_arms(monkeypatch, bn_small_batch_acc, holds):
  accuracy = {('batch', 4): bn_small_batch_acc, ('group', 4): 0.88}
  monkeypatch.setattr(report, 'train', _fake_train(accuracy))
  result = normalization.run(quick=True)
  values = result.values
  assert values['lrs_only_bn_trains'] == [0.3]
  assert values['steps_to_target_plain'] is None
  assert values['steps_to_target_bn'] == 5
  assert values['bn_error_by_batch']['4'] == pytest.approx(
    1 - bn_small_batch_acc
  )
  assert result.holds is holds and values['batch_dependent'] is holds
