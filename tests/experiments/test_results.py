"""Tests of experiments/results.py: the results table of many workdirs.

References: workdirs written by hand (config.json, metrics.jsonl,
launches.jsonl) whose every cell is known in advance; the parameter and MAC
counts of a one-hidden-layer MLP computed by hand; the markdown and CSV
output parsed back; one real tiny run whose cells must equal what its own
files say.
"""

import csv
import io
import json
import os
import subprocess
import sys

import pytest

from experiments import results
from experiments.configs import digits
from experiments.configs import synthetic
from train_lib import metrics
from train_lib import trainer

_REPO = os.path.dirname(os.path.dirname(os.path.dirname(__file__)))
_COMMAND = (
  'python -m experiments.main --config experiments/configs/digits.py:mlp '
  '--workdir runs/d --config.model_kw.hidden_sizes=(16,)'
)
# One hidden layer of 16 on 8x8x1 digits, 10 classes: weights and biases.
_PARAMS = (64 * 16 + 16) + (16 * 10 + 10)  # 1210
_MACS = 64 * 16 + 16 * 10  # 1184


def _write_jsonl(path, records):
  with open(path, 'w') as f:
    f.writelines(json.dumps(r) + '\n' for r in records)


def _config_json(**overrides):
  config = digits.get_config('mlp')
  config.model_kw.hidden_sizes = (16,)
  config.update(overrides)
  return config.to_json_best_effort(sort_keys=True)


def _good_run(path):
  """Two launches (the clock restarts at 3 s), validation split evals."""
  os.makedirs(path)
  (path / 'config.json').write_text(_config_json(total_steps=300))
  train = {'split': 'train', 'loss': 1.0, 'accuracy': 0.5}
  val = {'split': 'eval', 'eval_split': 'validation', 'loss': 1.0}
  _write_jsonl(
    path / 'metrics.jsonl',
    [
      {**train, 'step': 100, 'compile_time_s': 2.5, 'wall_time_s': 3.0},
      {**val, 'step': 100, 'accuracy': 0.9, 'wall_time_s': 3.5},  # A tie.
      {**train, 'step': 200, 'images_per_sec': 1000.0, 'wall_time_s': 5.0},
      {**val, 'step': 200, 'accuracy': 0.9, 'wall_time_s': 6.0},
      {**train, 'step': 300, 'compile_time_s': 9.0, 'wall_time_s': 1.0},
      {**train, 'step': 300, 'images_per_sec': 3000.0, 'wall_time_s': 2.0},
      {**train, 'step': 300, 'images_per_sec': 2000.0, 'wall_time_s': 3.0},
      {**val, 'step': 300, 'accuracy': 0.8, 'wall_time_s': 4.0},
    ],
  )
  _write_jsonl(
    path / 'launches.jsonl',
    [
      {'command': 'an older command', 'start_step': 0},
      {'command': _COMMAND, 'start_step': 200},
    ],
  )


@pytest.fixture
def runs(tmp_path):
  """A finished run, a crashed one, an empty folder, a file, a missing path."""
  _good_run(tmp_path / 'good')
  os.makedirs(tmp_path / 'crashed')
  (tmp_path / 'crashed' / 'config.json').write_text(_config_json())
  (tmp_path / 'crashed' / 'metrics.jsonl').write_text('{"step": 1, "spl')
  os.makedirs(tmp_path / 'empty')
  (tmp_path / 'notes.txt').write_text('not a run')
  names = ('good', 'crashed', 'empty', 'notes.txt', 'missing')
  return [str(tmp_path / n) for n in names]


def test_every_cell_of_hand_made_workdirs(runs):
  good, crashed, empty, file, missing = map(results.read_run, runs)
  assert good == {
    'run': runs[0],
    'status': 'done (2 launches)',
    'config': 'digits (digits.py:mlp)',
    'model': 'mlp',
    'params': _PARAMS,
    'macs': _MACS,
    'best_accuracy': 0.9,
    'best_step': 200,  # Ties go to the later step.
    'final_accuracy': 0.8,
    'eval_split': 'validation',
    'steps': '300/300',
    'images_per_sec': 2000.0,  # The median of 1000, 3000, 2000.
    'wall_time_s': 6.0 + 4.0,  # Each launch's last clock reading.
    'compile_time_s': 2.5,  # The first launch's.
    'command': _COMMAND,  # The last launch's.
  }
  assert crashed['status'].startswith('no metrics (crashed')
  assert crashed['steps'] == '0/4000' and crashed['params'] == _PARAMS
  assert crashed['command'] == results.NO_COMMAND
  assert empty['status'].startswith('no config.json')
  assert file['status'] == 'not a workdir (a file)'
  assert missing['status'] == 'not a workdir (no such directory)'


