"""Faults of a multi-process run: a peer killed mid-run, a peer never started.

Two launches of `experiments.main --jax_distributed` (2 fake CPU devices
each, gloo collectives) train one tiny run on this machine, as two hosts
would. Killing one with `kill -9` must stop the other within
--peer_timeout_s with one `error:` line naming the dead process; relaunching
both must end with parameters equal, bit for bit, to those of a 2-process
run that was never disturbed. A launch whose peer never starts must give up
with one line after --join_timeout_s; so must the survivor of a killed
coordinator (process 0), at once. Slow tier.
"""

import os
import signal
import socket
import subprocess
import sys
import time

import chex
import jax
import numpy as np
import pytest

from train_lib import checkpoint

pytestmark = pytest.mark.slow

_REPO = os.path.dirname(os.path.dirname(os.path.dirname(__file__)))
_STEPS = 30
_PEER_TIMEOUT_S = 10
_ARGS = (
  '--config=experiments/configs/synthetic.py:mlp,8x8x1,4',
  "--config.model_kw={'hidden_sizes': (16,)}",
  '--config.data.synthetic_num_train=64',
  '--config.data.synthetic_num_test=16',
  '--config.batch_size=16',
  '--config.log_every_steps=1',
  # A checkpoint every step: each step waits for a cooperative save, so the
  # run is still going when the test kills a process after step 3.
  '--config.checkpoint_every_steps=1',
  '--config.keep_checkpoints=2',
  f'--config.total_steps={_STEPS}',
  f'--peer_timeout_s={_PEER_TIMEOUT_S}',
)


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


def _start(workdir, process_id: int, port: int, *extra) -> subprocess.Popen:
  return subprocess.Popen(
    [
      sys.executable,
      '-m',
      'experiments.main',
      *_ARGS,
      f'--workdir={workdir}',
      '--jax_distributed',
      f'--coordinator_address=127.0.0.1:{port}',
      '--num_processes=2',
      f'--process_id={process_id}',
      *extra,
    ],
    cwd=_REPO,
    env=dict(
      os.environ,
      JAX_PLATFORMS='cpu',
      XLA_FLAGS='--xla_force_host_platform_device_count=2',
    ),
    stdout=subprocess.PIPE,
    stderr=subprocess.PIPE,
    text=True,
  )


def _start_both(workdir) -> list[subprocess.Popen]:
  port = _free_port()
  return [_start(workdir, i, port) for i in (0, 1)]


def _finish(processes) -> list[tuple[int, str, str]]:
  results = []
  for process in processes:
    try:
      out, err = process.communicate(timeout=600)
    except subprocess.TimeoutExpired:
      process.kill()
      out, err = process.communicate()
    results.append((process.returncode, out, err))
  return results


def _wait_for_step(workdir, step: int, processes) -> None:
  path = os.path.join(workdir, 'metrics.jsonl')
  deadline = time.monotonic() + 600
  while time.monotonic() < deadline:
    assert all(p.poll() is None for p in processes), _finish(processes)
    if os.path.exists(path):
      with open(path) as f:
        if sum(1 for _ in f) >= step:  # One train line a step.
          return
    time.sleep(0.05)
  pytest.fail(f'no step {step} in {path}')


def _final_params(workdir, step: int = _STEPS):
  ckpt = checkpoint.Checkpointer(str(workdir), keep=10)
  assert ckpt.latest_step() == step, ckpt.all_steps()
  sharding = jax.sharding.SingleDeviceSharding(jax.devices()[0])
  tree = ckpt._manager.restore(  # noqa: SLF001 - no target: as saved.
    step,
    args=checkpoint.ocp.args.StandardRestore(None, fallback_sharding=sharding),
  )
  ckpt.close()
  return jax.device_get(tree['params'])


def _one_error_line(result) -> str:
  code, out, err = result
  assert code == 1, (code, out, err)
  assert 'Traceback' not in out + err and '[Gloo]' not in out, (out, err)
  (line,) = err.strip().splitlines()
  assert line.startswith('error: '), line
  return line


def test_killed_peer_stops_the_other_then_both_resume_bit_identical(tmp_path):
  reference, workdir = tmp_path / 'reference', tmp_path / 'run'
  unbroken = _start_both(reference)  # Beside the broken run, to save time.
  broken = _start_both(workdir)
  _wait_for_step(workdir, 3, broken)
  broken[1].send_signal(signal.SIGKILL)  # Its worker dies with it.
  killed_at = time.monotonic()
  survivor = _finish(broken[:1])[0]
  waited_s = time.monotonic() - killed_at
  line = _one_error_line(survivor)
  assert line.startswith('error: process 1 of 2 stopped answering'), line
  assert 'relaunch all processes' in line
  # The heartbeat timeout, plus the time to notice it and to exit: slack
  # for a loaded machine, but no waiting for jax's 100 s or 300 s defaults.
  assert waited_s < _PEER_TIMEOUT_S + 60, waited_s
  assert all(code == 0 for code, _, _ in _finish(unbroken))

  relaunched = _finish(_start_both(workdir))
  assert [code for code, _, _ in relaunched] == [0, 0], relaunched
  assert 'resumed from' in relaunched[0][1]
  chex.assert_trees_all_equal(_final_params(workdir), _final_params(reference))


def test_peer_that_never_starts_is_named_after_the_join_timeout(tmp_path):
  lone = _start(tmp_path, 1, _free_port(), '--join_timeout_s=5')
  line = _one_error_line(_finish([lone])[0])
  assert line.startswith(
    'error: process 0 of 2 did not join within --join_timeout_s=5 s'
  ), line
  assert not (tmp_path / 'checkpoints').exists()


def test_killed_coordinator_stops_the_other_with_one_line(tmp_path):
  processes = _start_both(tmp_path)
  _wait_for_step(tmp_path, 3, processes)
  processes[0].send_signal(signal.SIGKILL)  # The coordination service too.
  killed_at = time.monotonic()
  survivor = _finish(processes[1:])[0]
  waited_s = time.monotonic() - killed_at
  line = _one_error_line(survivor)
  assert line.startswith('error: lost process 0 of 2, the coordinator'), line
  assert 'relaunch all processes' in line
  assert waited_s < _PEER_TIMEOUT_S + 60, waited_s
  print(f'the survivor stopped {waited_s:.1f} s after the coordinator died')
  # The newest checkpoint that looks complete is: every array reads back.
  ckpt = checkpoint.Checkpointer(str(tmp_path), keep=10)
  steps = ckpt.all_steps()
  ckpt.close()
  assert steps and max(steps) < _STEPS, steps
  leaves = jax.tree.leaves(_final_params(tmp_path, max(steps)))
  assert leaves and all(np.isfinite(leaf).all() for leaf in leaves)
