"""The README's two commands install from the public package index only.

A local version label (`torch==2.13.0+cpu`) exists on no public index, so a
pin carrying one fails for every user off the machine that wrote it; and the
demo must not pull PyTorch (several GB), which only the parity tests need.
Both are read from the files themselves: `make -n -B demo` prints the
install lines the demo would run, without running them.
"""

import pathlib
import re
import shutil
import subprocess
import tomllib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
TORCH = {'torch', 'torchvision', 'torchaudio', 'timm'}


def _name(requirement: str) -> str:
  """The normalised project name of a requirement line ('Foo_bar>=1' -> ...)."""
  return re.split(r'[\s\[<>=!~;@]', requirement.strip(), maxsplit=1)[0].lower()


def _pins() -> list[tuple[str, str]]:
  pins = []
  for line in (ROOT / 'constraints.txt').read_text().splitlines():
    line = line.split('#', 1)[0].strip()
    if line:
      name, _, version = line.partition('==')
      assert version, f'constraints.txt: {line!r} is not a name==version pin'
      pins.append((name, version))
  return pins


def test_constraints_pin_only_public_versions():
  local = [f'{n}=={v}' for n, v in _pins() if '+' in v]
  assert not local, f'local versions no public index has: {local}'


def test_constraints_pin_torch_for_the_tests():
  # The parity tests' tested version stays pinned (without its label: pip
  # takes a local CPU build of the same release where one lies on disk).
  assert ('torch', '2.13.0') in _pins()


def _pulls_torch(extras: set[str]) -> set[str]:
  project = tomllib.loads((ROOT / 'pyproject.toml').read_text())['project']
  names = {_name(r) for r in project['dependencies']}
  for extra in extras:
    names |= {_name(r) for r in project['optional-dependencies'][extra]}
  return names & TORCH


@pytest.mark.skipif(shutil.which('make') is None, reason='needs make')
def test_demo_installs_no_torch():
  dry_run = subprocess.run(
    ['make', '-n', '-B', 'demo'],
    cwd=ROOT,
    capture_output=True,
    text=True,
    check=True,
  ).stdout
  installs = [line for line in dry_run.splitlines() if 'pip install' in line]
  assert installs, dry_run
  extras = set()
  for line in installs:
    for group in re.findall(r'\.\[([^\]]*)\]', line):
      extras |= {e.strip() for e in group.split(',')}
    assert not TORCH & {_name(w) for w in line.split()}, line
  assert not _pulls_torch(extras), (installs, extras)


def test_the_test_extra_brings_the_parity_peers():
  # The check above must be able to fail: the test extra does pull torch.
  assert _pulls_torch({'test'}) == TORCH - {'torchaudio'}