def test_stopped_and_running_runs_say_so(tmp_path):
  _good_run(tmp_path / 'a')
  config = json.loads((tmp_path / 'a' / 'config.json').read_text())
  config['total_steps'] = 1000
  (tmp_path / 'a' / 'config.json').write_text(json.dumps(config))
  assert results.read_run(str(tmp_path / 'a'))['status'] == (
    'stopped at step 300 (2 launches)'
  )
  (tmp_path / 'a' / 'lock').write_text('{}')
  assert results.read_run(str(tmp_path / 'a'))['status'].startswith('running')


def test_wall_time_sums_the_launches():
  records = [{'wall_time_s': t} for t in (1.0, 2.0, 0.5, 4.0, 1.0)]
  assert results.wall_time(records) == 2.0 + 4.0 + 1.0
  assert results.wall_time([{'step': 1}]) is None


def test_config_spec_from_the_command():
  assert results.config_spec(_COMMAND) == 'digits.py:mlp'
  default = results.config_spec('python -m experiments.main --workdir x')
  assert default == "the launcher's default"
  assert results.config_spec('python train.py --workdir x') is None
  assert results.config_spec(None) is None


def test_markdown_and_csv_parse_back(runs):
  rows = [results.read_run(p) for p in runs]
  lines = results.render(rows, 'markdown').splitlines()
  assert len(lines) == 2 + len(runs)
  heads = [c.strip() for c in lines[0].strip('|').split('|')]
  assert heads == [head for _, head in results.COLUMNS]
  assert set(lines[1].strip('|').split('|')) == {'---'}
  good = dict(
    zip(heads, [c.strip() for c in lines[2].strip('|').split('|')], strict=True)
  )
  assert good['best eval'] == '90.00% @200' and good['split'] == 'validation'
  assert good['params'] == '1,210' and good['command'] == f'`{_COMMAND}`'
  assert good['wall time'] == '10.0s' and good['images/s'] == '2,000'

  parsed = list(csv.DictReader(io.StringIO(results.render(rows, 'csv'))))
  assert [r['run'] for r in parsed] == runs
  assert float(parsed[0]['final_accuracy']) == 0.8
  assert int(parsed[0]['macs']) == _MACS
  assert parsed[0]['command'] == _COMMAND
  assert parsed[4]['status'] == 'not a workdir (no such directory)'

  table = results.render(rows, 'table').splitlines()
  assert table[0].split()[:3] == ['run', 'status', 'config']
  assert len(table) == 1 + len(runs)


def _cli(*args):
  return subprocess.run(
    [sys.executable, '-m', 'experiments.results', *args],
    cwd=_REPO,
    capture_output=True,
    text=True,
    timeout=300,
    check=False,
  )


@pytest.mark.slow
def test_cli_lists_every_path_and_fails_in_one_line(runs, tmp_path):
  result = _cli(*runs, '--format=csv')
  assert result.returncode == 0, result.stderr
  assert len(list(csv.DictReader(io.StringIO(result.stdout)))) == len(runs)
  for args in ((str(tmp_path / 'missing'),), ()):
    result = _cli(*args)
    assert result.returncode == 1
    assert result.stderr.strip().count('\n') == 0
    assert result.stderr.startswith('error: ')


@pytest.mark.slow
def test_a_real_run_reads_back(tmp_path):
  config = synthetic.get_config('mlp,8x8x1,4')
  config.model_kw.hidden_sizes = (16,)
  config.update(
    batch_size=16, total_steps=4, log_every_steps=2, eval_every_steps=2
  )
  config.data.synthetic_num_train = 64
  config.data.synthetic_num_test = 16
  trainer.train_and_evaluate(config, str(tmp_path), command='python run it')
  row = results.read_run(str(tmp_path))
  records = metrics.read_metrics(str(tmp_path))
  evals = [r for r in records if r['split'] == 'eval']
  assert row['status'] == 'done' and row['steps'] == '4/4'
  assert row['final_accuracy'] == evals[-1]['accuracy']
  assert row['best_accuracy'] == max(r['accuracy'] for r in evals)
  assert row['eval_split'] == 'test'
  assert row['compile_time_s'] == records[0]['compile_time_s']
  assert row['wall_time_s'] == records[-1]['wall_time_s']
  assert row['params'] == (64 * 16 + 16) + (16 * 4 + 4)  # 4 classes.
  assert row['command'] == 'python run it'
  assert row['config'] == 'synthetic'
