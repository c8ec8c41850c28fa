"""Tests of train_lib/init_from.py: runs that start from given weights.

References: the file's own tensors (through nets.weights' layout, whose
parity with torchvision is tests/nets/test_weights*.py), the fresh init for
a re-initialised head, the hand rule for a gray stem (the sum over RGB), and
another run's checkpoint for a workdir source.
"""

import functools
import logging
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from experiments.configs import synthetic
import nets
from nets import weights
from tests.nets import nets_testing
from train_lib import checkpoint
from train_lib import init_from
from train_lib import optim
from train_lib import state as state_lib
from train_lib import trainer


def _file(tmp_path, num_classes, channels=3, name='w.safetensors'):
  """A resnet_tiny state_dict file with random tensors, and its variables."""
  model = nets.create('resnet_tiny', num_classes=num_classes)
  x = np.zeros((1, 8, 8, channels), np.float32)
  variables = nets_testing.fake_variables(model, x, train=False, seed=3)
  path = str(tmp_path / name)
  weights.save_state_dict(weights.to_state_dict(model, variables), path)
  return path, variables


def _create_fn(num_classes, channels=3, ema=True, tx=None):
  model = nets.create('resnet_tiny', num_classes=num_classes)
  tx = tx or optax.sgd(0.1, momentum=0.9)
  create = functools.partial(
    state_lib.create_train_state,
    model=model,
    tx=tx,
    init_key=jax.random.key(0),
    example_input=jnp.zeros((1, 8, 8, channels)),
    ema=ema,
  )
  return model, tx, create


def _process_state():
  """What orbax_quirks.QuietLeftovers changes while the trainer runs."""
  loggers = [logging.getLogger(name) for name in ('absl', 'asyncio')]
  return sys.unraisablehook, [list(log.filters) for log in loggers]


def _assert_trees_equal(a, b):
  jax.tree.map(np.testing.assert_array_equal, jax.device_get(a), b)


@pytest.mark.slow
def test_state_starts_from_the_file_with_a_new_head(tmp_path, capsys):
  path, variables = _file(tmp_path, num_classes=1000)
  model, tx, create = _create_fn(num_classes=4)
  fresh = create()
  state = init_from.starting_from(path, create, model=model, tx=tx)()
  assert 'head re-initialised' in capsys.readouterr().out
  assert int(state.step) == 0
  body = {k: v for k, v in variables['params'].items() if k != 'head'}
  _assert_trees_equal({k: state.params[k] for k in body}, body)
  _assert_trees_equal(state.batch_stats, variables['batch_stats'])
  _assert_trees_equal(state.params['head'], fresh.params['head'])
  _assert_trees_equal(state.ema_params, jax.device_get(state.params))
  # The optimizer state is the fresh one (zero momentum), for these params.
  zeros = jax.tree.map(np.zeros_like, jax.device_get(state.params))
  _assert_trees_equal(state.opt_state[0].trace, zeros)


@pytest.mark.slow
def test_gray_stem_sums_the_rgb_kernel(tmp_path):
  path, variables = _file(tmp_path, num_classes=4)
  model, tx, create = _create_fn(num_classes=4, channels=1)
  state = init_from.starting_from(path, create, model=model, tx=tx)()
  rgb = np.asarray(variables['params']['stem_conv']['kernel'])  # [3,3,3,8]
  np.testing.assert_allclose(
    state.params['stem_conv']['kernel'], rgb.sum(axis=2, keepdims=True)
  )


@pytest.mark.slow
def test_eval_shape_reads_nothing(tmp_path):
  model, tx, create = _create_fn(num_classes=4)
  absent = str(tmp_path / 'absent.pth')
  wrapped = init_from.starting_from(absent, create, model=model, tx=tx)
  shapes = jax.eval_shape(wrapped)
  assert shapes.params['head']['kernel'].shape == (16, 4)
  with pytest.raises(ValueError, match='no weights file'):
    wrapped()


