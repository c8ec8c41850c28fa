"""`train_and_evaluate(config, workdir)`: the one training loop.

The big_vision / flax-examples loop. The seed is split once into `init_key`,
`data_key` and `loop_key`; the step keys are `fold_in(loop_key, step)` inside
the jitted step and the batch of step `s` depends only on `(data_key, s)`,
so a run resumed from a checkpoint of its state continues exactly as if it
had never stopped (the resume contract; tests/train_lib/test_trainer.py
checks the parameters bit for bit).

Outputs in the workdir: `config.json` (the resolved config), `metrics.jsonl`
(train_lib/metrics.py) and `checkpoints/` (train_lib/checkpoint.py).

Failure policy: nothing good is ever destroyed. A checkpoint of another
model is refused before anything is written; a NaN/inf loss stops the run
naming the first bad step, and a state is only saved after its parameters
and all losses up to it were checked finite. The failures a user can cause
and mend (`ConfigError`, `DivergedError`) have their own types, so that the
launcher prints them as one line and lets any other exception, a bug, keep
its traceback.
"""

import functools
import json
import os
import time
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

import nets
from train_lib import checkpoint as checkpoint_lib
from train_lib import data as data_lib
from train_lib import evaluate as evaluate_lib
from train_lib import metrics as metrics_lib
from train_lib import optim
from train_lib import sharding as sharding_lib
from train_lib import state as state_lib
from train_lib import step as step_lib


class ConfigError(ValueError):
  """A run that cannot start: a bad config value, an unknown model or data
  set, missing data, or a checkpoint written by another model or config."""


class DivergedError(FloatingPointError):
  """A non-finite loss or parameters: training stopped, nothing bad saved."""


def _every(step: int, period: int, total: int) -> bool:
  """True at multiples of `period` (0 = never) and at the last step."""
  return step == total or (period > 0 and step % period == 0)


def _print(text: str) -> None:
  if jax.process_index() == 0:
    print(text, flush=True)


def check_config(config: ml_collections.ConfigDict, num_devices: int) -> None:
  """Raises ValueError for a config value no run can use."""
  for key in ('total_steps', 'log_every_steps', 'grad_accum_steps'):
    if config[key] < 1:
      raise ValueError(f'{key} must be >= 1, got {config[key]}')
  for key in ('eval_every_steps', 'checkpoint_every_steps'):
    if config[key] < 0:
      raise ValueError(f'{key} must be >= 0 (0 = only at the end)')
  if not 0 <= config.ema_decay < 1:
    raise ValueError(f'ema_decay must be in [0, 1), got {config.ema_decay}')
  for key in ('batch_size', 'eval_batch_size'):
    size = config[key] or config.batch_size
    if size <= 0 or size % num_devices:
      raise ValueError(
        f'global {key} {size} must be a positive multiple of the number of '
        f'devices {num_devices}'
      )
  if config.batch_size % (config.grad_accum_steps * num_devices):
    raise ValueError(
      f'batch_size {config.batch_size} must divide into grad_accum_steps '
      f'{config.grad_accum_steps} micro-batches over {num_devices} devices'
    )


def create_model(config: ml_collections.ConfigDict, num_classes: int) -> Any:
  """`nets.create(config.model, num_classes=..., **config.model_kw)`."""
  kwargs = config.model_kw.to_dict()
  if config.compute_dtype != 'float32':
    kwargs['dtype'] = jnp.dtype(config.compute_dtype)
  try:
    return nets.create(config.model, num_classes=num_classes, **kwargs)
  except TypeError as e:
    raise ValueError(
      f'model {config.model!r} does not accept the options {kwargs}: {e}'
    ) from e


def write_config(config: ml_collections.ConfigDict, workdir: str) -> None:
  """Writes the resolved config to `<workdir>/config.json`."""
  if jax.process_index() != 0:
    return
  os.makedirs(workdir, exist_ok=True)
  with open(os.path.join(workdir, 'config.json'), 'w') as f:
    f.write(config.to_json_best_effort(indent=2, sort_keys=True) + '\n')


