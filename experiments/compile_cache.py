"""A warm start for compilation: JAX's persistent compilation cache.

Every launch of the same config compiles the same XLA programs (the train
step, the eval step, the initialisation, a dozen small helpers); on a 2-core
CPU that is most of the time to the first step. With the cache on, each
compiled executable is written to a folder keyed by its program, devices,
compile options and jax/jaxlib version, and a later launch loads it instead
of compiling (the README's 'Compilation cache' section has the measured cold
and warm numbers). XLA:CPU executables are cached too in this jax (0.10),
and so are those that call the native oneDNN convolution: the XLA FFI call
names its target, which `ops.native` registers when a program that uses it
is traced, before its executable is looked up, so a loaded one finds the
kernel (tests/experiments/test_compile_cache.py checks that a warm run's
metrics are bit-identical to a cold one's).

One exception: when a program with the native convolution spans several
devices, `jax.experimental.custom_partitioning` puts a Python callback's
address in the program, so its key changes from launch to launch and such
step programs are compiled (and stored) again each time. jax's
`jax_remove_custom_partitioning_ptr_from_cache_key` would drop the address,
but it is left off: the convolution's geometry (strides, padding) lives only
in that callback, so two convolutions of the same shapes would share a key.
On one device (a CPU launch without fake devices) and on GPU/TPU (XLA's own
convolution) every program is loaded.

The cache is an optimisation only: a folder that cannot be written (a file
in its place, no permission) or that holds unreadable entries costs one
warning line on stderr, then programs compile as usual. jax itself already
falls back to compiling on a bad entry, but warns once per program; here the
first such warning is shown as one line and the rest are dropped.

`enable(directory)` is the whole interface, for any command-line tool; the
launcher (`experiments/main.py`) calls it with its `--compile_cache_dir`.
"""

import collections
import os
import sys
import tempfile
import warnings

# jax's per-program warnings when an entry cannot be read or written
# (jax/_src/compiler.py: _cache_read, _cache_write).
_JAX_WARNINGS = (
  'Error reading persistent compilation cache entry',
  'Error writing persistent compilation cache entry',
)
# Recorded for every program looked up in the cache, and for every one found.
_LOOKUPS = '/jax/compilation_cache/compile_requests_use_cache'
_HITS = '/jax/compilation_cache/cache_hits'

_events = collections.Counter()
_state = {'directory': None, 'warned': False}


def default_directory(environ: dict[str, str] | None = None) -> str:
  """The cache folder used when no flag says otherwise.

  jax's own `JAX_COMPILATION_CACHE_DIR` wins when it is set (empty: no
  cache); else `$XDG_CACHE_HOME/convnets-jax/jax`, else
  `~/.cache/convnets-jax/jax`: one folder per user, shared by all runs.

  Args:
    environ: the environment to read (default: `os.environ`).

  Returns:
    The folder, or '' for no cache.
  """
  environ = os.environ if environ is None else environ
  if 'JAX_COMPILATION_CACHE_DIR' in environ:
    return environ['JAX_COMPILATION_CACHE_DIR']
  base = environ.get('XDG_CACHE_HOME') or os.path.join(
    os.path.expanduser('~'), '.cache'
  )
  return os.path.join(base, 'convnets-jax', 'jax')


def _warn(text: str) -> None:
  print(f'warning: {" ".join(text.split())}', file=sys.stderr, flush=True)


def _writable(directory: str) -> str:
  """'' if `directory` is (made) a folder this process can write, else why."""
  try:
    os.makedirs(directory, exist_ok=True)
    # The permission bits alone would not say it for root or an ACL.
    with tempfile.TemporaryFile(dir=directory):
      pass
  except OSError as e:
    return f'{type(e).__name__}: {e.strerror or e}'
  return ''


def _show_cache_warnings_once(previous):
  """A `warnings.showwarning` that turns jax's cache warnings into one line."""

  def showwarning(message, category, filename, lineno, file=None, line=None):
    text = str(message)
    if not text.startswith(_JAX_WARNINGS):
      previous(message, category, filename, lineno, file, line)
      return
    if not _state['warned']:
      _state['warned'] = True
      reason = text.partition("': ")[2] or text
      _warn(
        f'compile cache {_state["directory"]}: an entry could not be '
        f'{"read" if "reading" in text else "written"} ({reason}); '
        'compiling as usual (further cache errors are not shown; delete '
        'the folder if this repeats)'
      )

  return showwarning


def _count(event: str, **kwargs) -> None:
  del kwargs  # Metadata of some events; only the counts are kept.
  if event in (_LOOKUPS, _HITS):
    _events[event] += 1


def enable(directory: str | None) -> str | None:
  """Turns on jax's persistent compilation cache in `directory`.

  Call it before the first jax computation; a second call keeps the first
  folder (jax opens its cache once per process). Every program is cached,
  however quickly it compiled: the small ones (the eval step, random-key
  helpers, gathers) together cost seconds on a CPU, and a threshold on the
  measured compile time would make what is cached depend on the machine's
  load. An unusable folder prints one warning line and leaves the cache off.

  Args:
    directory: the cache folder (created if missing); '' or None: no cache.

  Returns:
    A line saying where the cache is and how full, for the caller to print;
    None when the cache is off.
  """
  if not directory:
    return None
  if _state['directory'] is not None:  # jax opens its cache once a process.
    return _status(_state['directory'])
  directory = os.path.abspath(os.path.expanduser(directory))
  if why := _writable(directory):
    _warn(
      f'compile cache {directory} cannot be written ({why}); compiling as '
      'usual (choose another folder with --compile_cache_dir=DIR, or none '
      'with --compile_cache_dir=)'
    )
    return None
  # Here, not at the top: the launcher reads `default_directory()` for its
  # flags, and `--help` answers without importing jax.
  import jax  # noqa: PLC0415

  _state['directory'] = directory
  warnings.showwarning = _show_cache_warnings_once(warnings.showwarning)
  jax.monitoring.register_event_listener(_count)
  jax.config.update('jax_compilation_cache_dir', directory)
  jax.config.update('jax_persistent_cache_min_compile_time_secs', 0.0)
  jax.config.update('jax_persistent_cache_min_entry_size_bytes', -1)
  return _status(directory)


def _status(directory: str) -> str:
  entries = [e for e in os.scandir(directory) if e.name.endswith('-cache')]
  megabytes = sum(e.stat().st_size for e in entries) / 2**20
  return (
    f'compile cache: {directory} ({len(entries)} programs, {megabytes:.1f} '
    'MB; --compile_cache_dir= turns it off)'
  )


def summary() -> str | None:
  """One line: how many programs were loaded from the cache so far.

  Returns:
    'compile cache: H of N programs loaded from DIR', or None when `enable`
    did not turn the cache on. The N - H others were compiled (and written
    to the cache, unless an entry of that name was already there).
  """
  if _state['directory'] is None:
    return None
  return (
    f'compile cache: {_events[_HITS]} of {_events[_LOOKUPS]} programs '
    f'loaded from {_state["directory"]}'
  )
