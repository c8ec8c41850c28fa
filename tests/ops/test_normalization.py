"""Tests for ops/normalization.py against the notes' BN algorithm in numpy."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ops import normalization
from ops.native import bn as native_bn
from train_lib import sharding


def _np_normalize(x, axes, eps):
  """The notes' algorithm: mean, biased variance, normalise (float64)."""
  x = np.asarray(x, np.float64)
  mu = x.mean(axis=axes, keepdims=True)
  var = ((x - mu) ** 2).mean(axis=axes, keepdims=True)
  return (x - mu) / np.sqrt(var + eps)


def _nhwc(seed=0, shape=(4, 5, 6, 8)):
  rng = np.random.default_rng(seed)
  return (rng.normal(size=shape) * 3.0 + 1.5).astype(np.float32)


def test_batch_norm_stats_shape_notes_example():
  # Notes: M=128 channels, D_F=64, |B|=32 -> mu, sigma^2 in R^128.
  x = jax.ShapeDtypeStruct((32, 64, 64, 128), jnp.float32)
  mean, var = jax.eval_shape(
    lambda a: normalization.batch_norm_stats(a, (0, 1, 2)), x
  )
  assert mean.shape == (128,) and var.shape == (128,)
  assert mean.dtype == jnp.float32 and var.dtype == jnp.float32


def test_batch_norm_stats_matches_numpy():
  x = _nhwc()
  mean, var = jax.jit(lambda a: normalization.batch_norm_stats(a, (0, 1, 2)))(x)
  x64 = x.astype(np.float64)
  np.testing.assert_allclose(mean, x64.mean(axis=(0, 1, 2)), rtol=1e-5)
  # Biased (1/m) variance, as in the notes' algorithm.
  np.testing.assert_allclose(var, x64.var(axis=(0, 1, 2), ddof=0), rtol=1e-5)


def test_batch_norm_matches_notes_algorithm():
  x = _nhwc(1)
  scale = np.linspace(0.5, 2.0, 8).astype(np.float32)
  bias = np.linspace(-1.0, 1.0, 8).astype(np.float32)

  @jax.jit
  def f(a):
    mean, var = normalization.batch_norm_stats(a, (0, 1, 2))
    return normalization.batch_norm(
      a, mean=mean, var=var, scale=scale, bias=bias, eps=1e-5
    )

  expected = _np_normalize(x, (0, 1, 2), 1e-5) * scale + bias
  np.testing.assert_allclose(f(x), expected, rtol=1e-4, atol=1e-5)


def test_batch_norm_output_zero_mean_unit_var():
  x = _nhwc(2)
  mean, var = normalization.batch_norm_stats(x, (0, 1, 2))
  y = normalization.batch_norm(x, mean=mean, var=var, eps=0.0)
  np.testing.assert_allclose(y.mean(axis=(0, 1, 2)), 0.0, atol=1e-5)
  np.testing.assert_allclose(y.var(axis=(0, 1, 2)), 1.0, rtol=1e-4)


def test_batch_norm_with_running_stats_hand_values():
  x = jnp.array([[1.0, 2.0], [3.0, 6.0]])
  y = normalization.batch_norm(
    x, mean=jnp.array([1.0, 2.0]), var=jnp.array([4.0, 16.0]), eps=0.0
  )
  np.testing.assert_allclose(y, [[0.0, 0.0], [1.0, 1.0]])


def test_batch_norm_large_mean_is_stable():
  # E[x^2] - E[x]^2 loses everything here in float32 (ulp of 1e8 is 8).
  rng = np.random.default_rng(3)
  noise = rng.normal(size=(64, 4, 4, 3))
  x = (1e4 + 1e-2 * noise).astype(np.float32)
  mean, var = normalization.batch_norm_stats(x, (0, 1, 2))
  x64 = x.astype(np.float64)
  np.testing.assert_allclose(var, x64.var(axis=(0, 1, 2)), rtol=1e-2)
  y = normalization.batch_norm(x, mean=mean, var=var, eps=0.0)
  np.testing.assert_allclose(np.var(y, axis=(0, 1, 2)), 1.0, rtol=2e-2)
  ln = normalization.layer_norm(x, axes=(1, 2, 3), eps=0.0)
  np.testing.assert_allclose(np.var(ln, axis=(1, 2, 3)), 1.0, rtol=2e-2)
  np.testing.assert_allclose(np.mean(ln, axis=(1, 2, 3)), 0.0, atol=1e-3)
  expected = _np_normalize(x, (1, 2, 3), 0.0)
  np.testing.assert_allclose(ln, expected, atol=2e-2)


