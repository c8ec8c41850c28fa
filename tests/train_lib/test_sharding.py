"""Tests for train_lib/sharding.py and the sharded steps on 8 fake CPUs.

tests/conftest.py sets --xla_force_host_platform_device_count=8. The model
is a tiny Flax module defined here (BatchNorm + Dropout) so the test does
not depend on nets/.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax.sharding import PartitionSpec
import numpy as np
import pytest

from experiments.configs import common
from train_lib import evaluate
from train_lib import optim
from train_lib import sharding as sharding_lib
from train_lib import step
from train_lib.state import create_train_state


class TinyBN(nn.Module):
  """BatchNorm on the raw input first (so its statistics are checkable)."""

  num_classes: int = 3

  @nn.compact
  def __call__(self, x, train: bool):
    x = nn.BatchNorm(use_running_average=not train, momentum=0.9)(x)
    x = nn.relu(nn.Dense(8)(x))
    x = nn.Dropout(0.25, deterministic=not train)(x)
    return nn.Dense(self.num_classes)(x)


CONFIG = common.get_config()
CONFIG.update(optimizer='momentum', lr=0.1, schedule='constant')
CONFIG.weight_decay = 1e-3


def _batch(n=16, d=4, seed=0):
  rng = np.random.default_rng(seed)
  # Per-example offsets that differ between devices' shards, so local and
  # global BatchNorm statistics differ a lot.
  offsets = np.repeat(np.arange(8.0), n // 8)[:, None]
  return {
    'image': (rng.normal(size=(n, d)) + 3 * offsets).astype(np.float32),
    'label': rng.integers(0, 3, n).astype(np.int32),
  }


def _train(mesh, batch, steps):
  model = TinyBN()
  tx, schedule = optim.create_optimizer(CONFIG)
  repl = sharding_lib.replicated_sharding(mesh)
  state = create_train_state(
    model=model,
    tx=tx,
    init_key=jax.random.key(0),
    example_input=batch['image'][:1],
    ema=False,
    sharding=repl,
  )
  train_fn = step.make_train_step(model, tx, schedule, CONFIG, mesh)
  loop_key = jax.device_put(jax.random.key(7), repl)
  sharded = sharding_lib.shard_batch(batch, mesh)
  losses = []
  first_state = state
  for _ in range(steps):
    state, metrics = train_fn(state, sharded, loop_key)
    losses.append(float(metrics['loss']))
  return model, first_state, state, losses, sharded


def test_mesh_and_shardings():
  mesh = sharding_lib.make_mesh()
  assert mesh.axis_names == ('data',) and mesh.devices.size == 8
  assert sharding_lib.batch_sharding(mesh).spec == PartitionSpec('data')
  assert sharding_lib.replicated_sharding(mesh).spec == PartitionSpec()
  assert sharding_lib.make_mesh(jax.devices()[:1]).devices.size == 1
  with pytest.raises(ValueError):
    sharding_lib.make_mesh([])


def test_check_global_batch_names_both_numbers():
  mesh = sharding_lib.make_mesh()
  sharding_lib.check_global_batch(16, mesh)
  with pytest.raises(ValueError, match='12') as err:
    sharding_lib.check_global_batch(12, mesh)
  assert '8' in str(err.value)


@pytest.mark.slow
def test_one_and_eight_devices_agree_and_batchnorm_is_global():
  batch = _batch()
  mesh1 = sharding_lib.make_mesh(jax.devices()[:1])
  mesh8 = sharding_lib.make_mesh()
  _, first1, s1, l1, _ = _train(mesh1, batch, steps=2)
  model, first8, s8, l8, sharded = _train(mesh8, batch, steps=2)
  np.testing.assert_allclose(l1, l8, rtol=1e-5)
  jax.tree.map(
    lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6),
    (s1.params, s1.batch_stats),
    (s8.params, s8.batch_stats),
  )
  # The input state was donated.
  assert all(x.is_deleted() for x in jax.tree.leaves(first8.params))
  assert s8.params['Dense_0']['kernel'].sharding.is_fully_replicated
  # BatchNorm statistics over the global batch: running mean/var after two
  # steps with momentum 0.9 from (0, 1), biased variance as in flax.
  x = batch['image'].astype(np.float64)
  mean, var = x.mean(0), x.var(0)
  stats = s8.batch_stats['BatchNorm_0']
  np.testing.assert_allclose(stats['mean'], (1 - 0.81) * mean, rtol=1e-5)
  np.testing.assert_allclose(stats['var'], 0.81 + 0.19 * var, rtol=1e-5)
  # Sharded eval equals unsharded eval, padded rows excluded.
  mask = np.ones(16, np.float32)
  mask[-3:] = 0
  eval_batch = batch | {'mask': mask}
  eval_fn = evaluate.make_eval_step(model, mesh8)
  got = eval_fn(s8, sharding_lib.shard_batch(eval_batch, mesh8))
  want = evaluate.eval_step(
    jax.device_get(s8), jax.tree.map(jnp.asarray, eval_batch), model=model
  )
  assert float(got['count']) == 13.0
  jax.tree.map(
    lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5), got, want
  )


def test_uneven_batch_is_rejected_by_the_steps():
  mesh = sharding_lib.make_mesh()
  model = TinyBN()
  tx, schedule = optim.create_optimizer(CONFIG)
  bad = {k: v[:12] for k, v in _batch(n=16).items()}
  with pytest.raises(ValueError, match='12'):
    sharding_lib.shard_batch(bad, mesh)
  # The check runs before jax sees the arguments, so no state is needed.
  train_fn = step.make_train_step(model, tx, schedule, CONFIG, mesh)
  with pytest.raises(ValueError, match='batch size 12 .* devices 8'):
    train_fn(None, bad, jax.random.key(0))
  eval_fn = evaluate.make_eval_step(model, mesh)
  with pytest.raises(ValueError, match='batch size 12 .* devices 8'):
    eval_fn(None, bad)
