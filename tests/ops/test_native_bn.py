"""Tests of the native oneDNN training BatchNorm (ops/native/bn.py).

References, each independent of the op: float64 numpy (the notes'
algorithm: mean, biased variance, normalise), central differences of that
float64 loss, and the XLA path of `ops.normalization.batch_norm_train`
(forward and its hand-written backward). Covered: ranks 2 to 5, odd
channel counts, batch 1, both dtypes, cotangents on the mean and variance,
vmap, second order, the 8-device mesh (conftest's fake devices), the error
when the library is missing, a whole net. The weak case (offset 1e4, small
noise) is `test_batch_norm_train_shifted_data_large_mean` in
test_normalization.py, run there for both paths.
"""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import nets
from ops import normalization
from ops.native import bn
from ops.native import loader
from tests.nets import nets_testing
from train_lib import sharding

F32, BF16 = jnp.float32, jnp.bfloat16
U = {F32: 2.0**-24, BF16: 2.0**-8}  # unit roundoff of y's dtype


@pytest.fixture
def onednn():
  why = bn.unavailable_reason(F32)
  if why:
    pytest.skip(f'native BatchNorm unavailable: {why}')


def test_native_bn_is_available():
  # `pip install -e .` builds the library: no silent skips in CI.
  assert bn.available(F32), bn.unavailable_reason(F32)


def _inputs(shape, dtype, seed=0, offset=0.5):
  rng = np.random.default_rng(seed)
  c = shape[-1]
  x = jnp.asarray(rng.normal(size=shape) * 2.0 + offset, dtype)
  scale = jnp.asarray(rng.uniform(0.5, 1.5, c), F32)
  bias = jnp.asarray(rng.normal(size=c), F32)
  cts = (
    jnp.asarray(rng.normal(size=shape), dtype),
    jnp.asarray(rng.normal(size=c), F32),
    jnp.asarray(rng.normal(size=c), F32),
  )
  return x, scale, bias, cts


def _numpy_bn(x, scale, bias, eps=1e-5):
  """The notes' algorithm in float64: (y, mean, biased var)."""
  x = np.asarray(x, np.float64)
  axes = tuple(range(x.ndim - 1))
  mean, var = x.mean(axes), x.var(axes)
  y = (x - mean) / np.sqrt(var + eps) * np.float64(scale) + np.float64(bias)
  return y, mean, var


def _native(x, s, b, eps=1e-5, dtype=None):
  return normalization.batch_norm_train(
    x, scale=s, bias=b, eps=eps, dtype=dtype, impl='onednn'
  )


def _xla(x, s, b, eps=1e-5, dtype=None):
  return normalization.batch_norm_train(
    x, scale=s, bias=b, eps=eps, dtype=dtype, impl='xla'
  )


SHAPES = [(16, 5), (4, 5, 6, 8), (3, 2, 2, 2, 17), (1, 4, 4, 3), (2, 3, 1, 64)]
DTYPES = [F32, pytest.param(BF16, id='bfloat16')]


@pytest.mark.parametrize('dtype', DTYPES)
@pytest.mark.parametrize('shape', SHAPES)
def test_forward_matches_float64_numpy(onednn, shape, dtype):
  if not bn.available(dtype):
    pytest.skip(bn.unavailable_reason(dtype))
  x, scale, bias, _ = _inputs(shape, dtype)
  y, mean, var = jax.jit(_native)(x, scale, bias)
  assert y.dtype == dtype and mean.dtype == var.dtype == F32
  # The reference reads the same (rounded) x: only the op's rounding is left.
  y64, mean64, var64 = _numpy_bn(x, scale, bias)
  x64 = np.asarray(x, np.float64)
  u = 2.0**-24
  # Statistics: float32 sums of <= 32 terms added in double, one rounding
  # of k + s1 (a few u of |mean| and of the spread |x - k|).
  spread = np.abs(x64 - x64.reshape(-1, shape[-1])[0]).max(
    tuple(range(x.ndim - 1))
  )
  np.testing.assert_array_less(
    np.abs(mean - mean64), 2 * u * np.abs(mean64) + 64 * u * spread + 1e-30
  )
  np.testing.assert_array_less(
    np.abs(var - var64), 64 * u * (var64 + spread**2 / 32)
  )
  # y: float32 arithmetic (a few u of |x_hat| and of |scale|, |bias|), then
  # one rounding to y's dtype (U[dtype] |y|).
  x_hat = np.abs(y64 - np.float64(bias)) / np.float64(scale)
  slack = 16 * u * (x_hat * np.float64(scale) + np.abs(np.float64(bias)) + 1)
  assert np.all(
    np.abs(np.asarray(y, np.float64) - y64) <= U[dtype] * np.abs(y64) + slack
  )


def _value_and_vjp(fn, x, scale, bias, cts):
  out, vjp = jax.vjp(fn, x, scale, bias)
  return out, vjp(cts)


