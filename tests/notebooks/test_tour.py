"""Tests of notebooks/tour.ipynb, the course in one notebook.

Fast: the committed notebook is valid, has no outputs, and is exactly what
notebooks/build_tour.py builds; its first cell (the Colab install) does
nothing outside Colab, stops with a message naming `REPO_URL` in Colab when
that is unset, and otherwise clones and installs with the pinned
constraints. Slow: the notebook runs top to bottom in a Python kernel, as CI
runs it, and every assert in its cells holds.
"""

import glob
import importlib.util
import json
import os
import pathlib
import shutil
import subprocess
import sys
import time
import types
import zipfile

import nbformat
import pytest

_ROOT = pathlib.Path(__file__).resolve().parents[2]
_NOTEBOOK = _ROOT / 'notebooks' / 'tour.ipynb'
_FAKE_DEVICES = '--xla_force_host_platform_device_count'
# For the whole notebook, kernel start excluded (the CI budget).
_NOTEBOOK_TIMEOUT_S = 120


def _load_builder():
  spec = importlib.util.spec_from_file_location(
    'build_tour', _ROOT / 'notebooks' / 'build_tour.py'
  )
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def _read():
  return nbformat.read(_NOTEBOOK, as_version=4)


def _code_cells(nb):
  return [c for c in nb.cells if c.cell_type == 'code']


def test_notebook_is_valid_and_has_no_outputs():
  nb = _read()
  nbformat.validate(nb)
  assert nb.metadata.kernelspec.name == 'python3'
  cells = _code_cells(nb)
  assert len(cells) == 7  # Install, then the six sections.
  for cell in cells:
    assert cell.outputs == [], cell.source[:60]
    assert cell.execution_count is None, cell.source[:60]


def test_notebook_is_what_the_build_script_writes():
  # The script is the reviewable source: an edit made only in the notebook
  # (or a forgotten rebuild) fails here.
  built = json.loads(nbformat.writes(_load_builder().build()))
  assert json.loads(_NOTEBOOK.read_text()) == built


class _Recorder:
  """Stands in for subprocess.run and os.chdir; records every call."""

  def __init__(self):
    self.calls = []

  def run(self, args, **kwargs):
    self.calls.append(('run', list(args), kwargs.get('cwd')))
    return subprocess.CompletedProcess(args, 0)

  def chdir(self, path):
    self.calls.append(('chdir', path, None))


def _run_install_cell(
  monkeypatch, *, colab, repo_url='', gpu=False, tpu=False, content=None
):
  source = _code_cells(_read())[0].source
  assert "REPO_URL = ''" in source
  source = source.replace("REPO_URL = ''", f'REPO_URL = {repo_url!r}')
  if content is not None:  # Colab's /content, moved to a test folder.
    assert source.count("'/content/") == 2
    source = source.replace("'/content/", f"'{content}/")
  recorder = _Recorder()
  monkeypatch.setattr(subprocess, 'run', recorder.run)
  monkeypatch.setattr(os, 'chdir', recorder.chdir)
  monkeypatch.setattr(sys, 'path', list(sys.path))
  # The runtime's hardware, as the cell probes it.
  real_find_spec, real_glob = importlib.util.find_spec, glob.glob
  monkeypatch.setattr(shutil, 'which', lambda name: gpu and f'/usr/bin/{name}')
  monkeypatch.setattr(
    importlib.util,
    'find_spec',
    lambda name, *a: (
      (tpu and object()) if name == 'libtpu' else real_find_spec(name, *a)
    ),
  )
  monkeypatch.setattr(
    glob,
    'glob',
    lambda pattern, **kw: (
      [] if pattern.startswith('/dev/') else real_glob(pattern, **kw)
    ),
  )
  if colab:
    monkeypatch.setitem(sys.modules, 'google.colab', types.ModuleType('c'))
  else:
    monkeypatch.delitem(sys.modules, 'google.colab', raising=False)
  path_before = list(sys.path)
  exec(compile(source, 'install-cell', 'exec'), {})
  return recorder.calls, path_before


def test_install_cell_does_nothing_outside_colab(monkeypatch):
  calls, path_before = _run_install_cell(
    monkeypatch, colab=False, repo_url='https://example.invalid/x.git'
  )
  assert calls == []
  assert sys.path == path_before


def test_install_cell_in_colab_without_url_stops_with_a_message(
  monkeypatch, tmp_path
):
  with pytest.raises(RuntimeError, match='Set REPO_URL.*or upload'):
    _run_install_cell(monkeypatch, colab=True, content=tmp_path)


