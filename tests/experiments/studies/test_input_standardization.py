"""The input_standardization study: its measures by hand, its verdicts."""

import math

import numpy as np
import pytest

from experiments.studies import input_standardization as study
from tests.experiments.studies import studies_testing


def test_steps_to_target_is_the_first_logged_step_at_or_below():
  steps = [5, 10, 15, 20]
  assert study.steps_to_target(steps, [0.9, 0.5, 0.2, 0.1], 0.2) == 15.0
  assert study.steps_to_target(steps, [0.9, 0.5, 0.3, 0.25], 0.2) == math.inf
  assert study.steps_to_target([], [], 0.2) == math.inf


def test_condition_number_by_hand():
  # E[[x, 1][x, 1]^T] = diag(1/2, 2, 1): eigenvalues 2 and 1/2, ratio 4.
  x = np.array([[1.0, 0.0], [-1.0, 0.0], [0.0, 2.0], [0.0, -2.0]])
  assert study.condition_number(x) == pytest.approx(4.0)
  # A feature that is 0 everywhere adds an exact null direction: ignored.
  padded = np.concatenate([x, np.zeros((4, 1))], axis=1)
  assert study.condition_number(padded) == pytest.approx(4.0)


def test_arms_differ_only_in_the_standardisation():
  slow, fast = (
    study.arm_config(arm, hidden=(64,), lr=0.3, seed=1, steps=50)
    for arm in study.ARMS
  )
  assert not slow.data.per_feature_standardize
  assert fast.data.per_feature_standardize
  assert slow.batch_size == 899 and slow.optimizer == 'sgd'
  fast.data.per_feature_standardize = False
  assert fast.to_dict() == slow.to_dict()


def test_speedup_subclaim_flips_with_the_ratio():
  faster = study.speedup_subclaim('linear', [100, 120, 90], [40, 50, 45], 0.2)
  assert faster.verdict == 'holds'
  assert faster.estimate == pytest.approx((2.5 * 2.4 * 2.0) ** (1 / 3))
  slower = study.speedup_subclaim('linear', [40, 50, 45], [100, 120, 90], 0.2)
  assert slower.verdict == 'does not hold'


@pytest.mark.slow
def test_quick_cli_writes_the_files(tmp_path):
  record = studies_testing.run_quick('input_standardization', tmp_path)
  cond = record['values']['condition_number']
  # The pipeline's digits: ~1e7; z-scored per pixel: ~1e2 (measured).
  assert cond[study.ARMS[0]] > 100 * cond[study.ARMS[1]]
  assert record['subclaims'][0]['verdict'] == 'holds'
