"""`train_and_evaluate(config, workdir)`: the one training loop.

The big_vision / flax-examples loop. The seed is split once into `init_key`,
`data_key` and `loop_key`; the step keys are `fold_in(loop_key, step)` inside
the jitted step and the batch of step `s` depends only on `(data_key, s)`,
so a run resumed from a checkpoint of its state continues exactly as if it
had never stopped (tests/train_lib/test_trainer.py checks the parameters).

Data parallelism: a `('data',)` mesh over all devices, batch sharded over it,
state replicated (train_lib/sharding.py, train_lib/step.py). Outputs in the
workdir: `config.json` (the resolved config), `metrics.jsonl`
(train_lib/metrics.py) and `checkpoints/` (train_lib/checkpoint.py).

Failure policy: nothing good is ever destroyed. A checkpoint of another
model is refused before anything is written; a NaN/inf loss stops the run
with `FloatingPointError` naming the first bad step, and a state is only
saved after its parameters and all losses up to it were checked finite.
"""

from collections.abc import Iterator
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
from train_lib import metrics as metrics_lib
from train_lib import optim
from train_lib import sharding as sharding_lib
from train_lib import state as state_lib
from train_lib import step as step_lib


def _every(step: int, period: int, total: int) -> bool:
  """True at multiples of `period` (0 = never) and at the last step."""
  return step == total or (period > 0 and step % period == 0)


def _print(text: str) -> None:
  if jax.process_index() == 0:
    print(text, flush=True)


def _check_config(config: ml_collections.ConfigDict) -> None:
  if config.total_steps < 1:
    raise ValueError(f'total_steps must be >= 1, got {config.total_steps}')
  if config.log_every_steps < 1:
    raise ValueError(
      f'log_every_steps must be >= 1, got {config.log_every_steps}'
    )
  for key in ('eval_every_steps', 'checkpoint_every_steps'):
    if config[key] < 0:
      raise ValueError(f'{key} must be >= 0 (0 = only at the end)')


def create_model(config: ml_collections.ConfigDict, num_classes: int) -> Any:
  """`nets.create(config.model, num_classes=..., **config.model_kw)`."""
  kwargs = dict(config.model_kw.to_dict()) if config.model_kw else {}
  if config.get('compute_dtype', 'float32') != 'float32':
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


@jax.jit
def _all_finite(tree: Any) -> jax.Array:
  leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)]
  return jnp.all(jnp.stack(leaves)) if leaves else jnp.bool_(True)


def evaluate(
  state: state_lib.TrainState,
  *,
  eval_fns: dict[str, Any],
  dataset: Any,
  batch_size: int,
  mesh: jax.sharding.Mesh,
) -> dict[str, float]:
  """Loss and accuracy over the whole test split (padding not counted).

  Args:
    state: the state to evaluate.
    eval_fns: prefix -> jitted eval step ('' for the weights, 'ema_' for
      their moving average).
    dataset: the `Dataset`.
    batch_size: global eval batch size.
    mesh: the device mesh.

  Returns:
    `loss`, `accuracy` (+ `top5_accuracy` for more than 10 classes), the
    same with an `ema_` prefix when EMA is on, and `eval_time_s`.
  """
  start = time.perf_counter()
  totals = dict.fromkeys(eval_fns)
  batches = dataset.eval_batches(
    batch_size=batch_size, sharding=sharding_lib.batch_sharding(mesh)
  )
  for batch in batches:
    for prefix, fn in eval_fns.items():
      totals[prefix] = step_lib.add_eval_sums(totals[prefix], fn(state, batch))
  results = {}
  for prefix, sums in totals.items():
    means = step_lib.finalize_eval(jax.device_get(sums))
    if dataset.num_classes <= 10:
      means.pop('top5_accuracy', None)
    results.update({prefix + k: v for k, v in means.items()})
  results['eval_time_s'] = time.perf_counter() - start
  return results


