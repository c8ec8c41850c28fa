"""The fault campaign: runs killed, interrupted, corrupted, raced, starved.

Every test launches `experiments.main` as real processes on a tiny synthetic
run and compares the final parameters, bit for bit, with those of a run that
was never disturbed (the reference). Full disks are simulated with a file
size limit (RLIMIT_FSIZE, with SIGXFSZ ignored, so that a write past it fails
with EFBIG as a write to a full disk fails with ENOSPC: the same code paths).
Slow tier: each launch starts jax.
"""

import json
import os
import random
import signal
import subprocess
import sys
import time

import chex
import jax
import numpy as np
import pytest

from train_lib import checkpoint

_REPO = os.path.dirname(os.path.dirname(os.path.dirname(__file__)))
_STEPS = 24
_ARGS = (
  '--config',
  'experiments/configs/synthetic.py:mlp,8x8x1,4',
  "--config.model_kw={'hidden_sizes': (16,), 'dropout_rate': 0.1}",
  '--config.data.synthetic_num_train=64',
  '--config.data.synthetic_num_test=16',
  '--config.batch_size=16',
  '--config.log_every_steps=2',
  '--config.eval_every_steps=8',
  '--config.checkpoint_every_steps=2',
  '--config.augment.random_flip=True',
  f'--config.total_steps={_STEPS}',
)

pytestmark = pytest.mark.slow


def _command(workdir) -> list[str]:
  return [sys.executable, '-m', 'experiments.main', '--workdir', str(workdir)]


def _env() -> dict[str, str]:
  return dict(os.environ, JAX_PLATFORMS='cpu', XLA_FLAGS='')


def _limited(command: list[str], limit_bytes: int | None) -> list[str]:
  """`command`, run so that writes past `limit_bytes` fail as on a full disk.

  The limit is set by a small Python program that then becomes the command
  (exec), not by a preexec_fn: forking this multi-threaded process (jax) and
  running Python in the child may deadlock.
  """
  if limit_bytes is None:
    return command
  setup = (
    'import os, resource, signal, sys; '
    'signal.signal(signal.SIGXFSZ, signal.SIG_IGN); '  # EFBIG, not a kill.
    f'resource.setrlimit(resource.RLIMIT_FSIZE, ({limit_bytes},) * 2); '
    'os.execv(sys.argv[1], sys.argv[1:])'
  )
  return [sys.executable, '-c', setup, *command]


def _run(
  workdir, *extra, check=True, file_size_limit=None
) -> subprocess.CompletedProcess:
  result = subprocess.run(
    _limited([*_command(workdir), *_ARGS, *extra], file_size_limit),
    cwd=_REPO,
    env=_env(),
    capture_output=True,
    text=True,
    timeout=300,
    check=False,
  )
  if check:
    assert result.returncode == 0, result.stderr
  return result


def _final_params(workdir):
  """The parameters of the run's last checkpoint, read as saved."""
  ckpt = checkpoint.Checkpointer(str(workdir), keep=10)
  assert ckpt.latest_step() == _STEPS
  sharding = jax.sharding.SingleDeviceSharding(jax.devices()[0])
  tree = ckpt._manager.restore(  # noqa: SLF001 - no target: as saved.
    _STEPS,
    args=checkpoint.ocp.args.StandardRestore(None, fallback_sharding=sharding),
  )
  ckpt.close()
  return jax.device_get(tree['params'])


@pytest.fixture(scope='module')
def reference(tmp_path_factory):
  workdir = tmp_path_factory.mktemp('reference')
  _run(workdir)
  return _final_params(workdir)


def _start(workdir, *extra) -> subprocess.Popen:
  return subprocess.Popen(
    [*_command(workdir), *_ARGS, *extra],
    cwd=_REPO,
    env=_env(),
    stdout=subprocess.PIPE,
    stderr=subprocess.PIPE,
    text=True,
  )


