"""Helpers shared by the tests of nets/: cheap variables, keys, counts.

Import as `from tests.nets import nets_testing` (pytest runs with
`--import-mode=importlib` and the repository root on `pythonpath`).
"""

import math

import chex
import jax
import jax.numpy as jnp
import numpy as np


def count(tree) -> int:
  """Number of scalars in the leaves of `tree` (arrays or shape structs)."""
  return sum(math.prod(x.shape) for x in jax.tree.leaves(tree))


def fake_variables(model, x, *, seed=0, **init_kwargs):
  """Variables for `model` on `x` drawn with numpy (He normal kernels).

  Compiling the threefry PRNG of `model.init` takes seconds per kernel shape
  on a busy CPU, so tests fill the traced variable shapes with numpy draws;
  dropout keys use the cheap 'rbg' implementation (`key`) for the same
  reason. Kernels are He normal, `scale` and `var` ones, the rest zeros.

  Args:
    model: a Flax module.
    x: an example input (array or `jax.ShapeDtypeStruct`).
    seed: seed of the numpy generator.
    **init_kwargs: passed to `model.init` (e.g. `train=False`).

  Returns:
    A variables tree with the structure, shapes and dtypes of the init's.
  """
  struct = jax.eval_shape(
    lambda x: model.init({'params': jax.random.key(0)}, x, **init_kwargs), x
  )
  rng = np.random.default_rng(seed)

  def fill(path, leaf):
    name = path[-1].key
    if name == 'kernel':
      std = math.sqrt(2.0 / math.prod(leaf.shape[:-1]))
      return jnp.asarray(std * rng.standard_normal(leaf.shape), leaf.dtype)
    if name in ('scale', 'var'):
      return jnp.ones(leaf.shape, leaf.dtype)
    return jnp.zeros(leaf.shape, leaf.dtype)

  return jax.tree_util.tree_map_with_path(fill, struct)


def trace(model, x_shape, **init_kwargs):
  """(param count, output struct) by tracing init and apply; no compile."""
  x = jax.ShapeDtypeStruct(x_shape, jnp.float32)
  variables = jax.eval_shape(
    lambda x: model.init({'params': jax.random.key(0)}, x, **init_kwargs), x
  )
  out = jax.eval_shape(lambda v, x: model.apply(v, x), variables, x)
  return count(variables['params']), out


def normal(shape, seed):
  """Standard normal float32 array drawn with numpy."""
  return jnp.asarray(
    np.random.default_rng(seed).normal(size=shape), jnp.float32
  )


def key(seed):
  """A cheap 'rbg' PRNG key (no threefry compile)."""
  return jax.random.key(seed, impl='rbg')


def assert_every_var_updated(variables, state):
  """Every running variance moved (a mean may stay ~0: a BN fed by a linear
  map of normalised activations sees a zero batch mean)."""
  old = jax.tree_util.tree_flatten_with_path(variables['batch_stats'])[0]
  new = jax.tree.leaves(state['batch_stats'])
  moved = [
    not np.allclose(a, b)
    for (path, a), b in zip(old, new, strict=True)
    if path[-1].key == 'var'
  ]
  assert moved and all(moved)


def check_train_eval(model, x, num_classes, *, dropout=True):
  """The contract of every model, checked on a small input.

  Eval is deterministic, finite and of shape `[B, num_classes]`; train mode
  draws its randomness from the 'dropout' stream (outputs differ between
  keys when `dropout`); BatchNorm statistics change in train mode only
  (every running variance moves) and models without BatchNorm have no
  'batch_stats'.

  Returns:
    `(variables, eval_output)`.
  """
  variables = fake_variables(model, x, train=False)
  evaluate = jax.jit(
    lambda v, x: model.apply(v, x, train=False, mutable=['batch_stats'])
  )
  train = jax.jit(
    lambda v, x, k: model.apply(
      v, x, train=True, rngs={'dropout': k}, mutable=['batch_stats']
    )
  )
  y1, eval_state = evaluate(variables, x)
  y2, _ = evaluate(variables, x)
  chex.assert_shape(y1, (x.shape[0], num_classes))
  chex.assert_tree_all_finite(y1)
  np.testing.assert_array_equal(y1, y2)
  t1, state = train(variables, x, key(1))
  t2, _ = train(variables, x, key(2))
  chex.assert_shape(t1, (x.shape[0], num_classes))
  chex.assert_tree_all_finite(t1)
  if dropout:
    assert not np.allclose(t1, t2)
  else:
    np.testing.assert_array_equal(t1, t2)
  if 'batch_stats' in variables:
    chex.assert_trees_all_equal(
      eval_state['batch_stats'], variables['batch_stats']
    )
    assert_every_var_updated(variables, state)
  else:
    assert not state
  return variables, y1
