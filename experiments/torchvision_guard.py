"""Imports torchvision beside a CPU-only torch whose ops it cannot load.

The test extra pins the CPU build of torch beside a torchvision whose
compiled extension (``_C.so``) is built against CUDA torch and does not
load. torchvision then fails at import with ``operator torchvision::nms does
not exist``, because two fake-op registrations (``torchvision::nms``,
``torchvision::qnms``) run even when the extension is missing. Defining
only those two schemas first, and only when the extension fails to load,
lets every classification model build and run (detection ops and
``torchvision.io`` stay unavailable). timm imports torchvision, so it needs
the same guard.

Two users: the parity tests (tests/nets/torch_testing.py) and the bench's
PyTorch worker (experiments/bench_torch.py), which must never import jax,
so this module imports nothing but the standard library; torch is passed
in.
"""

import importlib.util
import pathlib
import types

# The Library must outlive the import: dropping it unregisters the schemas.
_FRAGMENTS = []


def define_missing_ops(torch: types.ModuleType) -> None:
  """Defines nms/qnms schemas when torchvision's extension cannot load.

  Does nothing when torchvision is not installed, when its extension loads
  (then it registers the real ops itself) or when already done.
  """
  if _FRAGMENTS:
    return
  spec = importlib.util.find_spec('torchvision')
  if spec is None or spec.origin is None:
    return
  lib = pathlib.Path(spec.origin).parent / '_C.so'
  try:
    torch.ops.load_library(str(lib))
    return
  except OSError:
    pass
  fragment = torch.library.Library('torchvision', 'FRAGMENT')
  for name in ('nms', 'qnms'):
    fragment.define(
      f'{name}(Tensor dets, Tensor scores, float iou_threshold) -> Tensor'
    )
  _FRAGMENTS.append(fragment)


def import_torchvision(torch: types.ModuleType) -> types.ModuleType:
  """``import torchvision`` with the guard applied (ImportError if absent)."""
  define_missing_ops(torch)
  return importlib.import_module('torchvision')
