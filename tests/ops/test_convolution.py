"""Tests for ops/convolution.py against lax.conv_general_dilated and grad."""

import chex
import jax
from jax import lax
import jax.numpy as jnp
import jax.test_util
import numpy as np
import pytest

from ops import convolution

DIMS = ('NHWC', 'HWIO', 'NHWC')
X5, W5 = jnp.zeros((1, 5, 5, 4)), jnp.zeros((3, 3, 4, 4))


def _rand(seed, shape, dtype=jnp.float32):
  # numpy, not jax.random: an eager jax.random draw compiles per shape.
  x = np.random.default_rng(seed).standard_normal(shape, dtype=np.float32)
  return jnp.asarray(x, dtype)


def _lax(x, w, strides=1, padding='SAME', dilation=1, groups=1):
  s = (strides, strides) if isinstance(strides, int) else strides
  d = (dilation, dilation) if isinstance(dilation, int) else dilation
  if isinstance(padding, int):
    padding = ((padding, padding), (padding, padding))
  return lax.conv_general_dilated(
    x,
    w,
    s,
    padding,
    rhs_dilation=d,
    dimension_numbers=DIMS,
    feature_group_count=groups,
  )


CASES = [
  (1, 'SAME', 1),
  (2, 'VALID', 1),
  ((2, 1), ((1, 2), (0, 1)), (1, 2)),
  (3, 'SAME', 2),
]


@pytest.mark.parametrize('strides,padding,dilation', CASES)
def test_conv2d_matches_lax(strides, padding, dilation):
  x, w = _rand(0, (2, 9, 10, 3)), _rand(1, (3, 3, 3, 4))
  for impl in convolution.IMPLS:
    got = convolution.conv2d(
      x, w, strides=strides, padding=padding, dilation=dilation, impl=impl
    )
    want = _lax(x, w, strides, padding, dilation)
    chex.assert_trees_all_close(got, want, atol=1e-5, rtol=1e-5)


def test_grouped_conv_equals_split_concat():
  x, w = _rand(0, (2, 7, 7, 6)), _rand(1, (3, 3, 2, 9))
  got = convolution.conv2d(x, w, groups=3, padding='SAME')
  parts = [
    _lax(xg, wg)
    for xg, wg in zip(jnp.split(x, 3, -1), jnp.split(w, 3, -1), strict=True)
  ]
  chex.assert_trees_all_close(got, jnp.concatenate(parts, -1), atol=1e-5)


@pytest.mark.parametrize(
  'strides,padding,dilation', [(2, 'SAME', 1), (1, 'VALID', 2), (2, 1, 2)]
)
def test_depthwise_equals_per_channel_conv(strides, padding, dilation):
  x, w = _rand(0, (2, 8, 8, 3)), _rand(1, (3, 3, 1, 6))  # multiplier 2
  got = convolution.depthwise_conv2d(
    x, w, strides=strides, padding=padding, dilation=dilation
  )
  # Output channel c * 2 + j is filter j on input channel c.
  want = [
    _lax(
      x[..., c : c + 1],
      w[..., 2 * c + j : 2 * c + j + 1],
      strides,
      padding,
      dilation,
    )  # fmt: skip
    for c in range(3)
    for j in range(2)
  ]
  chex.assert_trees_all_close(got, jnp.concatenate(want, -1), atol=1e-5)


def test_pointwise_and_depthwise_separable():
  x = _rand(0, (2, 5, 5, 4))
  w_dw, w_pw = _rand(1, (3, 3, 1, 4)), _rand(2, (4, 7))
  chex.assert_trees_all_close(
    convolution.pointwise_conv2d(x, w_pw), _lax(x, w_pw[None, None]), atol=1e-5
  )
  got = convolution.depthwise_separable_conv2d(x, w_dw, w_pw, strides=2)
  want = _lax(_lax(x, w_dw, strides=2, groups=4), w_pw[None, None])
  chex.assert_trees_all_close(got, want, atol=1e-5)


def test_conv1d_matches_lax():
  x, w = _rand(0, (2, 17, 3)), _rand(1, (5, 3, 4))
  for strides, padding, dilation in [
    (1, 'SAME', 1),
    (2, 'VALID', 2),
    (3, 2, 1),
  ]:
    got = convolution.conv1d(
      x, w, strides=strides, padding=padding, dilation=dilation
    )
    pad = [(padding, padding)] if isinstance(padding, int) else padding
    want = lax.conv_general_dilated(
      x, w, (strides,), pad, rhs_dilation=(dilation,),
      dimension_numbers=('NWC', 'WIO', 'NWC'),
    )  # fmt: skip
    chex.assert_trees_all_close(got, want, atol=1e-5)


