"""Tests of experiments/compile_cache.py: the warm start for compilation.

The launches run as real subprocesses (a process turns jax's cache on once,
and this one must keep it off: tests/conftest.py), each with its own cache
folder. What a launch took from the cache is read from its last line, which
counts jax's monitoring events, and checked against the folder's entries. A
warm launch must compute exactly what a cold one did: the runs use convolutions,
so with the native library built the cached executables hold oneDNN's XLA FFI
calls (checked in the entries' bytes), and their metrics must be bit-identical.
"""

import os
import pathlib
import re
import subprocess
import sys

import jax

# Entries are compressed as jax wrote them (zstd or zlib, per environment).
from jax._src import compilation_cache as jax_cache
import pytest

from experiments import compile_cache
from ops import native
from train_lib import metrics

_REPO = os.path.dirname(os.path.dirname(os.path.dirname(__file__)))
_TINY_CNN = (
  '--config',
  'experiments/configs/synthetic.py:cnn_small,8x8x1,4',
  '--config.data.synthetic_num_train=64',
  '--config.data.synthetic_num_test=16',
  '--config.batch_size=16',
  '--config.total_steps=4',
  '--config.log_every_steps=2',
)
_SUMMARY = re.compile(r'compile cache: (\d+) of (\d+) programs loaded from ')


def _launch(workdir, cache_dir) -> subprocess.CompletedProcess:
  # One CPU device, as a launch on a laptop: on several, the native
  # convolution's partitioning callback makes the step programs' keys differ
  # from launch to launch (experiments/compile_cache.py says why).
  env = dict(os.environ, JAX_PLATFORMS='cpu', XLA_FLAGS='')
  return subprocess.run(
    [
      sys.executable,
      '-m',
      'experiments.main',
      *_TINY_CNN,
      f'--workdir={workdir}',
      f'--compile_cache_dir={cache_dir}',
    ],
    cwd=_REPO,
    env=env,
    capture_output=True,
    text=True,
    timeout=600,
    check=False,
  )


def _loaded(result: subprocess.CompletedProcess) -> tuple[int, int]:
  """(programs loaded from the cache, programs looked up) of a launch."""
  assert result.returncode == 0, result.stderr
  (match,) = _SUMMARY.finditer(result.stdout)
  return int(match[1]), int(match[2])


def _computed(workdir) -> list[dict]:
  """The metrics records without their timings (which differ run to run)."""
  return [
    {k: v for k, v in r.items() if 'time' not in k and 'per_sec' not in k}
    for r in metrics.read_metrics(str(workdir))
  ]


def _entries(cache_dir) -> list[str]:
  return sorted(
    os.path.join(cache_dir, name)
    for name in os.listdir(cache_dir)
    if name.endswith('-cache')
  )


def _warnings(result: subprocess.CompletedProcess) -> list[str]:
  """The stderr lines of a successful launch (jax's warnings included)."""
  assert result.returncode == 0, result.stderr
  assert 'Traceback' not in result.stderr, result.stderr
  return [line for line in result.stderr.splitlines() if line.strip()]


@pytest.fixture(scope='module')
def cold(tmp_path_factory):
  """One launch into an empty cache: (its workdir, the cache, its result)."""
  root = tmp_path_factory.mktemp('cold')
  result = _launch(root / 'run', root / 'cache')
  return root / 'run', root / 'cache', result


def test_default_directory():
  home_cache = os.path.join(os.path.expanduser('~'), '.cache')
  assert compile_cache.default_directory({}) == os.path.join(
    home_cache, 'convnets-jax', 'jax'
  )
  assert (
    compile_cache.default_directory({'XDG_CACHE_HOME': '/x/cache'})
    == '/x/cache/convnets-jax/jax'
  )
  # jax's own variable wins, and empty means no cache.
  environ = {'XDG_CACHE_HOME': '/x/cache', 'JAX_COMPILATION_CACHE_DIR': '/y'}
  assert compile_cache.default_directory(environ) == '/y'
  environ['JAX_COMPILATION_CACHE_DIR'] = ''
  assert compile_cache.default_directory(environ) == ''


def test_empty_directory_is_off(capsys):
  assert compile_cache.enable('') is None
  assert compile_cache.enable(None) is None
  assert compile_cache.summary() is None
  assert jax.config.jax_compilation_cache_dir is None
  assert capsys.readouterr() == ('', '')


def _file_in_place(tmp_path):
  (tmp_path / 'cache').write_text('not a folder')
  return tmp_path / 'cache'


def _under_a_file(tmp_path):
  return _file_in_place(tmp_path) / 'jax'