class _TrainLog:
  """Collects per-step metrics, checks losses, times steps, logs lines."""

  def __init__(self, *, writer, total_steps, batch_size):
    self.writer = writer
    self.total_steps = total_steps
    self.batch_size = batch_size
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

  def add(self, step: int, metrics: dict[str, jax.Array]) -> None:
    self.pending.append((step, metrics))
    self.timed_steps += 1

  def first_step_done(self, seconds: float) -> None:
    """Reports the first step (compilation) apart from the step times."""
    self.compile_time_s = seconds
    _print(f'first train step (compilation included) took {seconds:.1f}s')
    self.restart_timer()

  def check(self) -> None:
    """Fetches pending metrics; FloatingPointError at the first bad loss."""
    if not self.pending:
      return
    pending, self.pending = self.pending, []
    fetched = jax.device_get([metrics for _, metrics in pending])
    for (step, _), metrics in zip(pending, fetched, strict=True):
      loss = float(metrics['loss'])
      if not np.isfinite(loss):
        raise FloatingPointError(f'loss is {loss} at step {step}')
      self.history.append(metrics)

  def log(self, step: int) -> None:
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


def _written_by(workdir: str, config: ml_collections.ConfigDict) -> str:
  """' (written by model X ...)' from the workdir's config.json, if any."""
  try:
    old = read_config(workdir)
  except (OSError, ValueError):
    return ''
  return (
    f' (the checkpoint was written by model {old.get("model")!r} on '
    f'{old.get("data", {}).get("name")!r}; this run builds '
    f'{config.model!r} on {config.data.name!r})'
  )


def _restore_or_create(
  ckpt: checkpoint_lib.Checkpointer,
  create_fn: Any,
  mesh: Any,
  config: ml_collections.ConfigDict,
) -> state_lib.TrainState:
  """The latest checkpoint of the workdir if any, else a new state."""
  latest = ckpt.latest_step()
  if latest is None:
    return create_fn()
  abstract = checkpoint_lib.abstract_like(
    jax.eval_shape(create_fn), sharding_lib.replicated_sharding(mesh)
  )
  try:
    state = ckpt.restore(abstract, latest)
  except ValueError as e:
    raise ValueError(f'{e}{_written_by(ckpt.workdir, config)}') from e
  _print(f'resumed from {ckpt.directory}/{latest}')
  return state


def _save(
  ckpt: checkpoint_lib.Checkpointer,
  log: _TrainLog,
  step: int,
  state: state_lib.TrainState,
) -> None:
  """Saves `state` after checking everything up to it is finite."""
  log.check()
  if not bool(_all_finite(state.params)):
    raise FloatingPointError(f'parameters are not finite at step {step}')
  ckpt.save(step, state)


def _train_loop(
  state: Any,
  batches: Iterator[dict[str, jax.Array]],
  *,
  config: ml_collections.ConfigDict,
  train_fn: Any,
  loop_key: jax.Array,
  log: _TrainLog,
  ckpt: checkpoint_lib.Checkpointer,
  run_eval: Any,
) -> Any:
  """Steps from `state.step` to `config.total_steps`, logging and saving."""
  start_step = int(state.step)
  total = config.total_steps
  log.restart_timer()
  for step in range(start_step + 1, total + 1):
    state, metrics = train_fn(state, next(batches), loop_key)
    log.add(step, metrics)
    if step == start_step + 1:
      jax.block_until_ready(metrics)
      log.first_step_done(time.perf_counter() - log.interval_start)
    if _every(step, config.log_every_steps, total):
      log.log(step)
    # Evaluate before saving: a relaunch after a crash between the two
    # redoes both, and a finished run always has its final eval line.
    if _every(step, config.eval_every_steps, total):
      log.check()
      run_eval(state, step)
      log.restart_timer()
    if _every(step, config.checkpoint_every_steps, total):
      _save(ckpt, log, step, state)
      log.restart_timer()
  return state