def test_bfloat16_computed_in_float32_and_cast_back():
  x = _nhwc(4).astype(jnp.bfloat16)

  @jax.jit  # One compilation for the whole test.
  def run(x):
    mean, var = normalization.batch_norm_stats(x, (0, 1, 2))
    y = normalization.batch_norm(x, mean=mean, var=var)
    return mean, var, y, normalization.group_norm(x, num_groups=2)

  mean, var, y, g = run(x)
  assert mean.dtype == jnp.float32 and var.dtype == jnp.float32
  assert y.dtype == jnp.bfloat16
  expected = _np_normalize(np.asarray(x, np.float32), (0, 1, 2), 1e-5)
  np.testing.assert_allclose(
    np.asarray(y, np.float32), expected, rtol=2e-2, atol=2e-2
  )
  assert g.dtype == jnp.bfloat16


def test_update_running_hand_values():
  out = normalization.update_running(
    jnp.array([1.0, 0.0]), jnp.array([3.0, 10.0]), 0.9
  )
  np.testing.assert_allclose(out, [1.2, 1.0], rtol=1e-6)
  with pytest.raises(ValueError, match='momentum'):
    normalization.update_running(0.0, 1.0, 1.5)


def test_layer_norm_matches_numpy():
  x = _nhwc(5)
  scale = np.full((8,), 2.0, np.float32)
  bias = np.full((8,), 0.5, np.float32)
  y = jax.jit(
    lambda a: normalization.layer_norm(a, scale=scale, bias=bias, eps=1e-6)
  )(x)
  expected = _np_normalize(x, (-1,), 1e-6) * 2.0 + 0.5
  np.testing.assert_allclose(y, expected, rtol=1e-4, atol=1e-5)


def test_instance_norm_matches_numpy():
  x = _nhwc(6)
  y = normalization.instance_norm(x, eps=1e-5)
  np.testing.assert_allclose(
    y, _np_normalize(x, (1, 2), 1e-5), rtol=1e-4, atol=1e-5
  )
  with pytest.raises(ValueError, match='spatial'):
    normalization.instance_norm(jnp.ones((2, 3)))


def test_group_norm_matches_numpy_reference():
  x = _nhwc(7)
  scale = np.linspace(0.5, 1.5, 8).astype(np.float32)
  bias = np.arange(8, dtype=np.float32)
  y = jax.jit(
    lambda a: normalization.group_norm(a, num_groups=4, scale=scale, bias=bias)
  )(x)
  grouped = x.reshape(4, 5, 6, 4, 2)
  expected = _np_normalize(grouped, (1, 2, 4), 1e-5).reshape(x.shape)
  np.testing.assert_allclose(y, expected * scale + bias, rtol=1e-4, atol=1e-5)


def test_group_norm_limits_are_instance_and_layer_norm():
  x = _nhwc(8)
  groups_8, instance, groups_1, layer = jax.jit(
    lambda x: (
      normalization.group_norm(x, num_groups=8),
      normalization.instance_norm(x),
      normalization.group_norm(x, num_groups=1),
      normalization.layer_norm(x, axes=(1, 2, 3)),
    )
  )(x)
  chex.assert_trees_all_close(groups_8, instance, atol=1e-5)
  chex.assert_trees_all_close(groups_1, layer, atol=1e-5)


def test_group_norm_on_features_and_bad_groups():
  x = _nhwc(9, shape=(3, 6))
  y = normalization.group_norm(x, num_groups=2)
  expected = _np_normalize(x.reshape(3, 2, 3), (2,), 1e-5).reshape(3, 6)
  np.testing.assert_allclose(y, expected, rtol=1e-4, atol=1e-5)
  with pytest.raises(ValueError, match='num_groups=4'):
    normalization.group_norm(x, num_groups=4)
  with pytest.raises(ValueError, match='num_groups=0'):
    normalization.group_norm(x, num_groups=0)