def _wait_for_step(process, workdir, step: int, limit_s: float = 120) -> None:
  """Waits until the run's metrics.jsonl has a line at `step` or later."""
  path = os.path.join(workdir, 'metrics.jsonl')
  deadline = time.monotonic() + limit_s
  while time.monotonic() < deadline and process.poll() is None:
    if os.path.exists(path):
      with open(path) as f:
        steps = [int(line.split('"step": ')[1].split(',')[0]) for line in f]
      if steps and max(steps) >= step:
        return
    time.sleep(0.05)


def test_kill_9_at_random_moments_then_resume_is_bit_identical(
  tmp_path, reference
):
  rng = random.Random(20261129)
  for trial in range(6):
    workdir = tmp_path / f'trial{trial}'
    process = _start(workdir)
    # Some kills land before training, some between steps, some during the
    # (asynchronous) checkpoint writes that follow every second step.
    _wait_for_step(process, workdir, rng.randrange(0, _STEPS - 2))
    time.sleep(rng.uniform(0.0, 0.3))
    process.send_signal(signal.SIGKILL)
    process.wait()
    result = _run(workdir)
    finished = 'already trained to step 24' in result.stdout  # Killed late.
    assert finished or 'done: step 24' in result.stdout, (trial, result)
    chex.assert_trees_all_equal(_final_params(workdir), reference)


@pytest.mark.parametrize('signum', [signal.SIGTERM, signal.SIGINT])
def test_sigterm_and_ctrl_c_save_then_resume_bit_identical(
  tmp_path, reference, signum
):
  process = _start(tmp_path)
  _wait_for_step(process, tmp_path, 5)
  process.send_signal(signum)
  _, stderr = process.communicate(timeout=120)
  assert process.returncode == 128 + signum, stderr
  (line,) = stderr.strip().splitlines()
  assert line.startswith(f'stopped by {signal.Signals(signum).name} after step')
  step = int(line.split('after step ')[1].split(':')[0])
  assert step < _STEPS and 'relaunch the same command' in line
  steps = checkpoint.Checkpointer(str(tmp_path), keep=10).all_steps()
  assert steps[-1] == step  # Saved at the step it stopped at.
  _run(tmp_path)
  chex.assert_trees_all_equal(_final_params(tmp_path), reference)


def test_corrupt_newest_checkpoint_resumes_from_an_intact_one(
  tmp_path, reference
):
  _run(tmp_path, f'--config.total_steps={_STEPS - 4}')
  newest = tmp_path / 'checkpoints' / str(_STEPS - 4)
  for root, _, files in os.walk(newest / 'default'):
    for name in files:
      if os.path.basename(root) == 'd':
        with open(os.path.join(root, name), 'r+b') as f:
          f.truncate(4)
  result = _run(tmp_path)
  assert f'checkpoint {newest} is unreadable' in result.stdout
  (warning,) = [x for x in result.stdout.splitlines() if 'unreadable' in x]
  damage = warning.replace(str(tmp_path), '')
  assert len(damage) < 300 and 'tensorstore_spec' not in warning, warning
  # orbax's abandoned reads leave no traceback on the terminal.
  for noise in ('Traceback', 'Exception ignored', 'Event loop is closed'):
    assert noise not in result.stdout + result.stderr, result.stderr
  assert f'resumed from {tmp_path / "checkpoints"}/{_STEPS - 6}' in (
    result.stdout
  )
  chex.assert_trees_all_equal(_final_params(tmp_path), reference)
  (kept,) = os.listdir(tmp_path / 'corrupt_checkpoints')
  assert kept.startswith(f'{_STEPS - 4}-')


def test_second_launch_on_a_busy_workdir_is_refused(tmp_path):
  first = _start(tmp_path, '--config.total_steps=1000000')  # Still running.
  _wait_for_step(first, tmp_path, 1)
  second = _run(tmp_path, check=False)
  first.send_signal(signal.SIGKILL)
  first.wait()
  assert second.returncode == 1
  errors = [x for x in second.stderr.splitlines() if x.startswith('error:')]
  assert len(errors) == 1 and f'process {first.pid}' in errors[0]
  assert 'Traceback' not in second.stderr
  # The killed first launch left a stale lock: the next launch takes over.
  result = _run(tmp_path)
  assert 'stale lock' in result.stdout


