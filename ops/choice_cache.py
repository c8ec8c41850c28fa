"""Choices measured once per machine, kept in a small JSON file.

Some defaults are best decided by timing the candidates on the machine at
hand: which backend computes a convolution of a given shape faster
(`ops.native.choice`), how many worker processes feed the input pipeline
fastest (`train_lib.data`). A measurement holds for one CPU model, flag
set and core count (and whatever else the caller names in `context`, e.g.
library versions), so each machine gets its own file,
`<directory>/<kind>-<digest of the machine>.json`:

  {"format": 1, "kind": "conv", "machine": {...}, "entries": {key: value}}

A home folder shared by several machines therefore holds one file per
machine, and none overwrites another's. A file that cannot be parsed, or
that says it was written for another machine (copied in by hand), is
ignored with one warning line on stderr and measured again; before the
new measurements are written, the bad file is renamed to `*.bad`, never
deleted. A folder that cannot be written costs one warning line; the
choices are then kept for this process only. Writes go through a
temporary file and `os.replace`, and merge what another process wrote in
the meantime, so concurrent runs never leave a torn file.
"""

from collections.abc import Mapping
import hashlib
import json
import os
import sys
import tempfile
import threading
from typing import Any

from ops import host

FORMAT = 1
ENV = 'CONVNETS_CHOICE_CACHE_DIR'


def default_directory(environ: Mapping[str, str] | None = None) -> str:
  """`$CONVNETS_CHOICE_CACHE_DIR` ('' for none), else the user cache.

  The user cache is `$XDG_CACHE_HOME/convnets-jax/choices`, else
  `~/.cache/convnets-jax/choices`, beside the compile cache
  (`experiments.compile_cache`).
  """
  environ = os.environ if environ is None else environ
  if ENV in environ:
    return environ[ENV]
  base = environ.get('XDG_CACHE_HOME') or os.path.join(
    os.path.expanduser('~'), '.cache'
  )
  return os.path.join(base, 'convnets-jax', 'choices')


def machine(
  context: Mapping[str, str] | None = None, cpuinfo: str | None = None
) -> dict[str, Any]:
  """What a measurement holds for: CPU model, flags, cores and `context`."""
  text = host.read_cpuinfo() if cpuinfo is None else cpuinfo
  flags = ' '.join(sorted(host.cpu_flags(text)))
  return {
    'cpu': host.cpu_model(text),
    'flags': hashlib.sha256(flags.encode()).hexdigest()[:16],
    'cores': host.usable_cpu_count(),
    **{str(k): str(v) for k, v in (context or {}).items()},
  }


def _warn(text: str) -> None:
  print(f'warning: {" ".join(text.split())}', file=sys.stderr, flush=True)


class ChoiceCache:
  """Measured choices of one `kind` for this machine, read once, lazily.

  Args:
    kind: what is chosen ('conv', 'input_workers'); part of the file name.
    context: more of what the measurements depend on (e.g. library
      versions); part of the machine's identity.
    directory: where the file lives (default: `default_directory()`;
      '' keeps the choices in memory only).
    cpuinfo: /proc/cpuinfo's text (tests hand in another machine's).
  """

  def __init__(
    self,
    kind: str,
    context: Mapping[str, str] | None = None,
    directory: str | None = None,
    cpuinfo: str | None = None,
  ):
    self.kind = kind
    self.machine = machine(context, cpuinfo)
    self.directory = default_directory() if directory is None else directory
    digest = hashlib.sha256(
      json.dumps(self.machine, sort_keys=True).encode()
    ).hexdigest()[:12]
    self.path = (
      os.path.join(self.directory, f'{kind}-{digest}.json')
      if self.directory
      else ''
    )
    self._entries: dict[str, Any] | None = None
    self._bad = False  # the file on disk is to be moved aside, not merged
    self._unwritable = False
    self._lock = threading.Lock()

  def _read(self) -> tuple[dict[str, Any], str]:
    """(entries, '') from the file, or ({}, why it is unusable)."""
    try:
      with open(self.path) as f:
        data = json.load(f)
    except (FileNotFoundError, NotADirectoryError):  # nothing written yet
      return {}, ''
    except (OSError, ValueError) as e:
      return {}, f'cannot be read ({type(e).__name__}: {e})'
    if not isinstance(data, dict) or not isinstance(data.get('entries'), dict):
      return {}, 'is not a choice cache file'
    if data.get('format') != FORMAT or data.get('kind') != self.kind:
      return {}, (
        f'has format {data.get("format")!r} and kind {data.get("kind")!r}, '
        f'not {FORMAT} and {self.kind!r}'
      )
    if data.get('machine') != self.machine:
      theirs = data.get('machine')
      cpu = theirs.get('cpu') if isinstance(theirs, dict) else theirs
      return {}, f'was written for another machine ({cpu})'
    return data['entries'], ''

  def _load(self) -> dict[str, Any]:
    if self._entries is None:
      self._entries = {}
      if self.path:
        self._entries, why = self._read()
        if why:
          self._bad = True
          _warn(f'choice cache {self.path} {why}; ignored, measuring again')
    return self._entries

  def get(self, key: str) -> Any:
    """The value measured for `key` on this machine, or None."""
    with self._lock:
      return self._load().get(key)

  def put(self, key: str, value: Any) -> None:
    """Records `value` for `key` and writes the file (merged, atomically)."""
    with self._lock:
      entries = self._load()
      entries[key] = value
      if not self.path or self._unwritable:
        return
      try:
        self._write(entries)
      except OSError as e:
        self._unwritable = True
        _warn(
          f'choice cache {self.path} cannot be written ({e.strerror or e}); '
          'the choices are kept for this process only'
        )

  def _write(self, entries: dict[str, Any]) -> None:
    os.makedirs(self.directory, exist_ok=True)
    if self._bad:
      if os.path.exists(self.path):
        os.replace(self.path, self.path + '.bad')
      self._bad = False
    else:  # keep what another process wrote since we read
      theirs, why = self._read()
      if not why:
        for k, v in theirs.items():
          entries.setdefault(k, v)
    data = {
      'format': FORMAT,
      'kind': self.kind,
      'machine': self.machine,
      'entries': entries,
    }
    fd, tmp = tempfile.mkstemp(dir=self.directory, suffix='.tmp')
    try:
      with os.fdopen(fd, 'w') as f:
        json.dump(data, f, indent=1, sort_keys=True)
      os.replace(tmp, self.path)
    except BaseException:
      os.unlink(tmp)
      raise