@pytest.mark.parametrize('dtype', DTYPES)
@pytest.mark.parametrize('shape', [(16, 5), (4, 5, 6, 8), (1, 3, 3, 17)])
def test_values_and_gradients_match_the_xla_path(onednn, shape, dtype):
  if not bn.available(dtype):
    pytest.skip(bn.unavailable_reason(dtype))
  x, scale, bias, cts = _inputs(shape, dtype, seed=1)
  got = jax.jit(lambda *a: _value_and_vjp(_native, *a))(x, scale, bias, cts)
  want = jax.jit(lambda *a: _value_and_vjp(_xla, *a))(x, scale, bias, cts)
  assert got[1][0].dtype == dtype
  # float32: both paths round in float32; bfloat16: y and dx are rounded to
  # bfloat16 (u = 2^-8) after sums of up to m terms of float32 values.
  tol = 2e-5 if dtype == F32 else 4 * U[BF16]
  for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
    a, b = np.asarray(a, np.float32), np.asarray(b, np.float32)
    np.testing.assert_allclose(a, b, atol=tol * max(1.0, np.abs(b).max()))


@pytest.mark.parametrize(
  ('used', 'offset'),
  [('y', 0.5), ('mean', 0.5), ('var', 0.5), ('all', 0.5), ('all', 1e4)],
)
def test_gradients_against_central_differences_in_float64(onednn, used, offset):
  # Independent of both implementations: the float64 numpy loss, central
  # differences in x, scale and bias (h = 1e-6, error ~ h^2 + 1e-16 / h).
  # Offset 1e4: x - mean is formed without a rounded float32 mean (whose
  # half ulp, 5e-4, would be 2.5e-4 of a standard deviation here).
  x, scale, bias, cts = _inputs((4, 3, 2, 3), F32, seed=2, offset=offset)
  weights = {
    'y': (1.0, 0.0, 0.0),
    'mean': (0.0, 1.0, 0.0),
    'var': (0.0, 0.0, 1.0),
    'all': (1.0, 1.0, 1.0),
  }[used]
  ct64 = [
    np.asarray(c, np.float64) * w for c, w in zip(cts, weights, strict=True)
  ]

  def loss64(x, s, b):
    y, mean, var = _numpy_bn(x, s, b)
    return (y * ct64[0]).sum() + (mean * ct64[1]).sum() + (var * ct64[2]).sum()

  def loss(x, s, b):
    y, mean, var = _native(x, s, b)
    out = jnp.sum(y * cts[0]) * weights[0]
    if weights[1]:  # else: a symbolic-zero cotangent on the mean
      out = out + jnp.sum(mean * cts[1])
    if weights[2]:
      out = out + jnp.sum(var * cts[2])
    return out

  grads = jax.jit(jax.grad(loss, (0, 1, 2)))(x, scale, bias)
  args = [np.asarray(a, np.float64) for a in (x, scale, bias)]
  for i, g in enumerate(grads):
    fd = np.zeros_like(args[i])
    for idx in np.ndindex(fd.shape):
      up = [a.copy() for a in args]
      down = [a.copy() for a in args]
      up[i][idx] += 1e-6
      down[i][idx] -= 1e-6
      fd[idx] = (loss64(*up) - loss64(*down)) / 2e-6
    np.testing.assert_allclose(g, fd, atol=1e-4 * max(1.0, np.abs(fd).max()))


def test_second_order_and_dtype_of_y(onednn):
  x, scale, bias, _ = _inputs((4, 2, 2, 3), F32, seed=3)

  def f(x, s, b):
    y, mean, var = _native(x, s, b)
    return jnp.sum(jnp.sin(y)) + jnp.sum(mean * var)

  jax.test_util.check_grads(
    f, (x, scale, bias), order=2, modes=['rev'], atol=5e-2, rtol=5e-2
  )
  y, mean, var = _native(x, scale, bias, dtype=BF16)
  assert y.dtype == BF16 and mean.dtype == var.dtype == F32
  np.testing.assert_allclose(
    np.asarray(y, np.float32), _xla(x, scale, bias)[0], atol=2e-2
  )


