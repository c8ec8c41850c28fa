"""Tests of the native oneDNN convolution (ops/native/) against XLA.

Every result is compared with `lax.conv_general_dilated` (and the notes'
direct sum, `ops.conv_reference.conv2d_direct`), an independent
implementation: forward and both gradients over a grid of shapes, strides,
paddings, dilations and groups; under jit, vmap, grad of grad and the
8-device mesh; the fallback when the library is missing; every model
family's forward. The tests skip, with the reason, where the library is not
available, except `test_native_backend_is_available`: this repository's
install builds it, so CI must run the native path.
"""

import os
import re
import subprocess
import sys

import chex
import jax
from jax import lax
import jax.numpy as jnp
from jax.sharding import PartitionSpec as P
from jax.test_util import check_grads
import numpy as np
import pytest

import nets
from ops import conv_reference
from ops import convolution
from ops import native
from ops.native import loader
from tests.nets import nets_testing
from train_lib import sharding

TOL = {jnp.float32: 2e-5, jnp.bfloat16: 2e-2}  # relative to max |ref|


@pytest.fixture
def onednn():
  why = native.unavailable_reason()
  if why:
    pytest.skip(f'oneDNN convolution unavailable: {why}')


def test_native_backend_is_available():
  # `pip install -e .` (make test, CI) builds the library: no silent skips.
  assert native.available(), native.backend_status()
  assert native.backend_status().startswith('convolution backend: oneDNN 3.')


def _lax(x, w, strides, padding, dilation, groups):
  pads = convolution.resolve_padding(
    padding, x.shape[1:3], w.shape[:2], strides, dilation
  )
  return lax.conv_general_dilated(
    x,
    w,
    strides,
    pads,
    rhs_dilation=dilation,
    dimension_numbers=('NHWC', 'HWIO', 'NHWC'),
    feature_group_count=groups,
    preferred_element_type=jnp.float32,
  )


