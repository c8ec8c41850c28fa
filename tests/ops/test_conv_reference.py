"""Tests for ops/conv_reference.py: each formulation equals lax or numpy.

The conv-layer backprop by hand is checked against the notes' loops and
against autodiff of `lax.conv_general_dilated`.
"""

import functools

import chex
import jax
from jax import lax
import jax.numpy as jnp
import numpy as np
import pytest

from ops import conv_reference as ref
from ops import convolution

DIMS = ('NHWC', 'HWIO', 'NHWC')


def _rand(seed, shape):
  # numpy, not jax.random: an eager jax.random draw compiles per shape.
  x = np.random.default_rng(seed).standard_normal(shape, dtype=np.float32)
  return jnp.asarray(x)


def _lax(x, w, strides=(1, 1), padding='VALID', dilation=(1, 1), groups=1):
  return lax.conv_general_dilated(
    x, w, strides, padding, rhs_dilation=dilation, dimension_numbers=DIMS,
    feature_group_count=groups,
  )  # fmt: skip


def _loops(y, w):
  """The notes' formula with explicit loops: x_ij = sum_ab w_ab y_(i+a)(j+b)."""
  n, m = y.shape[0], w.shape[0]
  out = np.zeros((n - m + 1, n - m + 1))
  for i in range(n - m + 1):
    for j in range(n - m + 1):
      for a in range(m):
        for b in range(m):
          out[i, j] += w[a, b] * y[i + a, j + b]
  return out


def test_direct_sum_matches_loops_and_output_size():
  y = np.arange(36.0).reshape(6, 6) % 7
  w = np.array([[1.0, 0.0, -1.0], [2.0, 1.0, 0.0], [0.0, -1.0, 3.0]])
  got = ref.conv2d_direct(jnp.asarray(y)[None, :, :, None],
                          jnp.asarray(w)[:, :, None, None])  # fmt: skip
  chex.assert_shape(got, (1, 4, 4, 1))  # N - m + 1 = 6 - 3 + 1
  np.testing.assert_allclose(got[0, :, :, 0], _loops(y, w), rtol=1e-6)


@pytest.mark.parametrize(
  'strides,padding,dilation',
  [((1, 1), 'VALID', (1, 1)), ((2, 2), 'SAME', (1, 1)),
   ((2, 1), ((1, 0), (2, 1)), (2, 1))],
)  # fmt: skip
@pytest.mark.slow
def test_direct_and_im2col_match_lax(strides, padding, dilation):
  x, w = _rand(0, (2, 9, 8, 3)), _rand(1, (3, 2, 3, 4))
  want = convolution.conv2d(
    x, w, strides=strides, padding=padding, dilation=dilation, impl='xla'
  )
  kw = dict(strides=strides, padding=padding, dilation=dilation)
  chex.assert_trees_all_close(ref.conv2d_direct(x, w, **kw), want, atol=1e-4)
  chex.assert_trees_all_close(ref.conv2d_im2col(x, w, **kw), want, atol=1e-4)


def test_im2col_patch_layout():
  x = jnp.arange(2 * 4 * 4 * 2.0).reshape(2, 4, 4, 2)
  p = ref.im2col(x, (2, 3), strides=1, padding='VALID')
  chex.assert_shape(p, (2, 3, 2, 2 * 3 * 2))
  # Patch (i, j) lists x[i + a, j + b, c] in (a, b, c) order.
  np.testing.assert_array_equal(p[1, 2, 1], x[1, 2:4, 1:4].reshape(-1))


def test_toeplitz_matrix_is_banded():
  w = jnp.array([1.0, 2.0, 3.0])
  t = ref.toeplitz_matrix(w, 4)
  want = np.array(
    [[1, 0, 0, 0], [2, 1, 0, 0], [3, 2, 1, 0], [0, 3, 2, 1],
     [0, 0, 3, 2], [0, 0, 0, 3]], np.float32,
  )  # fmt: skip
  np.testing.assert_array_equal(t, want)


@pytest.mark.parametrize('mode', ['full', 'valid', 'same'])
def test_conv1d_toeplitz_matches_numpy(mode):
  y = np.random.default_rng(0).normal(size=11).astype(np.float32)
  w = np.array([0.5, -1.0, 2.0, 0.25], np.float32)
  got = ref.conv1d_toeplitz(jnp.asarray(y), jnp.asarray(w), mode)
  np.testing.assert_allclose(got, np.convolve(y, w, mode), atol=1e-5)


