"""PyTorch state_dicts <-> this zoo's flax variables (torchvision, timm).

``load(model, path, input_shape=...)`` reads a ``.pth`` (``torch.load`` with
``weights_only=True``) or ``.safetensors`` file and returns
``{'params': ..., 'batch_stats': ...}`` for ``model``; ``to_state_dict``
goes back. The per-family names are in ``nets/weights_layouts.py``; the
tensor rules, the same for every family, are here:

* convolutions ``[O, I / groups, kh, kw]`` (OIHW) -> ``[kh, kw, I / groups,
  O]`` (HWIO); grouped and depthwise kernels need nothing more, both
  libraries keep each group's output channels together;
* dense ``[out, in]`` -> ``[in, out]``; a dense layer after a flattened
  feature map (VGG's and AlexNet's first fc layer) also reorders its input
  rows from PyTorch's (C, H, W) flatten to this zoo's (H, W, C);
* BatchNorm ``weight, bias, running_mean, running_var`` -> params ``scale,
  bias`` and batch_stats ``mean, var``; ``num_batches_tracked`` is dropped
  (exported as 0).

A file is checked whole before anything is returned: missing, unexpected
or mis-shaped tensors raise one :class:`WeightsError` naming the first
offending keys, so a caller never holds half-imported variables.
"""

from collections.abc import Mapping
import os
from typing import Any

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from nets import weights_layouts

Path = tuple[str, ...]
_BN = {'scale': 'weight', 'bias': 'bias', 'mean': 'running_mean'}
_BN['var'] = 'running_var'
_SHOWN = 3  # offending keys named in a message


class WeightsError(ValueError):
  """A weights file that does not fit the model (one line: the first keys)."""


def first_few(items: list[str], sep: str = ', ') -> str:
  """'a, b, c and 2 more': the first items of a list, for one-line errors."""
  more = f' and {len(items) - _SHOWN} more' if len(items) > _SHOWN else ''
  return sep.join(items[:_SHOWN]) + more


_first = first_few


def load_state_dict(path: str) -> dict[str, np.ndarray]:
  """Reads a PyTorch state_dict as float32/int numpy arrays.

  Args:
    path: a ``.safetensors`` file, or a ``.pth``/``.pt``/``.bin`` file
      written by ``torch.save`` (a state_dict, or a checkpoint dict holding
      one under 'state_dict' or 'model'; a DataParallel 'module.' prefix is
      removed). Read with ``weights_only=True``: no code in it runs.

  Raises:
    WeightsError: a missing or unreadable file, or one without tensors.
  """
  if not os.path.isfile(path):
    raise WeightsError(f'no weights file {path!r}')
  try:
    if path.endswith('.safetensors'):
      from safetensors.numpy import load_file

      raw = load_file(path)
    else:
      import torch

      raw = torch.load(path, map_location='cpu', weights_only=True)
  except ImportError as e:
    raise WeightsError(f'reading {path!r} needs {e.name}: {e}') from e
  except Exception as e:  # noqa: BLE001 - torch/safetensors raise many kinds
    first = str(e).strip().splitlines()[0] if str(e).strip() else ''
    raise WeightsError(
      f'cannot read {path!r} as a state_dict: {type(e).__name__}: {first}'
    ) from e
  for wrapper in ('state_dict', 'model'):
    if isinstance(raw, Mapping) and isinstance(raw.get(wrapper), Mapping):
      raw = raw[wrapper]
  if not isinstance(raw, Mapping) or not raw:
    raise WeightsError(f'{path!r} holds no state_dict of tensors')
  out = {}
  for key, value in raw.items():
    if not hasattr(value, 'shape'):
      raise WeightsError(f'{path!r}: {key!r} is not a tensor')
    key = key[len('module.') :] if key.startswith('module.') else key
    out[key] = value.numpy() if hasattr(value, 'numpy') else np.asarray(value)
  return out


def abstract_variables(model: nn.Module, input_shape) -> dict[str, Any]:
  """Shapes of ``model.init``'s variables for one ``input_shape`` example."""
  x = jax.ShapeDtypeStruct((1, *input_shape), jnp.float32)
  return jax.eval_shape(
    lambda x: model.init({'params': jax.random.key(0)}, x, train=False), x
  )