def test_relaunch_with_another_learning_rate_is_refused(tmp_path):
  _run(tmp_path, '--config.total_steps=2')
  before = (tmp_path / 'config.json').read_bytes()
  result = _run(tmp_path, '--config.lr=0.5', check=False)
  assert result.returncode == 1 and 'Traceback' not in result.stderr
  (line,) = result.stderr.strip().splitlines()
  assert line.startswith('error:') and 'lr: 0.01 -> 0.5' in line
  assert (tmp_path / 'config.json').read_bytes() == before
  forced = _run(tmp_path, '--config.lr=0.5', '--allow_config_change')
  assert forced.returncode == 0
  history = (tmp_path / 'config_history.jsonl').read_text()
  assert '"forced": true' in history and np.isfinite(len(history))


def _one_error_line(result) -> str:
  assert result.returncode == 1, result.stderr
  assert 'Traceback' not in result.stderr, result.stderr
  (line,) = result.stderr.strip().splitlines()
  assert line.startswith('error: '), line
  return line


def _steps(workdir) -> list[int]:
  ckpt = checkpoint.Checkpointer(str(workdir), keep=10)
  steps = ckpt.all_steps()
  ckpt.close()
  return steps


def _check_metrics_whole(workdir) -> list[dict]:
  text = (workdir / 'metrics.jsonl').read_text()
  assert text.endswith('\n')
  return [json.loads(line) for line in text.splitlines()]  # None torn.


def test_full_disk_stops_with_one_line_and_loses_nothing(tmp_path, reference):
  # The compile cache: an entry that cannot be written is one warning.
  cache = tmp_path / 'cache'
  result = _run(
    tmp_path,
    '--config.total_steps=12',
    f'--compile_cache_dir={cache}',
    file_size_limit=20_000,  # Above the checkpoints', below the programs'.
  )
  (warning,) = result.stderr.strip().splitlines()
  assert warning.startswith(f'warning: compile cache {cache}: an entry')
  assert _steps(tmp_path) == [8, 10, 12]

  # A checkpoint: the save of step 14 fails (the limit is below the size of
  # its metadata file); step 12 stays the newest.
  line = _one_error_line(_run(tmp_path, check=False, file_size_limit=3_000))
  assert f'cannot write checkpoint {tmp_path}/checkpoints/14: ' in line
  assert 'File too large' in line and 'checkpoints/12, is intact' in line
  assert _steps(tmp_path) == [8, 10, 12]
  _check_metrics_whole(tmp_path)

  # metrics.jsonl: the first append fails; the file keeps whole lines only
  # (the other files written at launch are smaller than it).
  kept = [r for r in _check_metrics_whole(tmp_path) if r['step'] <= 12]
  size = sum(len(json.dumps(r)) + 1 for r in kept)  # After the resume.
  result = _run(tmp_path, check=False, file_size_limit=size + 100)
  line = _one_error_line(result)
  assert f'cannot write {tmp_path}/metrics.jsonl: File too large' in line
  assert _check_metrics_whole(tmp_path) == kept
  assert _steps(tmp_path) == [8, 10, 12]

  # TensorBoard: its folder cannot be made (a file is in the way).
  (tmp_path / 'tensorboard').rename(tmp_path / 'tensorboard.moved')
  (tmp_path / 'tensorboard').write_text('in the way')
  line = _one_error_line(_run(tmp_path, check=False))
  assert f'cannot write {tmp_path}/tensorboard: File exists' in line
  assert _steps(tmp_path) == [8, 10, 12]

  (tmp_path / 'tensorboard').unlink()
  result = _run(tmp_path)
  assert f'resumed from {tmp_path}/checkpoints/12' in result.stdout
  chex.assert_trees_all_equal(_final_params(tmp_path), reference)
  steps = [r['step'] for r in _check_metrics_whole(tmp_path)]
  assert steps == sorted(steps) and steps[-1] == _STEPS
