"""ShuffleNet v1 (Zhang, Zhou, Lin & Sun, CVPR 2018).

The notes (seed 002, "Shuffled Convolution"): grouped 1x1 convolutions are
cheap, but stacked they let each output see only its own group's inputs; a
channel shuffle between them mixes the groups.

ShuffleNet unit (paper Fig. 2): 1x1 group conv (g groups) -> BN -> ReLU ->
channel shuffle -> 3x3 depthwise conv (stride 1 or 2) -> BN -> 1x1 group conv
-> BN, with the bottleneck 1/4 of the unit's output channels. Stride-1 units
add the identity; stride-2 units concatenate a 3x3/2 average-pooled shortcut
(so the branch produces ``out - in`` channels); then ReLU. The first
pointwise conv of Stage 2 is not grouped (its input is the narrow stem).

Network (Table 1, 224x224): 3x3/2 conv 24, 3x3/2 max pool, stages 2-4 with
1+3, 1+7, 1+3 units (the first of each stride 2), global pool, fc. Stage
output channels per group count g = 1, 2, 3, 4, 8: 144/288/576,
200/400/800, 240/480/960, 272/544/1088, 384/768/1536. ``ShuffleNet s x``
multiplies them by s (the nearest multiple of 4g, ties up, so the bottleneck
splits into groups). The stem is scaled as in the authors' released models
(megvii-model/ShuffleNet-Series, ShuffleNetV1/network.py): 12, 24, 24, 48
filters for 0.5x, 1x, 1.5x, 2x, raised to the next count for which the first
stride-2 unit's branch (``c2 - stem`` channels) splits into g groups (16 for
0.5x with g = 8, as there). This matters: at 0.5x the stem is a tenth of the
cost (a 24-filter stem gives 43M mult-adds instead of the paper's 38M).

Complexities (MFLOPs, meaning mult-adds): Table 1 for 1x, g = 1, 2, 3, 4, 8:
143, 140, 137, 133, 137; Table 2 for 0.5x: 38 (g = 3); Table 5 and the
authors' README: g = 3 1.5x 292, 2x 524; g = 8 0.5x 40, 1.5x 290, 2x 522.

Stride-1 units are residual (``relu(x + F(x))``), so the family takes
``drop_path_rate`` (stochastic depth, linear rule over all units; stride-2
units, whose shortcut is a pooled concatenation, are never dropped) and
``norm='batch'|'group'`` like the ResNets.
"""

import functools
import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from nets import layers
from nets import norms
from ops import activations
from ops import convolution
from ops import pooling
from ops import regularization

STAGE_CHANNELS = {
  1: (144, 288, 576),
  2: (200, 400, 800),
  3: (240, 480, 960),
  4: (272, 544, 1088),
  8: (384, 768, 1536),
}
STAGE_UNITS = (4, 8, 4)
# Stem filters of the authors' released 0.5x/1x/1.5x/2x models.
AUTHORS_STEM = {0.5: 12, 1.0: 24, 1.5: 24, 2.0: 48}


def stage_channels(groups: int, scale: float) -> tuple[int, ...]:
  """Table 1's stage output channels times ``scale``: the nearest multiple
  of 4g (ties round up), at least 4g."""
  if groups not in STAGE_CHANNELS:
    raise ValueError(
      f'groups must be one of {sorted(STAGE_CHANNELS)}, got {groups}'
    )
  if scale <= 0:
    raise ValueError(f'scale must be positive, got {scale}')
  step = 4 * groups
  return tuple(
    max(step, math.floor(c * scale / step + 0.5) * step)
    for c in STAGE_CHANNELS[groups]
  )


def default_stem_channels(groups: int, scale: float, first_stage: int) -> int:
  """Stem filters for ``scale``: the authors' choice, made divisible.

  Args:
    groups: g.
    scale: the width factor s.
    first_stage: output channels of Stage 2.

  Returns:
    ``AUTHORS_STEM[scale]`` (``round(24 s)`` for other scales), raised until
    ``first_stage - stem`` is a multiple of ``groups`` (the first unit's
    grouped 1x1 conv makes that many channels).
  """
  c = AUTHORS_STEM.get(scale, max(1, round(24 * scale)))
  while (first_stage - c) % groups:
    c += 1
  if c >= first_stage:
    raise ValueError(f'stem of {c} channels leaves no room in {first_stage}')
  return c


