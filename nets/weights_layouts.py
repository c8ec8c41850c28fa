"""Where each zoo layer lives in a torchvision or timm state_dict.

One function per family maps a flax module path of this zoo (a tuple of
submodule names, e.g. ``('stage2_block1', 'proj_conv')``) to the PyTorch
module prefix holding the same layer (``'layer2.0.downsample.0'``); the
tensor-level rules (OIHW -> HWIO, BatchNorm's four tensors, dense
transposes) are the same for every family and live in ``nets/weights.py``.
A :class:`Layout` adds what names alone cannot say: the dense layers whose
input is a flattened feature map (PyTorch flattens NCHW, this zoo NHWC), the
dense layers PyTorch stores as 1x1 convolutions (timm's SE gates), and the
classifier layers that fine-tuning re-initialises.

Sources: torchvision 0.28 ``models/{resnet,vgg,alexnet,densenet,googlenet}``
and timm 1.0 ``models/{resnet,efficientnet}`` (``seresnet*``,
``mobilenetv1_*``).
"""

from collections.abc import Callable
import dataclasses
import re

import flax.linen as nn

from nets import alexnet
from nets import densenet
from nets import googlenet
from nets import mobilenet
from nets import resnet
from nets import vgg

Path = tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class Layout:
  """How one model's variables sit in a PyTorch state_dict.

  Attributes:
    source: the PyTorch family, for messages ('torchvision ResNet').
    rename: flax module path -> PyTorch module prefix, or None when the
      layer has no PyTorch counterpart.
    flatten_chw: flax dense path -> (C, H, W) of its flattened NCHW input.
    conv1x1: flax dense paths stored as [out, in, 1, 1] convolutions.
    heads: flax paths of the classifier layers (``num_classes`` outputs).
    fix_key: renames legacy state_dict keys before matching.
    optional: PyTorch key prefixes a file may hold that the zoo model
      need not have (GoogLeNet's auxiliary classifiers).
    stem: flax path of the first convolution (the one that sees the image).
  """

  source: str
  rename: Callable[[Path], str | None]
  flatten_chw: dict[Path, tuple[int, int, int]] = dataclasses.field(
    default_factory=dict
  )
  conv1x1: Callable[[Path], bool] = lambda path: False
  heads: tuple[Path, ...] = ()
  fix_key: Callable[[str], str] = lambda key: key
  optional: tuple[str, ...] = ()
  stem: Path = ('stem_conv',)


def _resnet(model: resnet.ResNet) -> Layout:
  top = {'stem_conv': 'conv1', 'stem_norm': 'bn1', 'head': 'fc'}
  inner = {
    'norm1': 'bn1',
    'norm2': 'bn2',
    'norm3': 'bn3',
    'conv1': 'conv1',
    'conv2': 'conv2',
    'conv3': 'conv3',
    'proj_conv': 'downsample.0',
    'proj_norm': 'downsample.1',
    'se/reduce': 'se.fc1',
    'se/expand': 'se.fc2',
  }

  def rename(path: Path) -> str | None:
    if len(path) == 1 and path[0] in top:
      return top[path[0]]
    m = re.fullmatch(r'stage(\d+)_block(\d+)', path[0])
    sub = inner.get('/'.join(path[1:]))
    if m is None or sub is None:
      return None
    return f'layer{m[1]}.{int(m[2]) - 1}.{sub}'

  return Layout(
    source='torchvision/timm ResNet',
    rename=rename,
    conv1x1=lambda path: path[-2:-1] == ('se',),
    heads=(('head',),),
  )


def _vgg(model: vgg.VGG) -> Layout:
  names, n = {}, 0
  for b, block in enumerate(model.blocks, start=1):
    for i in range(1, len(block) + 1):
      names[f'conv{b}_{i}'] = f'features.{n}'
      names[f'bn{b}_{i}'] = f'features.{n + 1}'
      n += 3 if model.batch_norm else 2
    n += 1  # the max-pool
  names.update(fc6='classifier.0', fc7='classifier.3', fc8='classifier.6')
  c, s = model.blocks[-1][-1], model.pool_size
  return Layout(
    source='torchvision VGG',
    rename=lambda path: names.get('/'.join(path)),
    flatten_chw={('fc6',): (c, s, s)},
    heads=(('fc8',),),
    stem=('conv1_1',),
  )