def test_conv1d_toeplitz_is_lax_correlation_with_flipped_kernel():
  y, w = _rand(0, (3, 12)), _rand(1, (5,))
  got = ref.conv1d_toeplitz(y, w, 'valid')
  want = convolution.conv1d(y[..., None], w[::-1, None, None], padding='VALID')
  chex.assert_trees_all_close(got, want[..., 0], atol=1e-5)


def test_separable_kernels_of_the_notes():
  sobel = jnp.array([[-1.0, 0, 1], [-2, 0, 2], [-1, 0, 1]])
  other = jnp.array([[3.0, 6, 9], [4, 8, 12], [5, 10, 15]])
  np.testing.assert_array_equal(
    ref.separable_kernel(jnp.array([1.0, 2, 1]), jnp.array([-1.0, 0, 1])), sobel
  )
  np.testing.assert_array_equal(
    ref.separable_kernel(jnp.array([3.0, 4, 5]), jnp.array([1.0, 2, 3])), other
  )
  for k, col0, row0 in [(sobel, [1, 2, 1], [-1, 0, 1]),
                        (other, [3, 4, 5], [1, 2, 3])]:  # fmt: skip
    col, row = ref.rank1_factorize(k)
    np.testing.assert_allclose(jnp.outer(col, row), k, atol=1e-5)
    # Recovered up to the scale c: (c col0, row0 / c).
    c = col[0] / col0[0]
    np.testing.assert_allclose(col, c * np.array(col0), rtol=1e-5)
    np.testing.assert_allclose(row, np.array(row0) / c, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize('strides,padding', [(1, 'VALID'), (2, 'SAME')])
def test_spatially_separable_equals_full_kernel(strides, padding):
  x = _rand(0, (2, 9, 9, 3))
  col, row = jnp.array([1.0, 2, 1]), jnp.array([-1.0, 0, 1])
  got = ref.conv2d_spatially_separable(
    x, col, row, strides=strides, padding=padding
  )
  k = jnp.tile(ref.separable_kernel(col, row)[:, :, None, None], (1, 1, 1, 3))
  want = convolution.depthwise_conv2d(x, k, strides=strides, padding=padding)
  chex.assert_trees_all_close(got, want, atol=1e-5)


def test_flattened_equals_rank1_3d_kernel():
  x = _rand(0, (2, 8, 8, 4))
  cw, vw, hw = _rand(1, (4, 5)), _rand(2, (3, 5)), _rand(3, (3, 5))
  full = ref.flattened_kernel(cw, vw, hw)  # [3, 3, 4, 5]
  np.testing.assert_allclose(
    full[1, 2, 3, 4], vw[1, 4] * hw[2, 4] * cw[3, 4], rtol=1e-6
  )
  for strides, padding in [(1, 'VALID'), (2, 'SAME')]:
    got = ref.flattened_conv2d(x, cw, vw, hw, strides=strides, padding=padding)
    want = _lax(x, full, (strides, strides), padding)
    chex.assert_trees_all_close(got, want, atol=1e-4)


@pytest.mark.slow
def test_grouped_split_equals_feature_group_count():
  x, w = _rand(0, (2, 6, 6, 8)), _rand(1, (3, 3, 2, 12))
  got = ref.grouped_conv2d_split(x, w, 4, strides=2)
  want = _lax(x, w, (2, 2), 'SAME', groups=4)
  chex.assert_trees_all_close(got, want, atol=1e-5)


def test_direct_sum_under_jit():
  x, w = _rand(0, (1, 6, 6, 2)), _rand(1, (3, 3, 2, 3))
  got = jax.jit(lambda x, w: ref.conv2d_direct(x, w, padding=1))(x, w)
  chex.assert_trees_all_close(got, _lax(x, w, padding='SAME'), atol=1e-5)


@pytest.mark.parametrize(
  ('call', 'match'),
  [
    (
      lambda: ref.grouped_conv2d_split(
        jnp.zeros((1, 5, 5, 6)), jnp.zeros((3, 3, 2, 8)), 4
      ),
      'groups=4 must divide',
    ),
    (
      lambda: ref.conv2d_direct(
        jnp.zeros((1, 5, 5, 3)), jnp.zeros((3, 3, 2, 1))
      ),
      'conv2d_direct shapes',
    ),
    (
      lambda: ref.conv2d_im2col(
        jnp.zeros((1, 5, 5, 3)), jnp.zeros((3, 3, 2, 1))
      ),
      'conv2d_im2col shapes',
    ),
    (
      lambda: ref.conv1d_toeplitz(jnp.zeros(5), jnp.ones(2), 'circular'),
      'unknown mode',
    ),
    (lambda: ref.toeplitz_matrix(jnp.ones((2, 2)), 4), '1-D kernel'),
    (lambda: ref.rank1_factorize(jnp.ones(3)), '2-D kernel'),
    (lambda: ref.im2col(jnp.zeros((5, 5, 4)), 3), 'NHWC'),
    (lambda: ref.separable_kernel(jnp.ones((3, 1)), jnp.ones(3)), '1-D'),
    (
      lambda: ref.conv2d_direct(
        jnp.zeros((1, 5, 5, 1)), jnp.zeros((3, 3, 1, 1)), padding='REFLECT'
      ),
      'unknown padding',
    ),
  ],
)
def test_bad_arguments_raise(call, match):
  with pytest.raises(ValueError, match=match):
    call()


@pytest.mark.slow
def test_reference_formulations_under_jit():
  x = _rand(0, (1, 7, 7, 3))
  w, col, row = _rand(1, (3, 3, 3, 2)), _rand(2, (3,)), _rand(3, (3,))
  cw, vw, hw = _rand(4, (3, 2)), _rand(5, (3, 2)), _rand(6, (3, 2))
  xg, wg = _rand(9, (1, 5, 5, 4)), _rand(10, (3, 3, 2, 4))
  y1, w1 = np.asarray(_rand(7, (9,))), np.asarray(_rand(8, (4,)))

  @jax.jit
  def pairs():
    """(formulation, reference) pairs, compiled together in one call."""
    k = jnp.tile(jnp.outer(col, row)[:, :, None, None], (1, 1, 1, 3))
    return {
      'im2col': (
        ref.conv2d_im2col(x, w, strides=2, padding='SAME'),
        _lax(x, w, (2, 2), 'SAME'),
      ),
      'separable': (
        ref.conv2d_spatially_separable(x, col, row),
        _lax(x, k, groups=3),
      ),
      'flattened': (
        ref.flattened_conv2d(x, cw, vw, hw, padding='SAME'),
        _lax(x, ref.flattened_kernel(cw, vw, hw), padding='SAME'),
      ),
      'grouped': (
        ref.grouped_conv2d_split(xg, wg, 2),
        _lax(xg, wg, padding='SAME', groups=2),
      ),
      'rank1': (
        jnp.outer(*ref.rank1_factorize(jnp.outer(col, row))),
        jnp.outer(col, row),
      ),
      'toeplitz': (
        ref.conv1d_toeplitz(jnp.asarray(y1), jnp.asarray(w1), 'same'),
        jnp.asarray(np.convolve(y1, w1, 'same')),
      ),
    }

  for name, (got, want) in pairs().items():
    chex.assert_trees_all_close(got, want, atol=1e-4, custom_message=name)


# Backprop through one valid conv layer (seed 001, "CNN back-propagation").

NP_RNG = np.random.default_rng(0)


def _normal(*shape):
  return jnp.asarray(NP_RNG.normal(size=shape))


def _lax_valid(y, w):
  return lax.conv_general_dilated(y, w, (1, 1), 'VALID', dimension_numbers=DIMS)


def _loops_weight_grad(y, g, kernel_hw):
  """dE/dw_ab = sum_ij dE/dx_ij y_(i+a)(j+b), one channel, with loops."""
  out = np.zeros(kernel_hw)
  for a in range(kernel_hw[0]):
    for b in range(kernel_hw[1]):
      for i in range(g.shape[0]):
        for j in range(g.shape[1]):
          out[a, b] += g[i, j] * y[i + a, j + b]
  return out


def _loops_input_grad(w, g):
  """dE/dy_ij = sum_ab dE/dx_(i-a)(j-b) w_ab, one channel, with loops."""
  m, n = w.shape
  out = np.zeros((g.shape[0] + m - 1, g.shape[1] + n - 1))
  for i in range(out.shape[0]):
    for j in range(out.shape[1]):
      for a in range(m):
        for b in range(n):
          if 0 <= i - a < g.shape[0] and 0 <= j - b < g.shape[1]:
            out[i, j] += g[i - a, j - b] * w[a, b]
  return out


@jax.jit
def _single_channel_hand_and_auto(y, w, g):
  """Hand conv/backprop of one channel and the lax/autodiff references."""
  y4, w4, g4 = y[None, :, :, None], w[:, :, None, None], g[None, :, :, None]
  # E = sum(g * x), so dE/dx = g.
  energy = lambda y_, w_: jnp.sum(g4 * _lax_valid(y_, w_))
  dy, dw = jax.grad(energy, argnums=(0, 1))(y4, w4)
  hand = (
    ref.conv2d_direct(y4, w4)[0, :, :, 0],
    ref.conv2d_weight_grad(y4, g4, w.shape)[:, :, 0, 0],
    ref.conv2d_input_grad(w4, g4)[0, :, :, 0],
  )
  return hand, (_lax_valid(y4, w4)[0, :, :, 0], dw[:, :, 0, 0], dy[0, :, :, 0])


def test_single_channel_conv_backprop():
  with jax.enable_x64(True):
    y, w = _normal(6, 7), _normal(3, 2)  # N x M image, m x n filter.
    g = _normal(4, 6)  # Output map: N - m + 1, M - n + 1.
    hand, auto = _single_channel_hand_and_auto(y, w, g)
    assert hand[0].shape == (4, 6)
    assert hand[0].dtype == jnp.float64
    for h, a in zip(hand, auto, strict=True):
      np.testing.assert_allclose(h, a, rtol=1e-10, atol=1e-12)
    y_, w_, g_ = np.asarray(y), np.asarray(w), np.asarray(g)
    np.testing.assert_allclose(
      hand[1], _loops_weight_grad(y_, g_, w_.shape), rtol=1e-10, atol=1e-12
    )
    np.testing.assert_allclose(
      hand[2], _loops_input_grad(w_, g_), rtol=1e-10, atol=1e-12
    )


@functools.partial(jax.jit, static_argnums=3)
def _multi_channel_hand_and_auto(y, w, g, activation):
  act = {'identity': lambda v: v, 'tanh': jnp.tanh}[activation]
  energy = lambda a, b: jnp.sum(g * act(_lax_valid(a, b)))
  dy, dw = jax.grad(energy, (0, 1))(y, w)
  hand_dw, hand_dy = ref.conv_layer_backward(y, w, g, activation)
  hand = (ref.conv2d_direct(y, w), hand_dw, hand_dy)
  # The bare weight and input gradients, fed dE/dx = g * sigma'(x) by hand.
  x = _lax_valid(y, w)
  dE_dx = g * (1.0 - act(x) ** 2 if activation == 'tanh' else 1.0)
  hand += (ref.conv2d_weight_grad(y, dE_dx, w.shape[:2]),
           ref.conv2d_input_grad(w, dE_dx))  # fmt: skip
  return hand, (x, dw, dy, dw, dy)


@pytest.mark.parametrize('activation', ['identity', 'tanh'])
@pytest.mark.slow
def test_multi_channel_conv_backprop_matches_lax(activation):
  with jax.enable_x64(True):
    y, w = _normal(2, 6, 5, 3), _normal(3, 2, 3, 4)  # NHWC, HWIO.
    g = _normal(2, 4, 4, 4)
    hand, auto = _multi_channel_hand_and_auto(y, w, g, activation)
    for h, a in zip(hand, auto, strict=True):
      np.testing.assert_allclose(h, a, rtol=1e-10, atol=1e-12)


def test_conv_backprop_bad_shapes():
  with pytest.raises(ValueError, match='larger than the image'):
    ref.conv2d_direct(jnp.ones((1, 2, 5, 1)), jnp.ones((3, 3, 1, 1)))
  with pytest.raises(ValueError, match='matching channels'):
    ref.conv2d_direct(jnp.ones((1, 5, 5, 2)), jnp.ones((3, 3, 4, 1)))
  with pytest.raises(ValueError, match='a valid conv outputs \\(3, 3\\)'):
    ref.conv2d_weight_grad(
      jnp.ones((1, 5, 5, 1)), jnp.ones((1, 4, 4, 1)), (3, 3)
    )
  with pytest.raises(ValueError, match='HWIO kernel'):
    ref.conv2d_input_grad(jnp.ones((3, 3, 1)), jnp.ones((1, 4, 4, 1)))
  with pytest.raises(ValueError, match='does not match image'):
    ref.conv2d_weight_grad(
      jnp.ones((2, 5, 5, 1)), jnp.ones((2, 2, 2, 1)), (3, 3)
    )
  with pytest.raises(ValueError, match='one batch'):
    ref.conv2d_weight_grad(
      jnp.ones((2, 5, 5, 1)), jnp.ones((1, 3, 3, 1)), (3, 3)
    )
  with pytest.raises(ValueError, match='matching output'):
    ref.conv2d_input_grad(jnp.ones((3, 3, 1, 2)), jnp.ones((1, 3, 3, 4)))
