"""Train and eval steps: augmentation, loss, gradients, update, metrics.

The big_vision pattern: `train_step(state, batch, loop_key, *, ...)` is a
pure function; its dependencies are bound with functools.partial and the
result is jitted with NamedSharding in/out shardings (batch on P('data'),
state replicated) and the state donated. With global arrays every mean over
the batch, BatchNorm statistics included, is a mean over the global batch.

PRNG: `step_key = fold_in(loop_key, state.step)`; each consumer gets its own
key `fold_in(step_key, <stream constant>)` (dropout, crop, flip, cutout,
mixup, cutmix, mix_choice), and micro-batch j of gradient accumulation uses
`fold_in(dropout_key, j)`. Dropout and drop-path layers both read the
model's 'dropout' rng stream (the nets/ API), and Flax derives a separate key
for every layer from it by the layer's path, so each dropout layer and each
drop-path layer draws its own key. The loop key never changes, so a resumed run
draws the same keys, and a run is a deterministic function of the seed.

Augmentation runs on device from ops.augmentation (lecture notes, seed 002:
random crop, flip, cutout, mixup (Zhang et al. 2018), cutmix (Yun et al.
2019)), only for image batches of rank 4 (NHWC); other inputs (mnist1d
[B, L]) are left alone, with a warning if augmentation was asked for. Soft
targets (label smoothing, Szegedy et al. 2016; mixup; cutmix) use the
soft-target cross entropy, hard labels the plain one. Loss and metrics are
float32 whatever the model's computation dtype (the model applies
`compute_dtype` through its `dtype` kwarg; logits are cast to float32).
'l2_grads' is the norm of the averaged gradient before clipping.

Gradient accumulation (`grad_accum_steps` = k > 1): the global batch B is
split into k micro-batches of B/k (micro-batch j holds examples j, j+k,
j+2k, ..., so each stays spread over all devices), scanned with lax.scan,
and the gradients averaged before one optimizer update. For models without
BatchNorm this equals the big-batch update; BatchNorm sees micro-batch
statistics and its running averages are updated k times.
"""

import functools
from typing import Any

from absl import logging
import jax
import jax.numpy as jnp
import optax

from ops import augmentation
from ops import losses
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


def _get(config: Any, key: str, default: Any) -> Any:
  value = config.get(key, default)
  return default if value is None else value


def step_keys(loop_key: jax.Array, step: jax.Array) -> dict[str, jax.Array]:
  """The per-step keys, one per random consumer, derived from the loop key."""
  step_key = jax.random.fold_in(loop_key, step)
  return {n: jax.random.fold_in(step_key, c) for n, c in _STREAMS.items()}


def _num_classes(model: Any, images: jax.Array) -> int:
  num_classes = getattr(model, 'num_classes', None)
  if num_classes is None:
    # Not reached by nets/ models (they all have `num_classes`).
    variables = jax.eval_shape(
      functools.partial(model.init, train=False),
      {'params': jax.random.key(0)},
      images,
    )
    logits = jax.eval_shape(
      functools.partial(model.apply, train=False), variables, images
    )
    num_classes = logits.shape[-1]
  return int(num_classes)