def test_standardize_and_standardize_with():
  rng = np.random.default_rng(10)
  x = (rng.normal(size=(200, 3)) * [1.0, 5.0, 0.1] + [3.0, -2.0, 7.0]).astype(
    np.float32
  )
  z = jax.jit(normalization.standardize)(x)
  np.testing.assert_allclose(z.mean(axis=0), 0.0, atol=1e-5)
  np.testing.assert_allclose(z.std(axis=0), 1.0, rtol=1e-4)
  zw = normalization.standardize_with(x, x.mean(axis=0), x.std(axis=0))
  np.testing.assert_allclose(zw, z, rtol=1e-4, atol=1e-4)
  np.testing.assert_allclose(
    normalization.standardize_with(jnp.array([3.0, 5.0]), 1.0, 2.0), [1.0, 2.0]
  )


def test_constant_input_is_finite_and_errors():
  x = jnp.full((2, 3, 3, 4), 7.0)
  chex.assert_tree_all_finite(
    jax.jit(
      lambda x: (
        normalization.group_norm(x, num_groups=2),
        normalization.standardize(x),
      )
    )(x)
  )
  with pytest.raises(ValueError, match='axis 4'):
    normalization.batch_norm_stats(x, (0, 4))
  with pytest.raises(ValueError, match='eps'):
    normalization.layer_norm(x, eps=-1.0)


def test_batch_norm_stats_default_axes_and_int_input():
  # Default: all but the channel axis, for conv ([B, H, W, C]) and dense.
  x = _nhwc(11, shape=(5, 3))
  mean, var = normalization.batch_norm_stats(x)
  np.testing.assert_allclose(mean, x.astype(np.float64).mean(0), rtol=1e-5)
  np.testing.assert_allclose(var, x.astype(np.float64).var(0), rtol=1e-5)
  z = normalization.standardize(jnp.array([[1], [3]], jnp.int32))
  assert z.dtype == jnp.float32
  np.testing.assert_allclose(z, [[-1.0], [1.0]], rtol=1e-6)


def test_remaining_ops_under_jit_match_numpy():
  x = _nhwc(12, shape=(2, 3, 3, 4))
  mean, std = x.mean(axis=0), x.std(axis=0)

  @jax.jit
  def f(a):
    return (
      normalization.instance_norm(a, scale=2.0 * jnp.ones(4), bias=jnp.ones(4)),
      normalization.update_running(jnp.zeros(4), a[0, 0, 0], 0.75),
      normalization.standardize_with(a, mean, std),
    )

  inst, running, z = f(x)
  np.testing.assert_allclose(
    inst, 2.0 * _np_normalize(x, (1, 2), 1e-5) + 1.0, rtol=1e-4, atol=1e-5
  )
  np.testing.assert_allclose(running, 0.25 * x[0, 0, 0], rtol=1e-6)
  np.testing.assert_allclose(z, (x - mean) / std, rtol=1e-4, atol=1e-5)


# batch_norm_train: one op with a hand-written gradient. Its reference is
# the autodiff of batch_norm_stats + batch_norm (and float64 numpy).
def _reference_train(x, scale, bias, eps=1e-5, dtype=None):
  axes = tuple(range(x.ndim - 1))
  mean, var = normalization.batch_norm_stats(x, axes)
  x = x if dtype is None else x.astype(dtype)
  y = normalization.batch_norm(
    x, mean=mean, var=var, scale=scale, bias=bias, eps=eps
  )
  return y, mean, var


def _train_inputs(shape, dtype, seed=0):
  rng = np.random.default_rng(seed)
  c = shape[-1]
  x = jnp.asarray(rng.normal(size=shape) * 2.0 + 0.5, dtype)
  scale = jnp.asarray(rng.uniform(0.5, 1.5, c), jnp.float32)
  bias = jnp.asarray(rng.normal(size=c), jnp.float32)
  cts = (
    jnp.asarray(rng.normal(size=shape), dtype),
    jnp.asarray(rng.normal(size=c), jnp.float32),  # on the mean
    jnp.asarray(rng.normal(size=c), jnp.float32),  # on the variance
  )
  return x, scale, bias, cts