def _inputs(n, h, w, c, k, o, groups, dtype, seed=0):
  rng = np.random.default_rng(seed)
  kh, kw = (k, k) if isinstance(k, int) else k
  x = rng.standard_normal((n, h, w, c))
  ker = rng.standard_normal((kh, kw, c // groups, o)) / np.sqrt(kh * kw * c)
  return jnp.asarray(x, dtype), jnp.asarray(ker, dtype)


def _close(actual, expected, dtype):
  actual = np.asarray(actual, np.float32)
  expected = np.asarray(expected, np.float32)
  scale = max(float(np.max(np.abs(expected))), 1e-6)
  np.testing.assert_allclose(actual, expected, atol=TOL[dtype] * scale, rtol=0)


# (N, H, W, C, k, O, strides, padding, dilation, groups)
GRID = [
  (2, 8, 8, 3, 3, 4, (1, 1), 'SAME', (1, 1), 1),
  (2, 9, 7, 4, 3, 6, (2, 2), 'SAME', (1, 1), 1),
  (1, 8, 10, 4, (1, 3), 5, (1, 2), 'VALID', (1, 1), 1),
  (2, 11, 9, 4, 3, 4, (2, 1), ((2, 0), (1, 3)), (1, 1), 1),
  (2, 9, 9, 3, 3, 4, (1, 1), 'SAME', (2, 2), 1),
  (2, 8, 8, 6, 5, 6, (1, 1), 2, (1, 2), 1),
  (2, 8, 8, 8, 3, 12, (1, 1), 'SAME', (1, 1), 4),  # grouped
  (2, 9, 9, 8, 3, 8, (2, 2), 'SAME', (1, 1), 8),  # depthwise
  (2, 8, 8, 4, 3, 8, (1, 1), 'VALID', (2, 1), 4),  # depthwise, x2
  (3, 6, 6, 4, 1, 6, (2, 2), 'VALID', (1, 1), 2),  # 1x1, grouped
]


# float32 on every case, bfloat16 on every third (keeps the tier cheap).
CASES = [(c, jnp.float32) for c in GRID] + [
  (c, jnp.bfloat16) for c in GRID[::3]
]


@pytest.mark.parametrize(
  ('case', 'dtype'), CASES, ids=lambda c: getattr(c, '__name__', str(c))
)
@pytest.mark.slow
def test_forward_and_gradients_match_lax(onednn, case, dtype):
  if not native.supports(dtype):
    pytest.skip(native.backend_status())
  n, h, w, c, k, o, strides, padding, dilation, groups = case
  x, ker = _inputs(n, h, w, c, k, o, groups, dtype)
  ct = jnp.asarray(
    np.random.default_rng(1).standard_normal(
      _lax(x, ker, strides, padding, dilation, groups).shape
    ),
    dtype,
  )

  def run(impl):
    def f(x, ker):
      return convolution.conv2d(
        x,
        ker,
        strides=strides,
        padding=padding,
        dilation=dilation,
        groups=groups,
        impl=impl,
      )

    y, vjp = jax.vjp(f, x, ker)
    return (y, *vjp(ct))

  got = jax.jit(lambda: run('onednn'))()
  want = jax.jit(lambda: run('xla'))()
  assert got[0].dtype == dtype and got[2].shape == ker.shape
  for a, b in zip(got, want, strict=True):
    _close(a, b, dtype)


def test_matches_the_notes_direct_sum(onednn):
  x, ker = _inputs(2, 7, 8, 3, 3, 4, 1, jnp.float32)
  got = convolution.conv2d(x, ker, strides=2, padding=1, impl='onednn')
  want = conv_reference.conv2d_direct(x, ker, strides=2, padding=1)
  _close(got, want, jnp.float32)


def test_check_grads(onednn):
  x, ker = _inputs(2, 5, 5, 4, 3, 4, 2, jnp.float32)
  f = lambda x, ker: convolution.conv2d(
    x, ker, strides=2, groups=2, impl='onednn'
  )
  check_grads(f, (x, ker), order=1, modes=['rev'], atol=1e-2, rtol=1e-2)


def test_grad_of_grad_matches_lax(onednn):
  x, ker = _inputs(2, 6, 6, 4, 3, 4, 2, jnp.float32)

  def outer(impl):
    def inner(x, ker):
      y = convolution.conv2d(x, ker, strides=2, groups=2, impl=impl)
      return jnp.sum(jnp.sin(y))

    def loss(x, ker):
      dx = jax.grad(inner)(x, ker)
      return jnp.sum(dx**2)

    return jax.jit(jax.grad(loss, (0, 1)))(x, ker)

  for a, b in zip(outer('onednn'), outer('xla'), strict=True):
    _close(a, b, jnp.float32)


def _custom_calls(fn, *args):
  """(HLO text, oneDNN custom-call targets in it) of jit(fn)(*args)."""
  hlo = jax.jit(fn).lower(*args).compile().as_text()
  return hlo, re.findall(r'custom_call_target="(onednn_conv_\w+)"', hlo)


@pytest.mark.parametrize('axes', [(0, None), (None, 0), (0, 0)])
@pytest.mark.slow
def test_vmap_folds_into_one_call(onednn, axes):
  v, n = 3, 2
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.standard_normal((v, n, 6, 6, 4)), jnp.float32)
  ker = jnp.asarray(rng.standard_normal((v, 3, 3, 2, 6)), jnp.float32)
  x = x if axes[0] == 0 else x[0]
  ker = ker if axes[1] == 0 else ker[0]

  def loss(impl):
    def f(x, ker):
      y = convolution.conv2d(x, ker, strides=(1, 2), groups=2, impl=impl)
      return jnp.sum(y**2)

    return jax.vmap(jax.value_and_grad(f, (0, 1)), axes)

  got, want = loss('onednn')(x, ker), loss('xla')(x, ker)
  for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
    _close(a, b, jnp.float32)
  hlo, targets = _custom_calls(loss('onednn'), x, ker)
  assert sorted(targets) == sorted(
    ['onednn_conv_forward', 'onednn_conv_backward_data']
    + ['onednn_conv_backward_weights']
  )  # one call per pass, no loop over the mapped axis
  assert 'while' not in hlo
  if axes == (0, None):  # the mapped axis joined the batch
    assert re.search(rf'f32\[{v * n},6,3,6\][^\n]*onednn_conv_forward', hlo)


def test_batch_sharded_over_the_mesh(onednn):
  assert jax.device_count() == 8
  mesh = sharding.make_mesh()
  x, ker = _inputs(16, 8, 8, 4, 3, 8, 2, jnp.float32)

  def loss(x, ker):
    y = convolution.conv2d(x, ker, strides=2, groups=2, impl='onednn')
    return jnp.mean(y**2)

  step = jax.value_and_grad(loss, (0, 1))
  single = jax.jit(step)(x, ker)
  xs = jax.device_put(x, sharding.batch_sharding(mesh))
  ks = jax.device_put(ker, sharding.replicated_sharding(mesh))
  sharded = jax.jit(step)(xs, ks)
  chex.assert_trees_all_close(sharded, single, rtol=1e-5, atol=1e-6)
  assert sharded[1][0].sharding.spec == P('data')
  hlo = jax.jit(step).lower(xs, ks).compile().as_text()
  calls = [line for line in hlo.splitlines() if 'onednn_conv_' in line]
  assert len(calls) == 3 and 'all-gather' not in hlo
  for call in calls:  # every device computes its shard: B / 8 = 2 examples
    operands = call.split('operand_layout_constraints=')[1].split('api_')[0]
    batches = re.findall(r'f32\[(\d+),\d+,\d+,\d+\]', operands)
    if 'backward_weights' in call:
      assert batches == ['2', '2'], call
    else:
      assert batches[0] == '2', call
    assert 'concurrency = 8' in call  # each shard's share of the threads


def test_fallback_when_the_library_is_missing(monkeypatch):
  monkeypatch.setattr(loader, 'find_extension', lambda: None)
  loader.load.cache_clear()
  try:
    assert not native.available()
    status = native.backend_status()
    assert status.startswith('convolution backend: XLA (')
    assert 'not built' in status
    x, ker = _inputs(2, 6, 6, 4, 3, 4, 1, jnp.float32)
    got = jax.jit(lambda x, k: convolution.conv2d(x, k, impl='auto'))(x, ker)
    _close(got, _lax(x, ker, (1, 1), 'SAME', (1, 1), 1), jnp.float32)
    with pytest.raises(ValueError, match='not built'):
      convolution.conv2d(x, ker, impl='onednn')
  finally:
    loader.load.cache_clear()


def test_unsupported_dtype_is_an_error(onednn):
  x, ker = _inputs(1, 4, 4, 2, 3, 2, 1, jnp.float16)
  with pytest.raises(ValueError, match='float32 and bfloat16'):
    convolution.conv2d(x, ker, impl='onednn')
  y = convolution.conv2d(x, ker, impl='auto')  # auto keeps XLA here
  assert y.dtype == jnp.float16


FAST_MODELS = ('resnet8_cifar_tiny', 'mobilenet_v1_tiny', 'resnext_tiny')


def _conv_models():
  names = [m for m in nets.list_models() if 'tiny' in m and 'ensemble' not in m]
  names += ['lenet5', 'cnn_small']
  return [
    pytest.param(m, marks=() if m in FAST_MODELS else pytest.mark.slow)
    for m in sorted(set(names) & set(nets.list_models()))
  ]


@pytest.mark.parametrize('name', _conv_models())
@pytest.mark.slow
def test_model_forward_equal_between_backends(onednn, name):
  model = nets.create(name, num_classes=10)
  shape = nets.default_input_shape(name)
  x = nets_testing.normal((2, *shape), seed=0)
  variables = nets_testing.fake_variables(model, x, train=False)
  outs = {}
  for impl in ('xla', 'onednn'):
    with native.auto_impl(impl):
      outs[impl] = jax.jit(lambda v, x: model.apply(v, x, train=False))(
        variables, x
      )
  _close(outs['onednn'], outs['xla'], jnp.float32)


def _has_avx512_core() -> bool:
  """oneDNN's bfloat16 convolutions need avx512_core (F, BW, VL, DQ)."""
  with open('/proc/cpuinfo') as f:
    flags = set(next(ln for ln in f if ln.startswith('flags')).split())
  return {'avx512f', 'avx512bw', 'avx512vl', 'avx512dq'} <= flags


def test_prefer_onednn_takes_onednn_for_float32_and_bfloat16_only(onednn):
  # The suite's mode (tests/conftest.py), named here; the measured 'auto'
  # is tested in test_conv_choice.py.
  bf16, f32 = jnp.bfloat16, jnp.float32
  small = ((8, 4, 4, 512), (3, 3, 512, 512), (1, 1))
  big = ((8, 32, 32, 64), (3, 3, 64, 64), (1, 1))
  # bfloat16 only where this CPU has oneDNN bfloat16 kernels (AVX-512).
  assert native.supports(bf16) == _has_avx512_core()
  with native.auto_impl('prefer_onednn'):
    assert native.chosen(*small[:2], bf16, small[2], 1) == _has_avx512_core()
    assert native.chosen(*small[:2], f32, small[2], 1)
    assert not native.chosen(*small[:2], jnp.float16, small[2], 1)
    assert native.chosen(*big[:2], bf16, big[2], 1) == _has_avx512_core()
  with native.auto_impl('onednn'):
    assert native.chosen(*small[:2], f32, small[2], 1)
  with native.auto_impl('xla'):
    assert not native.chosen(*big[:2], f32, big[2], 1)


def test_bfloat16_train_step_runs_with_auto(onednn):
  # On an AVX2-only CPU oneDNN cannot build a bfloat16 convolution: auto
  # must then keep XLA (the step used to fail at run time), and where it
  # can, the result still matches XLA's.
  x, ker = _inputs(2, 6, 6, 4, 3, 4, 1, jnp.bfloat16)

  def grads(impl):
    def f(x, ker):
      y = convolution.conv2d(x, ker, strides=1, impl=impl)
      return jnp.sum(y.astype(jnp.float32) ** 2)

    return jax.jit(jax.grad(f, (0, 1)))(x, ker)

  for a, b in zip(grads('auto'), grads('xla'), strict=True):
    _close(a, b, jnp.bfloat16)
  if not native.supports(jnp.bfloat16):
    with pytest.raises(ValueError, match='no bfloat16 convolution'):
      convolution.conv2d(x, ker, impl='onednn')


_ODD_BATCH_STEP = """
import jax, jax.numpy as jnp, numpy as np
import nets
from ops import native
model = nets.create('resnet_tiny', num_classes=10)
x = jnp.asarray(np.random.default_rng(0).normal(size=(3, 32, 32, 3)), 'float32')
with native.auto_impl('onednn'):
  v = model.init(jax.random.key(0), x, train=False)
  def loss(p):
    out, _ = model.apply({**v, 'params': p}, x, train=True,
                         mutable=['batch_stats'])
    return jnp.square(out).sum()
  grad = jax.jit(jax.grad(loss))
  for _ in range(3):
    g = jax.block_until_ready(grad(v['params']))
print('finite', all(bool(jnp.isfinite(a).all()) for a in jax.tree.leaves(g)))
"""


@pytest.mark.slow
def test_training_with_an_odd_batch_and_a_strided_1x1_shortcut(onednn):
  # oneDNN 3.2's strided 1x1 kernels (resnet_tiny's projection shortcut)
  # corrupted the heap at batch 3 or 5 on 2 OpenMP threads: the child died
  # (SIGSEGV or malloc's abort) in 4 of 4 runs before conv2d sliced first.
  env = {**os.environ, 'OMP_NUM_THREADS': '2'}
  run = subprocess.run(
    [sys.executable, '-c', _ODD_BATCH_STEP],
    capture_output=True,
    text=True,
    env=env,
    timeout=600,
  )
  assert run.returncode == 0, run.stderr[-2000:]
  assert run.stdout.strip() == 'finite True'


def test_small_passes_run_on_one_thread(onednn, monkeypatch):
  # Below SMALL_MACS multiply-adds a pass asks for max(1, T // T) = 1
  # thread (the `concurrency` attribute divides the team): LeNet-sized
  # layers, where waking a team costs more than the arithmetic.
  from ops.native import conv as native_conv  # noqa: PLC0415

  monkeypatch.setenv('OMP_NUM_THREADS', '4')

  def concurrency(n, c, o):
    x, w = jnp.ones((n, 8, 8, c)), jnp.ones((3, 3, c, o))
    f = jax.jit(
      lambda x, w: native.conv2d(
        x, w, strides=(1, 1), pads=((1, 1), (1, 1)), dilation=(1, 1), groups=1
      )
    )
    return {
      int(v)
      for v in re.findall(r'concurrency = (\d+)', f.lower(x, w).as_text())
    }

  macs = 2 * 8 * 8 * 4 * 9 * 4
  assert macs < native_conv.SMALL_MACS
  assert concurrency(2, 4, 4) == {4}  # 4 threads // 4 = 1
  big = 64 * 8 * 8 * 256 * 9 * 256
  assert big >= native_conv.SMALL_MACS
  assert concurrency(64, 256, 256) == {1}  # the whole team