def _alexnet(model: alexnet.AlexNet) -> Layout:
  names, n, n_conv, channels = {}, 0, 0, 0
  for item in model.spec:
    if item[0] == 'conv':
      n_conv, channels = n_conv + 1, item[1]
      names[f'conv{n_conv}'] = f'features.{n}'
      n += 2  # conv, ReLU
    else:
      n += 1  # pool or LRN
  names.update(fc6='classifier.1', fc7='classifier.4', fc8='classifier.6')
  flatten = {}
  if model.pool_size is not None:
    flatten[('fc6',)] = (channels, model.pool_size, model.pool_size)
  return Layout(
    source='torchvision AlexNet',
    rename=lambda path: names.get('/'.join(path)),
    flatten_chw=flatten,
    heads=(('fc8',),),
    stem=('conv1',),
  )


# torchvision's DenseNet checkpoints were saved with 'norm.1' for 'norm1'.
_DENSENET_LEGACY = re.compile(
  r'^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.'
  r'(?:weight|bias|running_mean|running_var))$'
)


def _densenet(model: densenet.DenseNet) -> Layout:
  top = {
    'stem_conv': 'features.conv0',
    'stem_norm': 'features.norm0',
    'final_norm': f'features.norm{len(model.block_sizes) + 1}',
    'head': 'classifier',
  }

  def rename(path: Path) -> str | None:
    joined = '/'.join(path)
    if joined in top:
      return top[joined]
    m = re.fullmatch(r'block(\d+)/layer(\d+)/((?:norm|conv)[12])', joined)
    if m:
      return f'features.denseblock{m[1]}.denselayer{m[2]}.{m[3]}'
    m = re.fullmatch(r'transition(\d+)/(norm|conv)', joined)
    return f'features.transition{m[1]}.{m[2]}' if m else None

  return Layout(
    source='torchvision DenseNet',
    rename=rename,
    heads=(('head',),),
    fix_key=lambda key: _DENSENET_LEGACY.sub(r'\1\2', key),
  )


def _mobilenet(model: mobilenet.MobileNetV1) -> Layout:
  # timm's stages: a new one at the first block and at every stride 2.
  names, stage, index = {}, -1, 0
  for i, (_, strides) in enumerate(model.blocks, start=1):
    if i == 1 or strides != 1:
      stage, index = stage + 1, 0
    p = f'blocks.{stage}.{index}'
    names.update(
      {
        f'dw{i}': f'{p}.conv_dw',
        f'dw{i}_bn': f'{p}.bn1',
        f'pw{i}': f'{p}.conv_pw',
        f'pw{i}_bn': f'{p}.bn2',
      }
    )
    index += 1
  names.update(conv0='conv_stem', bn0='bn1', fc='classifier')
  return Layout(
    source='timm MobileNet v1 (mobilenetv1_100)',
    rename=lambda path: names.get('/'.join(path)),
    heads=(('fc',),),
    stem=('conv0',),
  )


def _googlenet(model: googlenet.GoogLeNet) -> Layout:
  top = {'conv1': 'conv1', 'conv2_reduce': 'conv2', 'conv2': 'conv3'}
  top.update(head='fc', aux_4a='aux1', aux_4d='aux2')
  branch = {
    'b1': 'branch1',
    'b3_reduce': 'branch2.0',
    'b3': 'branch2.1',
    'b5_reduce': 'branch3.0',
    'b5': 'branch3.1',
    'pool_proj': 'branch4.1',
  }

  def rename(path: Path) -> str | None:
    head, *rest = path
    if head.startswith('inception') and rest and rest[0] in branch:
      return '.'.join([head, branch[rest[0]], *rest[1:]])
    if head in top:
      return '.'.join([top[head], *rest])
    return None

  return Layout(
    source='torchvision GoogLeNet',
    rename=rename,
    flatten_chw={(aux, 'fc1'): (128, 4, 4) for aux in ('aux_4a', 'aux_4d')},
    heads=(('head',), ('aux_4a', 'fc2'), ('aux_4d', 'fc2')),
    optional=('aux1.', 'aux2.'),
    stem=('conv1', 'conv'),
  )


_LAYOUTS: tuple[tuple[type, Callable[..., Layout]], ...] = (
  (resnet.ResNet, _resnet),
  (vgg.VGG, _vgg),
  (alexnet.AlexNet, _alexnet),
  (densenet.DenseNet, _densenet),
  (mobilenet.MobileNetV1, _mobilenet),
  (googlenet.GoogLeNet, _googlenet),
)


def layout_of(model: nn.Module) -> Layout:
  """The :class:`Layout` of ``model``'s family.

  Raises:
    ValueError: a family without a PyTorch layout here.
  """
  for cls, make in _LAYOUTS:
    if isinstance(model, cls):
      return make(model)
  families = ', '.join(cls.__name__ for cls, _ in _LAYOUTS)
  raise ValueError(
    f'no PyTorch layout for {type(model).__name__} models; supported '
    f'families: {families}'
  )
