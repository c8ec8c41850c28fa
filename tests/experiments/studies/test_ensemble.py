"""The ensemble study: fusion by mean softmax, the best member, the CLI."""

import types

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import ml_collections
import numpy as np
import pytest

from experiments.configs import digits
from experiments.studies import ensemble
from experiments.studies import report
from tests.experiments.studies import studies_testing
from train_lib import trainer


def test_mean_probabilities_is_the_notes_average():
  p1 = np.array([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]])
  p2 = np.array([[0.3, 0.6, 0.1], [0.5, 0.1, 0.4]])
  np.testing.assert_allclose(
    ensemble.mean_probabilities([p1, p2]),
    [[0.5, 0.4, 0.1], [0.3, 0.1, 0.6]],
  )


def test_best_member_is_picked_on_the_selection_signals_only():
  # 1 seed, 2 members, 4 signals: the first 2 select, the last 2 measure.
  # Member 0 wins the selection, member 1 the test part.
  members = np.array([[[1, 1, 0, 0], [0, 1, 1, 1]]], bool)
  ens = np.array([[1, 1, 1, 0]], bool)
  best, diff = ensemble.best_member_gain(members, ens, n_select=2)
  assert best.tolist() == [0]
  np.testing.assert_array_equal(diff, [[1.0, 0.0]])


def _untrained(config, seed):
  model = trainer.create_model(config, 10)
  variables = model.init(jax.random.key(seed), jnp.zeros((1, 8, 8, 1)))
  return types.SimpleNamespace(
    params=variables['params'], batch_stats=variables.get('batch_stats', {})
  )


@pytest.mark.slow
def test_fuse_is_the_mean_of_the_members_softmax():
  # Members of different families (one with BatchNorm statistics), fused
  # by nets.ensemble.Ensemble, against each member applied alone and
  # averaged in numpy.
  configs = [digits.get_config('mlp'), digits.get_config('cnn')]
  configs.append(digits.get_config('mlp'))
  configs[2].model = 'resnet_tiny'
  configs[2].model_kw = ml_collections.ConfigDict()
  states = [_untrained(c, i) for i, c in enumerate(configs)]
  images = np.asarray(
    jax.random.normal(jax.random.key(3), (16, 8, 8, 1)), np.float32
  )
  fused = ensemble.fuse(configs, states, images)
  probs = [
    report.predict_images(c, s, images)
    for c, s in zip(configs, states, strict=True)
  ]
  assert fused.shape == (16, 10)
  np.testing.assert_allclose(
    fused, ensemble.mean_probabilities(probs), atol=2e-6
  )
  # One member alone is not the fusion: the check can fail.
  assert np.abs(fused - probs[0]).max() > 1e-3


def test_member_config_uses_the_mnist1d_recipe():
  config = ensemble.member_config(ensemble.MEMBERS[1], steps=300, seed=2)
  assert config.data.name == 'mnist1d' and config.model == 'cnn1d'
  assert config.model_kw.activation == 'elu'
  assert config.total_steps == 300 and config.warmup_steps == 30
  assert config.lr == 1e-2 and config.seed == 2
  assert config.optimizer == 'adamw' and config.checkpoint_every_steps == 0


def _correct(rng, accuracy, shape):
  return rng.random(shape) < accuracy


@pytest.mark.parametrize(
  ('ensemble_accuracy', 'want'),
  [(0.99, 'holds'), (0.90, 'does not hold'), (0.95, 'inconclusive')],
)
def test_gain_subclaim_follows_its_bootstrap(ensemble_accuracy, want):
  # Members at 95% on independent errors; the ensemble at 99%, 90% or as
  # good as a member (95%, independent draws: an interval around 0).
  rng = np.random.default_rng(0)
  members = _correct(rng, 0.95, (3, 2, 2500))
  ens = _correct(rng, ensemble_accuracy, (3, 2500))
  result = ensemble.summarize(
    ['a', 'b'], members, ens, n_select=500, fusion_diff=1e-7, steps=10
  )
  plt.close(result.figure)
  assert result.subclaims[0].verdict == want
  assert result.subclaims[1].verdict == 'holds'
  assert result.values['gain'] == pytest.approx(
    np.mean(result.values['ensemble_accuracy'])
    - np.mean(result.values['best_member_accuracy'])
  )


@pytest.mark.slow
def test_fresh_signals_are_scaled_as_the_loader_scales_its_own():
  from mnist1d.data import get_dataset_args  # noqa: PLC0415
  from mnist1d.data import make_dataset  # noqa: PLC0415

  raw = make_dataset(get_dataset_args())['x']
  assert raw.mean(dtype=np.float64) == pytest.approx(
    ensemble.MNIST1D_TRAIN_MEAN, abs=1e-12
  )
  assert raw.std(dtype=np.float64) == pytest.approx(
    ensemble.MNIST1D_TRAIN_STD, rel=1e-12
  )
  x, y = ensemble.fresh_signals(100)
  assert x.shape == (100, 40, 1) and y.shape == (100,)
  assert abs(float(x.mean())) < 0.2 and 0.8 < float(x.std()) < 1.2
  # New signals: none equals a training signal of the project's split.
  train = (raw - ensemble.MNIST1D_TRAIN_MEAN) / ensemble.MNIST1D_TRAIN_STD
  gaps = np.abs(x[:20, None, :, 0] - train[None, :, :]).sum(-1)
  assert gaps.min() > 1.0


@pytest.mark.slow
def test_quick_cli_writes_the_files(tmp_path):
  record = studies_testing.run_quick('ensemble', tmp_path)
  values = record['values']
  # The Ensemble module's output is the notes' mean of softmaxes.
  assert values['fusion_max_abs_diff'] < ensemble.FUSION_TOLERANCE
  assert record['subclaims'][1]['verdict'] == 'holds'
  accs = values['member_accuracy']
  assert len(accs) == 2 and min(min(v) for v in accs.values()) > 0.3
  assert values['test_signals'] == ensemble.QUICK_TEST
  low, high = values['gain_ci95']
  assert low <= values['gain'] <= high