def test_channel_shuffle_hand_permutation():
  x = jnp.arange(6.0).reshape(1, 1, 1, 6)
  got = convolution.channel_shuffle(x, 2)
  np.testing.assert_array_equal(got[0, 0, 0], [0, 3, 1, 4, 2, 5])
  x = _rand(0, (2, 3, 3, 12))
  perm = [g * 4 + j for j in range(4) for g in range(3)]
  np.testing.assert_array_equal(convolution.channel_shuffle(x, 3), x[..., perm])
  with pytest.raises(ValueError, match='divide'):
    convolution.channel_shuffle(x, 5)


@pytest.mark.parametrize(
  'n,k,s,p,d,want',
  [(32, 3, 1, 0, 1, 30), (32, 3, 1, 1, 1, 32), (32, 3, 2, 1, 1, 16),
   (7, 3, 2, 0, 2, 2), (224, 7, 2, 3, 1, 112), (10, 3, 3, 'SAME', 1, 4),
   (10, 3, 3, 'VALID', 2, 2), (5, 2, 1, (0, 1), 1, 5)],
)  # fmt: skip
def test_conv_output_size(n, k, s, p, d, want):
  assert (
    convolution.conv_output_size(n, k, strides=s, padding=p, dilation=d) == want
  )
  if not isinstance(p, str):
    pad = (p, p) if isinstance(p, int) else p
    y = _lax(jnp.zeros((1, n, 1, 1)), jnp.zeros((k, 1, 1, 1)), (s, 1),
             (pad, (0, 0)), (d, 1))  # fmt: skip
    assert y.shape[1] == want


@pytest.mark.parametrize(
  'strides,padding,dilation,n_in',
  [(1, 0, 1, 8), (2, 1, 1, 8), (3, (1, 2), 1, 10), (2, 1, 2, 11)],
)
def test_conv_transpose_equals_vjp_of_conv(strides, padding, dilation, n_in):
  x, w = _rand(0, (2, n_in, n_in, 3)), _rand(1, (3, 3, 3, 5))
  pads = (padding, padding) if isinstance(padding, int) else padding
  conv = lambda x: convolution.conv2d(
    x, w, strides=strides, padding=(pads, pads), dilation=dilation, impl='xla'
  )
  y, vjp = jax.vjp(conv, x)
  g = _rand(2, y.shape)
  extra = (n_in + sum(pads) - dilation * 2 - 1) % strides
  got = convolution.conv_transpose2d(
    g, w, strides=strides, padding=(pads, pads), dilation=dilation,
    output_padding=extra,
  )  # fmt: skip
  chex.assert_trees_all_close(got, vjp(g)[0], atol=1e-4)
  size = convolution.conv_transpose_output_size(
    y.shape[1], 3, strides=strides, padding=pads, dilation=dilation,
    output_padding=extra,
  )  # fmt: skip
  assert size == n_in


def test_conv_transpose_same_upsamples():
  y, w = _rand(0, (1, 4, 5, 3)), _rand(1, (3, 3, 2, 3))
  out = convolution.conv_transpose2d(y, w, strides=2, padding='SAME')
  chex.assert_shape(out, (1, 8, 10, 2))
  _, vjp = jax.vjp(lambda x: convolution.conv2d(x, w, strides=2), out)
  chex.assert_trees_all_close(out, vjp(y)[0], atol=1e-5)


def test_receptive_field_of_dilated_stack():
  assert convolution.receptive_field([3, 3, 3], [1, 2, 4]) == 15
  assert convolution.receptive_field([3, 3, 3]) == 7
  assert convolution.receptive_field([3, 3], [1, 1], [2, 1]) == 7
  # Check against the support of the gradient of one output pixel.
  x = jnp.zeros((1, 21, 21, 1))
  w = jnp.ones((3, 3, 1, 1))

  def centre(x):
    for d in (1, 2, 4):
      x = convolution.conv2d(x, w, padding='SAME', dilation=d, impl='xla')
    return x[0, 10, 10, 0]

  support = jnp.abs(jax.grad(centre)(x)[0, :, :, 0]) > 0
  assert int(support.any(1).sum()) == 15 and int(support.any(0).sum()) == 15


def test_bad_arguments_raise():
  x, w = jnp.zeros((1, 5, 5, 4)), jnp.zeros((3, 3, 4, 4))
  with pytest.raises(ValueError, match='FULL'):
    convolution.conv2d(x, w, padding='FULL')
  with pytest.raises(ValueError, match='groups'):
    convolution.conv2d(x, jnp.zeros((3, 3, 4, 6)), groups=4)
  with pytest.raises(ValueError, match='in-channels'):
    convolution.conv2d(x, jnp.zeros((3, 3, 3, 4)))
  with pytest.raises(ValueError, match='NHWC'):
    convolution.conv2d(x[0], w)
  with pytest.raises(ValueError, match='impl'):
    convolution.conv2d(x, w, impl='fft')
  with pytest.raises(ValueError, match='positive'):
    convolution.conv_output_size(5, 0)