def test_install_cell_in_colab_unpacks_an_uploaded_archive(
  monkeypatch, tmp_path
):
  # What `git archive --prefix=convnets-jax/ -o convnets-jax.zip HEAD` makes.
  with zipfile.ZipFile(tmp_path / 'convnets-jax.zip', 'w') as archive:
    archive.writestr('convnets-jax/constraints.txt', 'jax==0.10.2\n')
  calls, _ = _run_install_cell(monkeypatch, colab=True, content=tmp_path)
  repo = f'{tmp_path}/convnets-jax'
  assert (tmp_path / 'convnets-jax' / 'constraints.txt').read_text() == (
    'jax==0.10.2\n'
  )
  pip = [sys.executable, '-m', 'pip', 'install', '--quiet']
  assert calls == [
    ('run', [*pip, '-c', 'constraints.txt', '-e', '.'], repo),
    ('chdir', repo, None),
  ]


@pytest.mark.parametrize(
  'gpu, tpu, extra',
  [
    (False, False, []),
    (True, False, ['jax[cuda12]']),
    (False, True, ['jax[tpu]']),
  ],
)
def test_install_cell_in_colab_clones_and_installs(
  monkeypatch, gpu, tpu, extra
):
  url = 'https://example.invalid/convnets-jax.git'
  calls, _ = _run_install_cell(
    monkeypatch, colab=True, repo_url=url, gpu=gpu, tpu=tpu
  )
  repo = '/content/convnets-jax'
  pip = [sys.executable, '-m', 'pip', 'install', '--quiet']
  assert calls == [
    ('run', ['git', 'clone', '--depth=1', url, repo], None),
    ('run', [*pip, '-c', 'constraints.txt', '-e', '.', *extra], repo),
    ('chdir', repo, None),
  ]
  assert sys.path[0] == repo
  # The file the install pins its versions with is at the clone's root.
  assert (_ROOT / 'constraints.txt').is_file()


def _kernel_env(tmp_path):
  """The suite's environment for the kernel, with one CPU device.

  tests/conftest.py asks XLA for 8 fake devices, which a kernel would
  inherit: the notebook is a one-device run, as on a laptop or in Colab.
  """
  env = dict(os.environ)
  flags = [
    f for f in env.get('XLA_FLAGS', '').split() if _FAKE_DEVICES not in f
  ]
  env['XLA_FLAGS'] = ' '.join(flags)
  env['JAX_PLATFORMS'] = 'cpu'
  # A fresh compile cache: the notebook runs cold, as on a first visit
  # (later chunks of its training load what the first one compiled).
  env['JAX_COMPILATION_CACHE_DIR'] = str(tmp_path / 'jax_cache')
  # The notebook writes its run and study into tempfile's folder.
  (tmp_path / 'tmp').mkdir()
  env['TMPDIR'] = str(tmp_path / 'tmp')
  env['PYTHONPATH'] = os.pathsep.join(
    p for p in (str(_ROOT), env.get('PYTHONPATH')) if p
  )
  return env


@pytest.mark.slow
def test_notebook_runs_top_to_bottom(tmp_path):
  import nbclient  # noqa: PLC0415 - only the slow tier needs a kernel.

  work = tmp_path / 'work'
  work.mkdir()
  shutil.copy(_NOTEBOOK, work / 'tour.ipynb')
  nb = nbformat.read(work / 'tour.ipynb', as_version=4)
  deadline = time.monotonic() + _NOTEBOOK_TIMEOUT_S
  client = nbclient.NotebookClient(
    nb,
    kernel_name='python3',
    # One budget for all the cells: each gets what the previous ones left.
    timeout_func=lambda cell: max(1, int(deadline - time.monotonic())),
    resources={'metadata': {'path': str(work)}},
  )
  # Any cell error (a failed assert included) raises CellExecutionError.
  client.execute(env=_kernel_env(tmp_path))

  outputs = [o for c in _code_cells(nb) for o in c.outputs]
  text = ''.join(o.get('text', '') for o in outputs)
  assert 'on [CpuDevice(id=0)]' in text  # One device, not the suite's 8.
  assert 'no cache' not in text  # The compile cache was on.
  assert 'verdict: checks pass.' in text
  images = [o for o in outputs if 'image/png' in o.get('data', {})]
  assert len(images) >= 3  # Activations, the training curve, the study.
  # The run went to the temporary folder, and learned.
  (workdir,) = (tmp_path / 'tmp').glob('tour-*/demo')
  evals = [
    json.loads(line)
    for line in (workdir / 'metrics.jsonl').read_text().splitlines()
    if '"eval"' in line
  ]
  assert [r['step'] for r in evals] == [100, 200, 300]
  assert evals[-1]['accuracy'] > 0.9
  assert sorted(os.listdir(work)) == ['tour.ipynb']
