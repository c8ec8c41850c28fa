"""Tests of train_lib/workdir.py and train_lib/validate.py: the guards.

References: hand-written configs and lock files, and the exact keys that
differ between two configs.
"""

import json
import os
import signal
import socket

import pytest

from experiments.configs import common
from train_lib import validate
from train_lib import workdir


def test_lock_refuses_a_live_owner_and_takes_over_a_stale_one(tmp_path, capsys):
  with workdir.WorkdirLock(str(tmp_path)):
    owner = json.loads((tmp_path / 'lock').read_text())
    assert owner['pid'] == os.getpid()
    assert owner['host'] == socket.gethostname()
    with (
      pytest.raises(workdir.WorkdirBusyError, match=f'process {os.getpid()}'),
      workdir.WorkdirLock(str(tmp_path)),
    ):
      pass
  assert not (tmp_path / 'lock').exists()  # Released on exit.

  # A process id that cannot be running (above the kernel's pid limit).
  dead = {'pid': 2**22 + 7, 'host': socket.gethostname(), 'since': 'then'}
  (tmp_path / 'lock').write_text(json.dumps(dead))
  with workdir.WorkdirLock(str(tmp_path)):
    assert 'stale lock' in capsys.readouterr().out
  # Another host's lock is never taken over: its process cannot be checked.
  other = dict(dead, host='another-host')
  (tmp_path / 'lock').write_text(json.dumps(other))
  with (
    pytest.raises(workdir.WorkdirBusyError, match="'another-host'"),
    workdir.WorkdirLock(str(tmp_path)),
  ):
    pass
  assert json.loads((tmp_path / 'lock').read_text()) == other


def test_config_change_refused_unless_reporting_or_allowed(tmp_path):
  run = str(tmp_path)
  config = common.get_config()
  workdir.check_config_change(config, run, resuming=False, allow_changes=False)
  first = (tmp_path / 'config.json').read_text()

  changed = common.get_config()
  changed.update(lr=0.5, batch_size=32, total_steps=30)
  with pytest.raises(ValueError) as info:
    workdir.check_config_change(
      changed, run, resuming=True, allow_changes=False
    )
  message = str(info.value)
  assert 'batch_size: 128 -> 32' in message and 'lr: 0.1 -> 0.5' in message
  assert 'total_steps' not in message and '--allow_config_change' in message
  assert (tmp_path / 'config.json').read_text() == first
  assert not (tmp_path / workdir.HISTORY_FILE).exists()

  longer = common.get_config()
  longer.update(total_steps=3000, log_every_steps=7)
  record = workdir.check_config_change(
    longer, run, resuming=True, allow_changes=False
  )
  assert not (tmp_path / workdir.HISTORY_FILE).exists()  # Not resumed yet.
  workdir.record_config_change(run, record)
  record = workdir.check_config_change(
    changed, run, resuming=True, allow_changes=True
  )
  workdir.record_config_change(run, record)
  assert (tmp_path / 'config.json').read_text() == first  # Written once.
  lines = (tmp_path / workdir.HISTORY_FILE).read_text().splitlines()
  records = [json.loads(line) for line in lines]
  assert records[0]['changes'] == {
    'log_every_steps': [100, 7],
    'total_steps': [1000, 3000],
  }
  assert not records[0]['forced'] and records[1]['forced']
  assert records[1]['changes']['lr'] == [0.1, 0.5]
  # The next relaunch is compared with the latest accepted config.
  assert (
    workdir.check_config_change(
      changed, run, resuming=True, allow_changes=False
    )
    is None
  )


def test_without_a_checkpoint_the_config_is_simply_rewritten(tmp_path):
  config = common.get_config()
  workdir.check_config_change(
    config, str(tmp_path), resuming=False, allow_changes=False
  )
  config.lr = 0.3
  workdir.check_config_change(
    config, str(tmp_path), resuming=False, allow_changes=False
  )
  assert json.loads((tmp_path / 'config.json').read_text())['lr'] == 0.3


def test_stop_signals_set_a_flag_then_restore_the_handlers():
  before = signal.getsignal(signal.SIGTERM)
  with workdir.StopSignals() as stop:
    os.kill(os.getpid(), signal.SIGTERM)
    assert stop.signum == signal.SIGTERM
  assert signal.getsignal(signal.SIGTERM) is before


@pytest.mark.parametrize(
  ('key', 'value', 'message'),
  [
    ('lr', -0.1, r'lr must be in \(0.0, inf\), got -0.1'),
    ('lr', 0.0, 'lr must be in'),
    ('momentum', -5.0, 'optimizer_kw.momentum must be in'),
    ('b2', 1.0, 'optimizer_kw.b2 must be in'),
    ('eps', 0.0, 'optimizer_kw.eps'),
    ('mixup_alpha', -1.0, 'augment.mixup_alpha must be in'),
    ('cutout_size', -2, 'augment.cutout_size'),
    ('label_smoothing', 1.0, 'label_smoothing'),
    ('weight_decay', -1e-4, 'weight_decay'),
    ('ema_decay', 1.0, 'ema_decay'),
    ('decay_factor', 0.0, 'schedule_kw.decay_factor'),
    ('warmup_steps', 1000, 'warmup_steps must be in'),
    ('keep_checkpoints', 0, 'keep_checkpoints'),
    ('compute_dtype', 'float17', "compute_dtype must be 'float32'"),
    ('batch_size', 12, 'batch_size 12 must be a positive multiple'),
    ('grad_accum_steps', 0, 'grad_accum_steps must be >= 1'),
    ('total_steps', 0, 'total_steps must be >= 1'),
    ('eval_every_steps', -1, 'eval_every_steps must be >= 0'),
    ('profile_steps', '3,1', 'need 1 <= START <= END'),
    ('total_steps', 10, "profile_steps='10,12': END 12 is past total_steps 10"),
  ],
)
def test_check_config_names_the_bad_key(key, value, message):
  config = common.get_config()
  config.profile_steps = '10,12'  # Valid at the default total_steps.
  common.set_keys(config, **{key: value})
  with pytest.raises(ValueError, match=message):
    validate.check_config(config, num_devices=8)


def test_check_config_accepts_every_shipped_default():
  validate.check_config(common.get_config(), num_devices=8)


def test_lock_names_a_workdir_that_cannot_be_used(tmp_path):
  a_file = tmp_path / 'file'
  a_file.write_text('precious')
  with (
    pytest.raises(workdir.WorkdirError, match='is a file, not a directory'),
    workdir.WorkdirLock(str(a_file)),
  ):
    pass
  assert a_file.read_text() == 'precious'
  read_only = tmp_path / 'ro'
  read_only.mkdir(mode=0o555)
  if os.access(read_only, os.W_OK):  # root ignores the mode bits
    pytest.skip('running as root: every directory is writable')
  with (
    pytest.raises(workdir.WorkdirError, match='cannot use --workdir'),
    workdir.WorkdirLock(str(read_only)),
  ):
    pass