def _value_and_vjp(fn, x, scale, bias, cts):
  out, vjp = jax.vjp(fn, x, scale, bias)
  return out, vjp(cts)


_TRAIN_TOL = {jnp.float32: 2e-5, jnp.bfloat16: 2e-2}
# batch_norm_train's tests run on both paths: the XLA code and the native
# op (ops.native.bn; skipped where it cannot run), each against the same
# references and bounds.
_IMPLS = pytest.mark.parametrize('impl', ['xla', 'onednn'])


def _skip_unavailable(impl, dtype=jnp.float32):
  if impl == 'onednn' and not native_bn.available(dtype):
    pytest.skip(native_bn.unavailable_reason(dtype))


@_IMPLS
@pytest.mark.parametrize('dtype', [jnp.float32, jnp.bfloat16])
@pytest.mark.parametrize('shape', [(16, 5), (4, 5, 6, 8), (3, 2, 2, 2, 4)])
@pytest.mark.slow
def test_batch_norm_train_matches_autodiff_of_the_composite(shape, dtype, impl):
  _skip_unavailable(impl, dtype)
  x, scale, bias, cts = _train_inputs(shape, dtype)
  new = lambda x, s, b: normalization.batch_norm_train(
    x, scale=s, bias=b, impl=impl
  )
  got = jax.jit(lambda *a: _value_and_vjp(new, *a))(x, scale, bias, cts)
  want = jax.jit(lambda *a: _value_and_vjp(_reference_train, *a))(
    x, scale, bias, cts
  )
  assert got[0][0].dtype == dtype and got[1][0].dtype == dtype
  tol = _TRAIN_TOL[dtype]
  for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
    a, b = np.asarray(a, np.float32), np.asarray(b, np.float32)
    scale_ = max(1.0, float(np.max(np.abs(b))))
    np.testing.assert_allclose(a, b, atol=tol * scale_, rtol=0)
  y = np.asarray(got[0][0], np.float64)
  np.testing.assert_allclose(  # and the notes' algorithm in float64
    y,
    _np_normalize(x, tuple(range(x.ndim - 1)), 1e-5) * scale + bias,
    atol=2e-5 if dtype == jnp.float32 else 5e-2,
  )


@_IMPLS
@pytest.mark.slow
def test_batch_norm_train_check_grads_and_second_order(impl):
  _skip_unavailable(impl)
  x, scale, bias, _ = _train_inputs((4, 2, 2, 3), jnp.float32, seed=1)
  if jax.config.x64_enabled and impl == 'xla':
    x = x.astype(jnp.float64)

  def f(x, s, b):
    y, mean, var = normalization.batch_norm_train(x, scale=s, bias=b, impl=impl)
    return jnp.sum(jnp.sin(y)) + jnp.sum(mean * var)

  jax.test_util.check_grads(
    f, (x, scale, bias), order=2, modes=['rev'], atol=5e-2, rtol=5e-2
  )


@_IMPLS
@pytest.mark.slow
def test_batch_norm_train_vmap_and_dtype_and_errors(impl):
  _skip_unavailable(impl)
  x, scale, bias, cts = _train_inputs((3, 4, 2, 2, 5), jnp.float32, seed=2)
  f = lambda x: normalization.batch_norm_train(
    x, scale=scale, bias=bias, impl=impl
  )
  g = lambda x: jax.grad(lambda x: jnp.sum(f(x)[0] * cts[0][0]))(x)
  batched = jax.jit(jax.vmap(g))(x)
  for i in range(3):
    np.testing.assert_allclose(batched[i], g(x[i]), rtol=1e-5, atol=1e-6)
  y, mean, var = normalization.batch_norm_train(
    x[0], dtype=jnp.bfloat16, impl=impl
  )
  assert y.dtype == jnp.bfloat16 and mean.dtype == var.dtype == jnp.float32
  with pytest.raises(ValueError, match='eps'):
    normalization.batch_norm_train(x, eps=-1.0)


