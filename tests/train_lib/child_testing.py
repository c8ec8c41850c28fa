"""Runs a function of a test module in a child process, on the CPU.

For failures that leave background work behind (orbax's failed reads and
writes): a long-lived test worker must not inherit it, and what reaches the
terminal is then the child's stderr, whole.
"""

import os
import subprocess
import sys

_REPO = os.path.dirname(os.path.dirname(os.path.dirname(__file__)))


def run(test_file: str, function: str, *args) -> subprocess.CompletedProcess:
  """Runs `function(*args)` of `test_file` in a child; asserts it exits 0."""
  script = (
    'import runpy\n'
    f'module = runpy.run_path({test_file!r})\n'
    f'module[{function!r}](*{args!r})\n'
  )
  result = subprocess.run(
    [sys.executable, '-c', script],
    cwd=_REPO,
    env=dict(os.environ, JAX_PLATFORMS='cpu', XLA_FLAGS=''),
    capture_output=True,
    text=True,
    timeout=240,
    check=False,
  )
  assert result.returncode == 0, result.stderr[-3000:]
  return result
