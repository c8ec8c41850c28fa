"""PyTorch, torchvision and timm for the parity tests, or a failure naming why.

Import as ``from tests.nets import torch_testing`` and call :func:`torch` /
:func:`torchvision` / :func:`timm` inside a test: each returns the imported
module. A module that does not import fails the test: the test extra (``make
test``, CI) installs all three, so a parity test that skipped there would
hide a broken install. Where PyTorch is absent on purpose, set
``CONVNETS_NO_TORCH=1`` and those tests skip, saying why.

torchvision (and timm, which imports it) is imported behind a guard: the
test extra pins the CPU build of torch beside a torchvision whose compiled
extension is built against CUDA torch, and the guard
(experiments/torchvision_guard.py, shared with the bench's PyTorch worker)
defines the two operator schemas torchvision's import needs.
"""

import importlib
import os
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments import torchvision_guard

NO_TORCH = 'CONVNETS_NO_TORCH'


def _require(name: str) -> types.ModuleType:
  """Imports ``name``; fails the test if it cannot (skips when opted out)."""
  try:
    return importlib.import_module(name)
  except ImportError as e:
    if os.environ.get(NO_TORCH) == '1':
      pytest.skip(f'{NO_TORCH}=1 and {name} does not import: {e}')
    pytest.fail(
      f'{name} does not import ({e}); the test extra installs it (make '
      f'test). Set {NO_TORCH}=1 to skip the tests that need PyTorch.',
      pytrace=False,
    )


def torch() -> types.ModuleType:
  """The ``torch`` module (see the module docstring when it is missing)."""
  return _require('torch')


def torchvision() -> types.ModuleType:
  """``torchvision`` with the guard applied."""
  torchvision_guard.define_missing_ops(torch())
  return _require('torchvision')


def timm() -> types.ModuleType:
  """``timm`` (which imports torchvision) with the guard applied."""
  torchvision()
  return _require('timm')


def randomize(model, seed: int = 0):
  """Randomises every BN's running stats and affine params, in place.

  A net built with ``weights=None`` has running mean 0 and variance 1 and
  BN weight 1, bias 0, so a mean/var or scale/bias mix-up in an importer
  would pass; after this one cannot. Also returns the model, in eval mode.
  """
  torch_mod = torch()
  gen = torch_mod.Generator().manual_seed(seed)
  with torch_mod.no_grad():
    for module in model.modules():
      if isinstance(module, torch_mod.nn.modules.batchnorm._BatchNorm):
        n = module.num_features
        module.running_mean.copy_(0.2 * torch_mod.randn(n, generator=gen))
        module.running_var.copy_(0.5 + torch_mod.rand(n, generator=gen))
        module.weight.copy_(0.8 + 0.4 * torch_mod.rand(n, generator=gen))
        module.bias.copy_(0.1 * torch_mod.randn(n, generator=gen))
  return model.eval()


def to_numpy(tensor) -> np.ndarray:
  """A torch tensor as a float32 numpy array."""
  return tensor.detach().cpu().numpy().astype(np.float32)


def nchw_to_nhwc(x: np.ndarray) -> np.ndarray:
  """``[B, C, H, W]`` -> ``[B, H, W, C]`` (4-D); other ranks unchanged."""
  return np.transpose(x, (0, 2, 3, 1)) if x.ndim == 4 else x


def max_rel_error(ours, theirs) -> float:
  """``max |ours - theirs| / max |theirs|``, the README table's number."""
  ours, theirs = np.asarray(ours, np.float64), np.asarray(theirs, np.float64)
  return float(np.max(np.abs(ours - theirs)) / np.max(np.abs(theirs)))


def state_dict(model) -> dict[str, np.ndarray]:
  """A torch module's state_dict as numpy arrays."""
  return {k: v.detach().cpu().numpy() for k, v in model.state_dict().items()}


def _probe_names(zoo_model, variables) -> dict[str, tuple[str, ...]]:
  """{torch module name: flax module path} of every conv and dense layer."""
  from nets import weights_layouts

  layout = weights_layouts.layout_of(zoo_model)
  flat = jax.tree_util.tree_flatten_with_path(variables['params'])[0]
  names = {}
  for path, _ in flat:
    keys = tuple(p.key for p in path)
    if keys[-1] == 'kernel':
      names[layout.rename(keys[:-1])] = keys[:-1]
  return names


def _recorder(seen: dict, name: str):
  def hook(module, inputs, output):  # returns None: output unchanged
    del module, inputs
    seen.setdefault(name, to_numpy(output))

  return hook


def compare(zoo_model, variables, torch_model, x_nchw, *, tol=1e-4):
  """Max relative errors of the logits and of every conv/dense output.

  Runs both nets in inference mode (``train=False``, ``eval()``) on the same
  input, NCHW for PyTorch and NHWC for the zoo, records each conv and dense
  layer's output in PyTorch's execution order, and fails naming the first
  layer whose output differs by more than ``tol`` (relative to the largest
  magnitude of PyTorch's output), so a failure names the stage.

  Returns:
    {'logits': error, 'layers': the largest layer error}.
  """
  torch_mod = torch()
  probes = _probe_names(zoo_model, variables)
  seen, hooks = {}, []
  for name, module in torch_model.named_modules():
    if name in probes:
      hooks.append(module.register_forward_hook(_recorder(seen, name)))
  with torch_mod.no_grad():
    ref = to_numpy(torch_model.eval()(torch_mod.from_numpy(x_nchw)))
  for hook in hooks:
    hook.remove()
  logits, state = zoo_model.apply(
    variables,
    jnp.asarray(nchw_to_nhwc(x_nchw)),
    train=False,
    capture_intermediates=True,
    mutable=['intermediates'],
  )
  captured = state['intermediates']
  worst = 0.0
  for name, theirs in seen.items():  # PyTorch's execution order
    node = captured
    for key in probes[name]:
      node = node[key]
    ours = np.asarray(node['__call__'][0])
    theirs = nchw_to_nhwc(theirs).reshape(ours.shape)
    err = max_rel_error(ours, theirs)
    assert err < tol, (
      f'first differing layer: {name} (zoo {"/".join(probes[name])}), '
      f'max relative error {err:.2e}'
    )
    worst = max(worst, err)
  err = max_rel_error(logits, ref)
  assert err < tol, f'logits differ: max relative error {err:.2e}'
  return {'logits': err, 'layers': worst}