def _config(**overrides):
  config = synthetic.get_config('resnet_tiny,8x8x3,4')
  config.data.synthetic_num_train = 32
  config.data.synthetic_num_test = 16
  config.batch_size = 16
  config.total_steps = 2
  config.log_every_steps = 1
  config.eval_every_steps = 0
  config.checkpoint_every_steps = 0
  config.update(overrides)
  return config


@pytest.mark.slow
def test_runs_start_from_files_and_workdirs_and_resume_their_own(tmp_path):
  path, variables = _file(tmp_path, num_classes=4, name='w.pth')
  run = str(tmp_path / 'run')
  before = _process_state()
  trainer.train_and_evaluate(_config(init_from=path), run)
  assert _process_state() == before  # The trainer's filters are gone.
  assert checkpoint.steps(run) == [2]
  # The workdir's checkpoint wins: the file is not needed to resume.
  os.remove(path)
  config = _config(init_from=path, total_steps=3)
  state = trainer.train_and_evaluate(config, run)
  assert int(state.step) == 3
  # Another run's workdir (same model, optimizer and EMA setting, so the
  # same state tree): its newest parameters and statistics, at step 0.
  tx, _ = optim.create_optimizer(_config())
  model, tx, create = _create_fn(num_classes=4, ema=False, tx=tx)
  start = init_from.starting_from(run, create, model=model, tx=tx)()
  _assert_trees_equal(start.params, jax.device_get(state.params))
  _assert_trees_equal(start.batch_stats, jax.device_get(state.batch_stats))
  assert int(start.step) == 0


@pytest.mark.parametrize(
  'source, message',
  [
    pytest.param(
      'missing.pth',
      "init_from '.*missing.pth': no weights file",
      marks=pytest.mark.slow,
    ),
    ('vgg.safetensors', 'does not fit ResNet .*: missing '),
    pytest.param('folder', 'not a run workdir', marks=pytest.mark.slow),
  ],
  ids=['missing', 'another_model', 'folder'],
)
def test_bad_sources_stop_before_training(tmp_path, source, message):
  if source == 'vgg.safetensors':
    model = nets.create('vgg_tiny', num_classes=4)
    x = np.zeros((1, 8, 8, 3), np.float32)
    v = nets_testing.fake_variables(model, x, train=False)
    weights.save_state_dict(
      weights.to_state_dict(model, v), str(tmp_path / source)
    )
  if source == 'folder':
    os.makedirs(tmp_path / source)
  run = str(tmp_path / 'run')
  config = _config(init_from=str(tmp_path / source))
  before = _process_state()
  with pytest.raises(trainer.ConfigError, match=message) as info:
    trainer.train_and_evaluate(config, run)
  assert _process_state() == before  # Also after a failure.
  assert '\n' not in str(info.value)
  assert not os.path.exists(os.path.join(run, 'metrics.jsonl'))
  assert checkpoint.steps(run) == []


@pytest.mark.slow
def test_an_unreadable_workdir_is_one_line_and_left_as_it_is(tmp_path):
  model, tx, create = _create_fn(num_classes=4)
  source = str(tmp_path / 'source')
  ckpt = checkpoint.Checkpointer(source, keep=1, async_save=False)
  ckpt.save(3, create())
  ckpt.close()
  step_dir = os.path.join(source, 'checkpoints', '3')
  for root, _, files in os.walk(step_dir):  # Its metadata is lost.
    for name in files:
      if 'METADATA' in name or name == 'manifest.ocdbt':
        os.remove(os.path.join(root, name))
  before = sorted(os.walk(source))
  wrapped = init_from.starting_from(source, create, model=model, tx=tx)
  with pytest.raises(ValueError) as info:
    wrapped()
  assert str(info.value) == (
    f'init_from {source!r}: checkpoint {step_dir} is unreadable (its '
    'metadata is missing)'
  )
  assert sorted(os.walk(source)) == before  # Another run's: not moved.