def _read_only(tmp_path):
  if os.geteuid() == 0:
    pytest.skip('root writes into a read-only folder')
  (tmp_path / 'cache').mkdir(mode=0o500)
  return tmp_path / 'cache'


@pytest.mark.parametrize('make', [_file_in_place, _under_a_file, _read_only])
def test_unwritable_folder_warns_once_and_stays_off(tmp_path, capsys, make):
  directory = make(tmp_path)
  assert compile_cache.enable(str(directory)) is None
  out, err = capsys.readouterr()
  assert out == ''
  (line,) = err.splitlines()
  assert line.startswith(f'warning: compile cache {directory} cannot be ')
  assert 'compiling as usual' in line
  # This process's jax was left alone.
  assert jax.config.jax_compilation_cache_dir is None
  assert compile_cache.summary() is None


@pytest.mark.slow
def test_second_process_loads_what_the_first_compiled(tmp_path):
  # enable() twice in a process: the first folder stays, counted once.
  script = (
    'import sys\n'
    'from experiments import compile_cache\n'
    'compile_cache.enable(sys.argv[1])\n'
    'compile_cache.enable(sys.argv[2])\n'
    'import jax\n'
    'print(jax.jit(lambda x: x * 3 + 1)(2.0))\n'
    'print(compile_cache.summary())\n'
  )
  cache_dir = tmp_path / 'cache'
  results = [
    subprocess.run(
      [sys.executable, '-c', script, cache_dir, tmp_path / 'other'],
      cwd=_REPO,
      env=dict(os.environ, JAX_PLATFORMS='cpu', XLA_FLAGS=''),
      capture_output=True,
      text=True,
      timeout=300,
      check=False,
    )
    for _ in range(2)
  ]
  for result in results:
    assert result.stdout.splitlines()[0] == '7.0'
  assert [_loaded(r) for r in results] == [(0, 1), (1, 1)]
  assert len(_entries(cache_dir)) == 1
  assert not (tmp_path / 'other').exists()


@pytest.mark.slow
def test_warm_launch_loads_every_program_and_computes_the_same(cold, tmp_path):
  cold_run, cache_dir, cold_result = cold
  assert _warnings(cold_result) == []
  assert f'compile cache: {cache_dir} (0 programs' in cold_result.stdout
  loaded, looked_up = _loaded(cold_result)
  assert loaded == 0 and looked_up > 0
  # Every program compiled, however quickly, was written.
  entries = _entries(cache_dir)
  assert len(entries) == looked_up
  if native.available():  # The cached executables call oneDNN by name.
    payloads = []
    for entry in entries:
      with open(entry, 'rb') as f:
        payloads.append(jax_cache.decompress_executable(f.read()))
    assert any(b'onednn_conv_backward_weights' in p for p in payloads)

  warm = _launch(tmp_path / 'run', cache_dir)
  assert _warnings(warm) == []
  assert f'({looked_up} programs' in warm.stdout
  assert _loaded(warm) == (looked_up, looked_up)
  assert _entries(cache_dir) == entries
  assert _computed(tmp_path / 'run') == _computed(cold_run)


@pytest.mark.slow
def test_corrupt_entries_warn_once_and_compile(cold, tmp_path):
  cold_run, cache_dir, _ = cold
  # In place: the folder's path is part of every key (jax puts it in the
  # compile options), so a copy elsewhere would not be read at all.
  entries = _entries(cache_dir)
  saved = {entry: pathlib.Path(entry).read_bytes() for entry in entries}
  try:
    for entry in entries:
      pathlib.Path(entry).write_bytes(b'garbage' * 100)
    result = _launch(tmp_path / 'run', cache_dir)
  finally:  # The other tests may share the cold cache.
    for entry, payload in saved.items():
      pathlib.Path(entry).write_bytes(payload)
  (line,) = _warnings(result)
  assert line.startswith(f'warning: compile cache {cache_dir}: an entry could')
  assert 'compiling as usual' in line
  assert _loaded(result) == (0, len(entries))
  assert _computed(tmp_path / 'run') == _computed(cold_run)


@pytest.mark.slow
def test_unwritable_folder_does_not_stop_a_launch(cold, tmp_path):
  cold_run, _, _ = cold
  result = _launch(tmp_path / 'run', _file_in_place(tmp_path))
  (line,) = _warnings(result)
  assert line.startswith('warning: compile cache ') and 'cannot be' in line
  assert 'compile cache' not in result.stdout
  assert _computed(tmp_path / 'run') == _computed(cold_run)