class ShuffleUnit(nn.Module):
  """One ShuffleNet unit (Fig. 2b for stride 1, Fig. 2c for stride 2)."""

  features: int
  groups: int
  strides: int = 1
  group_first: bool = True
  norm: norms.ModuleDef = norms.BatchNorm
  drop_path_rate: float = 0.0
  dtype: Any = None

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    """``x: [B, H, W, C_in]`` -> ``[B, H / strides, W / strides, features]``."""
    in_channels = x.shape[-1]
    branch_out = self.features
    if self.strides == 2:
      branch_out -= in_channels  # the pooled shortcut is concatenated
    mid = self.features // 4
    g1 = self.groups if self.group_first else 1
    conv = functools.partial(layers.Conv, kernel_size=1, dtype=self.dtype)
    y = conv(mid, groups=g1, name='gconv1')(x)
    y = activations.relu(self.norm(name='bn1')(y, train))
    if g1 > 1:
      y = convolution.channel_shuffle(y, g1)
    y = layers.DepthwiseConv(
      3, strides=self.strides, dtype=self.dtype, name='dwconv'
    )(y)
    y = self.norm(name='bn2')(y, train)
    y = conv(branch_out, groups=self.groups, name='gconv2')(y)
    y = self.norm(name='bn3')(y, train)
    if self.strides == 1:
      if in_channels != self.features:
        raise ValueError('a stride-1 unit needs in_channels == features')
      y = layers.DropPath(self.drop_path_rate, name='drop_path')(y, train)
      return activations.relu(x + y)
    shortcut = layers.AvgPool(3, 2, padding=1, name='shortcut_pool')(x)
    return activations.relu(
      jnp.concatenate([shortcut.astype(y.dtype), y], axis=-1)
    )


class ShuffleNetV1(nn.Module):
  """ShuffleNet v1 for 224x224 inputs.

  Attributes:
    groups: g, the number of groups of the pointwise convs.
    scale: the width factor s of "ShuffleNet s x".
    stage_units: units per stage (the first one has stride 2).
    stem_channels: filters of the first conv; None for
      :func:`default_stem_channels` (24 at 1x).
    channels: explicit stage channels (overrides ``groups``/``scale``).
    num_classes: output units.
    dropout_rate: dropout before the classifier (0, as in the paper).
    norm: 'batch' (the paper) or 'group' (``nets.norms.NORMS``).
    drop_path_rate: stochastic depth rate of the last unit (linear rule).
    dtype: computation dtype.
  """

  groups: int = 3
  scale: float = 1.0
  stage_units: tuple[int, ...] = STAGE_UNITS
  stem_channels: int | None = None
  channels: tuple[int, ...] | None = None
  num_classes: int = 1000
  dropout_rate: float = 0.0
  norm: str = 'batch'
  drop_path_rate: float = 0.0
  dtype: Any = None

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    """``x: [B, H, W, 3]`` -> logits ``[B, num_classes]``."""
    channels = self.channels or stage_channels(self.groups, self.scale)
    if len(channels) != len(self.stage_units):
      raise ValueError('need one channel count per stage')
    layers.check_rate(self.drop_path_rate, 'drop_path_rate')
    norm = norms.by_name(self.norm, self.dtype)
    stem = self.stem_channels or default_stem_channels(
      self.groups, self.scale, channels[0]
    )
    x = layers.Conv(stem, 3, strides=2, dtype=self.dtype, name='conv1')(x)
    x = norm(name='bn1')(x, train)
    x = activations.relu(x)
    x = layers.MaxPool(3, 2, padding=1, name='maxpool')(x)
    rates = regularization.drop_path_rates(
      sum(self.stage_units), max_rate=self.drop_path_rate
    )
    k = 0
    for s, (out, units) in enumerate(
      zip(channels, self.stage_units, strict=True)
    ):
      for u in range(units):
        x = ShuffleUnit(
          out,
          self.groups,
          strides=2 if u == 0 else 1,
          group_first=not (s == 0 and u == 0),
          norm=norm,
          drop_path_rate=rates[k],
          dtype=self.dtype,
          name=f'stage{s + 2}_unit{u + 1}',
        )(x, train)
        k += 1
    x = pooling.global_avg_pool(x)
    x = layers.Dropout(self.dropout_rate, name='drop')(x, train)
    return layers.Dense(self.num_classes, dtype=self.dtype, name='fc')(x)


def _variants() -> dict:
  """``shufflenet_v1_g{g}`` (1x) and ``shufflenet_v1_g{g}_x{s}``."""
  models = {}
  for g in STAGE_CHANNELS:
    models[f'shufflenet_v1_g{g}'] = functools.partial(ShuffleNetV1, groups=g)
    for s in (0.5, 1.0, 1.5, 2.0):
      tag = str(s).replace('.', '_')
      models[f'shufflenet_v1_g{g}_x{tag}'] = functools.partial(
        ShuffleNetV1, groups=g, scale=s
      )
  return models


shufflenet_v1 = functools.partial(ShuffleNetV1, groups=3)
shufflenet_v1_tiny = functools.partial(
  ShuffleNetV1,
  groups=2,
  channels=(16, 32, 64),
  stage_units=(2, 1, 1),
  stem_channels=8,
  num_classes=10,
)

MODELS: dict = {
  'shufflenet_v1': shufflenet_v1,
  **_variants(),
  'shufflenet_v1_tiny': shufflenet_v1_tiny,
}
