"""`train_and_evaluate(config, workdir)`: the one training loop.

The big_vision / flax-examples loop. The seed is split once into `init_key`,
`data_key` and `loop_key`; the step keys are `fold_in(loop_key, step)` inside
the jitted step and the batch of step `s` depends only on `(data_key, s)`,
so a run resumed from a checkpoint of its state continues exactly as if it
had never stopped (the resume contract; tests/train_lib/test_trainer.py
checks the parameters bit for bit).

Outputs in the workdir: `config.json` (the resolved config),
`config_history.jsonl` (accepted changes on relaunch) and `launches.jsonl`
(each launch's command; train_lib/workdir.py), `metrics.jsonl` and its
TensorBoard copy `tensorboard/` (train_lib/metrics.py), `checkpoints/`
(train_lib/checkpoint.py), `profile/` with `config.profile_steps`
(train_lib/profiling.py), and `lock` while a launch runs.

Failure policy: nothing good is ever destroyed. A checkpoint of another
model is refused before anything is written; a NaN/inf loss stops the run
naming the first bad step, and a state is only saved after its parameters
and all losses up to it were checked finite. SIGINT (Ctrl-C) and SIGTERM (a
preempted machine, a scheduler) finish the current step, save a checkpoint
and stop with `Interrupted`; relaunching continues bit for bit. The failures
a user can cause and mend (`ConfigError`, `DivergedError`, a busy workdir)
have their own types, so that the launcher prints them as one line and lets
any other exception, a bug, keep its traceback.
"""

from collections.abc import Callable
import contextlib
import functools
import json
import os
import signal
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections

import nets
from ops import native
from train_lib import checkpoint as checkpoint_lib
from train_lib import data as data_lib
from train_lib import evaluate as evaluate_lib
from train_lib import init_from as init_from_lib
from train_lib import metrics as metrics_lib
from train_lib import optim
from train_lib import orbax_quirks
from train_lib import profiling
from train_lib import sharding as sharding_lib
from train_lib import state as state_lib
from train_lib import step as step_lib
from train_lib import validate
from train_lib import workdir as workdir_lib


class ConfigError(ValueError):
  """A run that cannot start: a bad config value, an unknown model or data
  set, missing data, or a checkpoint written by another model or config."""


class DivergedError(FloatingPointError):
  """A non-finite loss or parameters: training stopped, nothing bad saved."""


class Interrupted(Exception):  # noqa: N818 - a stop, not an error.
  """SIGINT or SIGTERM stopped the run after saving a checkpoint."""

  def __init__(self, message: str, signum: int):
    super().__init__(message)
    self.exit_code = 128 + signum  # The shell's convention: 130, 143.


# The failures the launcher reports in one line (anything else is a bug).
EXPECTED_ERRORS = (ConfigError, DivergedError, workdir_lib.WorkdirError)


def _every(step: int, period: int, total: int) -> bool:
  """True at multiples of `period` (0 = never) and at the last step."""
  return step == total or (period > 0 and step % period == 0)


def _print(text: str) -> None:
  if jax.process_index() == 0:
    print(text, flush=True)


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


def conv_impl_block(config: ml_collections.ConfigDict):
  """The context in which the run traces its functions: `config.conv_impl`.

  'auto' leaves the process default ($CONVNETS_CONV_IMPL, else measured per
  shape); any other value is forced with `native.auto_impl`. jit traces at
  the first call, so every first call of a step (and model init) must be
  inside the block.
  """
  if config.conv_impl == 'auto':
    return contextlib.nullcontext()
  return native.auto_impl(config.conv_impl)


def read_config(workdir: str) -> dict[str, Any]:
  """Reads the `config.json` a run wrote into `workdir`."""
  with open(os.path.join(workdir, 'config.json')) as f:
    return json.load(f)


@jax.jit
def _all_finite(tree: Any) -> jax.Array:
  leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)]
  return jnp.all(jnp.stack(leaves)) if leaves else jnp.bool_(True)


def _restore_or_create(ckpt, create_fn, mesh, config) -> state_lib.TrainState:
  """The latest checkpoint of the workdir if any, else a new state."""
  if not ckpt.all_steps():
    return create_fn()
  abstract = checkpoint_lib.abstract_like(
    jax.eval_shape(create_fn), sharding_lib.replicated_sharding(mesh)
  )
  try:
    restored = ckpt.restore_latest(abstract)
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
  if restored is None:
    return create_fn()
  step, state = restored
  _print(f'resumed from {ckpt.directory}/{step}')
  return state


def _save_checkpoint(ckpt, log, step: int, state: Any) -> None:
  """Saves `state` after checking everything up to it is finite.

  Then drops old checkpoints, keeping the best-evaluated one.
  """
  log.check()
  if not bool(_all_finite(state.params)):
    raise FloatingPointError(f'parameters are not finite at step {step}')
  ckpt.save(step, state, protect=log.best_step([*ckpt.all_steps(), step]))
  log.restart_timer()


