"""Tests of experiments/plot.py: the figures exist and are real PNG images."""

import json
import os
import subprocess
import sys

import numpy as np
from PIL import Image
import pytest

from experiments import plot
from experiments.configs import common

_PNG_SIGNATURE = b'\x89PNG\r\n\x1a\n'
_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(__file__)))


def _assert_png(path, min_bytes=10_000):
  with open(path, 'rb') as f:
    assert f.read(8) == _PNG_SIGNATURE
  assert os.path.getsize(path) > min_bytes
  with Image.open(path) as image:
    assert image.size[0] > 400 and image.size[1] > 300
    # A real plot: many distinct colours, not a blank canvas.
    assert len(np.unique(np.asarray(image.convert('L')))) > 20


def _write_metrics(workdir):
  records = []
  for step in range(100, 1100, 100):
    records.append(
      {
        'step': step,
        'split': 'train',
        'loss': 2.3 * 0.8 ** (step / 100),
        'accuracy': 1 - 0.9 * 0.8 ** (step / 100),
        'lr': 0.1 * (1 - step / 1100),
        'l2_grads': 1.0 / step,
        'l2_params': 10.0 + step / 100,
        'l2_updates': 0.01,
      }
    )
    if step % 500 == 0:
      records.append(
        {'step': step, 'split': 'eval', 'loss': 1.0, 'accuracy': 0.7}
      )
  records.append(
    {'step': 1100, 'split': 'train', 'loss': 'nan', 'accuracy': 0.1}
  )
  os.makedirs(workdir, exist_ok=True)
  with open(os.path.join(workdir, 'metrics.jsonl'), 'w') as f:
    f.write('\n'.join(json.dumps(r) for r in records) + '\n\n')
  return records


def test_read_metrics(tmp_path):
  records = _write_metrics(tmp_path)
  read = plot.read_metrics(str(tmp_path / 'metrics.jsonl'))
  assert len(read) == len(records)
  assert np.isnan(read[-1]['loss'])
  (tmp_path / 'bad.jsonl').write_text('{"step": 1, "split": "train"}\n{oops\n')
  with pytest.raises(ValueError, match='bad.jsonl:2'):
    plot.read_metrics(str(tmp_path / 'bad.jsonl'))
  with pytest.raises(FileNotFoundError):
    plot.read_metrics(str(tmp_path / 'missing.jsonl'))


def test_plot_metrics_writes_pngs(tmp_path):
  _write_metrics(tmp_path)
  written = plot.plot_metrics(str(tmp_path))
  names = sorted(os.path.basename(p) for p in written)
  assert names == ['curves.png', 'lr.png', 'norms.png']
  for path in written:
    assert os.path.dirname(path) == str(tmp_path / 'plots')
    _assert_png(path)


def test_plot_metrics_without_optional_keys(tmp_path):
  lines = [
    {'step': 1, 'split': 'train', 'loss': 1.0, 'accuracy': 0.5},
    {'step': 2, 'split': 'eval', 'loss': 0.9, 'accuracy': 0.6},
  ]
  (tmp_path / 'metrics.jsonl').write_text(
    ''.join(json.dumps(r) + '\n' for r in lines)
  )
  written = plot.plot_metrics(str(tmp_path), str(tmp_path / 'out'))
  assert [os.path.basename(p) for p in written] == ['curves.png']
  _assert_png(written[0])


def test_plot_schedule(tmp_path):
  config = common.get_config()
  config.update(schedule='cosine', lr=0.1, warmup_steps=50, total_steps=500)
  _assert_png(plot.plot_schedule(config, str(tmp_path)))


def test_plot_activations(tmp_path):
  # A few panels keep the test fast; the CLI draws all of ops.activations.NAMES.
  path = plot.plot_activations(str(tmp_path), names=('relu', 'tanh', 'gelu'))
  _assert_png(path, min_bytes=20_000)
  with pytest.raises(ValueError, match='unknown activation'):
    plot.plot_activations(str(tmp_path), names=('nope',))


def _run_cli(*args):
  return subprocess.run(
    [sys.executable, '-m', 'experiments.plot', *args],
    cwd=_ROOT,
    capture_output=True,
    text=True,
    timeout=120,
    check=False,
  )


@pytest.mark.slow
def test_cli(tmp_path):
  _write_metrics(tmp_path / 'run')
  result = _run_cli('--workdir', str(tmp_path / 'run'))
  assert result.returncode == 0, result.stderr
  _assert_png(tmp_path / 'run' / 'plots' / 'curves.png')
  result = _run_cli('--workdir', str(tmp_path / 'missing'))
  assert result.returncode == 1
  errors = [line for line in result.stderr.splitlines() if 'error' in line]
  assert errors == [f'error: no workdir at {tmp_path / "missing"}']


@pytest.mark.slow
def test_cli_schedule_of_a_config(tmp_path):
  result = _run_cli(
    '--what=schedule',
    '--config=experiments/configs/cifar.py:wrn28_10_cifar',
    '--out_dir',
    str(tmp_path),
  )
  assert result.returncode == 0, result.stderr
  assert result.stdout.strip() == f'wrote {tmp_path / "schedule.png"}'
  _assert_png(tmp_path / 'schedule.png')
  result = _run_cli('--what=schedule', '--out_dir', str(tmp_path / 'x'))
  assert result.returncode == 1
  assert 'error: --what=schedule needs --config' in result.stderr
