"""Parameter, multiply-accumulate (MAC) and activation-memory accounting.

Pure functions of integer shapes, following the lecture notes (seed 002):
a standard convolution has `D_K^2 M N` parameters and `D_K^2 M N D_F^2`
MACs, a depthwise separable one `D_K^2 M D_F^2 + M N D_F^2` MACs, and their
ratio is `1/N + 1/D_K^2` (Howard et al. 2017, MobileNets); the VGG-16 table
(Simonyan & Zisserman 2015, as tabulated in the notes, biases not counted) is
`vgg16_table()`. Its parameters sum to the notes' 138M (138,344,128). The
notes and their own rows differ on memory: the rows sum to 15,237,608
activation values (about 61 MB in float32), while the notes' total line says
"24M * 4 bytes ~= 96MB / image"; the table reproduces the rows. A grouped
convolution has 1/groups of the parameters and MACs of the standard one.
"""

from collections.abc import Sequence
import dataclasses
from fractions import Fraction
import math

import numpy as np


def _check(**sizes: int) -> None:
  for name, value in sizes.items():
    if not isinstance(value, int | np.integer) or value < 1:
      raise ValueError(f'{name} must be a positive int, got {value!r}')


def _per_group(c_in: int, c_out: int, groups: int) -> int:
  _check(c_in=c_in, c_out=c_out, groups=groups)
  if c_in % groups or c_out % groups:
    raise ValueError(f'groups={groups} must divide c_in={c_in}, c_out={c_out}')
  return c_in // groups


def dense_params(n_in: int, n_out: int, bias: bool = True) -> int:
  """Parameters of a fully connected layer: `n_in n_out (+ n_out)`."""
  _check(n_in=n_in, n_out=n_out)
  return n_in * n_out + (n_out if bias else 0)


def dense_macs(n_in: int, n_out: int) -> int:
  """MACs of a fully connected layer per example: `n_in n_out`."""
  _check(n_in=n_in, n_out=n_out)
  return n_in * n_out


def conv_params(
  kh: int,
  kw: int,
  c_in: int,
  c_out: int,
  *,
  groups: int = 1,
  bias: bool = False,
) -> int:
  """Parameters of a (grouped) conv: `kh kw (c_in / groups) c_out (+ c_out)`."""
  _check(kh=kh, kw=kw)
  return kh * kw * _per_group(c_in, c_out, groups) * c_out + (
    c_out if bias else 0
  )


def conv_macs(
  kh: int,
  kw: int,
  c_in: int,
  c_out: int,
  h_out: int,
  w_out: int,
  *,
  groups: int = 1,
) -> int:
  """MACs of a (grouped) conv per example: weights x output positions."""
  _check(kh=kh, kw=kw, h_out=h_out, w_out=w_out)
  return kh * kw * _per_group(c_in, c_out, groups) * c_out * h_out * w_out


def depthwise_params(
  kh: int, kw: int, channels: int, *, multiplier: int = 1, bias: bool = False
) -> int:
  """Parameters of a depthwise conv: `kh kw M multiplier`."""
  _check(multiplier=multiplier)
  c_out = channels * multiplier
  return conv_params(kh, kw, channels, c_out, groups=channels, bias=bias)


def depthwise_macs(
  kh: int,
  kw: int,
  channels: int,
  h_out: int,
  w_out: int,
  *,
  multiplier: int = 1,
) -> int:
  """MACs of a depthwise conv: `kh kw M D_F^2` (times the multiplier)."""
  _check(multiplier=multiplier)
  c_out = channels * multiplier
  return conv_macs(kh, kw, channels, c_out, h_out, w_out, groups=channels)


def pointwise_params(c_in: int, c_out: int, *, bias: bool = False) -> int:
  """Parameters of a 1x1 conv: `M N`."""
  return conv_params(1, 1, c_in, c_out, bias=bias)