def augment(
  keys: dict[str, jax.Array],
  images: jax.Array,
  labels: jax.Array,
  *,
  num_classes: int,
  config: Any,
) -> tuple[jax.Array, jax.Array | None]:
  """Applies the configured augmentations.

  Args:
    keys: the step's keys (`step_keys`).
    images: [B, ...] float32 inputs.
    labels: [B] int labels.
    num_classes: K.
    config: reads crop_padding, random_flip, cutout_size, mixup_alpha,
      cutmix_alpha, label_smoothing.

  Returns:
    (images, targets) where targets is [B, K] soft targets, or None when
    neither label smoothing nor mixup/cutmix is on.
  """
  crop = int(_get(config, 'crop_padding', 0))
  flip = bool(_get(config, 'random_flip', False))
  cutout = int(_get(config, 'cutout_size', 0))
  mixup_alpha = float(_get(config, 'mixup_alpha', 0.0))
  cutmix_alpha = float(_get(config, 'cutmix_alpha', 0.0))
  smoothing = float(_get(config, 'label_smoothing', 0.0))
  is_image = images.ndim == 4
  if not is_image and (crop or flip or cutout or mixup_alpha or cutmix_alpha):
    logging.warning(
      'Inputs of shape %s are not NHWC images: augmentation is off.',
      images.shape,
    )
    mixup_alpha = cutmix_alpha = 0.0
  if is_image and crop > 0:
    images = augmentation.random_crop(keys['crop'], images, padding=crop)
  if is_image and flip:
    images = augmentation.random_flip(keys['flip'], images)
  if is_image and cutout > 0:
    images = augmentation.cutout(keys['cutout'], images, size=cutout)
  if not (smoothing > 0 or mixup_alpha > 0 or cutmix_alpha > 0):
    return images, None
  targets = losses.one_hot(labels, num_classes).astype(jnp.float32)
  if smoothing > 0:
    targets = losses.smooth_labels(targets, smoothing)
  do_mixup = functools.partial(
    augmentation.mixup, keys['mixup'], alpha=mixup_alpha
  )
  do_cutmix = functools.partial(
    augmentation.cutmix, keys['cutmix'], alpha=cutmix_alpha
  )
  if mixup_alpha > 0 and cutmix_alpha > 0:
    # One of the two per batch, with equal probability (as in timm).
    use_mixup = jax.random.bernoulli(keys['mix_choice'])
    images, targets = jax.lax.cond(
      use_mixup, do_mixup, do_cutmix, images, targets
    )
  elif mixup_alpha > 0:
    images, targets = do_mixup(images, targets)
  elif cutmix_alpha > 0:
    images, targets = do_cutmix(images, targets)
  return images, targets


def _topk_correct(logits: jax.Array, labels: jax.Array, k: int) -> jax.Array:
  """[B] float32, 1 where the label is among the k largest logits."""
  k = min(k, logits.shape[-1])
  _, top = jax.lax.top_k(logits, k)
  return jnp.any(top == labels[:, None], axis=-1).astype(jnp.float32)


def _variables(params: Any, batch_stats: Any) -> dict[str, Any]:
  if batch_stats:
    return {'params': params, 'batch_stats': batch_stats}
  return {'params': params}


def _forward_loss(model, params, batch_stats, images, labels, targets, key):
  """Training forward pass; returns (loss, (logits, new_batch_stats))."""
  variables = _variables(params, batch_stats)
  rngs = {'dropout': key}
  if batch_stats:
    logits, updates = model.apply(
      variables, images, train=True, rngs=rngs, mutable=['batch_stats']
    )
    batch_stats = updates['batch_stats']
  else:
    logits = model.apply(variables, images, train=True, rngs=rngs)
  logits = logits.astype(jnp.float32)
  if targets is None:
    per_example = losses.softmax_cross_entropy_with_integer_labels(
      logits=logits, labels=labels
    )
  else:
    per_example = losses.softmax_cross_entropy(logits=logits, labels=targets)
  return jnp.mean(per_example.astype(jnp.float32)), (logits, batch_stats)


