"""Fault campaign over the command-line tools of experiments/.

The README promises that an expected failure ends with one `error: ...` line
and exit status 1, and never destroys data. Each row of the tables below is a
bad input a new user could type (a misspelt flag or config key, a malformed
value, a missing, wrong-kind or unwritable path, a zero or negative size, an
unknown name, a stray argument); each runs the real command in a subprocess
and checks: exit status 1, exactly one line of stderr starting with `error:`
(the last one) that names the bad flag, key or file, no traceback, and every
file of the prepared work and output folders byte-identical afterwards.

The tables are one per tool, one test per row, so pytest-xdist spreads them
over the workers. Most rows are in the slow tier (each starts Python, many
import jax); the few fastest stay in the fast tier.
"""

import hashlib
import os
import pathlib
import subprocess
import sys
from typing import NamedTuple

from absl import flags
from absl.testing import flagsaver
import pytest

from experiments import summary

_ROOT = pathlib.Path(__file__).resolve().parents[2]
# 8 fake CPU devices, as in the rest of the suite: a batch of 12 cannot be
# split over them.
_ENV = {
  **os.environ,
  'JAX_PLATFORMS': 'cpu',
  'XLA_FLAGS': '--xla_force_host_platform_device_count=8',
  'PYTHONPATH': str(_ROOT),
}
_GOOD_METRICS = (
  '{"step": 10, "split": "train", "loss": 2.0, "accuracy": 0.3}\n'
  '{"step": 20, "split": "eval", "loss": 1.5, "accuracy": 0.5}\n'
)
_SMOKE = '--config=experiments/configs/digits.py:mlp,smoke=True'
_SCHEDULE = ('--what=schedule', '--out_dir={out}')
_CIFAR = '--config=experiments/configs/cifar.py:resnet20_cifar'


class Case(NamedTuple):
  """One bad command line and a word its error line must contain.

  `{work}` (a run folder with metrics.jsonl), `{out}` (an output folder with
  a plot in it), `{file}` (a plain file) and `{tmp}` in `args` are replaced by
  paths under the test's tmp_path; `metrics` is written to
  `{work}/metrics.jsonl` first.
  """

  args: tuple[str, ...]
  names: str
  metrics: str | bytes = _GOOD_METRICS


def _case(*args: str, names: str, metrics: str | bytes = _GOOD_METRICS):
  return Case(args, names, metrics)


def _fast(case: Case, id_: str):
  return pytest.param(case, id=id_)


def _slow(case: Case, id_: str):
  return pytest.param(case, id=id_, marks=pytest.mark.slow)