def _modules(variables: Mapping) -> dict[Path, dict[str, tuple[str, Any]]]:
  """{module path: {leaf name: (collection, leaf)}} of params/batch_stats."""
  modules: dict[Path, dict[str, tuple[str, Any]]] = {}
  for col in ('params', 'batch_stats'):
    flat = flax.traverse_util.flatten_dict(
      flax.core.unfreeze(variables.get(col, {}))
    )
    for path, leaf in flat.items():
      modules.setdefault(path[:-1], {})[path[-1]] = (col, leaf)
  return modules


def _torch_name(leaf: str, leaves: Mapping) -> str:
  """The PyTorch tensor name of one leaf of a module (without prefix)."""
  if 'mean' in leaves:  # a BatchNorm
    return _BN[leaf]
  return {'kernel': 'weight', 'bias': 'bias'}[leaf]


def _to_torch(layout, path, leaf, value) -> np.ndarray:
  """One zoo leaf as the PyTorch tensor."""
  value = np.asarray(value)
  if leaf != 'kernel':
    return value
  if value.ndim == 4:  # HWIO -> OIHW
    return value.transpose(3, 2, 0, 1)
  if path in layout.flatten_chw:  # rows (H, W, C) -> columns (C, H, W)
    c, h, w = layout.flatten_chw[path]
    out = value.shape[-1]
    return value.reshape(h, w, c, out).transpose(3, 2, 0, 1).reshape(out, -1)
  if layout.conv1x1(path):
    return value.T[:, :, None, None]
  return value.T


def _torch_shape(layout, path, leaf, shape) -> tuple[int, ...]:
  """The shape of ``_to_torch``'s result for a leaf of ``shape``, no array.

  Checking a file's shapes must not build a model-sized array per leaf
  (VGG-16's fc6 alone is 411 MB in float32).
  """
  shape = tuple(shape)
  if leaf != 'kernel':
    return shape
  if len(shape) == 4:  # HWIO -> OIHW
    kh, kw, i, o = shape
    return (o, i, kh, kw)
  if path in layout.flatten_chw:  # rows reordered, then transposed
    return shape[::-1]
  if layout.conv1x1(path):
    return (shape[1], shape[0], 1, 1)
  return shape[::-1]


def _from_torch(layout, path, leaf, tensor, shape) -> np.ndarray:
  """One PyTorch tensor as the zoo leaf of ``shape`` (``_to_torch`` undone)."""
  if leaf != 'kernel':
    return tensor
  if len(shape) == 4:  # OIHW -> HWIO
    return tensor.transpose(2, 3, 1, 0)
  if path in layout.flatten_chw:
    c, h, w = layout.flatten_chw[path]
    out = tensor.shape[0]
    return tensor.reshape(out, c, h, w).transpose(2, 3, 1, 0).reshape(-1, out)
  if layout.conv1x1(path):
    return tensor.reshape(tensor.shape[:2]).T
  return tensor.T


def _plan(layout, modules) -> dict[str, tuple[Path, str, str, Any]]:
  """{torch key: (module path, leaf, collection, zoo leaf)} for a model."""
  plan, unnamed = {}, []
  for path, leaves in modules.items():
    prefix = layout.rename(path)
    if prefix is None:
      unnamed.append('/'.join(path))
      continue
    for leaf, (col, value) in leaves.items():
      key = f'{prefix}.{_torch_name(leaf, leaves)}'
      plan[key] = (path, leaf, col, value)
  if unnamed:
    raise WeightsError(
      f'{layout.source} has no layer for {_first(unnamed)} of this model'
    )
  return plan


def to_state_dict(model: nn.Module, variables: Mapping) -> dict[str, Any]:
  """The zoo's ``variables`` as a PyTorch state_dict of numpy arrays.

  Every BatchNorm also gets ``num_batches_tracked = 0`` (int64), so the
  result loads into the torchvision/timm model with ``strict=True`` (wrap
  the values with ``torch.from_numpy``).
  """
  layout = weights_layouts.layout_of(model)
  modules = _modules(variables)
  out = {}
  for key, (path, leaf, _, value) in _plan(layout, modules).items():
    out[key] = np.ascontiguousarray(_to_torch(layout, path, leaf, value))
    if leaf == 'mean':
      tracked = key[: -len('running_mean')] + 'num_batches_tracked'
      out[tracked] = np.zeros((), np.int64)
  return out