def train_and_evaluate(
  config: ml_collections.ConfigDict, workdir: str
) -> state_lib.TrainState:
  """Trains `config.model` on `config.data` and evaluates it; resumable.

  Args:
    config: the flat training config (experiments/configs/common.py).
    workdir: output directory; if it holds checkpoints, the run resumes from
      the latest one.

  Returns:
    The final training state (replicated over the devices).

  Raises:
    ValueError: bad config, unknown model or data set, batch size that does
      not divide over the devices, or a checkpoint of a different model.
    FloatingPointError: a non-finite loss or parameters during training.
  """
  _check_config(config)
  mesh = sharding_lib.make_mesh()
  sharding_lib.check_global_batch(config.batch_size, mesh)
  eval_batch_size = config.get('eval_batch_size', 0) or config.batch_size
  sharding_lib.check_global_batch(eval_batch_size, mesh)

  dataset = data_lib.get_dataset(config.data)
  model = create_model(config, dataset.num_classes)
  tx, schedule = optim.create_optimizer(config)
  init_key, data_key, loop_key = jax.random.split(
    jax.random.key(config.seed), 3
  )
  ema = config.get('ema_decay', 0.0) > 0
  create_fn = lambda: state_lib.create_train_state(
    model=model,
    tx=tx,
    init_key=init_key,
    example_input=jnp.zeros((1, *dataset.image_shape), jnp.float32),
    ema=ema,
    sharding=sharding_lib.replicated_sharding(mesh),
  )

  ckpt = checkpoint_lib.Checkpointer(workdir, keep=config.keep_checkpoints)
  try:
    state = _restore_or_create(ckpt, create_fn, mesh, config)
    start_step = int(state.step)
    write_config(config, workdir)
    writer = metrics_lib.MetricsWriter(
      workdir, enabled=jax.process_index() == 0
    )
    writer.truncate_after(start_step)
    _print(
      f'{config.model} on {dataset.num_train} {config.data.name} examples '
      f'{dataset.image_shape}, {jax.device_count()} device(s), batch '
      f'{config.batch_size}, steps {start_step}->{config.total_steps}'
    )

    eval_fns = {'': step_lib.make_eval_step(model, mesh)}
    if ema:
      eval_fns['ema_'] = step_lib.make_eval_step(model, mesh, use_ema=True)
    log = _TrainLog(
      writer=writer,
      total_steps=config.total_steps,
      batch_size=config.batch_size,
    )

    def run_eval(state: Any, step: int) -> None:
      results = evaluate(
        state,
        eval_fns=eval_fns,
        dataset=dataset,
        batch_size=eval_batch_size,
        mesh=mesh,
      )
      results['wall_time_s'] = time.time() - log.run_start
      writer.write(step, 'eval', results)
      _print(metrics_lib.eval_line(step, results))

    if start_step >= config.total_steps:
      _print(f'{workdir} is already trained to step {start_step}; done')
      return state
    batches = dataset.train_batches(
      batch_size=config.batch_size,
      data_key=data_key,
      start_step=start_step,
      sharding=sharding_lib.batch_sharding(mesh),
    )
    train_fn = step_lib.make_train_step(model, tx, schedule, config, mesh)
    state = _train_loop(
      state,
      batches,
      config=config,
      train_fn=train_fn,
      loop_key=loop_key,
      log=log,
      ckpt=ckpt,
      run_eval=run_eval,
    )
  except FloatingPointError as e:
    ckpt.wait()
    latest = ckpt.latest_step()
    kept = (
      'no checkpoint was saved yet'
      if latest is None
      else f'last good checkpoint: step {latest} in {ckpt.directory}'
    )
    raise FloatingPointError(
      f'{e}: training stopped without saving this state; {kept}'
    ) from e
  finally:
    ckpt.close()
  return state


def read_config(workdir: str) -> dict[str, Any]:
  """Reads the `config.json` a run wrote into `workdir`."""
  with open(os.path.join(workdir, 'config.json')) as f:
    return json.load(f)
