"""The training state: a flax.struct.dataclass holding arrays only.

Everything a run needs to continue lives here (step counter, parameters,
BatchNorm running statistics, optimizer state and the optional exponential
moving average of the weights), so checkpointing the state checkpoints the
run. The model and optimizer are not stored: they are rebuilt from the
config and bound to the step function with functools.partial.

EMA (Polyak averaging, used e.g. by Tan & Le 2019 for EfficientNet):
ema <- d * ema + (1 - d) * new, applied to the parameters and to the
BatchNorm statistics after every update inside the train step; the average
starts at the initial values (no debiasing).
"""

import contextlib
from typing import Any

import flax
import jax
import jax.numpy as jnp
import optax

from ops import native


@flax.struct.dataclass
class TrainState:
  """Arrays of a training run.

  Attributes:
    step: int32 scalar, number of optimizer updates done.
    params: the 'params' collection.
    batch_stats: the 'batch_stats' collection ({} for models without
      BatchNorm).
    opt_state: the optax state.
    ema_params: EMA of `params` (same tree) or None when EMA is off.
    ema_batch_stats: EMA of `batch_stats` or None when EMA is off.
  """

  step: jax.Array
  params: Any
  batch_stats: Any
  opt_state: Any
  ema_params: Any = None
  ema_batch_stats: Any = None


def _as_dict(tree: Any) -> Any:
  # Models may return FrozenDicts (older flax); keep plain dicts throughout
  # so that tree structures of created and restored states agree.
  return flax.core.unfreeze(tree) if tree is not None else {}


def create_train_state(
  *,
  model: flax.linen.Module,
  tx: optax.GradientTransformation,
  init_key: jax.Array,
  example_input: jax.typing.ArrayLike,
  ema: bool,
  sharding: jax.sharding.Sharding | None = None,
) -> TrainState:
  """Initialises parameters, BatchNorm statistics and optimizer state.

  Runs `model.init({'params': init_key}, example_input, train=False)` and
  `tx.init(params)` under one jit.

  Args:
    model: a Flax module following the nets/ conventions.
    tx: the optimizer.
    init_key: typed PRNG key for parameter initialisation.
    example_input: an input batch (any batch size, e.g. 1), float32.
    ema: whether to keep an EMA of the parameters and batch statistics.
    sharding: where to place the state (e.g. `replicated_sharding(mesh)`);
      default: jax's default device.

  Returns:
    The initial TrainState (step 0).
  """
  example_input = jnp.asarray(example_input)

  def init(key: jax.Array, x: jax.Array) -> TrainState:
    variables = model.init({'params': key}, x, train=False)
    params = _as_dict(variables['params'])
    batch_stats = _as_dict(variables.get('batch_stats', {}))
    # Copies, so that no buffer appears twice in the state (donation).
    copy = lambda t: jax.tree.map(lambda a: a + jnp.zeros_like(a), t)
    return TrainState(
      step=jnp.zeros((), jnp.int32),
      params=params,
      batch_stats=batch_stats,
      opt_state=tx.init(params),
      ema_params=copy(params) if ema else None,
      ema_batch_stats=copy(batch_stats) if ema else None,
    )

  # Init traces the net on the example batch only to build its variables
  # (none depends on which backend convolves): under the measured choice
  # ('auto', ops/native/choice.py) it takes the static rule, so that no
  # batch-1 shape is timed for nothing.
  static = native.mode() == 'auto'
  with (
    native.auto_impl('prefer_onednn') if static else contextlib.nullcontext()
  ):
    return jax.jit(init, out_shardings=sharding)(init_key, example_input)
