"""A multi-process run of the trainer equals a single-process one.

Two processes with 2 fake CPU devices each join one 4-device mesh through
`experiments.main --jax_distributed --coordinator_address ...` (gloo CPU
collectives), the way several hosts would. They train a tiny MLP for 3
steps, stop with a checkpoint, then resume to step 6 (so orbax saves and
restores cooperatively). One process with 4 fake devices trains the same
config straight to step 6. The final eval line of `metrics.jsonl` (written by
process 0 only) and the final checkpoint's state must agree to 1e-5.
"""

import contextlib
import json
import os
import socket
import subprocess
import sys
import time

import chex
import jax
import jax.numpy as jnp
import pytest

from experiments.configs import synthetic
from train_lib import checkpoint as checkpoint_lib
from train_lib import metrics as metrics_lib
from train_lib import optim
from train_lib import state as state_lib
from train_lib import trainer

_REPO = os.path.dirname(os.path.dirname(os.path.dirname(__file__)))
_TIMEOUT_S = 120  # Per phase; a healthy phase takes about 10 s.
_ARGS = (
  '--config=experiments/configs/synthetic.py:mlp,8x8x1,4',
  # model_kw is replaced whole: the locked config has no such key yet.
  "--config.model_kw={'hidden_sizes': (16,)}",
  '--config.data.synthetic_num_train=64',
  '--config.data.synthetic_num_test=16',
  '--config.batch_size=16',
  '--config.log_every_steps=2',
)


def _config(total_steps: int):
  """The config `_ARGS` describe, built in this process."""
  config = synthetic.get_config('mlp,8x8x1,4')
  config.model_kw.hidden_sizes = (16,)
  config.data.synthetic_num_train = 64
  config.data.synthetic_num_test = 16
  config.batch_size = 16
  config.log_every_steps = 2
  config.total_steps = total_steps
  return config


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


def _command(workdir, total_steps: int, *extra: str) -> list[str]:
  return [
    sys.executable,
    '-m',
    'experiments.main',
    *_ARGS,
    f'--config.total_steps={total_steps}',
    f'--workdir={workdir}',
    *extra,
  ]


def _run_together(
  name: str, launches: list[tuple[list[str], int]], logdir
) -> None:
  """Runs (command, device count) launches at once; all must exit 0.

  If one fails, the others are killed at once (a process whose peer died
  would otherwise wait minutes in jax.distributed), and every launch's
  output is shown. Logs go to `logdir/<name>_<i>.log`.
  """
  procs = []
  for i, (command, devices) in enumerate(launches):
    env = dict(os.environ)
    env['XLA_FLAGS'] = f'--xla_force_host_platform_device_count={devices}'
    env['JAX_PLATFORMS'] = 'cpu'
    log_path = logdir / f'{name}_{i}.log'
    log = open(log_path, 'w')  # noqa: SIM115 (closed below)
    proc = subprocess.Popen(
      command, cwd=_REPO, env=env, stdout=log, stderr=subprocess.STDOUT
    )
    procs.append((proc, log, log_path))
  deadline = time.monotonic() + _TIMEOUT_S
  running = [p for p, _, _ in procs]
  while running and time.monotonic() < deadline:
    if any(p.returncode for p, _, _ in procs if p.poll() is not None):
      break  # One failed: its peers would hang, stop them below.
    with contextlib.suppress(subprocess.TimeoutExpired):
      running[0].wait(timeout=0.5)
    running = [p for p in running if p.poll() is None]
  for proc, log, _ in procs:
    if proc.poll() is None:
      proc.kill()
    proc.wait()
    log.close()
  if any(p.returncode != 0 for p, _, _ in procs):
    report = []
    for (proc, _, log_path), (command, _) in zip(procs, launches, strict=True):
      with open(log_path) as f:
        output = f.read()
      report.append(
        f'--- exit {proc.returncode}: {" ".join(command)}\n{output[-4000:]}'
      )
    pytest.fail('a launch failed or timed out:\n' + '\n'.join(report))


def _restore(workdir, step: int) -> state_lib.TrainState:
  """Checkpoint `step` of `workdir`, on this process's first device."""
  config = _config(total_steps=6)
  model = trainer.create_model(config, num_classes=4)
  tx, _ = optim.create_optimizer(config)
  create = lambda: state_lib.create_train_state(
    model=model,
    tx=tx,
    init_key=jax.random.key(0),
    example_input=jnp.zeros((1, 8, 8, 1), jnp.float32),
    ema=False,
  )
  target = checkpoint_lib.abstract_like(
    jax.eval_shape(create), jax.sharding.SingleDeviceSharding(jax.devices()[0])
  )
  ckpt = checkpoint_lib.Checkpointer(str(workdir), keep=3)
  try:
    assert step in ckpt.all_steps(), ckpt.all_steps()
    return ckpt.restore(step, target)
  finally:
    ckpt.close()


def _final_eval(workdir) -> dict[str, float]:
  records = metrics_lib.read_metrics(str(workdir))
  evals = [r for r in records if r['split'] == 'eval']
  assert evals, records
  assert evals[-1]['step'] == 6, evals
  return {k: evals[-1][k] for k in ('loss', 'accuracy')}


@pytest.mark.slow
def test_two_processes_match_one(tmp_path):
  multi, single, logs = tmp_path / 'multi', tmp_path / 'single', tmp_path / 'l'
  logs.mkdir()

  def distributed(total_steps: int) -> list[tuple[list[str], int]]:
    port = _free_port()
    flags = ('--jax_distributed', f'--coordinator_address=127.0.0.1:{port}')
    return [
      (_command(multi, total_steps, *flags, '--num_processes=2', f'--{p}'), 2)
      for p in ('process_id=0', 'process_id=1')
    ]

  # The single-process reference runs beside the first distributed phase.
  _run_together('first', [*distributed(3), (_command(single, 6), 4)], logs)
  _run_together('resume', distributed(6), logs)

  # config.json is the config that started the run; the extension to 6
  # steps is recorded, once (by process 0), in config_history.jsonl.
  with open(multi / 'config.json') as f:
    assert '"total_steps": 3' in f.read()
  with open(multi / 'config_history.jsonl') as f:
    (record,) = [json.loads(line) for line in f]
  assert record['changes'] == {'total_steps': [3, 6]}
  # Train lines are written once (by process 0), resumed without repeats.
  records = metrics_lib.read_metrics(str(multi))
  train_steps = [r['step'] for r in records if r['split'] == 'train']
  assert train_steps == [2, 3, 4, 6]
  multi_eval, single_eval = _final_eval(multi), _final_eval(single)
  chex.assert_trees_all_close(multi_eval, single_eval, atol=1e-5)

  multi_state, single_state = _restore(multi, 6), _restore(single, 6)
  assert int(multi_state.step) == int(single_state.step) == 6
  chex.assert_trees_all_close(
    (multi_state.params, multi_state.opt_state),
    (single_state.params, single_state.opt_state),
    atol=1e-5,
  )
  # A non-vacuous comparison: steps 4 to 6 (after the resume) moved them.
  moved = jax.tree.map(
    lambda a, b: float(jnp.max(jnp.abs(a - b))),
    multi_state.params,
    _restore(multi, 3).params,
  )
  assert max(jax.tree.leaves(moved)) > 1e-4, moved
