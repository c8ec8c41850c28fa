"""Worker processes and whole runs on the format-faithful tfds fixtures.

References: the in-process (0 workers) batches for the 1- and 2-worker
ones (bit-equal); an uninterrupted run for a resumed one (bit-equal state);
an in-process run with 0 workers for a `python -m experiments.main` launch
with 2 spawned workers (training losses to 1e-5). The fixtures are
tfds's own imagenet2012 / cifar10 builders writing real JPEGs and PNGs
(train_lib/data/testing_fixtures.py); nothing here uses tfds' mock data.
"""

import json
import os
import subprocess
import sys

from absl import flags
import chex
import jax
import numpy as np
import pytest

from experiments.configs import cifar
from experiments.configs import imagenet as imagenet_config
from train_lib import metrics
from train_lib import trainer
from train_lib.data import imagenet

pytestmark = pytest.mark.slow
_REPO = os.path.dirname(os.path.dirname(os.path.dirname(__file__)))


@pytest.fixture(name='flags_parsed')
def _flags_parsed():
  """absl flags parsed for the test only, as an absl app's are for a run."""
  parsed = flags.FLAGS.is_parsed()
  if not parsed:
    flags.FLAGS.mark_as_parsed()  # grain's worker start-up reads its flags.
  yield
  if not parsed:
    flags.FLAGS.unparse_flags()


@pytest.mark.usefixtures('flags_parsed')
def test_batches_do_not_depend_on_the_worker_count(data_dir):
  ds = imagenet.ImagenetDataset(data_dir=data_dir, image_size=32)
  key = jax.random.key(7)
  threads = ds.local_train_batches(key, local_batch=8, num_workers=0)
  expected = [next(threads) for _ in range(6)]  # 48 crops: two epochs.
  for workers, start in ((1, 0), (2, 2)):  # 2 workers: resumed at step 2.
    it = ds.local_train_batches(
      key, local_batch=8, start_step=start, num_workers=workers
    )
    try:
      for want in expected[start:]:
        got = next(it)
        np.testing.assert_array_equal(got['image'], want['image'])
        np.testing.assert_array_equal(got['label'], want['label'])
    finally:
      it.close()


class _PreemptedError(Exception):
  """Stands for the process being killed right after a checkpoint."""


def _config(module, arg, data_dir, total_steps):
  config = module.get_config(f'{arg},smoke=True')
  config.data.data_dir = data_dir
  config.data.num_workers = 0
  config.total_steps = total_steps
  config.checkpoint_every_steps = 2
  return config


def test_cifar_smoke_run_trains_and_evaluates(data_dir, tmp_path):
  config = _config(cifar, 'resnet20_cifar', data_dir, total_steps=2)
  trainer.train_and_evaluate(config, str(tmp_path))
  records = metrics.read_metrics(str(tmp_path))
  assert [r['step'] for r in records if r['split'] == 'train'] == [1, 2]
  evals = [r for r in records if r['split'] == 'eval']
  assert [(r['step'], r['eval_split']) for r in evals] == [(2, 'test')]


def _train_losses(workdir):
  records = metrics.read_metrics(str(workdir))
  return [(r['step'], r['loss']) for r in records if r['split'] == 'train']


def test_imagenet_resume_and_launcher_with_two_workers(data_dir, tmp_path):
  config = _config(imagenet_config, 'resnet_tiny', data_dir, total_steps=4)
  straight = trainer.train_and_evaluate(config, str(tmp_path / 'a'))
  save = trainer._save_checkpoint

  def save_then_die(ckpt, log, step, state):
    save(ckpt, log, step, state)
    if step == 2:
      raise _PreemptedError

  with pytest.MonkeyPatch.context() as patch:
    patch.setattr(trainer, '_save_checkpoint', save_then_die)
    with pytest.raises(_PreemptedError):
      trainer.train_and_evaluate(config, str(tmp_path / 'b'))
  resumed = trainer.train_and_evaluate(config, str(tmp_path / 'b'))
  chex.assert_trees_all_equal(resumed, straight)

  # The launcher, its training batches made by 2 spawned worker processes.
  command = [
    sys.executable,
    '-m',
    'experiments.main',
    '--config=experiments/configs/imagenet.py:resnet_tiny,smoke=True',
    f'--config.data.data_dir={data_dir}',
    '--config.data.num_workers=2',
    f'--workdir={tmp_path / "workers"}',
  ]
  run = subprocess.run(
    command, cwd=_REPO, capture_output=True, text=True, timeout=600
  )
  assert run.returncode == 0, run.stderr[-3000:]
  with open(tmp_path / 'workers' / 'config.json') as f:
    assert json.load(f)['data']['num_workers'] == 2
  evals = [
    r
    for r in metrics.read_metrics(str(tmp_path / 'workers'))
    if r['split'] == 'eval'
  ]
  assert [(r['step'], r['eval_split']) for r in evals] == [(2, 'validation')]
  # Its evaluation equals that of the same two steps run in this process
  # with threads: each of the 10 validation images counted once (the eval
  # batch's padding to 200 is masked), so the accuracies are tenths.
  config.total_steps = 2
  trainer.train_and_evaluate(config, str(tmp_path / 'c'))
  (expected,) = [
    r for r in metrics.read_metrics(str(tmp_path / 'c')) if r['split'] == 'eval'
  ]
  for key in ('accuracy', 'top5_accuracy'):
    assert evals[0][key] == expected[key]
    assert evals[0][key] * 10 == pytest.approx(round(expected[key] * 10))
  assert evals[0]['loss'] == pytest.approx(expected['loss'], rel=1e-5)
  # The same batches (a different batch changes the loss by far more), but
  # another process's XLA programs need not round the same way as this one's.
  got, want = _train_losses(tmp_path / 'workers'), _train_losses(tmp_path / 'a')
  assert [step for step, _ in got] == [1, 2]
  np.testing.assert_allclose(
    [loss for _, loss in got], [loss for _, loss in want[:2]], rtol=1e-5
  )