PLOT_CASES = [
  _fast(_case('--what=bogus', names='--what=bogus'), 'unknown_what'),
  _slow(
    _case(
      '--workdir={work}',
      names='metrics.jsonl:2',
      metrics='{"step": 1, "split": "train"}\n{"step": "abc", "split": "x"}\n',
    ),
    'non_numeric_step',
  ),
  _slow(
    _case(
      '--workdir={work}',
      names='metrics.jsonl:1',
      metrics='{"step": null, "split": "train", "loss": 1.0}\n',
    ),
    'null_step',
  ),
  _slow(
    _case(
      '--workdir={work}',
      names='metrics.jsonl:1',
      metrics='{"step": -5, "split": "train", "loss": 1.0}\n',
    ),
    'negative_step',
  ),
  _slow(
    _case(
      '--workdir={work}',
      names='metrics.jsonl:1',
      metrics='{"step": 1, "split": 3, "loss": 1.0}\n',
    ),
    'numeric_split',
  ),
  _slow(
    _case(
      '--workdir={work}',
      names='metrics.jsonl:2',
      metrics='{"step": 1, "split": "x"}\n{oops\n',
    ),
    'not_json',
  ),
  _slow(
    _case('--workdir={work}', names='metrics.jsonl:1', metrics='[1, 2]\n'),
    'json_list',
  ),
  _slow(
    _case('--workdir={work}', names='metrics.jsonl', metrics=b'\x89PNG\xff'),
    'binary_metrics',
  ),
  _slow(
    _case('--workdir={work}', names='metrics.jsonl', metrics='\n\n'),
    'empty_metrics',
  ),
  _slow(_case('--workdir={tmp}/missing', names='missing'), 'missing_workdir'),
  _slow(_case('--workdir={file}', names='a_file'), 'workdir_is_a_file'),
  _slow(_case('--workdir={out}', names='metrics.jsonl'), 'no_metrics_file'),
  _slow(_case('--what=metrics', names='--workdir'), 'no_workdir_flag'),
  _slow(
    _case('--workdir={work}', '--out_dir={file}', names='a_file'),
    'out_dir_is_a_file',
  ),
  _slow(
    _case('--workdir={work}', '--out_dir={file}/plots', names='a_file/plots'),
    'out_dir_under_a_file',
  ),
  _slow(
    _case('--what=activations', '--out_dir={file}', names='a_file'),
    'activations_out_dir_is_a_file',
  ),
  _slow(_case('--workdir={work}', 'extra', names='extra'), 'positional'),
  _slow(_case('--workdir={work}', '--bogus', names='bogus'), 'unknown_flag'),
  _slow(_case('--what=schedule', names='--out_dir'), 'schedule_no_out_dir'),
  _slow(_case(*_SCHEDULE, names='--config'), 'schedule_no_config'),
  _slow(
    _case(*_SCHEDULE, '--config.lr=0.1', names='--config.lr'),
    'schedule_override_without_config',
  ),
  _slow(
    _case(*_SCHEDULE, _CIFAR, '--config.lrr=0.1', names="'lr'"),
    'schedule_misspelt_key',
  ),
  _slow(
    _case(
      *_SCHEDULE,
      _CIFAR,
      '--config.schedule_kw.decay_factr=0.5',
      names='schedule_kw.decay_factr',
    ),
    'schedule_misspelt_schedule_kw',
  ),
  _slow(
    _case(
      *_SCHEDULE,
      _CIFAR,
      '--config.optimizer_kw.momentun=0.5',
      names='optimizer_kw.momentun',
    ),
    'schedule_misspelt_optimizer_kw',
  ),
  _slow(
    _case(
      *_SCHEDULE,
      _CIFAR,
      '--config.augment.mixup_alhpa=0.5',
      names='augment.mixup_alhpa',
    ),
    'schedule_misspelt_augment',
  ),
  _slow(
    _case(*_SCHEDULE, _CIFAR, '--config.lr.x=1', names='--config.lr.x'),
    'schedule_key_under_a_value',
  ),
  _slow(
    _case(*_SCHEDULE, _CIFAR, '--config.lr=abc', names='--config.lr=abc'),
    'schedule_lr_not_a_number',
  ),
  _slow(
    _case(*_SCHEDULE, _CIFAR, '--config.lr=-1', names='lr'),
    'schedule_negative_lr',
  ),
  _slow(
    _case(*_SCHEDULE, _CIFAR, '--config.schedule=bogus', names='bogus'),
    'schedule_unknown_schedule',
  ),
  _slow(
    _case(*_SCHEDULE, '--config=nonexistent.py', names='nonexistent.py'),
    'schedule_missing_config_file',
  ),
  _slow(
    _case(*_SCHEDULE, '--config=README.md', names='README.md'),
    'schedule_config_not_python',
  ),
  _slow(
    _case(
      *_SCHEDULE, '--config=experiments/configs/mnist.py:bogus', names='bogus'
    ),
    'schedule_unknown_config_variant',
  ),
]

SUMMARY_CASES = [
  _slow(
    _case('--model=resnet20_cifar', '--num_classes=-3', names='--num_classes'),
    'negative_num_classes',
  ),
  _slow(
    _case('--all', '--num_classes=0', names='--num_classes'),
    'zero_num_classes',
  ),
  _slow(
    _case('--model=lenet5', '--num_classes=abc', names='--num_classes'),
    'num_classes_not_a_number',
  ),
  _slow(_case('--model=bogus', names='bogus'), 'unknown_model'),
  _slow(
    _case('--model=lenet5', '--input_shape=abc', names='--input_shape'),
    'input_shape_not_numbers',
  ),
  _slow(
    _case('--model=lenet5', '--input_shape=0,32,1', names='--input_shape'),
    'input_shape_zero',
  ),
  _slow(
    _case(
      '--model=resnet20_cifar', '--input_shape=32,32', names='--input_shape'
    ),
    'input_shape_rank',
  ),
  _slow(
    _case('--model=lenet5', '--input_shape=8,8,1', names='--input_shape'),
    'input_shape_too_small',
  ),
  _slow(_case(names='--model'), 'no_model'),
  _slow(_case('--all', '--model=vgg16', names='--all'), 'all_and_model'),
  _slow(_case('--model=lenet5', 'extra', names='extra'), 'positional'),
  _slow(_case('--bogus', names='bogus'), 'unknown_flag'),
]

