"""Tests of train_lib/trainer.py (end to end) and train_lib/metrics.py.

References: an uninterrupted run is the reference of a resumed one (bit-equal
state, same metric lines), a second run with the same seed the reference of
determinism, chance level (1/10) the reference of learning, and hand-written
lines for the metrics helpers. Runs use the 8 fake CPU devices of
tests/conftest.py, so every step really is sharded.
"""

import json
import math
import os
import re
import subprocess
import sys

import chex
import jax
import numpy as np
import pytest

from experiments.configs import synthetic
from train_lib import checkpoint
from train_lib import data
from train_lib import metrics
from train_lib import optim
from train_lib import trainer
from train_lib import workdir

# Keys whose values depend on wall-clock time, not on the computation.
_TIMING = {'images_per_sec', 'wall_time_s', 'compile_time_s', 'eval_time_s'}


def _config(**overrides):
  """A tiny synthetic run: MLP with dropout, augmentation, cosine schedule."""
  config = synthetic.get_config('mlp,8x8x1,4')
  config.model_kw.hidden_sizes = (16,)
  config.model_kw.dropout_rate = 0.1
  config.data.synthetic_num_train = 64
  config.data.synthetic_num_test = 20  # Not a multiple of the batch: padding.
  config.batch_size = 16
  config.total_steps = 8
  config.log_every_steps = 2
  config.eval_every_steps = 4
  config.checkpoint_every_steps = 4
  config.schedule = 'cosine'
  config.augment.random_flip = True
  config.augment.crop_padding = 1
  config.update(overrides)
  return config


def _records(workdir, split=None):
  records = metrics.read_metrics(str(workdir))
  return [r for r in records if split is None or r['split'] == split]


def _without_timing(records):
  return [{k: v for k, v in r.items() if k not in _TIMING} for r in records]


@pytest.mark.slow
def test_smoke_run_writes_outputs(tmp_path, capsys):
  state = trainer.train_and_evaluate(_config(), str(tmp_path))
  final = capsys.readouterr().out.strip().splitlines()[-1]
  assert final.startswith('done: step 8, final test accuracy')
  assert f'--workdir {tmp_path}' in final
  assert int(state.step) == 8
  train = _records(tmp_path, 'train')
  evals = _records(tmp_path, 'eval')
  assert [r['step'] for r in train] == [2, 4, 6, 8]
  assert [r['step'] for r in evals] == [4, 8]
  for record in train:
    for key in ('loss', 'accuracy', 'lr', 'l2_grads', 'l2_params'):
      assert math.isfinite(record[key]), (key, record)
    assert record['images_per_sec'] > 0 or record['step'] == 2
    assert record['steps_averaged'] == 2
  assert 'compile_time_s' in train[0]
  assert all(0.0 <= r['accuracy'] <= 1.0 for r in evals)
  assert sorted(checkpoint.Checkpointer(str(tmp_path), keep=3).all_steps()) == [
    4,
    8,
  ]
  # The logged lr is the rate of the logged step (the update from step s-1
  # to s used schedule(s - 1)); lr_mean averages the line's steps.
  _, schedule = optim.create_optimizer(_config())
  for record in train:
    step = record['step']
    np.testing.assert_allclose(record['lr'], schedule(step - 1), rtol=1e-6)
    want = np.mean([schedule(s) for s in (step - 2, step - 1)])
    np.testing.assert_allclose(record['lr_mean'], want, rtol=1e-6)
  saved = json.loads((tmp_path / 'config.json').read_text())
  assert saved['model'] == 'mlp' and saved['total_steps'] == 8


class _PreemptedError(Exception):
  """Stands for the process being killed right after a checkpoint."""


def _run_killed_after_checkpoint(config, workdir, kill_step, monkeypatch):
  """Runs `config` in `workdir` until the checkpoint of `kill_step`, dies."""
  save = trainer._save_checkpoint

  def save_then_die(ckpt, log, step, state):
    save(ckpt, log, step, state)
    if step == kill_step:
      raise _PreemptedError

  monkeypatch.setattr(trainer, '_save_checkpoint', save_then_die)
  with pytest.raises(_PreemptedError):
    trainer.train_and_evaluate(config, str(workdir))
  monkeypatch.setattr(trainer, '_save_checkpoint', save)


@pytest.mark.slow
def test_resume_equals_uninterrupted_and_same_seed_is_bit_identical(
  tmp_path, monkeypatch
):
  config = _config()
  straight = trainer.train_and_evaluate(config, str(tmp_path / 'a'))
  again = trainer.train_and_evaluate(config, str(tmp_path / 'c'))
  chex.assert_trees_all_equal(again, straight)  # Determinism.
  assert _without_timing(_records(tmp_path / 'c')) == _without_timing(
    _records(tmp_path / 'a')
  )

  _run_killed_after_checkpoint(config, tmp_path / 'b', 4, monkeypatch)
  # A stale line past the checkpoint, as a killed run could leave.
  with open(tmp_path / 'b' / metrics.FILENAME, 'a') as f:
    f.write(json.dumps({'step': 6, 'split': 'train', 'loss': 9.0}) + '\n')
  resumed = trainer.train_and_evaluate(config, str(tmp_path / 'b'))

  chex.assert_trees_all_equal(resumed, straight)
  assert _without_timing(_records(tmp_path / 'b')) == _without_timing(
    _records(tmp_path / 'a')
  )