def train_and_evaluate(
  config: ml_collections.ConfigDict,
  workdir: str,
  *,
  allow_config_change: bool = False,
  command: str | None = None,
  note_before_done: Callable[[], str | None] | None = None,
) -> state_lib.TrainState:
  """Trains `config.model` on `config.data` and evaluates it; resumable.

  Args:
    config: the training config (experiments/configs/common.py).
    workdir: output directory; if it holds checkpoints, the run resumes from
      the newest intact one.
    allow_config_change: resume even if the config changes what the run
      computes (the change is recorded in config_history.jsonl).
    command: the shell command of this launch; if given, it is appended to
      `launches.jsonl` once the launch is accepted (lock held, config
      checked, state restored), so the workdir says how to reproduce it.
    note_before_done: called once training ends; the line it returns (if
      any) is printed just before the closing 'done: ...' line, so that the
      accuracy and the time stay the last thing a launch prints.

  Returns:
    The final training state (replicated over the devices).

  Raises:
    ConfigError: bad config, unknown model or data set, missing data, batch
      size that does not divide over the devices, a changed config, or a
      checkpoint of a different model.
    DivergedError: a non-finite loss or parameters during training.
    WorkdirBusyError: another launch is running in `workdir`.
    Interrupted: SIGINT or SIGTERM; a checkpoint of the last step was saved.
  """
  mesh = sharding_lib.make_mesh()
  try:
    validate.check_config(config, mesh.devices.size)
    dataset = data_lib.get_dataset(config.data, seed=config.seed)
    model = create_model(config, dataset.num_classes)
    tx, schedule = optim.create_optimizer(config)
    profile_steps = profiling.parse_steps(config.profile_steps)
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
  if config.model_kw:
    try:  # Shapes only: a bad model_kw value fails here, before any write.
      with conv_impl_block(config):
        jax.eval_shape(create_fn)
    except (TypeError, ValueError) as e:
      raise ConfigError(
        f'model {config.model!r} cannot be built with model_kw '
        f'{config.model_kw.to_dict()}: {type(e).__name__}: {e}'
      ) from e
  if config.init_from:  # New states only: the workdir's checkpoints win.
    create_fn = init_from_lib.starting_from(
      config.init_from, create_fn, model=model, tx=tx, error=ConfigError
    )
  with (
    conv_impl_block(config),  # Init, train and eval steps traced inside.
    orbax_quirks.QuietLeftovers(),  # A failed read or write: one line.
    _open_workdir(
      config, workdir, create_fn, mesh, allow_config_change, command
    ) as (ckpt, state),
    contextlib.closing(
      metrics_lib.MetricsWriter(workdir, enabled=jax.process_index() == 0)
    ) as writer,
  ):
    start, total = int(state.step), config.total_steps
    writer.truncate_after(start)
    _print(
      f'{config.model} on {dataset.num_train} {config.data.name} examples '
      f'{dataset.image_shape}, {jax.device_count()} device(s), batch '
      f'{config.batch_size}, steps {start}->{total}'
    )
    if start >= total:
      _print(f'{workdir} is already trained to step {start}; done')
      return state
    traced = profiling.trace_steps(
      step_lib.make_train_step(model, tx, schedule, config, mesh),
      profile_steps,
      workdir,
      first_step=start + 1,
    )
    eval_fns = {'': evaluate_lib.make_eval_step(model, mesh)}
    if config.ema_decay > 0:
      eval_fns['ema_'] = evaluate_lib.make_eval_step(model, mesh, use_ema=True)
    batches = dataset.train_batches(
      batch_size=config.batch_size,
      data_key=data_key,
      start_step=start,
      sharding=sharding_lib.batch_sharding(mesh),
    )
    log = metrics_lib.TrainLog(writer, config, start)
    with workdir_lib.StopSignals() as stop, traced as train_fn:
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
        if _every(step, config.checkpoint_every_steps, total) or stop.signum:
          _save_checkpoint(ckpt, log, step, state)
        if stop.signum and step < total:
          raise _interrupted(stop.signum, step, ckpt)
    ckpt.wait()  # The last save on disk (or its WriteError) before 'done'.
    note = note_before_done() if note_before_done else None
    if note and jax.process_index() == 0:
      print(note, flush=True)
    log.final_line(workdir)
  return state


@contextlib.contextmanager
def _open_workdir(
  config, workdir, create_fn, mesh, allow_config_change, command
):
  """Locks the workdir, checks the config, yields (checkpointer, state).

  The state is restored from the newest intact checkpoint, or created. A
  non-finite loss or parameters inside the block become a DivergedError
  naming the last good checkpoint; the checkpointer is closed on the way out.
  """
  with workdir_lib.WorkdirLock(workdir):
    ckpt = checkpoint_lib.Checkpointer(workdir, keep=config.keep_checkpoints)
    try:
      try:
        change = workdir_lib.check_config_change(
          config,
          workdir,
          resuming=bool(ckpt.all_steps()),
          allow_changes=allow_config_change,
        )
      except ValueError as e:
        raise ConfigError(str(e)) from e
      state = _restore_or_create(ckpt, create_fn, mesh, config)
      workdir_lib.record_config_change(workdir, change)
      if command is not None:
        workdir_lib.record_launch(
          workdir,
          command=command,
          start_step=int(state.step),
          total_steps=config.total_steps,
        )
      yield ckpt, state
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


def _interrupted(signum: int, step: int, ckpt) -> Interrupted:
  ckpt.wait()
  return Interrupted(
    f'stopped by {signal.Signals(signum).name} after step {step}: '
    f'checkpoint saved in {ckpt.directory}/{step}; relaunch the same command '
    'to resume',
    signum,
  )
