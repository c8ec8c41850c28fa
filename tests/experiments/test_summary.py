"""Tests for experiments/summary.py: the table functions and the CLI.

`main` runs in-process under `flagsaver` for the flag paths; one subprocess
checks the real command line's error path (one error line, exit status 1).
"""

import os
import pathlib
import subprocess
import sys

from absl import flags
from absl.testing import flagsaver
import pytest

from experiments import summary as summary_cli
import nets

ROOT = pathlib.Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _parsed_flags():
  if not flags.FLAGS.is_parsed():
    flags.FLAGS.mark_as_parsed()


def test_model_table_and_results_table():
  text = summary_cli.model_table('lenet5')
  assert '61,706' in text and 'c3' in text
  text = summary_cli.model_table('vgg_tiny', (16, 16, 3), num_classes=4)
  assert '16x16x8' in text
  rows = summary_cli.all_models_table(['alexnet', 'vgg16']).splitlines()
  assert len(rows) == 4
  assert '61,100,840' in rows[2] and '714.2 M' in rows[2]
  assert summary_cli.parse_shape('224,224,3') == (224, 224, 3)
  for bad in ('224x224', '', '3,0', '3,-2'):
    with pytest.raises(ValueError, match='input_shape'):
      summary_cli.parse_shape(bad)


def test_main_prints_the_model_table(capsys):
  with flagsaver.flagsaver(model='lenet5', input_shape='32,32,1'):
    summary_cli.main(['summary'])
  out = capsys.readouterr().out
  # 32x32 inputs: C1 keeps 32x32, C3 (5x5 valid on 16x16) gives 12x12,
  # so F5 sees 6*6*16 values.
  assert out.startswith('lenet5: LeNet5 on 32x32x1')
  assert '32x32x6' in out and '12x12x16' in out
  assert f'{6 * 6 * 16 * 120 + 120:,}' in out


def test_main_all_prints_one_row_per_model(capsys, monkeypatch):
  names = ['lenet5', 'resnet20_cifar', 'mobilenet_v1_025']
  monkeypatch.setattr(nets, 'list_models', lambda: names)
  with flagsaver.flagsaver(all=True, num_classes=10):
    summary_cli.main(['summary'])
  lines = capsys.readouterr().out.splitlines()
  assert lines[0].split() == ['model', 'input', 'params', 'MACs']
  assert set(lines[1]) == {'-'}
  assert [ln.split()[0] for ln in lines[2:]] == names
  assert '269,722' in lines[3]  # He et al.'s ResNet-20 (0.27M)


@pytest.mark.parametrize(
  'flag_values,argv,message',
  [
    ({}, ['summary'], 'pass --model=NAME or --all'),
    ({'model': 'vgg61'}, ['summary'], "unknown model 'vgg61'; did you mean"),
    ({'model': 'vgg16', 'input_shape': '224x224'}, ['summary'], 'input_shape'),
    ({'all': True, 'model': 'vgg16'}, ['summary'], '--all'),
    ({'all': True, 'input_shape': '8,8,3'}, ['summary'], '--all'),
  ],
)
def test_main_errors_exit_with_a_message(flag_values, argv, message, capsys):
  with (
    flagsaver.flagsaver(**flag_values),
    pytest.raises(SystemExit) as info,
  ):
    summary_cli.main(argv)
  assert info.value.code == 1
  text = capsys.readouterr().err
  assert text.startswith('error: ') and message in text
  assert text.count('\n') == 1  # One line.


def test_cli_unknown_model_exits_with_one_error_line():
  proc = subprocess.run(
    [sys.executable, '-m', 'experiments.summary', '--model=vgg61'],
    capture_output=True,
    text=True,
    check=False,
    cwd=ROOT,
    env={**os.environ, 'JAX_PLATFORMS': 'cpu', 'PYTHONPATH': str(ROOT)},
    timeout=120,
  )
  assert proc.returncode == 1
  assert proc.stdout == ''
  assert 'Traceback' not in proc.stderr
  errors = [ln for ln in proc.stderr.splitlines() if ln.startswith('error:')]
  assert len(errors) == 1 and 'vgg16' in errors[0]


def test_models_page_lists_the_registry_in_markdown():
  page = summary_cli.models_page(['lenet5', 'vgg11', 'vgg16'])
  lines = page.splitlines()
  assert lines[0] == '# Models' and 'The 3 models' in page
  # Families in the course's order, each with its own table.
  assert lines.index('## lenet') < lines.index('## vgg')
  assert '| `lenet5` | 28x28x1 | 61,706 | 0.4 M |' in lines
  assert '| `vgg16` | 224x224x3 | 138,357,544 | 15,470.3 M |' in lines


@pytest.mark.slow
def test_docs_models_page_is_current():
  # Regenerate: python -m experiments.summary --models_page > docs/models.md
  committed = (ROOT / 'docs' / 'models.md').read_text()
  assert committed == summary_cli.models_page(), (
    'docs/models.md differs from the registry; regenerate it with '
    'python -m experiments.summary --models_page > docs/models.md'
  )