def test_vmap_keeps_statistics_per_element(onednn):
  x, scale, bias, cts = _inputs((3, 4, 2, 2, 5), F32, seed=4)
  f = lambda x: _native(x, scale, bias)
  g = lambda x: jax.grad(lambda x: jnp.sum(f(x)[0] * cts[0][0]))(x)
  outs, grads = jax.jit(jax.vmap(lambda x: (f(x), g(x))))(x)
  for i in range(3):
    chex.assert_trees_all_close(
      tuple(a[i] for a in outs), f(x[i]), rtol=1e-5, atol=1e-5
    )
    np.testing.assert_allclose(grads[i], g(x[i]), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize('offset', [0.5, 1e4])
def test_sharded_batch_gives_global_statistics(onednn, offset):
  # Each of 8 devices holds 2 of 16 examples; statistics are over all 16,
  # also for a large common offset (Chan et al.'s combination).
  mesh = sharding.make_mesh()
  assert mesh.devices.size == 8
  x, scale, bias, cts = _inputs((16, 3, 3, 4), F32, seed=5, offset=offset)
  x = x.at[3].add(3.0)  # one device's examples far from the others'

  def loss(x, s, b):
    y, mean, var = _native(x, s, b)
    out = jnp.sum(y * cts[0]) + jnp.sum(mean * cts[1] + var * cts[2])
    return out, (mean, var)

  step = jax.jit(jax.value_and_grad(loss, (0, 1, 2), has_aux=True))
  single = step(x, scale, bias)
  xs = jax.device_put(x, sharding.batch_sharding(mesh))
  sharded = step(xs, scale, bias)
  assert sharded[1][0].sharding.spec == sharding.batch_sharding(mesh).spec
  _, mean64, var64 = _numpy_bn(x, scale, bias)
  u, spread = 2.0**-24, 16.0  # |x - k| <= 16 here
  np.testing.assert_array_less(
    np.abs(sharded[0][1][0] - mean64), 4 * u * (np.abs(mean64) + 16 * spread)
  )
  np.testing.assert_array_less(
    np.abs(sharded[0][1][1] - var64), 64 * u * (var64 + spread**2 / 16)
  )
  # Both centre x on k + s1 without a rounded float32 mean: the float32
  # rounding of different summation orders is all that differs.
  tol = 1e-5
  chex.assert_trees_all_close(sharded, single, rtol=tol, atol=tol)


def test_onednn_impl_errors_and_auto_falls_back(monkeypatch):
  x, scale, bias, _ = _inputs((4, 3), F32)
  with pytest.raises(ValueError, match='float32 and bfloat16 only'):
    _native(x.astype(jnp.float16), scale, bias)
  with pytest.raises(ValueError, match=r'\[N > 0, \.\.\., C\]'):
    _native(x[:0], scale, bias)
  with pytest.raises(ValueError, match='impl must be'):
    normalization.batch_norm_train(x, impl='torch')
  with pytest.raises(ValueError, match='unknown impl'), bn.force('torch'):
    pass
  why = 'the native library was not built at install time'
  monkeypatch.setattr(loader, 'load_bn', lambda: (None, why))
  assert not bn.available(F32)
  with pytest.raises(ValueError, match=f"impl='onednn' cannot run: {why}"):
    _native(x, scale, bias)
  with pytest.raises(ValueError, match='cannot run'), bn.force('onednn'):
    normalization.batch_norm_train(x)
  assert not bn.chosen(x)
  auto = normalization.batch_norm_train(x, scale=scale, bias=bias)
  chex.assert_trees_all_close(auto, _xla(x, scale, bias), rtol=0, atol=0)


def test_auto_choice(onednn):
  x = jnp.zeros((4, 3), F32)
  assert bn.chosen(x) and not bn.chosen(x[:0]) and not bn.chosen(x[0])
  assert not bn.chosen(x.astype(jnp.float16))
  assert bn.chosen(x.astype(BF16)) == bn.available(BF16)
  with bn.force('xla'):
    assert not bn.chosen(x)


def _net_step(name, impl, dtype):
  model = nets.create(name, num_classes=10, dtype=dtype)
  x = nets_testing.normal((4, 32, 32, 3), seed=0)
  variables = nets_testing.fake_variables(model, x, train=True)

  def loss(params):
    out, state = model.apply(
      {**variables, 'params': params}, x, train=True, mutable=['batch_stats']
    )
    return jnp.sum(jnp.sin(out.astype(F32))), state

  with bn.force(impl):
    step = jax.jit(jax.value_and_grad(loss, has_aux=True))
    native = 'onednn_bn_backward' in step.lower(variables['params']).as_text()
    return step(variables['params']), native


@pytest.mark.parametrize(
  ('name', 'dtype'),
  [
    ('resnet8_cifar_tiny', F32),
    ('resnet20_cifar', F32),
    pytest.param('resnet20_cifar', BF16, id='resnet20_cifar-bfloat16'),
  ],
)
def test_whole_net_train_step_equal_between_auto_and_xla(onednn, name, dtype):
  if not bn.available(dtype):
    pytest.skip(bn.unavailable_reason(dtype))
  ((got, got_state), got_grads), native = _net_step(name, 'auto', dtype)
  ((want, want_state), want_grads), xla = _net_step(name, 'xla', dtype)
  assert native and not xla
  # float32: rounding differences through 20 layers (4e-7 seen). bfloat16:
  # one layer's y differs from XLA's in 1 of 20,000 values by one ulp, but
  # 20 random layers amplify such flips (loss 2% apart, gradients 4%).
  tol = 2e-5 if dtype == F32 else 5e-2
  chex.assert_trees_all_close(got, want, rtol=tol, atol=tol)
  chex.assert_trees_all_close(got_state, want_state, rtol=tol, atol=tol / 10)
  scale = max(float(jnp.abs(g).max()) for g in jax.tree.leaves(want_grads))
  chex.assert_trees_all_close(got_grads, want_grads, rtol=0, atol=tol * scale)
