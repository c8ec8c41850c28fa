"""Convnet architectures as flax linen modules, built from ``ops/``.

Public API: ``create(name, **kwargs)``, ``list_models()``,
``default_input_shape(name)``,
``summarize(model, input_shape)`` (parameter and MAC counts per layer without
running the model) and ``capture_intermediates(model, variables, x, ...)``.
"""

from nets.registry import create
from nets.registry import default_input_shape
from nets.registry import family
from nets.registry import list_models
from nets.summary import Summary
from nets.summary import capture_intermediates
from nets.summary import summarize

__all__ = [
  'Summary',
  'capture_intermediates',
  'create',
  'default_input_shape',
  'family',
  'list_models',
  'summarize',
]