def read_config(workdir: str) -> dict[str, Any]:
  """Reads the `config.json` a run wrote into `workdir`."""
  with open(os.path.join(workdir, 'config.json')) as f:
    return json.load(f)


@jax.jit
def _all_finite(tree: Any) -> jax.Array:
  leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)]
  return jnp.all(jnp.stack(leaves)) if leaves else jnp.bool_(True)


class _TrainLog:
  """Collects per-step metrics, checks losses, times steps, writes lines."""

  def __init__(self, writer, config):
    self.writer = writer
    self.total_steps = config.total_steps
    self.batch_size = config.batch_size
    self.pending = []  # (step, device metrics) not yet fetched.
    self.history = []  # Host metrics since the last train line.
    self.run_start = time.time()
    self.compile_time_s = None
    self.sec_per_step = float('nan')
    self.restart_timer()

  def restart_timer(self) -> None:
    """Starts a timing interval (after compiling, evaluating or saving)."""
    self.interval_start = time.perf_counter()
    self.timed_steps = 0

  def add(self, step: int, metrics: dict[str, jax.Array], first: bool) -> None:
    self.pending.append((step, metrics))
    self.timed_steps += 1
    if first:  # Compilation: reported apart from the step times.
      jax.block_until_ready(metrics)
      self.compile_time_s = time.perf_counter() - self.interval_start
      _print(
        f'first train step (compilation included) took '
        f'{self.compile_time_s:.1f}s'
      )
      self.restart_timer()

  def check(self) -> None:
    """Fetches pending metrics; FloatingPointError at the first bad loss."""
    pending, self.pending = self.pending, []
    fetched = jax.device_get([metrics for _, metrics in pending])
    for (step, _), metrics in zip(pending, fetched, strict=True):
      loss = float(metrics['loss'])
      if not np.isfinite(loss):
        raise FloatingPointError(f'loss is {loss} at step {step}')
      self.history.append(metrics)

  def train_line(self, step: int) -> None:
    """Writes the train line averaged since the previous one."""
    self.check()
    record = metrics_lib.mean_metrics(self.history)
    # Usually log_every_steps; fewer on the first line after resuming from a
    # checkpoint that fell between two train lines.
    record['steps_averaged'] = len(self.history)
    self.history = []
    if self.timed_steps > 0:
      elapsed = time.perf_counter() - self.interval_start
      self.sec_per_step = elapsed / self.timed_steps
      record['images_per_sec'] = self.batch_size / self.sec_per_step
    if self.compile_time_s is not None:
      record['compile_time_s'] = self.compile_time_s
      self.compile_time_s = None
    record['wall_time_s'] = time.time() - self.run_start
    self.writer.write(step, 'train', record)
    _print(
      metrics_lib.progress_line(
        step=step,
        total_steps=self.total_steps,
        metrics=record,
        images_per_sec=record.get('images_per_sec', float('nan')),
        eta_s=(self.total_steps - step) * self.sec_per_step,
      )
    )
    self.restart_timer()

  def eval_line(self, step: int, results: dict[str, float]) -> None:
    results['wall_time_s'] = time.time() - self.run_start
    self.writer.write(step, 'eval', results)
    _print(metrics_lib.eval_line(step, results))
    self.restart_timer()


def _restore_or_create(ckpt, create_fn, mesh, config) -> state_lib.TrainState:
  """The latest checkpoint of the workdir if any, else a new state."""
  latest = ckpt.latest_step()
  if latest is None:
    return create_fn()
  abstract = checkpoint_lib.abstract_like(
    jax.eval_shape(create_fn), sharding_lib.replicated_sharding(mesh)
  )
  try:
    state = ckpt.restore(latest, abstract)
  except ValueError as e:
    try:
      old = read_config(ckpt.workdir)
    except (OSError, ValueError):
      raise ConfigError(str(e)) from e
    raise ConfigError(
      f'{e} (the checkpoint was written by model {old.get("model")!r} on '
      f'{old.get("data", {}).get("name")!r}; this run builds '
      f'{config.model!r} on {config.data.name!r})'
    ) from e
  _print(f'resumed from {ckpt.directory}/{latest}')
  return state