def _grads_and_metrics(model, state, images, labels, targets, key, k):
  """Loss gradient averaged over k micro-batches, and batch metrics."""
  grad_fn = jax.value_and_grad(
    functools.partial(_forward_loss, model), has_aux=True
  )

  def batch_metrics(logits, labels):
    accuracy = jnp.mean((jnp.argmax(logits, -1) == labels).astype(jnp.float32))
    top5 = jnp.mean(_topk_correct(logits, labels, 5))
    return accuracy, top5

  if k == 1:
    (loss, (logits, batch_stats)), grads = grad_fn(
      state.params, state.batch_stats, images, labels, targets, key
    )
    accuracy, top5 = batch_metrics(logits, labels)
    return grads, batch_stats, loss, accuracy, top5

  size = images.shape[0]
  if size % k:
    raise ValueError(
      f'batch size {size} is not divisible by grad_accum_steps {k}'
    )

  def split(x):  # [B, ...] -> [k, B / k, ...]; micro-batch j = rows j::k
    if x is None:
      return None
    return jnp.swapaxes(x.reshape((size // k, k) + x.shape[1:]), 0, 1)

  micro = (split(images), split(labels), split(targets))

  def body(carry, inputs):
    batch_stats, grad_sum, metric_sum = carry
    (x, y, t), j = inputs
    (loss, (logits, batch_stats)), grads = grad_fn(
      state.params, batch_stats, x, y, t, jax.random.fold_in(key, j)
    )
    grad_sum = jax.tree.map(jnp.add, grad_sum, grads)
    metric_sum = metric_sum + jnp.stack([loss, *batch_metrics(logits, y)])
    return (batch_stats, grad_sum, metric_sum), None

  init = (
    state.batch_stats,
    jax.tree.map(jnp.zeros_like, state.params),
    jnp.zeros((3,), jnp.float32),
  )
  (batch_stats, grad_sum, metric_sum), _ = jax.lax.scan(
    body, init, (micro, jnp.arange(k))
  )
  grads = jax.tree.map(lambda g: g / k, grad_sum)
  loss, accuracy, top5 = metric_sum / k
  return grads, batch_stats, loss, accuracy, top5


def _ema(decay: float, average: Any, new: Any) -> Any:
  return jax.tree.map(lambda a, x: decay * a + (1.0 - decay) * x, average, new)


def train_step(
  state: TrainState,
  batch: dict[str, jax.Array],
  loop_key: jax.Array,
  *,
  model: Any,
  tx: optax.GradientTransformation,
  schedule: optax.Schedule,
  config: Any,
) -> tuple[TrainState, dict[str, jax.Array]]:
  """One optimizer update on a global batch.

  Args:
    state: the current state.
    batch: {'image': [B, ...] float32, 'label': [B] int}.
    loop_key: the run's loop key (typed, constant over the run).
    model: the Flax module.
    tx: the optimizer (train_lib.optim).
    schedule: the learning-rate schedule used by `tx` (for the 'lr' metric).
    config: reads grad_accum_steps, ema_decay and the augmentation keys.

  Returns:
    (new_state, metrics) with float32 scalar metrics 'loss', 'accuracy',
    'lr', 'l2_grads', 'l2_params', 'l2_updates' and 'top5_accuracy' when
    the model has more than 10 classes.
  """
  images = jnp.asarray(batch['image'], jnp.float32)
  labels = batch['label']
  keys = step_keys(loop_key, state.step)
  num_classes = _num_classes(model, images)
  images, targets = augment(
    keys, images, labels, num_classes=num_classes, config=config
  )
  k = int(_get(config, 'grad_accum_steps', 1))
  if k < 1:
    raise ValueError(f'grad_accum_steps must be >= 1, got {k}')
  grads, batch_stats, loss, accuracy, top5 = _grads_and_metrics(
    model, state, images, labels, targets, keys['dropout'], k
  )
  updates, opt_state = tx.update(grads, state.opt_state, state.params)
  params = optax.apply_updates(state.params, updates)

  ema_decay = float(_get(config, 'ema_decay', 0.0))
  ema_params, ema_batch_stats = state.ema_params, state.ema_batch_stats
  if (ema_params is not None) != (ema_decay > 0):
    raise ValueError(
      f'config.ema_decay={ema_decay} but the state was created with '
      f'ema={ema_params is not None}'
    )
  if ema_params is not None:
    if not 0 < ema_decay < 1:
      raise ValueError(f'ema_decay must be in (0, 1), got {ema_decay}')
    ema_params = _ema(ema_decay, ema_params, params)
    ema_batch_stats = _ema(ema_decay, ema_batch_stats, batch_stats)

  new_state = state.replace(
    step=state.step + 1,
    params=params,
    batch_stats=batch_stats,
    opt_state=opt_state,
    ema_params=ema_params,
    ema_batch_stats=ema_batch_stats,
  )
  f32 = lambda x: jnp.asarray(x, jnp.float32)
  metrics = {
    'loss': f32(loss),
    'accuracy': f32(accuracy),
    'lr': f32(schedule(state.step)),
    'l2_grads': f32(optax.tree.norm(grads)),
    'l2_params': f32(optax.tree.norm(params)),
    'l2_updates': f32(optax.tree.norm(updates)),
  }
  if num_classes > 10:
    metrics['top5_accuracy'] = f32(top5)
  return new_state, metrics


def eval_step(
  state: TrainState,
  batch: dict[str, jax.Array],
  *,
  model: Any,
  use_ema: bool = False,
) -> dict[str, jax.Array]:
  """Mask-weighted sums over one eval batch.

  Args:
    state: the state.
    batch: {'image', 'label', optional 'mask' [B] (1 real, 0 padding)}.
    model: the Flax module.
    use_ema: evaluate the EMA weights and statistics instead.

  Returns:
    float32 scalars 'loss_sum', 'correct', 'correct_top5', 'count'; add
    them over batches and call `finalize_eval`.
  """
  if use_ema and state.ema_params is None:
    raise ValueError('use_ema=True but the state has no EMA (ema_decay=0)')
  params = state.ema_params if use_ema else state.params
  batch_stats = state.ema_batch_stats if use_ema else state.batch_stats
  images = jnp.asarray(batch['image'], jnp.float32)
  labels = batch['label']
  logits = model.apply(_variables(params, batch_stats), images, train=False)
  logits = logits.astype(jnp.float32)
  mask = batch.get('mask')
  mask = jnp.ones(labels.shape, jnp.float32) if mask is None else mask
  real = mask.astype(jnp.float32) > 0
  loss = losses.softmax_cross_entropy_with_integer_labels(
    logits=logits, labels=labels
  )
  correct = (jnp.argmax(logits, -1) == labels).astype(jnp.float32)
  masked_sum = lambda v: jnp.sum(jnp.where(real, v, 0.0), dtype=jnp.float32)
  return {
    'loss_sum': masked_sum(loss.astype(jnp.float32)),
    'correct': masked_sum(correct),
    'correct_top5': masked_sum(_topk_correct(logits, labels, 5)),
    'count': masked_sum(jnp.ones_like(correct)),
  }


def add_eval_sums(
  total: dict[str, Any] | None, sums: dict[str, Any]
) -> dict[str, Any]:
  """Adds one batch's `eval_step` sums to a running total (None = start)."""
  if total is None:
    return dict(sums)
  return {name: total[name] + sums[name] for name in sums}


def finalize_eval(sums: dict[str, Any]) -> dict[str, float]:
  """Turns summed eval outputs into means: 'loss', 'accuracy', 'top5_accuracy'.

  Raises:
    ValueError: if no example was counted.
  """
  count = float(sums['count'])
  if count <= 0:
    raise ValueError('finalize_eval: no examples were evaluated (count 0)')
  return {
    'loss': float(sums['loss_sum']) / count,
    'accuracy': float(sums['correct']) / count,
    'top5_accuracy': float(sums['correct_top5']) / count,
  }


def _check_batch_then(jitted, mesh: jax.sharding.Mesh):
  """Wraps `jitted` with a batch-size check that names both numbers.

  Without it jax would fail with a less direct sharding error. The wrapper
  keeps `lower` and exposes the jitted function as `.jitted`.
  """

  @functools.wraps(jitted)
  def checked(state, batch, *args):
    size = jax.tree.leaves(batch)[0].shape[0]
    sharding_lib.check_global_batch(size, mesh)
    return jitted(state, batch, *args)

  checked.jitted = jitted
  checked.lower = jitted.lower
  return checked


def make_train_step(
  model: Any,
  tx: optax.GradientTransformation,
  schedule: optax.Schedule,
  config: Any,
  mesh: jax.sharding.Mesh,
):
  """Jitted `(state, batch, loop_key) -> (state, metrics)` for `mesh`.

  Batch sharded on P('data'), state, key and metrics replicated; the input
  state is donated (do not use it after the call). A global batch size not
  divisible by the number of devices raises ValueError before the call.
  """
  step = functools.partial(
    train_step, model=model, tx=tx, schedule=schedule, config=config
  )
  repl = sharding_lib.replicated_sharding(mesh)
  data = sharding_lib.batch_sharding(mesh)
  jitted = jax.jit(
    step,
    in_shardings=(repl, data, repl),
    out_shardings=(repl, repl),
    donate_argnums=(0,),
  )
  return _check_batch_then(jitted, mesh)


def make_eval_step(
  model: Any, mesh: jax.sharding.Mesh, *, use_ema: bool = False
):
  """Jitted `(state, batch) -> sums` (see `eval_step`) for `mesh`.

  The batch is sharded on P('data'), the state and the sums replicated;
  the state is not donated.
  """
  step = functools.partial(eval_step, model=model, use_ema=use_ema)
  repl = sharding_lib.replicated_sharding(mesh)
  jitted = jax.jit(
    step,
    in_shardings=(repl, sharding_lib.batch_sharding(mesh)),
    out_shardings=repl,
  )
  return _check_batch_then(jitted, mesh)
