"""Convnet architectures as flax linen modules, built from ``ops/``."""

from nets.registry import create
from nets.registry import list_models

__all__ = ['create', 'list_models']