def from_state_dict(
  model: nn.Module,
  state_dict: Mapping[str, Any],
  *,
  like: Mapping,
  new_head: bool = False,
  gray_stem: bool = False,
) -> tuple[dict[str, Any], list[str]]:
  """Builds the zoo's variables for ``model`` from a PyTorch state_dict.

  Args:
    model: the flax module (its family selects the layout).
    state_dict: PyTorch names -> arrays (``load_state_dict``'s result).
    like: variables of ``model`` (arrays, or ``jax.ShapeDtypeStruct`` when
      ``new_head`` is False), which fix the structure and shapes.
    new_head: when the file's classifier has another number of outputs,
      keep ``like``'s classifier (fine-tuning on other classes) instead of
      raising.
    gray_stem: when the model's first convolution takes one channel and the
      file's three, sum the file's kernel over its input channels: exactly
      the PyTorch net applied to the gray image repeated in R, G and B.

  Returns:
    ``({'params': ..., 'batch_stats': ...}, re-initialised head paths)``,
    float32 numpy leaves.

  Raises:
    WeightsError: missing, unexpected or mis-shaped tensors (the first
      offending keys are named), or a model the layout cannot name.
  """
  layout = weights_layouts.layout_of(model)
  plan = _plan(layout, _modules(like))
  sd = {layout.fix_key(k): np.asarray(v) for k, v in state_dict.items()}
  sd = {k: v for k, v in sd.items() if not k.endswith('num_batches_tracked')}
  stem = f'{layout.rename(layout.stem)}.weight'
  if gray_stem and stem in sd and stem in plan:
    wanted = plan[stem][3].shape  # [kh, kw, in, out]
    if wanted[2] == 1 and sd[stem].ndim == 4 and sd[stem].shape[1] == 3:
      sd[stem] = sd[stem].sum(axis=1, keepdims=True)
  extra = [k for k in sd if k not in plan]
  extra = [k for k in extra if not k.startswith(layout.optional)]
  missing = [k for k in plan if k not in sd]
  if missing or extra:
    parts = [f'missing {_first(missing)}'] if missing else []
    parts += [f'unexpected {_first(extra)}'] if extra else []
    raise WeightsError(
      f'the file does not fit {type(model).__name__} ({layout.source}): '
      + '; '.join(parts)
    )
  heads = set(layout.heads) if new_head else set()
  out: dict[str, dict] = {'params': {}, 'batch_stats': {}}
  wrong, reinit = [], set()
  for key, (path, leaf, col, value) in plan.items():
    shape = tuple(value.shape)
    tensor = sd[key]
    expected = _torch_shape(layout, path, leaf, shape)
    if tuple(tensor.shape) != expected:
      if path in heads:
        reinit.add(path)
        continue
      wrong.append(f'{key} {tuple(tensor.shape)} != {expected}')
      continue
    leaf_value = _from_torch(layout, path, leaf, tensor, shape)
    out[col][(*path, leaf)] = np.ascontiguousarray(leaf_value, np.float32)
  if wrong:
    raise WeightsError(
      f'the file does not fit {type(model).__name__} ({layout.source}): '
      f'shapes differ for {_first(wrong)}'
    )
  for path, leaf, col, value in plan.values():
    if path in reinit:
      out[col][(*path, leaf)] = np.asarray(value, np.float32)
  variables = {
    col: flax.traverse_util.unflatten_dict(leaves)
    for col, leaves in out.items()
  }
  return variables, sorted('/'.join(p) for p in reinit)


def load(model: nn.Module, path: str, *, input_shape) -> dict[str, Any]:
  """``from_state_dict(model, load_state_dict(path))`` for one input shape.

  Args:
    model: a registered model of a supported family (built with the file's
      ``num_classes``).
    path: a ``.pth`` or ``.safetensors`` state_dict.
    input_shape: one example's shape, e.g. ``(224, 224, 3)``.

  Returns:
    ``{'params': ..., 'batch_stats': ...}`` for ``model.apply``.
  """
  like = abstract_variables(model, input_shape)
  variables, _ = from_state_dict(model, load_state_dict(path), like=like)
  return variables


def save_state_dict(state_dict: Mapping[str, Any], path: str) -> None:
  """Writes ``to_state_dict``'s result as ``.safetensors`` or ``.pth``."""
  if path.endswith('.safetensors'):
    from safetensors.numpy import save_file

    save_file({k: np.ascontiguousarray(v) for k, v in state_dict.items()}, path)
    return
  import torch

  tensors = {k: torch.from_numpy(np.array(v)) for k, v in state_dict.items()}
  torch.save(tensors, path)
