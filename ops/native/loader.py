"""Finds, loads and registers the native libraries (convolution, BatchNorm).

The libraries `_onednn_conv*.so` and `_onednn_bn*.so` are built next to
this file by `pip install` (see setup.py), each optional on its own:
`load()` opens the convolution, `load_bn()` the BatchNorm. Both link
against oneDNN's `libdnnl.so.3`, which the `onednn-cpu-gomp` package puts
in the environment's `lib/`, a folder the dynamic loader does not search:
the loader opens that file first (by its path), so the extensions'
dependency resolves to it. The XLA FFI targets are registered once, on
first use; nothing is loaded at import time.
"""

import ctypes
import functools
import importlib.metadata
import os
import pathlib

import jax

from ops import host

TARGETS = {
  'forward': ('onednn_conv_forward', 'OnednnConvForward'),
  'backward_data': ('onednn_conv_backward_data', 'OnednnConvBackwardData'),
  'backward_weights': (
    'onednn_conv_backward_weights',
    'OnednnConvBackwardWeights',
  ),
}

BN_TARGETS = {
  'forward': ('onednn_bn_forward', 'OnednnBnForward'),
  'backward': ('onednn_bn_backward', 'OnednnBnBackward'),
}

_HERE = pathlib.Path(__file__).resolve().parent


def _find(stem: str) -> pathlib.Path | None:
  found = sorted(_HERE.glob(f'{stem}*.so'))
  return found[0] if found else None


def find_extension() -> pathlib.Path | None:
  """The built convolution in this folder, or None if the build skipped it."""
  return _find('_onednn_conv')


def find_bn_extension() -> pathlib.Path | None:
  """The built BatchNorm in this folder, or None if the build skipped it."""
  return _find('_onednn_bn')


def _find_onednn() -> str:
  """Path of libdnnl.so.3 from the onednn-cpu-gomp package, else its name."""
  try:
    files = importlib.metadata.distribution('onednn-cpu-gomp').files or []
  except importlib.metadata.PackageNotFoundError:
    files = []
  for f in files:
    if f.name == 'libdnnl.so.3':
      return str(pathlib.Path(f.locate()).resolve())
  return 'libdnnl.so.3'  # a system install (e.g. Debian libdnnl3)


def _open(path: pathlib.Path | None, targets: dict, symbols=()) -> tuple:
  """Opens `path`, registers `targets`: (library, '') or (None, why not).

  The library must also export `symbols` (looked up before registering).
  """
  if path is None:
    return None, 'the native library was not built at install time'
  # Idle OpenMP threads sleep instead of spinning, leaving the cores to
  # XLA's pool between native calls (see the package docstring). Read by
  # libgomp when it loads, which is here unless something loaded it first.
  os.environ.setdefault('OMP_WAIT_POLICY', 'PASSIVE')
  try:
    ctypes.CDLL(_find_onednn(), mode=ctypes.RTLD_GLOBAL)
    lib = ctypes.CDLL(str(path))
    for symbol in (*(s for _, s in targets.values()), *symbols):
      getattr(lib, symbol)
  except (OSError, AttributeError) as e:
    return None, f'cannot load {path.name}: {e}'
  for target, symbol in targets.values():
    jax.ffi.register_ffi_target(
      target, jax.ffi.pycapsule(getattr(lib, symbol)), platform='cpu'
    )
  return lib, ''


@functools.cache
def load() -> tuple[ctypes.CDLL | None, str]:
  """Loads the convolution once: (library, '') or (None, why not usable)."""
  lib, why = _open(find_extension(), TARGETS, ('OnednnConvVersion',))
  if lib is not None:
    lib.OnednnConvVersion.restype = ctypes.c_char_p
  return lib, why


@functools.cache
def load_bn() -> tuple[ctypes.CDLL | None, str]:
  """Loads the BatchNorm library once: (library, '') or (None, why not)."""
  return _open(find_bn_extension(), BN_TARGETS, ('OnednnBnSupports',))


def builds(dtype_name: str) -> bool:
  """Whether oneDNN has a convolution for 'float32'/'bfloat16' on this CPU.

  oneDNN 3.2's bfloat16 convolutions need AVX-512 (avx512_core or newer):
  on an AVX2-only CPU it cannot create one, so the library is asked once
  (it builds the three passes of a small convolution) before impl='auto'
  takes oneDNN for a dtype.
  """
  return load()[0] is not None and _probe(dtype_name)


@functools.cache
def _probe(dtype_name: str) -> bool:
  code = {'float32': 0, 'bfloat16': 1}.get(dtype_name)
  return code is not None and bool(load()[0].OnednnConvSupports(code))


def onednn_version() -> str:
  """oneDNN's version as 'major.minor.patch' (the library must load)."""
  lib, why = load()
  if lib is None:
    raise RuntimeError(why)
  return lib.OnednnConvVersion().decode()


def default_threads() -> int:
  """OpenMP threads for a call on one device: OMP_NUM_THREADS or the cores."""
  env = os.environ.get('OMP_NUM_THREADS', '')
  if env.isdigit() and int(env) > 0:
    return int(env)
  return host.usable_cpu_count()
