"""The model registry: one explicit dict from names to constructors.

Each family module (``nets/vgg.py``, ``nets/resnet.py``, ...) exports a
``MODELS`` dict of its named variants; this module merges them, refusing
duplicate names, so ``create('vgg16', num_classes=10)`` works for any model
without import magic.
"""

from collections.abc import Callable
import difflib

import flax.linen as nn

from nets import alexnet
from nets import densenet
from nets import ensemble
from nets import googlenet
from nets import lenet
from nets import mlp
from nets import mobilenet
from nets import resnet
from nets import shufflenet
from nets import small_cnn
from nets import vgg
from nets import wide_resnet

_FAMILIES = (
  mlp,
  small_cnn,
  lenet,
  alexnet,
  vgg,
  googlenet,
  resnet,
  wide_resnet,
  densenet,
  mobilenet,
  shufflenet,
  ensemble,
)


# The families' names in the course's order (from the MLP to the ensemble).
FAMILIES = tuple(m.__name__.rsplit('.', 1)[-1] for m in _FAMILIES)


def _merge(families) -> dict[str, Callable[..., nn.Module]]:
  """Merges the families' ``MODELS`` dicts; a repeated name is a bug."""
  merged = {}
  for family in families:
    for name, constructor in family.MODELS.items():
      if name in merged:
        raise ValueError(
          f'model name {name!r} is registered twice ({family.__name__})'
        )
      merged[name] = constructor
  return merged


# Trimps-Soushen (ILSVRC 2016) fused Inception-v3/v4, Inception-ResNet-v2,
# ResNet-200 and WRN-68-3; the closest diverse trio registered here.
DEFAULT_ENSEMBLE = ('googlenet', 'resnet152', 'densenet161')


def _ensemble(
  members: tuple[str, ...] = DEFAULT_ENSEMBLE,
  weights: tuple[float, ...] | None = None,
  **kwargs,
) -> nn.Module:
  """An :class:`nets.ensemble.Ensemble` of registered models by name."""
  unknown = [m for m in members if m not in MODELS]
  if unknown:
    raise ValueError(f'unknown ensemble members {unknown}')
  return ensemble.from_constructors(
    [MODELS[m] for m in members], weights=weights, **kwargs
  )


MODELS: dict[str, Callable[..., nn.Module]] = {
  **_merge(_FAMILIES),
  'ensemble': _ensemble,
}


def default_input_shape(name: str) -> tuple[int, ...]:
  """The input shape (one example, no batch axis) ``name`` is built for.

  Args:
    name: a registry name.

  Returns:
    e.g. ``(224, 224, 3)`` for ImageNet models, ``(32, 32, 3)`` for CIFAR and
    tiny models, ``(28, 28, 1)`` for LeNet-5 and the MLP, ``(40,)`` for
    ``cnn1d`` and ``(8, 8, 1)`` for ``cnn_small``.
  """
  if name not in MODELS:
    create(name)  # raises the ValueError with close matches
  special = {
    'mlp': (28, 28, 1),
    'lenet5': (28, 28, 1),
    'cnn1d': (40,),
    'cnn_small': (8, 8, 1),
    'alexnet_paper': (227, 227, 3),
  }
  if name in special:
    return special[name]
  if name.endswith('_cifar') or 'tiny' in name:
    return (32, 32, 3)
  return (224, 224, 3)


def family(name: str) -> str:
  """The family module ``name`` is registered by, e.g. 'resnet' for 'resnet50'.

  Raises:
    ValueError: unknown name (the message lists close matches).
  """
  for module in _FAMILIES:
    if name in module.MODELS:
      return module.__name__.rsplit('.', 1)[-1]
  if name == 'ensemble':
    return 'ensemble'
  create(name)  # raises the ValueError with close matches
  raise AssertionError(name)


def list_models() -> list[str]:
  """Names of all registered models, sorted."""
  return sorted(MODELS)


def create(name: str, **kwargs) -> nn.Module:
  """Builds the registered model ``name`` with constructor ``kwargs``.

  Args:
    name: a registry name, e.g. 'vgg16' or 'resnet20_cifar'.
    **kwargs: model options such as ``num_classes``, ``dtype``,
      ``dropout_rate``.

  Returns:
    The (unbound) flax module.

  Raises:
    ValueError: unknown name (the message lists close matches).
  """
  if name not in MODELS:
    close = difflib.get_close_matches(name, MODELS, n=5, cutoff=0.5)
    hint = f'; did you mean {", ".join(close)}?' if close else ''
    raise ValueError(
      f'unknown model {name!r}{hint} ({len(MODELS)} models registered, '
      'see nets.list_models())'
    )
  return MODELS[name](**kwargs)
