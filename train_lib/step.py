"""Train and eval steps, in big_vision's shape.

`train_step(state, batch, loop_key, *, model, tx, schedule, augment,
grad_accum_steps, ema_decay)` is one optimizer update, a pure function.
`make_train_step` reads the config once, outside jit, binds those keywords
with functools.partial and jits the result with the batch on P('data') and
the state replicated and donated. With global arrays every mean over the
batch, BatchNorm statistics included, is a mean over the global batch.

PRNG: `step_key = fold_in(loop_key, state.step)`, and each random consumer
gets `fold_in(step_key, <its constant>)` (`step_keys`); micro-batch j of
gradient accumulation uses `fold_in(dropout_key, j)`. Flax derives a key per
dropout and drop-path layer from the 'dropout' stream by the layer's path.
The loop key never changes, so a resumed run draws the same keys.

Loss and metrics are float32 whatever the model's computation dtype. The
loss is the cross-entropy against the soft targets of train_lib.augment
(one-hot labels, smoothed or mixed as configured). 'l2_grads' is the norm of
the averaged gradient before clipping.

Gradient accumulation (k > 1): micro-batch j holds rows j, j+k, j+2k, ... of
the global batch (so each stays spread over all devices); the micro-batches
are scanned and their gradients averaged before one update. Without
BatchNorm this equals the big-batch update; BatchNorm normalises each
micro-batch with its own statistics and updates its running averages k times.
"""

import functools
from typing import Any

import jax
import jax.numpy as jnp
import optax

from ops import losses
from train_lib import augment as augment_lib
from train_lib import sharding as sharding_lib
from train_lib.state import TrainState

# Distinct constants: adding a stream never changes the others' keys.
_STREAMS = {
  'dropout': 1,
  'crop': 2,
  'flip': 3,
  'cutout': 4,
  'mix_choice': 5,
  'mixup': 6,
  'cutmix': 7,
}


def step_keys(loop_key: jax.Array, step: jax.Array) -> dict[str, jax.Array]:
  """The per-step keys, one per random consumer, derived from the loop key."""
  step_key = jax.random.fold_in(loop_key, step)
  return {n: jax.random.fold_in(step_key, c) for n, c in _STREAMS.items()}


def variables(params: Any, batch_stats: Any) -> dict[str, Any]:
  """The Flax variables dict (no 'batch_stats' entry for models without)."""
  if batch_stats:
    return {'params': params, 'batch_stats': batch_stats}
  return {'params': params}


def _loss_fn(params, batch_stats, images, targets, dropout_key, *, model):
  """Training forward pass: (mean loss, (float32 logits, new batch_stats))."""
  logits, updates = model.apply(
    variables(params, batch_stats),
    images,
    train=True,
    rngs={'dropout': dropout_key},
    mutable=['batch_stats'],
  )
  logits = logits.astype(jnp.float32)
  loss = jnp.mean(losses.softmax_cross_entropy(logits=logits, labels=targets))
  return loss, (logits, updates.get('batch_stats', batch_stats))