@pytest.mark.parametrize(
  ('call', 'match'),
  [
    (lambda: convolution.conv2d(X5, W5, strides=0), 'strides must be positive'),
    (lambda: convolution.conv2d(X5, W5, padding=-1), 'non-negative'),
    (lambda: convolution.conv2d(X5, W5, padding=(1, 1, 1)), 'spatial dims'),
    (lambda: convolution.conv2d(X5, W5, dilation=(1, 2, 3)), 'dilation'),
    (lambda: convolution.conv2d(X5, W5, padding='VALID', dilation=3), 'larger'),
    (lambda: convolution.conv1d(X5, W5), 'NWC'),
    (lambda: convolution.conv1d(X5[:, 0], W5[0], padding='FULL'), 'FULL'),
    (
      lambda: convolution.depthwise_conv2d(X5, jnp.zeros((3, 3, 4, 4))),
      'depthwise kernel',
    ),
    (  # 4 input channels cannot feed 6 depthwise outputs (multiplier 1.5).
      lambda: convolution.depthwise_conv2d(X5, jnp.zeros((3, 3, 1, 6))),
      'groups=4 must divide',
    ),
    (
      lambda: convolution.pointwise_conv2d(X5, jnp.zeros((3, 3, 4, 2))),
      '1x1',
    ),
    (lambda: convolution.pointwise_conv2d(X5, jnp.zeros((3, 2))), 'pointwise'),
    (
      lambda: convolution.conv_transpose2d(X5, jnp.zeros((3, 3, 2, 5))),
      'conv_transpose2d shapes',
    ),
    (
      lambda: convolution.conv_transpose2d(X5, W5, strides=2, output_padding=2),
      'output_padding',
    ),
    (
      lambda: convolution.conv_transpose2d(
        X5, W5, strides=2, padding='SAME', output_padding=1
      ),
      "combined with 'SAME'",
    ),
    (
      lambda: convolution.conv_transpose_output_size(4, 3, output_padding=1),
      'output_padding 1 >= strides 1',
    ),
    (lambda: convolution.conv_output_size(5, 7), 'exceeds padded input'),
    (lambda: convolution.receptive_field([3, 3], [1]), 'differ in length'),
  ],
)
def test_more_bad_arguments_raise(call, match):
  with pytest.raises(ValueError, match=match):
    call()


@pytest.mark.slow
def test_other_convolutions_under_jit():
  x = _rand(0, (2, 6, 6, 4))
  w_dw, w_pw, w = (
    _rand(1, (3, 3, 1, 8)),
    _rand(2, (8, 5)),
    _rand(3, (3, 3, 4, 4)),
  )
  x1, w1 = _rand(4, (2, 9, 4)), _rand(5, (3, 4, 2))
  shuffle_perm = [g * 2 + j for j in range(2) for g in range(2)]

  @jax.jit
  def pairs():
    """(op, lax reference) pairs, compiled together in one call.

    Pointwise runs under jit inside separable.
    """
    dw = _lax(x, w_dw, strides=2, groups=4)
    _, vjp = jax.vjp(lambda v: _lax(v, w, strides=2), jnp.zeros((2, 12, 12, 4)))
    return {
      'depthwise': (convolution.depthwise_conv2d(x, w_dw, strides=2), dw),
      'separable': (
        convolution.depthwise_separable_conv2d(x, w_dw, w_pw, strides=2),
        _lax(dw, w_pw[None, None]),
      ),
      'conv1d': (
        convolution.conv1d(x1, w1, strides=2, padding=1),
        _lax(x1[:, None], w1[None], (1, 2), ((0, 0), (1, 1)))[:, 0],
      ),
      'shuffle': (convolution.channel_shuffle(x, 2), x[..., shuffle_perm]),
      'transpose': (
        convolution.conv_transpose2d(x, w, strides=2, padding='SAME'),
        vjp(x)[0],
      ),
      'grouped': (
        convolution.conv2d(x, w[:, :, :2], groups=2),
        _lax(x, w[:, :, :2], groups=2),
      ),
    }

  for name, (got, want) in pairs().items():
    chex.assert_trees_all_close(got, want, atol=1e-4, custom_message=name)


@pytest.mark.parametrize('impl', convolution.IMPLS)
def test_conv2d_check_grads(impl):
  # Reverse mode only: a backend with a custom VJP has no JVP rule.
  x, w = _rand(0, (1, 5, 6, 2)), _rand(1, (3, 3, 2, 3))
  conv = jax.jit(lambda x, w: convolution.conv2d(x, w, strides=2, impl=impl))
  jax.test_util.check_grads(conv, (x, w), order=1, modes=('rev',))


def test_conv2d_under_jit():
  x, w = _rand(0, (2, 6, 6, 3)), _rand(1, (3, 3, 3, 4))
  f = jax.jit(lambda x, w: convolution.conv2d(x, w, strides=2, padding=1))
  chex.assert_trees_all_close(f(x, w), _lax(x, w, 2, 1), atol=1e-5)