TWO_LAYER_NET_CASES = [
  _slow(_case('bogus', names='bogus'), 'positional'),
  _slow(_case('--bogus', names='bogus'), 'unknown_flag'),
  _slow(_case('--verbosity=abc', names='verbosity'), 'verbosity_not_a_number'),
]

MAIN_CASES = [
  _fast(
    _case(_SMOKE, '--workdir={work}', '--bogus', names='bogus'),
    'unknown_flag',
  ),
  _fast(
    _case(_SMOKE, '--workdir={work}', '--config.lrr=1', names="'lr'"),
    'misspelt_key',
  ),
  _fast(_case(_SMOKE, names='--workdir'), 'no_workdir'),
  _slow(
    _case(_SMOKE, '--workdir={work}', '--process_id=1', names='--process_id'),
    'process_id_without_jax_distributed',
  ),
  _slow(
    _case(
      _SMOKE,
      '--workdir={work}',
      '--config.optimizer_kw.momentun=0.5',
      names='optimizer_kw.momentun',
    ),
    'misspelt_group_key',
  ),
  _slow(
    _case(_SMOKE, '--workdir={work}', '--config.lr=abc', names='lr=abc'),
    'lr_not_a_number',
  ),
  _slow(
    _case(_SMOKE, '--workdir={work}', '--config.lr.x=1', names='lr.x'),
    'key_under_a_value',
  ),
  _slow(
    _case(_SMOKE, '--workdir={work}', '--config.model=bogus', names='bogus'),
    'unknown_model',
  ),
  _slow(
    _case(
      _SMOKE, '--workdir={work}', '--config.data.name=bogus', names='bogus'
    ),
    'unknown_dataset',
  ),
  _slow(
    _case(
      _SMOKE, '--workdir={work}', '--config.batch_size=12', names='batch_size'
    ),
    'batch_size_not_divisible_over_devices',
  ),
  _slow(
    _case(
      _SMOKE, '--workdir={work}', '--config.batch_size=0', names='batch_size'
    ),
    'zero_batch_size',
  ),
  _slow(
    _case(_SMOKE, '--workdir={work}', '--config.lr=-0.1', names='lr'),
    'negative_lr',
  ),
  _slow(
    _case(
      _SMOKE,
      '--workdir={work}',
      '--config.optimizer_kw.momentum=-5',
      names='momentum',
    ),
    'negative_momentum',
  ),
  _slow(
    _case(
      _SMOKE,
      '--workdir={work}',
      '--config.compute_dtype=float17',
      names='compute_dtype',
    ),
    'unknown_dtype',
  ),
  _slow(
    _case(
      '--config=experiments/configs/mnist.py:model=bogus',
      '--workdir={work}',
      names='bogus',
    ),
    'unknown_config_variant',
  ),
  _slow(
    _case(
      '--config=experiments/configs/mnist.py:bogus=1',
      '--workdir={work}',
      names='bogus',
    ),
    'unknown_config_field',
  ),
  _slow(
    _case(
      '--config=experiments/configs/nonexistent.py',
      '--workdir={work}',
      names='nonexistent.py',
    ),
    'missing_config_file',
  ),
  _slow(
    _case(
      _SMOKE,
      '--workdir={work}',
      '--jax_distributed',
      '--num_processes=2',
      '--process_id=5',
      names='--process_id',
    ),
    'process_id_out_of_range',
  ),
  _slow(_case(_SMOKE, '--workdir={work}', 'extra', names='extra'), 'argument'),
  _slow(_case(_SMOKE, '--workdir={file}', names='a_file'), 'workdir_is_a_file'),
  _slow(
    _case(_SMOKE, '--workdir={file}/run', names='a_file/run'),
    'workdir_under_a_file',
  ),
  _slow(
    _case(
      _SMOKE,
      '--workdir={work}',
      '--config.model_kw.hidden_sizes=abc',
      names='hidden_sizes',
    ),
    'model_kw_not_numbers',
  ),
]


