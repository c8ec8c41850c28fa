"""Learning-rate schedules built from the flat training config.

Implements the 'Learning Rates' part of the lecture notes (seed 002): step
decay, exponential decay and the cosine scheduler

  eta_t = eta_T + (eta_0 - eta_T) / 2 * (1 + cos(pi t / T)),

each optionally preceded by a linear warmup from 0 to eta_0 ("choose a
sufficiently small learning rate to prevent divergence in the beginning";
Goyal et al. 2017, "Accurate, Large Minibatch SGD").

Conventions (all steps are optimizer updates, counted from 0):
- Warmup: eta_t = eta_0 * t / W for t < W (so eta_0 = 0 at t = 0 and the
  ramp reaches eta_0 at t = W).
- 'cosine' and 'exponential' and 'step' with `schedule_kw.every_steps`
  measure time after warmup, t' = t - W; cosine reaches eta_T at
  t' = T = total_steps - W and stays there.
- 'step' with `schedule_kw.boundaries` uses absolute step numbers, as papers
  state them ("divide by 10 at 32k and 48k iterations"): eta_t = eta_0 *
  decay_factor ** #{b : t >= b}.
- 'exponential' is continuous: eta_t = eta_0 * decay_factor ** (t' /
  decay_steps).

A schedule is a pure jnp function of the step, usable inside jit and by
`optax.scale_by_learning_rate`.
"""

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import optax

SCHEDULES = ('constant', 'step', 'exponential', 'cosine')


def constant(lr: float) -> optax.Schedule:
  """Returns t -> lr."""
  return lambda step: jnp.full(jnp.shape(step), lr, jnp.float32)


def step_decay(
  lr: float,
  *,
  decay_factor: float,
  boundaries: Sequence[int] = (),
  every_steps: int = 0,
  offset: int = 0,
) -> optax.Schedule:
  """Piecewise-constant decay: multiply by `decay_factor` at each boundary.

  Args:
    lr: initial learning rate eta_0.
    decay_factor: multiplier applied at each decay (e.g. 0.1).
    boundaries: absolute steps at which to decay; if empty, decay every
      `every_steps` steps counted from `offset`.
    every_steps: decay period used when `boundaries` is empty.
    offset: start of the periodic decays (the warmup length).

  Returns:
    The schedule.
  """
  boundaries = tuple(int(b) for b in boundaries)
  if boundaries:
    if any(b < 0 for b in boundaries) or list(boundaries) != sorted(boundaries):
      raise ValueError(
        'schedule_kw.boundaries must be non-negative and increasing, got '
        f'{boundaries}'
      )
  elif every_steps <= 0:
    raise ValueError(
      'schedule "step" needs schedule_kw.boundaries or '
      f'schedule_kw.every_steps > 0, got every_steps={every_steps}'
    )

  def schedule(step: jax.typing.ArrayLike) -> jax.Array:
    t = jnp.asarray(step, jnp.float32)
    if boundaries:
      count = sum((t >= b).astype(jnp.float32) for b in boundaries)
    else:
      count = jnp.floor(jnp.maximum(t - offset, 0.0) / every_steps)
    return lr * jnp.power(jnp.float32(decay_factor), count)

  return schedule


def exponential_decay(
  lr: float, *, decay_factor: float, decay_steps: int, offset: int = 0
) -> optax.Schedule:
  """Returns t -> lr * decay_factor ** (max(t - offset, 0) / decay_steps)."""
  if decay_steps <= 0:
    raise ValueError(f'decay_steps must be positive, got {decay_steps}')

  def schedule(step: jax.typing.ArrayLike) -> jax.Array:
    t = jnp.maximum(jnp.asarray(step, jnp.float32) - offset, 0.0)
    return lr * jnp.power(jnp.float32(decay_factor), t / decay_steps)

  return schedule


def cosine_decay(
  lr: float, *, lr_end: float, decay_steps: int, offset: int = 0
) -> optax.Schedule:
  """Cosine from `lr` at t = offset to `lr_end` at t = offset + decay_steps."""
  if decay_steps <= 0:
    raise ValueError(
      'cosine schedule needs total_steps > warmup_steps, got '
      f'{decay_steps} steps after warmup'
    )

  def schedule(step: jax.typing.ArrayLike) -> jax.Array:
    t = jnp.clip(jnp.asarray(step, jnp.float32) - offset, 0.0, decay_steps)
    cos = jnp.cos(jnp.pi * t / decay_steps)
    return lr_end + 0.5 * (lr - lr_end) * (1.0 + cos)

  return schedule


def with_warmup(
  schedule: optax.Schedule, *, lr: float, warmup_steps: int
) -> optax.Schedule:
  """Linear ramp 0 -> lr over `warmup_steps`, then `schedule`."""
  if warmup_steps < 0:
    raise ValueError(f'warmup_steps must be >= 0, got {warmup_steps}')
  if warmup_steps == 0:
    return schedule

  def warmed(step: jax.typing.ArrayLike) -> jax.Array:
    t = jnp.asarray(step, jnp.float32)
    ramp = lr * t / warmup_steps
    return jnp.where(t < warmup_steps, ramp, schedule(step))

  return warmed


def create_schedule(config: Any) -> optax.Schedule:
  """Builds the learning-rate schedule named by `config.schedule`.

  Config keys read: schedule, lr, warmup_steps, total_steps and
  schedule_kw (lr_end, boundaries, every_steps, decay_factor, decay_steps);
  their meanings and defaults are in experiments/configs/common.py.

  Args:
    config: the run's ConfigDict.

  Returns:
    A function step -> float32 learning rate.

  Raises:
    ValueError: unknown schedule name or inconsistent settings.
  """
  name, lr, warmup, kw = (
    config.schedule,
    config.lr,
    config.warmup_steps,
    config.schedule_kw,
  )
  if name == 'constant':
    base = constant(lr)
  elif name == 'step':
    base = step_decay(
      lr,
      decay_factor=kw.decay_factor,
      boundaries=tuple(kw.boundaries),
      every_steps=kw.every_steps,
      offset=warmup,
    )
  elif name == 'exponential':
    base = exponential_decay(
      lr,
      decay_factor=kw.decay_factor,
      decay_steps=kw.decay_steps,
      offset=warmup,
    )
  elif name == 'cosine':
    base = cosine_decay(
      lr,
      lr_end=kw.lr_end,
      decay_steps=config.total_steps - warmup,
      offset=warmup,
    )
  else:
    raise ValueError(
      f'Unknown schedule {name!r}; choose one of {", ".join(SCHEDULES)}'
    )
  return with_warmup(base, lr=lr, warmup_steps=warmup)