@_IMPLS
@pytest.mark.parametrize('delta', [0.0, 0.1], ids=['typical', 'atypical'])
def test_batch_norm_train_shifted_data_large_mean(delta, impl):
  _skip_unavailable(impl)
  # batch_norm_train shifts by K, the first example's mean. Its weak case is
  # a large common offset (1e4, where E[x^2] - E[x]^2 loses every digit)
  # and a first example far from the batch mean: delta = 0.1 is 10 standard
  # deviations, so kappa = (mean - K)^2 / var is about 38, not 0.01.
  rng = np.random.default_rng(3)
  x = 1e4 + 1e-2 * rng.normal(size=(64, 4, 4, 3))
  x[0] += delta
  x = x.astype(np.float32)
  axes, m = (0, 1, 2), 64 * 4 * 4
  x64 = x.astype(np.float64)  # the reference: two passes in float64
  mean64, var64 = x64.mean(axes), x64.var(axes)
  d = x64 - x64[0].mean((0, 1))  # x - K (exact in float32: Sterbenz)
  kappa = (mean64 - x64[0].mean((0, 1))) ** 2 / var64
  # Rounding bound (Higham 2002, Sec. 4.2: a float32 sum of m terms errs by
  # at most m u times the sum of their magnitudes, u = 2^-24): E[d^2] errs
  # by m u (var + (mean - K)^2), E[d]^2 by 2 m u (mean - K)^2 + m u var, so
  # var = E[d^2] - E[d]^2 by (2 + 3 kappa) m u relative. The centred values
  # (x - K) - E[d] err by about m u max|d|.
  u = np.finfo(np.float32).eps / 2
  tol = (2 + 3 * kappa) * m * u  # [C]; 1.3e-4 typical, 7e-3 atypical
  centring = (m + 2) * u * np.abs(d).max(axes)  # [C]
  std64 = np.sqrt(var64)

  y, mean, var = jax.jit(
    lambda x: normalization.batch_norm_train(x, eps=0.0, impl=impl)
  )(x)
  np.testing.assert_array_less(np.abs(var - var64) / var64, tol)
  np.testing.assert_array_less(
    np.abs(mean - mean64), u * np.abs(mean64) + centring
  )
  # y is centred without a rounded float32 mean (half an ulp of 1e4 is 5e-4,
  # 3% of a standard deviation here) and scaled by a nearly exact 1/std.
  y_ref = (x64 - mean64) / std64
  y = np.asarray(y, np.float64)
  np.testing.assert_array_less(np.abs(y.mean(axes)), centring / std64)
  np.testing.assert_array_less(
    np.abs(y - y_ref), np.abs(y_ref) * (tol / 2 + 3 * u) + centring / std64
  )
  # The bound discriminates: the one-pass form misses it by orders of
  # magnitude on the same data.
  xf = jnp.asarray(x)
  naive = jnp.mean(xf * xf, axes) - jnp.square(jnp.mean(xf, axes))
  assert np.all(np.abs(np.asarray(naive, np.float64) - var64) / var64 > tol)


@_IMPLS
@pytest.mark.slow
def test_batch_norm_train_global_statistics_on_the_mesh(impl):
  # Each device holds 2 of 16 examples; statistics are over all 16.
  _skip_unavailable(impl)
  mesh = sharding.make_mesh()
  x, scale, bias, cts = _train_inputs((16, 3, 3, 4), jnp.float32, seed=4)

  def loss(x, s, b):
    y, mean, var = normalization.batch_norm_train(x, scale=s, bias=b, impl=impl)
    return jnp.sum(y * cts[0]) + jnp.sum(mean * cts[1] + var * cts[2])

  step = jax.jit(jax.value_and_grad(loss, (0, 1, 2)))
  single = step(x, scale, bias)
  xs = jax.device_put(x, sharding.batch_sharding(mesh))
  sharded = step(xs, scale, bias)
  chex.assert_trees_all_close(sharded, single, rtol=1e-5, atol=1e-5)
  chex.assert_trees_all_close(
    single,
    jax.value_and_grad(  # the composite, unsharded
      lambda x, s, b: (
        jnp.sum(_reference_train(x, s, b)[0] * cts[0])
        + jnp.sum(
          _reference_train(x, s, b)[1] * cts[1]
          + _reference_train(x, s, b)[2] * cts[2]
        )
      ),
      (0, 1, 2),
    )(x, scale, bias),
    rtol=1e-4,
    atol=1e-4,
  )