def _save_checkpoint(ckpt, log: _TrainLog, step: int, state: Any) -> None:
  """Saves `state` after checking everything up to it is finite."""
  log.check()
  if not bool(_all_finite(state.params)):
    raise FloatingPointError(f'parameters are not finite at step {step}')
  ckpt.save(step, state)
  log.restart_timer()


def train_and_evaluate(
  config: ml_collections.ConfigDict, workdir: str
) -> state_lib.TrainState:
  """Trains `config.model` on `config.data` and evaluates it; resumable.

  Args:
    config: the training config (experiments/configs/common.py).
    workdir: output directory; if it holds checkpoints, the run resumes from
      the latest one.

  Returns:
    The final training state (replicated over the devices).

  Raises:
    ConfigError: bad config, unknown model or data set, missing data, batch
      size that does not divide over the devices, or a checkpoint of a
      different model.
    DivergedError: a non-finite loss or parameters during training.
  """
  mesh = sharding_lib.make_mesh()
  try:
    check_config(config, mesh.devices.size)
    dataset = data_lib.get_dataset(config.data)
    model = create_model(config, dataset.num_classes)
    tx, schedule = optim.create_optimizer(config)
  except ValueError as e:
    raise ConfigError(str(e)) from e
  init_key, data_key, loop_key = jax.random.split(
    jax.random.key(config.seed), 3
  )
  create_fn = functools.partial(
    state_lib.create_train_state,
    model=model,
    tx=tx,
    init_key=init_key,
    example_input=jnp.zeros((1, *dataset.image_shape), jnp.float32),
    ema=config.ema_decay > 0,
    sharding=sharding_lib.replicated_sharding(mesh),
  )
  ckpt = checkpoint_lib.Checkpointer(workdir, keep=config.keep_checkpoints)
  try:
    state = _restore_or_create(ckpt, create_fn, mesh, config)
    start, total = int(state.step), config.total_steps
    write_config(config, workdir)
    writer = metrics_lib.MetricsWriter(
      workdir, enabled=jax.process_index() == 0
    )
    writer.truncate_after(start)
    _print(
      f'{config.model} on {dataset.num_train} {config.data.name} examples '
      f'{dataset.image_shape}, {jax.device_count()} device(s), batch '
      f'{config.batch_size}, steps {start}->{total}'
    )
    if start >= total:
      _print(f'{workdir} is already trained to step {start}; done')
      return state

    train_fn = step_lib.make_train_step(model, tx, schedule, config, mesh)
    eval_fns = {'': evaluate_lib.make_eval_step(model, mesh)}
    if config.ema_decay > 0:
      eval_fns['ema_'] = evaluate_lib.make_eval_step(model, mesh, use_ema=True)
    batches = dataset.train_batches(
      batch_size=config.batch_size,
      data_key=data_key,
      start_step=start,
      sharding=sharding_lib.batch_sharding(mesh),
    )
    log = _TrainLog(writer, config)
    for step in range(start + 1, total + 1):
      state, metrics = train_fn(state, next(batches), loop_key)
      log.add(step, metrics, first=step == start + 1)
      if _every(step, config.log_every_steps, total):
        log.train_line(step)
      # Evaluate before saving: a relaunch after a crash between the two
      # redoes both, and a finished run always has its final eval line.
      if _every(step, config.eval_every_steps, total):
        log.check()
        results = evaluate_lib.evaluate(
          state,
          eval_fns=eval_fns,
          dataset=dataset,
          batch_size=config.eval_batch_size or config.batch_size,
          mesh=mesh,
        )
        log.eval_line(step, results)
      if _every(step, config.checkpoint_every_steps, total):
        _save_checkpoint(ckpt, log, step, state)
  except FloatingPointError as e:
    ckpt.wait()
    latest = ckpt.latest_step()
    kept = (
      'no checkpoint was saved yet'
      if latest is None
      else f'last good checkpoint: step {latest} in {ckpt.directory}'
    )
    raise DivergedError(
      f'{e}: training stopped without saving this state; {kept}'
    ) from e
  finally:
    ckpt.close()
  return state
