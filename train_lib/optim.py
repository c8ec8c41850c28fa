"""Optimizers as optax chains built from the flat training config.

Update rules (g: gradient, eta_t: scheduled learning rate, lambda: weight
decay, p: parameter), one optax transformation per line of the chain:

  1. clip_by_global_norm(grad_clip_norm)       g <- g * min(1, c / ||g||)
  2. L2 mode only: add_decayed_weights         g <- g + lambda p
  3. the optimizer's scaling:
     'sgd'       u = g
     'momentum'  v <- mu v + g;  u = v                     (PyTorch form)
     'nesterov'  v <- mu v + g;  u = g + mu v              (Sutskever 2013)
     'adam'/'adamw'  m <- b1 m + (1-b1) g; s <- b2 s + (1-b2) g^2;
                 u = m_hat / (sqrt(s_hat) + eps), hats = bias-corrected
                 (Kingma & Ba 2015)
  4. decoupled mode only: add_decayed_weights  u <- u + lambda p
     (Loshchilov & Hutter 2019, "Decoupled Weight Decay Regularization";
     as in optax.adamw the decay is scaled by eta_t)
  5. scale_by_learning_rate(schedule)          p <- p - eta_t u

'adamw' is Adam with decoupled decay; asking for it with weight_decay_mode
'l2' is a contradiction and raises. With `decay_all_params` False (default)
weight decay skips parameters with ndim <= 1 (biases, norm scales/offsets).

Gradient accumulation (`grad_accum_steps`) is NOT part of this chain: the
train step (train_lib/step.py) splits each global batch into micro-batches
and averages their gradients, so one call = one optimizer update and
`state.step` stays equal to the optax schedule count.
"""

from typing import Any

import jax
import optax

from train_lib import schedules

OPTIMIZERS = ('sgd', 'momentum', 'nesterov', 'adam', 'adamw')
WEIGHT_DECAY_MODES = ('decoupled', 'l2')


def decay_mask(params: Any) -> Any:
  """Pytree of bools: True for weights with ndim > 1 (kernels, embeddings)."""
  return jax.tree.map(lambda p: p.ndim > 1, params)


def _scaling(name: str, kw: Any) -> optax.GradientTransformation:
  """The optimizer's own preconditioning/momentum step (no learning rate)."""
  if name == 'sgd':
    return optax.identity()
  if name in ('momentum', 'nesterov'):
    return optax.trace(decay=kw.momentum, nesterov=name == 'nesterov')
  return optax.scale_by_adam(b1=kw.b1, b2=kw.b2, eps=kw.eps)


def build_optimizer(
  config: Any, schedule: optax.Schedule
) -> optax.GradientTransformation:
  """Builds the optax chain for `config.optimizer` with a given schedule.

  Config keys read: optimizer, optimizer_kw (momentum, b1, b2, eps),
  weight_decay, weight_decay_mode, decay_all_params, grad_clip_norm; their
  meanings and defaults are in experiments/configs/common.py.

  Args:
    config: the run's ConfigDict.
    schedule: step -> learning rate.

  Returns:
    The gradient transformation (its `update` needs `params`).

  Raises:
    ValueError: unknown optimizer / weight-decay mode, negative values.
  """
  name = config.optimizer
  if name not in OPTIMIZERS:
    raise ValueError(
      f'Unknown optimizer {name!r}; choose one of {", ".join(OPTIMIZERS)}'
    )
  weight_decay = config.weight_decay
  mode = config.weight_decay_mode
  if mode not in WEIGHT_DECAY_MODES:
    raise ValueError(
      f'Unknown weight_decay_mode {mode!r}; choose one of '
      f'{", ".join(WEIGHT_DECAY_MODES)}'
    )
  if name == 'adamw' and mode == 'l2' and weight_decay > 0:
    raise ValueError(
      "optimizer 'adamw' means decoupled weight decay; use "
      "weight_decay_mode='decoupled' (or optimizer 'adam' for L2)"
    )
  if weight_decay < 0:
    raise ValueError(f'weight_decay must be >= 0, got {weight_decay}')
  clip = config.grad_clip_norm
  if clip < 0:
    raise ValueError(f'grad_clip_norm must be >= 0 (0 = off), got {clip}')
  mask = None if config.decay_all_params else decay_mask

  chain = []
  if clip > 0:
    chain.append(optax.clip_by_global_norm(clip))
  if weight_decay > 0 and mode == 'l2':
    chain.append(optax.add_decayed_weights(weight_decay, mask=mask))
  chain.append(_scaling(name, config.optimizer_kw))
  if weight_decay > 0 and mode == 'decoupled':
    chain.append(optax.add_decayed_weights(weight_decay, mask=mask))
  chain.append(optax.scale_by_learning_rate(schedule))
  return optax.chain(*chain)


def create_optimizer(
  config: Any,
) -> tuple[optax.GradientTransformation, optax.Schedule]:
  """Returns (tx, schedule) for the config (see `build_optimizer`)."""
  schedule = schedules.create_schedule(config)
  return build_optimizer(config, schedule), schedule
