"""The shuffled_pixels study: its arms' configs and its verdicts."""

import numpy as np
import pytest

from experiments.studies import shuffled_pixels
from tests.experiments.studies import studies_testing


def test_arms_differ_only_in_the_permutation():
  for model in shuffled_pixels.MODELS:
    ordered, shuffled = (
      shuffled_pixels.arm_config(model, shuffled=s, seed=1, steps=300)
      for s in (False, True)
    )
    assert ordered.data.permutation_seed is None
    assert shuffled.data.permutation_seed == shuffled_pixels.PERMUTATION_SEED
    shuffled.data.permutation_seed = None
    assert shuffled.to_dict() == ordered.to_dict()
    assert ordered.total_steps == 300 and ordered.warmup_steps == 30


@pytest.mark.slow
def test_the_shuffled_arm_sees_one_permutation_of_the_signals():
  shuffled_pixels.check_shuffled(steps=10)  # raises if the data ignore it


def _accuracies(cnn_shuffled):
  return {
    'cnn ordered': [94.0, 93.0, 95.0],
    'cnn shuffled': cnn_shuffled,
    'mlp ordered': [68.0, 69.0, 67.0],
    'mlp shuffled': [68.2, 69.2, 67.2],
  }


def test_subclaims_on_greydanus_numbers_and_on_wrong_ones():
  paper = shuffled_pixels.subclaims(_accuracies([56.0, 57.0, 55.0]))
  assert [s.verdict for s in paper] == ['holds'] * 4
  # A CNN that kept its edge after shuffling: the second sub-claim flips.
  kept = shuffled_pixels.subclaims(_accuracies([90.0, 91.0, 89.0]))
  assert kept[1].verdict == 'does not hold'
  assert kept[1].estimate == pytest.approx(np.mean([21.8, 21.8, 21.8]))


@pytest.mark.slow
def test_quick_cli_writes_the_files(tmp_path):
  record = studies_testing.run_quick('shuffled_pixels', tmp_path)
  acc = record['values']['test_accuracy']
  # Even after 150 steps the CNN beats the MLP on ordered signals and loses
  # more than the MLP to the shuffling.
  assert acc['cnn ordered'][0] > acc['mlp ordered'][0]
  cnn_drop = acc['cnn ordered'][0] - acc['cnn shuffled'][0]
  mlp_drop = acc['mlp ordered'][0] - acc['mlp shuffled'][0]
  assert cnn_drop > mlp_drop + 5