def _gradients(model, state, images, targets, dropout_key, k):
  """(loss, logits [B, K], batch_stats, grads) averaged over k micro-batches."""
  grad_fn = jax.value_and_grad(
    functools.partial(_loss_fn, model=model), has_aux=True
  )
  if k == 1:
    (loss, (logits, batch_stats)), grads = grad_fn(
      state.params, state.batch_stats, images, targets, dropout_key
    )
    return loss, logits, batch_stats, grads
  size = images.shape[0]
  if size % k:
    raise ValueError(
      f'batch size {size} is not divisible by grad_accum_steps {k}'
    )
  # [B, ...] -> [k, B / k, ...]; micro-batch j holds rows j::k.
  split = lambda x: jnp.swapaxes(x.reshape(size // k, k, *x.shape[1:]), 0, 1)

  def body(carry, micro):
    batch_stats, grad_sum = carry
    x, t, j = micro
    key = jax.random.fold_in(dropout_key, j)
    (loss, (logits, batch_stats)), grads = grad_fn(
      state.params, batch_stats, x, t, key
    )
    return (batch_stats, jax.tree.map(jnp.add, grad_sum, grads)), (loss, logits)

  carry = (state.batch_stats, jax.tree.map(jnp.zeros_like, state.params))
  (batch_stats, grad_sum), (loss, logits) = jax.lax.scan(
    body, carry, (split(images), split(targets), jnp.arange(k))
  )
  logits = jnp.swapaxes(logits, 0, 1).reshape(size, -1)  # Batch order again.
  grads = jax.tree.map(lambda g: g / k, grad_sum)
  return jnp.mean(loss), logits, batch_stats, grads


def train_step(
  state: TrainState,
  batch: dict[str, jax.Array],
  loop_key: jax.Array,
  *,
  model: Any,
  tx: optax.GradientTransformation,
  schedule: optax.Schedule,
  augment: Any,
  grad_accum_steps: int,
  ema_decay: float,
) -> tuple[TrainState, dict[str, jax.Array]]:
  """One optimizer update on a global batch {'image' [B, ...], 'label' [B]}.

  Returns (new_state, metrics): float32 scalars 'loss', 'accuracy', 'lr',
  'l2_grads', 'l2_params', 'l2_updates', and 'top5_accuracy' for more than
  10 classes.
  """
  if (state.ema_params is not None) != (ema_decay > 0):
    raise ValueError(
      f'ema_decay={ema_decay} but the state was created with '
      f'ema={state.ema_params is not None}'
    )
  keys = step_keys(loop_key, state.step)
  labels = batch['label']
  images, targets = augment(keys, batch['image'].astype(jnp.float32), labels)
  loss, logits, batch_stats, grads = _gradients(
    model, state, images, targets, keys['dropout'], grad_accum_steps
  )
  updates, opt_state = tx.update(grads, state.opt_state, state.params)
  params = optax.apply_updates(state.params, updates)
  new_state = state.replace(
    step=state.step + 1,
    params=params,
    batch_stats=batch_stats,
    opt_state=opt_state,
  )
  if ema_decay > 0:
    ema = lambda a, x: ema_decay * a + (1.0 - ema_decay) * x
    new_state = new_state.replace(
      ema_params=jax.tree.map(ema, state.ema_params, params),
      ema_batch_stats=jax.tree.map(ema, state.ema_batch_stats, batch_stats),
    )
  f32 = lambda x: jnp.asarray(x, jnp.float32)
  metrics = {
    'loss': f32(loss),
    'accuracy': jnp.mean(f32(jnp.argmax(logits, -1) == labels)),
    'lr': f32(schedule(state.step)),
    'l2_grads': f32(optax.tree.norm(grads)),
    'l2_params': f32(optax.tree.norm(params)),
    'l2_updates': f32(optax.tree.norm(updates)),
  }
  if logits.shape[-1] > 10:
    metrics['top5_accuracy'] = jnp.mean(losses.topk_correct(logits, labels, 5))
  return new_state, metrics


def step_options(config: Any, num_classes: int) -> dict[str, Any]:
  """The `train_step` keywords the config sets, read once outside jit."""
  return {
    'augment': augment_lib.make_augment(config, num_classes),
    'grad_accum_steps': config.grad_accum_steps,
    'ema_decay': config.ema_decay,
  }


def make_train_step(model, tx, schedule, config, mesh: jax.sharding.Mesh):
  """Jitted `(state, batch, loop_key) -> (state, metrics)` for `mesh`.

  The input state is donated (do not use it after the call).
  """
  step = functools.partial(
    train_step,
    model=model,
    tx=tx,
    schedule=schedule,
    **step_options(config, model.num_classes),
  )
  return sharding_lib.jit_sharded(step, mesh, num_args=3, donate_state=True)