def _tree_hashes(root: pathlib.Path) -> dict[str, str]:
  """Relative path -> sha256 of every file (and '<dir>' of every folder)."""
  hashes = {}
  for path in sorted(root.rglob('*')):
    key = str(path.relative_to(root))
    if path.is_dir():
      hashes[key] = '<dir>'
    else:
      hashes[key] = hashlib.sha256(path.read_bytes()).hexdigest()
  return hashes


def _prepare(tmp_path: pathlib.Path, metrics: str | bytes) -> dict[str, str]:
  work, out = tmp_path / 'work', tmp_path / 'out'
  (work / 'plots').mkdir(parents=True)
  (out).mkdir()
  mode = 'wb' if isinstance(metrics, bytes) else 'w'
  with open(work / 'metrics.jsonl', mode) as f:
    f.write(metrics)
  (work / 'plots' / 'curves.png').write_bytes(b'\x89PNG an earlier plot')
  (out / 'schedule.png').write_bytes(b'\x89PNG an earlier schedule')
  (tmp_path / 'a_file').write_text('not a folder\n')
  return {
    'work': str(work),
    'out': str(out),
    'file': str(tmp_path / 'a_file'),
    'tmp': str(tmp_path),
  }


def _check_fails_cleanly(module: str, case: Case, tmp_path: pathlib.Path):
  paths = _prepare(tmp_path, case.metrics)
  before = _tree_hashes(tmp_path)
  args = [arg.format(**paths) for arg in case.args]
  proc = subprocess.run(
    [sys.executable, '-m', f'experiments.{module}', *args],
    cwd=_ROOT,
    env=_ENV,
    capture_output=True,
    text=True,
    timeout=300,
    check=False,
  )
  shown = f'{module} {" ".join(args)}\n{proc.stderr}'
  assert proc.returncode == 1, shown
  assert 'Traceback' not in proc.stderr, shown
  lines = proc.stderr.splitlines()
  errors = [line for line in lines if line.startswith('error:')]
  assert len(errors) == 1 and lines[-1] == errors[0], shown
  assert case.names.format(**paths) in errors[0], shown
  assert _tree_hashes(tmp_path) == before, shown


@pytest.mark.parametrize('case', PLOT_CASES)
def test_plot_fails_with_one_line(case, tmp_path):
  _check_fails_cleanly('plot', case, tmp_path)


@pytest.mark.parametrize('case', SUMMARY_CASES)
def test_summary_fails_with_one_line(case, tmp_path):
  _check_fails_cleanly('summary', case, tmp_path)


@pytest.mark.parametrize('case', TWO_LAYER_NET_CASES)
def test_two_layer_net_fails_with_one_line(case, tmp_path):
  _check_fails_cleanly('two_layer_net', case, tmp_path)


@pytest.mark.parametrize('case', MAIN_CASES)
def test_main_fails_with_one_line(case, tmp_path):
  _check_fails_cleanly('main', case, tmp_path)


def test_the_campaign_is_large_enough():
  cases = PLOT_CASES + SUMMARY_CASES + TWO_LAYER_NET_CASES + MAIN_CASES
  assert len(cases) >= 40
  fast = [c for c in cases if not c.marks]
  assert 1 <= len(fast) <= 4  # With this test, at most 5 in the fast tier.


@pytest.mark.slow
@pytest.mark.parametrize('module', ['plot', 'summary', 'two_layer_net'])
def test_help_prints_usage_and_exits_0_without_running(module, tmp_path):
  proc = subprocess.run(
    [sys.executable, '-m', f'experiments.{module}', '--help'],
    cwd=tmp_path,  # Nothing may be written here (plot's default out_dir).
    env=_ENV,
    capture_output=True,
    text=True,
    timeout=300,
    check=False,
  )
  assert proc.returncode == 0, proc.stderr
  assert f'python -m experiments.{module}' in proc.stdout
  assert 'loss fell' not in proc.stdout  # two_layer_net did not train.
  assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_a_bug_keeps_its_traceback(monkeypatch):
  def broken(*args, **kwargs):
    raise RuntimeError('a bug')

  monkeypatch.setattr(summary, 'model_table', broken)
  if not flags.FLAGS.is_parsed():
    flags.FLAGS.mark_as_parsed()
  with flagsaver.flagsaver(model='lenet5'), pytest.raises(RuntimeError):
    summary.main(['summary'])
