"""Tests for nets/norms.py: BatchNorm, GroupNorm, LayerNorm, norms by name.

References: the formulas of the papers written out in numpy (Ioffe & Szegedy
2015, Wu & He 2018, Ba et al. 2016) and hand-computed running averages.
"""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nets import norms
from tests.nets import nets_testing

KEY = nets_testing.key(0)


def _rand(shape, seed=1):
  return nets_testing.normal(shape, seed)


def test_batch_norm_train_uses_batch_stats_and_updates_running():
  x = 3.0 * _rand((8, 4, 4, 2)) + 1.0
  bn = norms.BatchNorm()
  v = bn.init(KEY, x, train=True)
  # Initialisation must not move the running statistics.
  np.testing.assert_array_equal(v['batch_stats']['mean'], 0.0)
  np.testing.assert_array_equal(v['batch_stats']['var'], 1.0)
  y, upd = bn.apply(v, x, train=True, mutable=['batch_stats'])
  y = np.asarray(y)
  np.testing.assert_allclose(y.mean(axis=(0, 1, 2)), 0.0, atol=1e-5)
  np.testing.assert_allclose(y.var(axis=(0, 1, 2)), 1.0, atol=1e-3)
  xn = np.asarray(x)
  mean, var = xn.mean(axis=(0, 1, 2)), xn.var(axis=(0, 1, 2))
  stats = upd['batch_stats']
  np.testing.assert_allclose(stats['mean'], 0.1 * mean, rtol=1e-5)
  np.testing.assert_allclose(stats['var'], 0.9 + 0.1 * var, rtol=1e-5)


def test_batch_norm_eval_uses_running_stats_and_changes_nothing():
  x = _rand((4, 3, 3, 2))
  bn = norms.BatchNorm(epsilon=1e-5)
  v = bn.init(KEY, x, train=False)
  stats = {'mean': jnp.array([1.0, -1.0]), 'var': jnp.array([4.0, 0.25])}
  v = {'params': v['params'], 'batch_stats': stats}
  y, upd = bn.apply(v, x, train=False, mutable=['batch_stats'])
  want = (x - stats['mean']) / jnp.sqrt(stats['var'] + 1e-5)
  np.testing.assert_allclose(y, want, rtol=1e-5, atol=1e-6)
  chex.assert_trees_all_equal(upd['batch_stats'], stats)
  # train=True with an immutable collection normalises but cannot update.
  y_train = bn.apply(v, x, train=True)
  np.testing.assert_allclose(np.asarray(y_train).mean(), 0.0, atol=1e-5)


def test_batch_norm_bfloat16_keeps_float32_stats():
  x = _rand((4, 2, 2, 3)).astype(jnp.bfloat16)
  bn = norms.BatchNorm(dtype=jnp.bfloat16)
  v = bn.init(KEY, x, train=False)
  y, upd = bn.apply(v, x, train=True, mutable=['batch_stats'])
  assert y.dtype == jnp.bfloat16
  assert upd['batch_stats']['mean'].dtype == jnp.float32
  assert v['params']['scale'].dtype == jnp.float32


def test_group_and_layer_norm_match_numpy():
  x = np.asarray(_rand((2, 3, 3, 4)))
  gn = norms.GroupNorm(num_groups=2, epsilon=1e-5)
  v = gn.init(KEY, x)
  g = x.reshape(2, 3, 3, 2, 2)
  mean = g.mean(axis=(1, 2, 4), keepdims=True)
  var = g.var(axis=(1, 2, 4), keepdims=True)
  want = ((g - mean) / np.sqrt(var + 1e-5)).reshape(x.shape)
  np.testing.assert_allclose(gn.apply(v, x), want, rtol=1e-4, atol=1e-5)
  ln = norms.LayerNorm(epsilon=1e-6)
  v = ln.init(KEY, x)
  mean, var = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
  want = (x - mean) / np.sqrt(var + 1e-6)
  np.testing.assert_allclose(ln.apply(v, x), want, rtol=1e-4, atol=1e-5)


def test_norms_by_name_have_flat_paths_and_fit_groups():
  # A named norm is a constructor whose variables sit directly in the
  # module, as those of the BatchNorm / GroupNorm it builds.
  x = _rand((2, 4, 4, 24))
  v_batch = norms.by_name('batch')().init(KEY, x, train=False)
  v_bn = norms.BatchNorm().init(KEY, x, train=False)
  chex.assert_trees_all_equal_structs(v_batch, v_bn)
  assert set(v_batch['batch_stats']) == {'mean', 'var'}
  group = norms.by_name('group')()
  v_group = group.init(KEY, x, train=True)
  assert set(v_group) == {'params'}
  assert set(v_group['params']) == {'scale', 'bias'}
  # 24 channels do not split into 32 groups: gcd(32, 24) = 8 groups.
  y = group.apply(v_group, x, train=True)
  y_ref = norms.GroupNorm(num_groups=8).apply(v_group, x)
  np.testing.assert_allclose(y, y_ref)
  with pytest.raises(ValueError, match='num_groups'):
    norms.GroupNorm(num_groups=32).init(KEY, x)
  y16 = norms.by_name('group', jnp.bfloat16)().apply(v_group, x)
  assert y16.dtype == jnp.bfloat16
  with pytest.raises(ValueError, match='norm'):
    norms.by_name('instance')
  assert sorted(norms.NORMS) == ['batch', 'group', 'none']
  x_none = norms.by_name('none')().apply({}, x, train=True)
  np.testing.assert_array_equal(x_none, x)


