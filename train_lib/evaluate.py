"""Evaluation: loss and top-1 / top-5 accuracy over a whole split.

`eval_step` computes mask-weighted sums over one global batch (the last,
partial batch is padded and its padding masked out, so every example counts
exactly once); `evaluate` adds them over the split and divides. The EMA
weights (train_lib.state) are evaluated by a second step with `use_ema`.
"""

import functools
import time
from typing import Any

import jax
import jax.numpy as jnp

from ops import losses
from train_lib import sharding as sharding_lib
from train_lib.state import TrainState
from train_lib.step import variables


def eval_step(
  state: TrainState,
  batch: dict[str, jax.Array],
  *,
  model: Any,
  use_ema: bool = False,
) -> dict[str, jax.Array]:
  """Sums over one eval batch {'image', 'label', optional 'mask' [B]}.

  The mask is 1 for real examples and 0 for padding. Returns float32
  scalars 'loss_sum', 'correct', 'correct_top5' and 'count'; add them over
  batches (`add_eval_sums`) and call `finalize_eval`. With `use_ema` the
  moving averages of the weights and statistics are evaluated.
  """
  if use_ema and state.ema_params is None:
    raise ValueError('use_ema=True but the state has no EMA (ema_decay=0)')
  params = state.ema_params if use_ema else state.params
  batch_stats = state.ema_batch_stats if use_ema else state.batch_stats
  labels = batch['label']
  images = batch['image'].astype(jnp.float32)
  logits = model.apply(variables(params, batch_stats), images, train=False)
  logits = logits.astype(jnp.float32)
  real = batch.get('mask', jnp.ones(labels.shape)) > 0
  masked_sum = lambda v: jnp.sum(jnp.where(real, v, 0.0), dtype=jnp.float32)
  k = min(5, logits.shape[-1])
  return {
    'loss_sum': masked_sum(
      losses.softmax_cross_entropy_with_integer_labels(
        logits=logits, labels=labels
      )
    ),
    'correct': masked_sum(jnp.argmax(logits, -1) == labels),
    'correct_top5': masked_sum(losses.topk_correct(logits, labels, k)),
    'count': masked_sum(jnp.ones(labels.shape)),
  }


def add_eval_sums(total: dict | None, sums: dict) -> dict:
  """Adds one batch's `eval_step` sums to a running total (None = start)."""
  if total is None:
    return dict(sums)
  return {name: total[name] + sums[name] for name in sums}


def finalize_eval(sums: dict[str, Any]) -> dict[str, float]:
  """Summed eval outputs -> means 'loss', 'accuracy', 'top5_accuracy'."""
  count = float(sums['count'])
  if count <= 0:
    raise ValueError('finalize_eval: no examples were evaluated (count 0)')
  return {
    'loss': float(sums['loss_sum']) / count,
    'accuracy': float(sums['correct']) / count,
    'top5_accuracy': float(sums['correct_top5']) / count,
  }


def make_eval_step(model, mesh: jax.sharding.Mesh, *, use_ema: bool = False):
  """Jitted `(state, batch) -> sums` (see `eval_step`) for `mesh`."""
  step = functools.partial(eval_step, model=model, use_ema=use_ema)
  return sharding_lib.jit_sharded(step, mesh, num_args=2, donate_state=False)


def evaluate(
  state: TrainState,
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
    dataset: the `Dataset` (train_lib.data).
    batch_size: global eval batch size.
    mesh: the device mesh.

  Returns:
    `loss`, `accuracy` (+ `top5_accuracy` for more than 10 classes), the
    same with an `ema_` prefix when EMA is on, `eval_time_s`, and
    `eval_split`, the split measured ('test' or 'validation').
  """
  start = time.perf_counter()
  totals = dict.fromkeys(eval_fns)
  batches = dataset.eval_batches(
    batch_size=batch_size, sharding=sharding_lib.batch_sharding(mesh)
  )
  for batch in batches:
    for prefix, fn in eval_fns.items():
      totals[prefix] = add_eval_sums(totals[prefix], fn(state, batch))
  results = {}
  for prefix, sums in totals.items():
    means = finalize_eval(jax.device_get(sums))
    if dataset.num_classes <= 10:
      means.pop('top5_accuracy')
    results.update({prefix + k: v for k, v in means.items()})
  results['eval_time_s'] = time.perf_counter() - start
  # 'test', or 'validation' for a split carved out of the training data.
  results['eval_split'] = getattr(dataset, 'eval_split', 'test')
  return results
