"""Builds the optional native ops: convolution and training BatchNorm.

Everything else about the package is in pyproject.toml. Two extensions,
each optional on its own: `ops/native/onednn_conv.cc` (for
`ops.convolution.conv2d`) and `ops/native/onednn_bn.cc` (for
`ops.normalization.batch_norm_train`). Each is a plain shared library of
XLA FFI handlers (loaded with ctypes by `ops/native/loader.py`, not
imported), compiled against the XLA FFI headers shipped in jaxlib and the
oneDNN CPU build from the package index (`onednn-devel-cpu-gomp`, headers,
and `onednn-cpu-gomp`, the library; both build requirements).
`DNNL_ROOT=/prefix` points at another oneDNN install.

If one cannot be built (no C++ compiler, no oneDNN for this platform), the
install still succeeds with a warning and its op uses XLA;
`ops.native.backend_status()` and `ops.native.bn.unavailable_reason()` say
why.
"""

import importlib.metadata
import os
import pathlib
import sys

from setuptools import Extension
from setuptools import setup
from setuptools.command.build_ext import build_ext

# Extension name -> (source, the op that falls back to XLA without it).
EXTENSIONS = {
  'ops.native._onednn_conv': (
    'ops/native/onednn_conv.cc',
    'native convolution not built ({}); ops.convolution.conv2d will use XLA.',
  ),
  'ops.native._onednn_bn': (
    'ops/native/onednn_bn.cc',
    'native BatchNorm not built ({}); '
    'ops.normalization.batch_norm_train will use XLA.',
  ),
}


def _dist_file(dist: str, name: str) -> pathlib.Path | None:
  """Where package `dist` installed the file whose path ends with `name`."""
  try:
    files = importlib.metadata.distribution(dist).files or []
  except importlib.metadata.PackageNotFoundError:
    return None
  for f in files:
    if f.as_posix().endswith('/' + name):
      return pathlib.Path(f.locate()).resolve()
  return None


def _onednn_dirs() -> tuple[str, str]:
  """(include dir, library dir) of oneDNN; RuntimeError if there is none."""
  root = os.environ.get('DNNL_ROOT')
  if root:
    lib = os.path.join(root, 'lib64')
    if not os.path.isdir(lib):
      lib = os.path.join(root, 'lib')
    return os.path.join(root, 'include'), lib
  header = _dist_file('onednn-devel-cpu-gomp', 'oneapi/dnnl/dnnl.hpp')
  library = _dist_file('onednn-cpu-gomp', 'libdnnl.so.3')
  if header and library:
    return str(header.parent.parent.parent), str(library.parent)
  if os.path.exists('/usr/include/oneapi/dnnl/dnnl.hpp'):  # Debian
    return '/usr/include', '/usr/lib'
  raise RuntimeError('oneDNN not found (pip onednn-devel-cpu-gomp)')


def _ffi_include_dir() -> str:
  import jaxlib  # noqa: PLC0415 (a build requirement, not a setup.py import)

  path = os.path.join(os.path.dirname(jaxlib.__file__), 'include')
  if not os.path.exists(os.path.join(path, 'xla', 'ffi', 'api', 'ffi.h')):
    raise RuntimeError(f'no XLA FFI headers in {path}')
  return path


class OptionalBuildExt(build_ext):
  """Builds the extension when it can; otherwise warns and goes on."""

  def initialize_options(self):
    super().initialize_options()
    self.force = True  # never reuse a stale object from an old build/

  def build_extensions(self):
    self.check_extensions_list(self.extensions)
    for ext in list(self.extensions):  # build_extension may drop one
      self.build_extension(ext)

  def build_extension(self, ext):
    try:
      include, libdir = _onednn_dirs()
      ext.include_dirs += [include, _ffi_include_dir()]
      ext.library_dirs += [libdir]
      super().build_extension(ext)
    except Exception as e:  # noqa: BLE001 (any failure means: no native op)
      self.extensions.remove(ext)  # nothing to copy into the source tree
      print('WARNING: ' + EXTENSIONS[ext.name][1].format(e), file=sys.stderr)


setup(
  ext_modules=[
    Extension(
      name,
      [source],
      libraries=['dnnl'],
      extra_compile_args=[
        '-O2',
        '-std=c++17',
        '-fopenmp',
        '-fvisibility=hidden',
        '-Wno-return-type',
      ],
      extra_link_args=['-fopenmp'],
      language='c++',
    )
    for name, (source, _) in EXTENSIONS.items()
  ],
  cmdclass={'build_ext': OptionalBuildExt},
)
