"""Tests of the TensorBoard event files (train_lib/metrics.py).

References: metrics.jsonl (the source of truth) read back independently of
the writer, and TensorBoard's own reader, `EventAccumulator` from the
`tensorboard` package (the Python loader `tensorboard --load_fast=false`
uses), which is what a user's TensorBoard shows: every scalar it reads must
equal the metrics.jsonl value (float32, as event files store them), each
step once per tag, also after a resume.
"""

import errno
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from tensorboard.backend.event_processing import event_accumulator

from experiments.configs import digits
from train_lib import metrics
from train_lib import trainer
from train_lib import workdir as workdir_lib


def _read_events(workdir) -> dict[str, list[tuple[int, float]]]:
  """{tag: [(step, value), ...]} as TensorBoard shows the run (all points)."""
  acc = event_accumulator.EventAccumulator(
    os.path.join(str(workdir), metrics.TENSORBOARD_DIR),
    size_guidance={event_accumulator.SCALARS: 0},  # 0: keep every point.
  )
  acc.Reload()
  points = {
    tag: [(e.step, e.value) for e in acc.Scalars(tag)]
    for tag in acc.Tags()['scalars']
  }
  return {tag: p for tag, p in points.items() if p}  # A purge leaves tags.


def _expected(workdir) -> dict[str, list[tuple[int, float]]]:
  """The same view computed from metrics.jsonl alone."""
  want = {}
  with open(os.path.join(str(workdir), metrics.FILENAME)) as f:
    for line in f:
      record = json.loads(line)
      for key, value in record.items():
        if key in ('step', 'split') or isinstance(value, str | bool):
          continue
        tag = f'{record["split"]}/{key}'
        want.setdefault(tag, []).append((record['step'], value))
  return want


def _assert_same(got, want):
  assert sorted(got) == sorted(want)
  for tag, points in want.items():
    assert [s for s, _ in got[tag]] == [s for s, _ in points], tag
    np.testing.assert_array_equal(
      np.float32([v for _, v in got[tag]]),
      np.float32([v for _, v in points]),
      err_msg=tag,
    )


def test_records_become_scalars_by_split_and_resume_purges(tmp_path):
  writer = metrics.MetricsWriter(str(tmp_path))
  writer.truncate_after(0)
  for step in (1, 2, 3, 4):
    writer.write(step, 'train', {'loss': 1.0 / step, 'lr': np.float32(0.1)})
  writer.write(4, 'eval', {'accuracy': 0.5, 'eval_split': 'test', 'flag': True})
  writer.close()
  got = _read_events(tmp_path)
  assert sorted(got) == ['eval/accuracy', 'train/loss', 'train/lr']
  assert got['train/loss'] == [(s, np.float32(1.0 / s)) for s in (1, 2, 3, 4)]
  assert got['eval/accuracy'] == [(4, 0.5)]

  # A relaunch resumed from step 2: lines 3 and 4 are redone, differently.
  writer = metrics.MetricsWriter(str(tmp_path))
  assert writer.truncate_after(2) == 2
  for step in (3, 4, 5):
    writer.write(step, 'train', {'loss': 10.0 * step, 'lr': 0.1})
  writer.close()
  got = _read_events(tmp_path)
  assert got['train/loss'] == [(1, 1.0), (2, 0.5), (3, 30.0), (4, 40.0)] + [
    (5, 50.0)
  ]
  assert 'eval/accuracy' not in got  # Its step (4) is past the checkpoint.
  _assert_same(got, _expected(tmp_path))
  # Two launches, two files (the second opens with the purge).
  assert len(os.listdir(tmp_path / metrics.TENSORBOARD_DIR)) == 2


def test_disabled_or_silent_writer_leaves_no_event_file(tmp_path):
  writer = metrics.MetricsWriter(str(tmp_path / 'a'), enabled=False)
  writer.write(1, 'train', {'loss': 1.0})
  writer.close()
  assert not (tmp_path / 'a').exists()
  writer = metrics.MetricsWriter(str(tmp_path / 'b'))
  writer.truncate_after(5)  # e.g. a run already trained to its last step.
  writer.close()
  assert not (tmp_path / 'b' / metrics.TENSORBOARD_DIR).exists()


_KILLED = """
import os, signal, sys
from train_lib import metrics
writer = metrics.MetricsWriter(sys.argv[1])
writer.truncate_after(0)
for step in range(1, 6):
  writer.write(step, 'train', {'loss': float(step)})
os.kill(os.getpid(), signal.SIGKILL)  # No close, no exit handlers.
"""


@pytest.mark.slow
def test_kill_9_loses_no_scalar_that_metrics_jsonl_has(tmp_path):
  result = subprocess.run(
    [sys.executable, '-c', _KILLED, str(tmp_path)],
    cwd=os.path.dirname(os.path.dirname(os.path.dirname(__file__))),
    capture_output=True,
    text=True,
    timeout=120,
    check=False,
  )
  assert result.returncode == -9, result.stderr
  got = _read_events(tmp_path)
  assert got['train/loss'] == [(s, float(s)) for s in range(1, 6)]
  _assert_same(got, _expected(tmp_path))


