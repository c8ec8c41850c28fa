"""`config.init_from`: a new run starts from imported or earlier weights.

`PATH` is either

* a PyTorch state_dict (`.pth`, `.pt`, `.bin` or `.safetensors`) of a
  torchvision or timm model of the same architecture, imported by
  `nets.weights` (e.g. `--config.model=resnet18 --config.init_from=
  resnet18-f37072fd.pth`), or
* another run's workdir (or its `checkpoints/` folder, or one
  `checkpoints/<step>` in it) whose newest (or given) checkpoint was written
  by the same model, optimizer and EMA setting (so the same state tree; any
  other is refused in one line): its parameters and BatchNorm statistics
  are taken, not its step, optimizer state or schedule position.

Only the parameters and BatchNorm statistics come from `PATH` (a PyTorch
file's running statistics included); the step starts at 0 and the optimizer
state is initialised afresh. When the file's classifier has another number
of classes than the data set, the classifier is re-initialised (the launch
says so), and a one-channel data set (MNIST, digits) gets the file's first
convolution summed over its RGB inputs, which is exactly the PyTorch net
on the gray image repeated in three channels.

Only a run without checkpoints starts from `PATH`: a relaunch resumes from
the workdir's own checkpoints and does not read `PATH` again. A file or
workdir that does not fit the model raises one error naming the first
offending keys, before anything is trained or saved.
"""

from collections.abc import Callable
import os
import re
from typing import Any

import jax
import optax

from nets import weights
from train_lib import checkpoint as checkpoint_lib
from train_lib import state as state_lib


def _say(text: str) -> None:
  if jax.process_index() == 0:
    print(text, flush=True)


def _checkpoint_location(path: str) -> tuple[str, int | None] | None:
  """(workdir, step or None) when `path` names a run's checkpoints."""
  path = os.path.abspath(path.rstrip('/'))
  if not os.path.isdir(path):
    return None
  base, parent = os.path.basename(path), os.path.dirname(path)
  if re.fullmatch(r'\d+', base) and os.path.basename(parent) == 'checkpoints':
    return os.path.dirname(parent), int(base)
  if base == 'checkpoints':
    return parent, None
  if os.path.isdir(os.path.join(path, 'checkpoints')):
    return path, None
  raise ValueError('a folder, but not a run workdir (no checkpoints/ in it)')


def _from_checkpoint(
  workdir: str, step: int | None, state: state_lib.TrainState
) -> tuple[Any, Any]:
  """Params and batch_stats of another run's checkpoint (same state tree)."""
  abstract = jax.tree.map(
    lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding),
    state,
  )
  restored = checkpoint_lib.read(workdir, step, abstract)  # Writes nothing.
  return restored.params, restored.batch_stats


def _from_file(path, state, model) -> tuple[Any, Any]:
  """Params and batch_stats imported from a PyTorch state_dict."""
  like = {'params': state.params, 'batch_stats': state.batch_stats}
  variables, reinit = weights.from_state_dict(
    model,
    weights.load_state_dict(path),
    like=jax.device_get(like),
    new_head=True,
    gray_stem=True,
  )
  if reinit:
    _say(
      f'init_from: {", ".join(reinit)} re-initialised (the file has another '
      'number of classes)'
    )
  return variables['params'], variables['batch_stats']


def starting_from(
  path: str,
  create_fn: Callable[[], state_lib.TrainState],
  *,
  model: Any,
  tx: optax.GradientTransformation,
  error: type[Exception] = ValueError,
) -> Callable[[], state_lib.TrainState]:
  """Wraps the trainer's `create_fn` so new states start from `path`.

  Args:
    path: a state_dict file or a run's workdir/checkpoint (module doc).
    create_fn: builds the initial state (the trainer's
      `state.create_train_state` partial).
    model: the run's flax module (for the PyTorch layout).
    tx: the run's optimizer (its state is initialised for the new params).
    error: raised, with one line, for a file or checkpoint that does not
      fit (the trainer passes its ConfigError).

  Returns:
    A function with `create_fn`'s signature and result structure. Under
    `jax.eval_shape` (the trainer's restore target) it reads nothing: the
    imported variables have the created ones' shapes.
  """

  def create() -> state_lib.TrainState:
    state = create_fn()
    if isinstance(state.step, jax.core.Tracer):
      return state
    try:
      where = _checkpoint_location(path)
      if where is not None:
        params, batch_stats = _from_checkpoint(*where, state)
      else:
        params, batch_stats = _from_file(path, state, model)
    except ValueError as e:
      raise error(f'init_from {path!r}: {e}') from e
    put = lambda new, old: jax.device_put(new, old.sharding)
    params = jax.tree.map(put, params, state.params)
    batch_stats = jax.tree.map(put, batch_stats, state.batch_stats)
    opt_state = jax.tree.map(put, tx.init(params), state.opt_state)
    ema = state.ema_params is not None
    _say(f'init_from: started from {path}')
    return state.replace(
      params=params,
      batch_stats=batch_stats,
      opt_state=opt_state,
      ema_params=jax.tree.map(lambda a: a.copy(), params) if ema else None,
      ema_batch_stats=(
        jax.tree.map(lambda a: a.copy(), batch_stats) if ema else None
      ),
    )

  return create