@pytest.mark.slow
def test_resume_between_train_lines_says_how_many_steps_it_averages(
  tmp_path, monkeypatch
):
  # Checkpoints every 3 steps, train lines every 2: the resumed run's first
  # line (step 4) can only average step 4, and says so; the state is exact.
  config = _config(checkpoint_every_steps=3, eval_every_steps=8)
  straight = trainer.train_and_evaluate(config, str(tmp_path / 'a'))
  _run_killed_after_checkpoint(config, tmp_path / 'b', 3, monkeypatch)
  resumed = trainer.train_and_evaluate(config, str(tmp_path / 'b'))
  chex.assert_trees_all_equal(resumed, straight)
  averaged = {
    r['step']: r['steps_averaged'] for r in _records(tmp_path / 'b', 'train')
  }
  assert averaged == {2: 2, 4: 1, 6: 2, 8: 2}
  straight_lines = _records(tmp_path / 'a', 'train')
  assert [r['steps_averaged'] for r in straight_lines] == [2, 2, 2, 2]


def _numpy_eval(logits, labels):
  """Loss, accuracy and top-5 accuracy over all examples, in float64."""
  logits = np.asarray(logits, np.float64)
  shifted = logits - logits.max(-1, keepdims=True)
  log_probs = shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))
  rows = np.arange(len(labels))
  top5 = np.argsort(-logits, axis=-1)[:, :5]
  return {
    'loss': -log_probs[rows, labels].mean(),
    'accuracy': (logits.argmax(-1) == labels).mean(),
    'top5_accuracy': (top5 == labels[:, None]).any(-1).mean(),
  }


@pytest.mark.slow
def test_eval_counts_the_last_partial_batch_once(tmp_path):
  # 21 test examples: neither a multiple of the batch (16) nor of the 8
  # devices, so the second eval batch holds 5 real rows and 11 padded ones.
  config = _config(total_steps=2, eval_every_steps=0, ema_decay=0.5)
  config.data.synthetic_num_test = 21
  config.data.synthetic_num_classes = 12  # > 10: top-5 is reported.
  state = trainer.train_and_evaluate(config, str(tmp_path))
  (final,) = _records(tmp_path, 'eval')
  assert final['step'] == 2

  images, labels = data.get_dataset(config.data).host_arrays('test')
  assert len(labels) == 21
  model = trainer.create_model(config, 12)
  for prefix, params in (('', state.params), ('ema_', state.ema_params)):
    logits = model.apply(
      {'params': jax.device_get(params)}, images, train=False
    )
    want = _numpy_eval(logits, labels)
    for key, value in want.items():
      np.testing.assert_allclose(final[prefix + key], value, rtol=1e-5)
  # Counting the padding (copies of example 0) would change the loss.
  padded = np.concatenate([labels, np.repeat(labels[:1], 11)])
  padded_logits = model.apply(
    {'params': jax.device_get(state.params)},
    np.concatenate([images, np.repeat(images[:1], 11, axis=0)]),
    train=False,
  )
  assert abs(_numpy_eval(padded_logits, padded)['loss'] - final['loss']) > 1e-4


@pytest.mark.slow
def test_nan_loss_stops_run_and_keeps_good_checkpoints(tmp_path):
  trainer.train_and_evaluate(_config(total_steps=4), str(tmp_path))
  bad = _config(
    total_steps=40, lr=1e30, schedule='constant', checkpoint_every_steps=1
  )
  with pytest.raises(FloatingPointError, match=r'at step \d+') as info:
    trainer.train_and_evaluate(bad, str(tmp_path), allow_config_change=True)
  nan_step = int(re.search(r'at step (\d+)', str(info.value)).group(1))
  assert nan_step > 4
  ckpt = checkpoint.Checkpointer(str(tmp_path), keep=3)
  steps = ckpt.all_steps()
  assert steps and max(steps) < nan_step
  template = trainer.train_and_evaluate(
    _config(total_steps=1), str(tmp_path / 'x')
  )
  abstract = checkpoint.abstract_like(
    jax.eval_shape(lambda: template), template.step.sharding
  )
  for step in steps:
    restored = ckpt.restore(step, abstract)
    chex.assert_tree_all_finite(restored.params)
  ckpt.close()
  assert all(math.isfinite(r['loss']) for r in _records(tmp_path, 'train'))


