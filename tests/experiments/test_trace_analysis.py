"""Tests of experiments/trace_analysis.py: where a trace's time went.

References: hand-written HLO lines with their known kinds, and the trace of
a program whose only expensive op is a convolution.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments import trace_analysis


def test_op_kinds_of_hand_written_hlo():
  hlo = '\n'.join(
    [
      'HloModule m',
      '%fused_computation.1 (p: f32[4]) -> f32[4] {',
      '  %mul.9 = f32[4]{0} multiply(%p, %p)',
      '}',
      'ENTRY %main (a: f32[2,4,4,8]) -> f32[8] {',
      '  %ffi_call.3 = f32[2,4,4,8]{3,2,1,0} custom-call(%a, %w), '
      'custom_call_target="onednn_conv_forward", metadata={op_name='
      '"jit(step)/jvp(Net)/conv1/ffi_call"}',
      '  %convolution.4 = f32[2,4,4,8]{3,2,1,0} convolution(%a, %w), '
      'metadata={op_name="jit(step)/transpose(jvp(Net))/conv_general_dilated"}',
      '  %fusion.5 = f32[8]{0} fusion(%a), kind=kLoop, calls=%fused, '
      'metadata={op_name="jit(step)/jvp(Net)/block1/norm2/reduce_sum"}',
      '  %copy.6 = f32[2,4,4,8]{0,3,2,1} copy(%a), metadata={op_name='
      '"jit(step)/jvp(Net)/relu"}',
      '  %convert_fusion.7 = bf16[8]{0} fusion(%a), kind=kLoop, calls=%f',
      '  %ffi_call.11 = (bf16[2,4,4,8]{3,2,1,0}, f32[8]{0}, f32[8]{0}) '
      'custom-call(%a, %s, %b), custom_call_target="onednn_bn_forward", '
      'metadata={op_name="jit(step)/jvp(Net)/ffi_call"}',
      '  %multiply.8 = f32[8]{0} multiply(%b, %c), metadata={op_name='
      '"jit(step)/mul"}',
      '  ROOT %add.10 = f32[8]{0} add(%b, %c), metadata={op_name='
      '"jit(step)/transpose(jvp(Net))/add"}',
      '}',
    ]
  )
  assert trace_analysis.op_kinds(hlo) == {
    'ffi_call.3': 'conv',
    'convolution.4': 'conv',
    'fusion.5': 'norm',
    'copy.6': 'copy/convert',
    'convert_fusion.7': 'copy/convert',
    'ffi_call.11': 'norm',  # a tuple-typed result; the native BatchNorm
    'multiply.8': 'optimizer',
    'add.10': 'other',
  }  # the fused computation's own instructions are not ops of the trace


def test_breakdown_of_a_convolution_trace(tmp_path):
  x = jnp.asarray(np.random.default_rng(0).standard_normal((8, 32, 32, 32)))
  w = jnp.ones((3, 3, 32, 32), jnp.float32) / 300

  def f(x, w):
    y = jax.lax.conv_general_dilated(
      x, w, (1, 1), 'SAME', dimension_numbers=('NHWC', 'HWIO', 'NHWC')
    )
    return y + 1.0

  jitted = jax.jit(f).lower(x, w).compile()
  jitted(x, w).block_until_ready()
  with jax.profiler.trace(str(tmp_path)):
    for _ in range(2):
      jitted(x, w).block_until_ready()
  times = trace_analysis.op_times(str(tmp_path))
  kinds = trace_analysis.breakdown(str(tmp_path), jitted.as_text(), steps=2)
  assert set(kinds) == set(trace_analysis.KINDS)
  assert sum(kinds.values()) == pytest.approx(sum(times.values()) / 2)
  assert kinds['conv'] > 0 and kinds['norm'] == 0
  # 2 * 8 * 32 * 32 * 32 * 32 * 9 flops: the conv is most of the time.
  assert kinds['conv'] > kinds['other']


def test_breakdown_without_a_trace_is_an_error(tmp_path):
  with pytest.raises(FileNotFoundError, match='no trace'):
    trace_analysis.op_times(str(tmp_path))
