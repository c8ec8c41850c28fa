"""Tests for ops/cost.py: the lecture notes' numbers (MobileNets, VGG-16)."""

from fractions import Fraction

import numpy as np
import pytest

from ops import cost

M = N = 128
D_K = 3
D_F = 64


def test_standard_vs_depthwise_separable_numbers_of_the_notes():
  assert cost.conv_params(D_K, D_K, M, N) == 147_456
  assert cost.conv_macs(D_K, D_K, M, N, D_F, D_F) == 603_979_776
  assert cost.depthwise_separable_macs(D_K, D_K, M, N, D_F, D_F) == 71_827_456
  assert cost.depthwise_macs(D_K, D_K, M, D_F, D_F) == D_K**2 * M * D_F**2
  assert cost.pointwise_macs(M, N, D_F, D_F) == M * N * D_F**2
  ratio = cost.separable_cost_ratio(D_K, D_K, M, N, D_F, D_F)
  assert ratio == Fraction(1, N) + Fraction(1, D_K**2)
  assert cost.depthwise_separable_params(D_K, D_K, M, N) == 9 * 128 + 128 * 128


def test_grouped_conv_is_standard_over_groups():
  for groups in (1, 2, 4, 8, 32):
    std = cost.conv_params(3, 3, 64, 128)
    assert cost.conv_params(3, 3, 64, 128, groups=groups) * groups == std
    std_macs = cost.conv_macs(3, 3, 64, 128, 8, 8)
    assert cost.conv_macs(3, 3, 64, 128, 8, 8, groups=groups) * groups == (
      std_macs
    )
  assert cost.depthwise_params(3, 3, 32) == cost.conv_params(
    3, 3, 32, 32, groups=32
  )


def test_dense_and_bias_and_activation_memory():
  assert cost.dense_params(7 * 7 * 512, 4096, bias=False) == 102_760_448
  assert cost.dense_params(4096, 1000) == 4096 * 1000 + 1000
  assert cost.dense_macs(4096, 4096) == 16_777_216
  assert cost.conv_params(3, 3, 3, 64, bias=True) == 1_728 + 64
  assert cost.activation_count((224, 224, 64)) == 3_211_264
  assert cost.activation_bytes((224, 224, 64)) == 4 * 3_211_264
  assert cost.activation_bytes((10, 10), np.float16) == 200


def test_vgg16_table_of_the_notes():
  rows = cost.vgg16_table()
  params = [r.params for r in rows if r.params]
  assert params == [
    1_728, 36_864, 73_728, 147_456, 294_912, 589_824, 589_824,
    1_179_648, 2_359_296, 2_359_296, 2_359_296, 2_359_296, 2_359_296,
    102_760_448, 16_777_216, 4_096_000,
  ]  # fmt: skip
  total_params = sum(r.params for r in rows)
  total_memory = sum(r.memory for r in rows)
  assert total_params == 138_344_128  # "TOTAL params: 138M parameters"
  # The notes' rows (input, 13 convs, 5 pools, 3 FCs) sum to 15,237,608
  # values (61 MB in float32); their "TOTAL memory: 24M" line does not equal
  # the sum of their own rows, so the rows are what we check.
  assert total_memory == 15_237_608
  assert cost.activation_bytes((total_memory,)) == 4 * 15_237_608
  shapes = {r.name: r.shape for r in rows}
  assert shapes['pool17'] == (7, 7, 512)
  memory = [r.memory for r in rows]
  assert memory[:4] == [150_528, 3_211_264, 3_211_264, 802_816]  # 150K, 3.2M
  assert memory[-4:] == [25_088, 4096, 4096, 1000]  # 25K, 4096, 4096, 1000


@pytest.mark.parametrize(
  ('call', 'match'),
  [
    (lambda: cost.conv_params(3, 3, 6, 8, groups=4), 'groups=4 must divide'),
    (lambda: cost.conv_params(3, -3, 6, 8), 'kw must be a positive int'),
    (lambda: cost.dense_params(0, 10), 'n_in must be a positive int'),
    (lambda: cost.conv_macs(3, 3, 4, 4, 0, 8), 'h_out must be'),
    (lambda: cost.conv_macs(3, 3, 4.0, 4, 8, 8), 'c_in must be'),
    (lambda: cost.activation_count((3, -1)), 'non-negative ints'),
    (lambda: cost.depthwise_params(3, 3, 8, multiplier=0), 'multiplier'),
    (lambda: cost.pointwise_macs(8, 0, 4, 4), 'c_out must be'),
  ],
)
def test_bad_arguments_raise(call, match):
  with pytest.raises(ValueError, match=match):
    call()
