"""Tests of experiments/configs/finetune.py: the imported-ResNet recipe.

References: the shared key set of common.get_config(), and for the smoke
run a randomly initialised torchvision ResNet-18 state_dict (no pretrained
file can be downloaded here): the launch must start from its tensors.
"""

import numpy as np
import pytest

from experiments.configs import common
from experiments.configs import finetune
import nets
from tests.experiments import test_configs
from tests.nets import torch_testing
from train_lib import trainer


def test_config_keeps_the_shared_keys_and_documents_its_command():
  config = finetune.get_config()
  assert test_configs._keys(config) == test_configs._keys(common.get_config())
  assert config.model == 'resnet18' and config.model in nets.list_models()
  assert config.init_from == ''  # given on the command line
  assert finetune.get_config('resnet50,smoke=True').total_steps == 2
  test_configs.test_docstring_gives_command_and_metric(finetune)


@pytest.mark.slow
def test_smoke_fine_tunes_a_torchvision_state_dict(tmp_path, capsys):
  torch = torch_testing.torch()
  tv = torch_testing.torchvision()
  torch.manual_seed(0)
  reference = torch_testing.randomize(tv.models.resnet18(weights=None))
  path = str(tmp_path / 'r18.pth')
  torch.save(reference.state_dict(), path)
  config = finetune.get_config('smoke=True')
  config.init_from = path
  config.lr = 1e-9  # two steps leave the parameters at the file's
  state = trainer.train_and_evaluate(config, str(tmp_path / 'run'))
  out = capsys.readouterr().out
  assert 'init_from: head re-initialised' in out
  assert state.params['head']['kernel'].shape == (512, 10)
  sd = torch_testing.state_dict(reference)
  np.testing.assert_allclose(
    state.params['stem_conv']['kernel'],
    sd['conv1.weight'].sum(axis=1, keepdims=True).transpose(2, 3, 1, 0),
    rtol=1e-5,
    atol=1e-7,
  )
  np.testing.assert_allclose(
    state.params['stage4_block2']['conv2']['kernel'],
    sd['layer4.1.conv2.weight'].transpose(2, 3, 1, 0),
    rtol=1e-5,
    atol=1e-7,
  )
