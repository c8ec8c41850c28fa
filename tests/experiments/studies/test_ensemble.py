"""The ensemble study: fusion by mean softmax, the bootstrap, the CLI."""

import types

import jax
import jax.numpy as jnp
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


def test_paired_bootstrap_interval():
  same = np.array([1, 0, 1, 1, 0, 1], bool)
  assert ensemble.paired_bootstrap(same, same, samples=200) == (0.0, 0.0)
  better = np.ones(50, bool)
  worse = np.r_[np.zeros(10, bool), np.ones(40, bool)]  # 80% vs 100%
  low, high = ensemble.paired_bootstrap(better, worse, samples=500)
  assert 0.0 < low <= 0.2 <= high < 0.4
  low, high = ensemble.paired_bootstrap(worse, better, samples=500)
  assert high < 0.0
  with pytest.raises(ValueError, match='1-D'):
    ensemble.paired_bootstrap(np.ones((2, 2)), np.ones((2, 2)), samples=5)


def _untrained(config, seed):
  model = trainer.create_model(config, 10)
  variables = model.init(jax.random.key(seed), jnp.zeros((1, 8, 8, 1)))
  return types.SimpleNamespace(
    params=variables['params'], batch_stats=variables.get('batch_stats', {})
  )


def test_fuse_is_the_mean_of_the_members_softmax():
  # Two members of different families (one with BatchNorm statistics),
  # fused by nets.ensemble.Ensemble, against each member applied alone
  # and averaged in numpy.
  configs = [digits.get_config('mlp'), digits.get_config('cnn')]
  configs.append(digits.get_config('mlp'))
  configs[2].model = 'resnet_tiny'
  configs[2].model_kw = ml_collections.ConfigDict()
  states = [_untrained(c, i) for i, c in enumerate(configs)]
  fused, labels = ensemble.fuse(configs, states, 'test')
  probs = [
    report.predict(c, s, 'test')[0]
    for c, s in zip(configs, states, strict=True)
  ]
  assert fused.shape == (898, 10) and labels.shape == (898,)
  np.testing.assert_allclose(
    fused, ensemble.mean_probabilities(probs), atol=2e-6
  )
  # One member alone is not the fusion: the check can fail.
  assert np.abs(fused - probs[0]).max() > 1e-3


def test_member_config_uses_the_mnist_recipe():
  config = ensemble.member_config(ensemble.MEMBERS[1], steps=300, seed=2)
  assert config.data.name == 'mnist' and config.model == 'lenet5'
  assert config.total_steps == 300 and config.warmup_steps == 30
  assert config.lr == 5e-3 and config.seed == 2
  assert config.optimizer == 'adamw' and config.checkpoint_every_steps == 0


@pytest.mark.slow
def test_quick_cli_writes_the_files(tmp_path):
  record = studies_testing.run_quick('ensemble', tmp_path)
  values = record['values']
  # The Ensemble module's output is the notes' mean of softmaxes.
  assert values['fusion_max_abs_diff'] < 1e-5
  accs = values['member_accuracy']
  assert len(accs) == 2 and min(accs.values()) > 0.5
  assert values['gain'] == pytest.approx(
    values['ensemble_accuracy'] - max(accs.values())
  )
  low, high = values['gain_ci95']
  assert low <= values['gain'] <= high
  assert record['holds'] == (values['gain'] > 0)