def pointwise_macs(c_in: int, c_out: int, h_out: int, w_out: int) -> int:
  """MACs of a 1x1 conv: `M N D_F^2`."""
  return conv_macs(1, 1, c_in, c_out, h_out, w_out)


def depthwise_separable_params(kh: int, kw: int, c_in: int, c_out: int) -> int:
  """Parameters of depthwise then pointwise: `D_K^2 M + M N`."""
  return depthwise_params(kh, kw, c_in) + pointwise_params(c_in, c_out)


def depthwise_separable_macs(
  kh: int, kw: int, c_in: int, c_out: int, h_out: int, w_out: int
) -> int:
  """MACs of depthwise then pointwise: `D_K^2 M D_F^2 + M N D_F^2`."""
  return depthwise_macs(kh, kw, c_in, h_out, w_out) + pointwise_macs(
    c_in, c_out, h_out, w_out
  )


def separable_cost_ratio(
  kh: int, kw: int, c_in: int, c_out: int, h_out: int, w_out: int
) -> Fraction:
  """Exact MAC ratio depthwise separable / standard (`1/N + 1/D_K^2`)."""
  return Fraction(
    depthwise_separable_macs(kh, kw, c_in, c_out, h_out, w_out),
    conv_macs(kh, kw, c_in, c_out, h_out, w_out),
  )


def activation_count(shape: Sequence[int]) -> int:
  """Number of values in an activation of the given shape."""
  if any(not isinstance(d, int | np.integer) or d < 0 for d in shape):
    raise ValueError(f'shape must hold non-negative ints, got {shape!r}')
  return math.prod(shape)


def activation_bytes(shape: Sequence[int], dtype: object = np.float32) -> int:
  """Bytes of an activation: count x itemsize (4 for float32)."""
  return activation_count(shape) * np.dtype(dtype).itemsize


@dataclasses.dataclass(frozen=True)
class LayerCost:
  """One row of a cost table: output shape, activation count, parameters."""

  name: str
  shape: tuple[int, ...]
  memory: int
  params: int
  macs: int


VGG16_CONFIG = (64, 64, 'M', 128, 128, 'M', 256, 256, 256, 'M',
                512, 512, 512, 'M', 512, 512, 512, 'M')  # fmt: skip


def vgg_table(
  config: Sequence[int | str] = VGG16_CONFIG,
  *,
  image_size: int = 224,
  in_channels: int = 3,
  fc_sizes: Sequence[int] = (4096, 4096, 1000),
  bias: bool = False,
) -> list[LayerCost]:
  """Per-layer cost of a VGG net (3x3 'SAME' convs, 2x2 max pools, FCs).

  The default is VGG-16 on 224x224x3 without biases, the notes' table.

  Returns:
    Rows for the input, every conv, pool and FC layer.
  """
  _check(image_size=image_size, in_channels=in_channels)
  size, c = image_size, in_channels
  rows = [LayerCost('input', (size, size, c), size * size * c, 0, 0)]
  for i, item in enumerate(config):
    if item == 'M':
      size //= 2
      rows.append(LayerCost(f'pool{i}', (size, size, c), size**2 * c, 0, 0))
      continue
    params = conv_params(3, 3, c, item, bias=bias)
    macs = conv_macs(3, 3, c, item, size, size)
    c = item
    rows.append(
      LayerCost(f'conv3-{c}_{i}', (size, size, c), size**2 * c, params, macs)
    )
  n_in = size * size * c
  for j, n_out in enumerate(fc_sizes):
    rows.append(
      LayerCost(
        f'fc{j}',
        (n_out,),
        n_out,
        dense_params(n_in, n_out, bias=bias),
        dense_macs(n_in, n_out),
      )
    )
    n_in = n_out
  return rows


def vgg16_table() -> list[LayerCost]:
  """The notes' VGG-16 table: 224x224x3 input, no biases."""
  return vgg_table(VGG16_CONFIG)