def _config(**overrides):
  """digits.py:mlp,smoke=True, 8 steps: two evals, a checkpoint at 4."""
  config = digits.get_config('mlp,smoke=True')
  config.model_kw.hidden_sizes = (16,)  # Small: 8 fake devices, 2 cores.
  config.update(
    total_steps=8,
    log_every_steps=2,
    eval_every_steps=4,
    checkpoint_every_steps=4,
  )
  config.update(overrides)
  return config


@pytest.mark.slow
def test_training_run_event_files_equal_metrics_jsonl(tmp_path):
  trainer.train_and_evaluate(_config(), str(tmp_path))
  got = _read_events(tmp_path)
  want = _expected(tmp_path)
  for tag in (
    'train/loss',
    'train/accuracy',
    'train/lr',
    'train/images_per_sec',
    'train/compile_time_s',
    'eval/accuracy',
    'eval/loss',
  ):
    assert tag in want, tag
  assert [s for s, _ in got['train/loss']] == [2, 4, 6, 8]
  assert [s for s, _ in got['eval/accuracy']] == [4, 8]
  _assert_same(got, want)


@pytest.mark.slow
def test_resumed_run_shows_each_step_once(tmp_path):
  config = _config()
  trainer.train_and_evaluate(config, str(tmp_path))
  first = _read_events(tmp_path)
  # The launch died after writing the lines of steps 6 and 8 but before
  # its checkpoint of step 8 was complete: the relaunch resumes from 4.
  shutil.rmtree(tmp_path / 'checkpoints' / '8')
  trainer.train_and_evaluate(config, str(tmp_path))
  got = _read_events(tmp_path)
  for tag, points in got.items():
    steps = [s for s, _ in points]
    assert steps == sorted(set(steps)), tag  # Each step once, in order.
  # The kept points are the relaunch's from step 5 on (wall times differ
  # between launches), the first launch's before.
  _assert_same(got, _expected(tmp_path))
  wall = dict(got['train/wall_time_s'])
  assert wall[2] == dict(first['train/wall_time_s'])[2]
  assert wall[6] != dict(first['train/wall_time_s'])[6]


def test_the_writer_does_not_import_torch(tmp_path):
  # tensorboardX imports torch when installed (seconds per launch): the
  # writer hides it while tensorboardX imports, when the first writer opens,
  # and leaves no `torch` entry (a None one would make `import torch` fail).
  code = (
    'import sys, train_lib.metrics as m; '
    'assert "tensorboardX" not in sys.modules, "imported with the module"; '
    f'w = m.TensorBoardWriter({str(tmp_path)!r}, purge_step=1); '
    'w.write(1, "train", {"loss": 0.5}); w.close(); '
    'assert "torch" not in sys.modules, "torch imported or left hidden"'
  )
  root = os.path.dirname(os.path.dirname(os.path.dirname(__file__)))
  result = subprocess.run(
    [sys.executable, '-c', code],
    cwd=root,
    capture_output=True,
    text=True,
    timeout=120,
  )
  assert result.returncode == 0, result.stderr
  assert len(os.listdir(tmp_path)) == 1  # the event file was written


def _full_disk_after(budget: int):
  """An os.write that writes `budget` bytes in all, then fails as ENOSPC."""
  real_write = os.write
  left = [budget]

  def write(fd, data):
    if left[0] <= 0:
      raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    n = real_write(fd, bytes(data[: left[0]]))
    left[0] -= n
    return n

  return write


def test_a_full_disk_cuts_metrics_jsonl_back_to_whole_lines(
  tmp_path, monkeypatch
):
  writer = metrics.MetricsWriter(str(tmp_path), tensorboard=False)
  writer.write(1, 'train', {'loss': 1.5})
  before = (tmp_path / metrics.FILENAME).read_bytes()
  monkeypatch.setattr(os, 'write', _full_disk_after(10))  # Mid-line.
  with pytest.raises(workdir_lib.WriteError) as error:
    writer.write(2, 'train', {'loss': 0.5})
  monkeypatch.undo()
  assert str(error.value).startswith(
    f'cannot write {tmp_path / metrics.FILENAME}: No space left on device'
  )
  assert (tmp_path / metrics.FILENAME).read_bytes() == before  # Not torn.
  writer.write(2, 'train', {'loss': 0.5})  # Space again: appends go on.
  assert [r['step'] for r in metrics.read_metrics(str(tmp_path))] == [1, 2]


def test_a_failed_event_write_is_one_error_and_close_is_quiet(tmp_path):
  writer = metrics.MetricsWriter(str(tmp_path))
  writer.write(1, 'train', {'loss': 1.5})
  events = writer._tensorboard  # noqa: SLF001 - to break its file.

  def full(*args):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

  events._events._py_recordio_writer.flush = full  # noqa: SLF001
  with pytest.raises(workdir_lib.WriteError) as error:
    writer.write(2, 'train', {'loss': 0.5})
  assert str(error.value).startswith(
    f'cannot write {events.path}: No space left on device'
  )
  writer.close()  # Does not try the broken file again.