@pytest.mark.slow
def test_batch_norm_group_size_uses_per_group_statistics():
  # Wu & He's per-device BN: 6 examples in groups of 2, each group
  # normalised with its own per-channel mean and (biased) variance.
  x = np.asarray(3.0 * _rand((6, 2, 2, 3)) + 1.0)
  bn = norms.by_name('batch:2')()
  v = bn.init(KEY, x, train=False)
  y, upd = bn.apply(v, x, train=True, mutable=['batch_stats'])
  means, variances = [], []
  for i in range(0, 6, 2):
    group = x[i : i + 2]
    mean, var = group.mean(axis=(0, 1, 2)), group.var(axis=(0, 1, 2))
    want = (group - mean) / np.sqrt(var + 1e-5)
    np.testing.assert_allclose(y[i : i + 2], want, rtol=1e-4, atol=1e-5)
    means.append(mean)
    variances.append(var)
  # Running averages: from the mean over the three groups' statistics.
  stats = upd['batch_stats']
  np.testing.assert_allclose(stats['mean'], 0.1 * np.mean(means, 0), 1e-5)
  np.testing.assert_allclose(
    stats['var'], 0.9 + 0.1 * np.mean(variances, 0), rtol=1e-5
  )
  # One group of the whole batch is ordinary BN; evaluation is unchanged.
  whole = norms.BatchNorm(group_size=6)
  plain = norms.BatchNorm()
  np.testing.assert_allclose(
    whole.apply(v, x, train=True), plain.apply(v, x, train=True), atol=1e-5
  )
  np.testing.assert_array_equal(
    bn.apply(v, x, train=False), plain.apply(v, x, train=False)
  )
  with pytest.raises(ValueError, match='divide the batch'):
    norms.BatchNorm(group_size=4).apply(v, x, train=True)
  with pytest.raises(ValueError, match='batch:G'):
    norms.by_name('batch:two')


def test_group_norm_by_name_takes_the_most_groups():
  x = _rand((2, 3, 8))
  gn = norms.by_name('group:4')()
  v = gn.init(KEY, x)
  want = norms.GroupNorm(num_groups=4).apply(v, x)
  np.testing.assert_array_equal(gn.apply(v, x), want)
  # 8 channels do not split into 16 groups: gcd(16, 8) = 8 groups.
  y8 = norms.GroupNorm(num_groups=8).apply(v, x)
  np.testing.assert_array_equal(norms.by_name('group:16')().apply(v, x), y8)


@pytest.mark.slow
@pytest.mark.parametrize('dtype', [None, jnp.bfloat16])
def test_batch_norm_train_gradients_match_autodiff_of_the_formula(dtype):
  # BatchNorm's training path has a hand-written gradient
  # (ops.normalization.batch_norm_train); the reference is jax.grad of the
  # paper's formula written out here.
  x = 2.0 * _rand((6, 3, 3, 4)) + 0.5
  ct = _rand((6, 3, 3, 4), seed=2)
  bn = norms.BatchNorm(dtype=dtype)
  v = bn.init(KEY, x, train=False)
  v['params'] = {'scale': jnp.arange(1.0, 5.0), 'bias': jnp.arange(4.0)}

  def layer(x, params):
    y, upd = bn.apply(
      {'params': params, 'batch_stats': v['batch_stats']},
      x,
      train=True,
      mutable=['batch_stats'],
    )
    return jnp.sum(y.astype(jnp.float32) * ct), upd

  def formula(x, params):
    mean = jnp.mean(x, axis=(0, 1, 2))
    var = jnp.var(x, axis=(0, 1, 2))
    y = (x - mean) / jnp.sqrt(var + 1e-5) * params['scale'] + params['bias']
    return jnp.sum(y * ct)

  (_, upd), got = jax.value_and_grad(layer, (0, 1), has_aux=True)(
    x, v['params']
  )
  want = jax.grad(formula, (0, 1))(x, v['params'])
  tol = 1e-4 if dtype is None else 5e-2
  chex.assert_trees_all_close(got, want, atol=tol * 10, rtol=tol)
  np.testing.assert_allclose(
    upd['batch_stats']['var'],
    0.9 + 0.1 * np.var(np.asarray(x), axis=(0, 1, 2)),
    rtol=1e-5,
  )
