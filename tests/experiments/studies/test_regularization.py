"""The regularization study: its arms, its paired summary, the CLI."""

import numpy as np
import pytest

from experiments.studies import regularization
from tests.experiments.studies import studies_testing
from train_lib import data as data_lib


def _config(arm_name, steps=10, seed=0):
  for arm, _, model, model_kw, augment in regularization.ARMS:
    if arm == arm_name:
      return regularization.arm_config(
        model, model_kw, augment, steps=steps, seed=seed
      )
  raise KeyError(arm_name)


def test_baseline_has_no_regulariser_and_arms_add_one():
  base = _config('MLP: none')
  assert 'dropout_rate' not in base.model_kw  # The MLP's default: 0.
  assert base.augment.to_dict() == {
    'crop_padding': 0,
    'random_flip': False,
    'cutout_size': 0,
    'mixup_alpha': 0.0,
    'cutmix_alpha': 0.0,
  }
  assert base.weight_decay == 0.0 and base.label_smoothing == 0.0
  assert _config('MLP: dropout 0.5').model_kw.dropout_rate == 0.5
  assert _config('MLP: crop (pad 1)').augment.crop_padding == 1
  assert _config('MLP: cutout 4x4').augment.cutout_size == 4
  assert _config('MLP: mixup a=0.4').augment.mixup_alpha == 0.4
  sd = _config('ResNet: stoch. depth 0.5')
  assert sd.model == 'resnet_tiny' and sd.model_kw.drop_path_rate == 0.5
  assert not any(a.endswith('flip') for a, *_ in regularization.ARMS)


def test_the_training_set_is_179_digits_and_the_seed_draws_it():
  sets = []
  for seed in (0, 1):
    config = _config('MLP: none', seed=seed)
    dataset = data_lib.get_dataset(config.data, seed=config.seed)
    assert (dataset.num_train, dataset.num_test) == (179, 720)
    assert dataset.eval_split == 'validation'
    sets.append(dataset.host_arrays('train')[0])
  assert not np.array_equal(sets[0], sets[1])


def test_summarize_pairs_each_seed_with_its_baseline():
  train = {
    'MLP: none': [1.0, 1.0],
    'MLP: dropout 0.5': [0.99, 0.97],
  }
  test = {
    'MLP: none': [0.90, 0.80],
    'MLP: dropout 0.5': [0.93, 0.81],
  }
  stats = regularization.summarize(train, test)
  # Gaps: none 0.10, 0.20; dropout 0.06, 0.16 -> change -0.04 each seed.
  assert stats['MLP: none']['gap'] == pytest.approx(0.15)
  assert stats['MLP: none']['gap_std'] == pytest.approx(0.05)
  assert np.isnan(stats['MLP: none']['gap_change'])
  d = stats['MLP: dropout 0.5']
  assert d['gap'] == pytest.approx(0.11)
  assert d['gap_change'] == pytest.approx(-0.04)
  assert d['gap_change_std'] == pytest.approx(0.0, abs=1e-12)
  assert d['test_change'] == pytest.approx(0.02)
  # Unpaired, the seeds' spread (0.05) would hide the change; swapping the
  # seeds of one arm breaks the pairing and the change's spread shows it.
  swapped = dict(test, **{'MLP: dropout 0.5': [0.81, 0.93]})
  s = regularization.summarize(train, swapped)['MLP: dropout 0.5']
  assert s['gap_change_std'] > 0.1


@pytest.mark.slow
def test_quick_cli_writes_the_files(tmp_path):
  record = studies_testing.run_quick('regularization', tmp_path)
  values = record['values']
  train, test = values['train_accuracy'], values['test_accuracy']
  assert set(train) == set(regularization.QUICK_ARMS)
  # 179 images overfit: the unregularised MLP fits its training set and
  # scores clearly lower on the held-out images.
  assert train['MLP: none'][0] >= 0.99
  assert train['MLP: none'][0] - test['MLP: none'][0] > 0.03
  assert record['holds'] == all(values['gap_shrinks'].values())