def test_batch_size_must_divide_devices(tmp_path):
  with pytest.raises(ValueError, match='12.*8'):
    trainer.train_and_evaluate(_config(batch_size=12), str(tmp_path))
  assert not (tmp_path / 'checkpoints').exists()


@pytest.mark.slow
def test_digits_mlp_learns_well_above_chance(tmp_path):
  # One CPU device, as a real run: on 8 fake devices over 2 cores this
  # model's all-reduce was seen to deadlock in XLA:CPU's rendezvous.
  command = [
    sys.executable,
    '-m',
    'experiments.main',
    '--config=experiments/configs/digits.py:mlp',
    f'--workdir={tmp_path}',
    '--config.total_steps=300',
    '--config.eval_every_steps=0',
    '--config.checkpoint_every_steps=0',
  ]
  repo = os.path.dirname(os.path.dirname(os.path.dirname(__file__)))
  env = dict(os.environ, JAX_PLATFORMS='cpu', XLA_FLAGS='')
  result = subprocess.run(
    command, cwd=repo, env=env, capture_output=True, text=True, timeout=600
  )
  assert result.returncode == 0, result.stderr[-3000:]
  (final,) = _records(tmp_path, 'eval')
  assert final['step'] == 300
  assert final['accuracy'] > 0.8  # Chance is 0.1.


def test_metrics_writer_truncates_and_appends(tmp_path):
  writer = metrics.MetricsWriter(str(tmp_path))
  for step in (1, 2, 3):
    writer.write(step, 'train', {'loss': np.float32(step), 'x': float('nan')})
  with open(writer.path, 'a') as f:
    f.write('{"step": 4, "spl')  # A line cut by a crash.
  assert writer.truncate_after(2) == 2
  writer.write(3, 'eval', {'accuracy': 0.5})
  assert metrics.read_metrics(str(tmp_path)) == [
    {'step': 1, 'split': 'train', 'loss': 1.0, 'x': 'nan'},
    {'step': 2, 'split': 'train', 'loss': 2.0, 'x': 'nan'},
    {'step': 3, 'split': 'eval', 'accuracy': 0.5},
  ]


def test_progress_line_and_durations():
  line = metrics.progress_line(
    step=50,
    total_steps=200,
    metrics={'loss': 0.12345, 'accuracy': 0.9, 'lr': 0.001},
    images_per_sec=1234.4,
    eta_s=75.0,
  )
  assert line == (
    'step  50/200 | loss 0.1235 | accuracy 0.9000 | lr 0.001 | 1234 img/s | '
    'ETA 1m15s'
  )
  assert metrics.format_duration(3725) == '1h02m'
  assert metrics.format_duration(12.34) == '12.3s'
  assert metrics.format_duration(float('nan')) == '?'
  assert metrics.mean_metrics([{'a': 1.0}, {'a': 2.0}]) == {'a': 1.5}


def test_unknown_dataset_fails_before_writing(tmp_path):
  config = _config()
  config.data.name = 'svhn'
  with pytest.raises(ValueError, match="'svhn'"):
    trainer.train_and_evaluate(config, str(tmp_path / 'run'))
  assert not (tmp_path / 'run').exists()


@pytest.mark.slow
def test_best_evaluated_checkpoint_survives_rotation(tmp_path):
  config = _config(
    keep_checkpoints=1, eval_every_steps=2, checkpoint_every_steps=2
  )
  trainer.train_and_evaluate(config, str(tmp_path))
  evals = {r['step']: r['accuracy'] for r in _records(tmp_path, 'eval')}
  assert sorted(evals) == [2, 4, 6, 8]
  best = max((acc, step) for step, acc in evals.items())[1]
  kept = checkpoint.Checkpointer(str(tmp_path), keep=1).all_steps()
  assert kept == sorted({best, 8})


@pytest.mark.slow
def test_each_accepted_launch_appends_its_command(tmp_path):
  run = str(tmp_path)
  trainer.train_and_evaluate(_config(total_steps=4), run, command='cmd 1')
  # Refused launches record nothing: a changed config, a held lock.
  with pytest.raises(trainer.ConfigError):
    trainer.train_and_evaluate(_config(lr=0.5), run, command='cmd bad')
  with (
    workdir.WorkdirLock(run),
    pytest.raises(workdir.WorkdirBusyError),
  ):
    trainer.train_and_evaluate(_config(), run, command='cmd busy')
  trainer.train_and_evaluate(_config(), run)  # No command: no line.
  trainer.train_and_evaluate(_config(total_steps=10), run, command='cmd 2')
  launches = workdir.read_launches(run)
  assert [
    (r['command'], r['start_step'], r['total_steps']) for r in launches
  ] == [
    ('cmd 1', 0, 4),
    ('cmd 2', 8, 10),
  ]
  assert all(r['host'] and r['devices'] == jax.device_count() for r in launches)
