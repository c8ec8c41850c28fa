"""Tests of train_lib/checkpoint.py: orbax save/restore of a TrainState.

References: the saved arrays themselves (a restore must give them back bit
for bit, with the optax named tuples intact), hand-written expected mismatch
sentences, and the file bytes of a checkpoint (an incompatible restore or
any `read` must leave them unchanged). The leftovers of orbax's failures are
tests/train_lib/test_orbax_quirks.py's.
"""

import hashlib
import os
import threading
import traceback

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from tests.train_lib import child_testing
from train_lib import checkpoint
from train_lib import orbax_quirks
from train_lib import workdir as workdir_lib
from train_lib.state import TrainState


def _state(width: int = 4, step: int = 0) -> TrainState:
  params = {
    'dense': {
      'kernel': jnp.arange(3 * width, dtype=jnp.float32).reshape(3, width),
      'bias': jnp.full((width,), 0.5, jnp.float32),
    }
  }
  tx = optax.chain(optax.clip_by_global_norm(1.0), optax.adam(1e-3))
  opt_state = tx.init(params)
  # Make the moments non-trivial so that a restore is a real check.
  opt_state = jax.tree.map(
    lambda x: x + 1 if x.dtype == jnp.float32 else x, opt_state
  )
  return TrainState(
    step=jnp.asarray(step, jnp.int32),
    params=params,
    batch_stats={},
    opt_state=opt_state,
  )


def _abstract(state):
  sharding = jax.sharding.SingleDeviceSharding(jax.devices()[0])
  return checkpoint.abstract_like(jax.eval_shape(lambda: state), sharding)


def _digest(directory: str) -> dict[str, str]:
  digests = {}
  for root, _, files in os.walk(directory):
    for name in files:
      path = os.path.join(root, name)
      with open(path, 'rb') as f:
        digests[os.path.relpath(path, directory)] = hashlib.sha256(
          f.read()
        ).hexdigest()
  return digests


def test_save_restore_roundtrip_keeps_optax_types(tmp_path):
  state = _state(step=7)
  ckpt = checkpoint.Checkpointer(str(tmp_path), keep=2)
  assert ckpt.latest_step() is None
  assert ckpt.save(7, state)
  ckpt.wait()
  restored = ckpt.restore(None, _abstract(state))
  ckpt.close()
  chex.assert_trees_all_equal(restored, state)
  # Without an abstract target orbax would return lists here.
  assert type(restored.opt_state) is type(state.opt_state)
  assert type(restored.opt_state[1][0]) is type(state.opt_state[1][0])
  assert int(restored.step) == 7


def test_retention_keeps_newest_and_skips_existing_step(tmp_path):
  ckpt = checkpoint.Checkpointer(str(tmp_path), keep=2)
  for step in (1, 2, 3):
    assert ckpt.save(step, _state(step=step))
  assert not ckpt.save(3, _state(step=3))  # Same step: nothing written.
  ckpt.close()
  assert ckpt.all_steps() == [2, 3]
  assert sorted(os.listdir(tmp_path / 'checkpoints')) == ['2', '3']


def test_describe_mismatch_sentences():
  stored = {'a': np.zeros((3, 4)), 'b': np.zeros(2), 'old': np.zeros(1)}
  wanted = {
    'a': jax.ShapeDtypeStruct((3, 5), jnp.float64),
    'b': jax.ShapeDtypeStruct((2,), jnp.int32),
    'new': jax.ShapeDtypeStruct((1,), jnp.float64),
  }
  assert checkpoint.describe_mismatch(stored, wanted) == [
    'a has shape (3, 4) in the checkpoint but (3, 5) in the model',
    'b has dtype float64 in the checkpoint but int32 in the model',
    'new is missing from the checkpoint',
    'old is in the checkpoint but not in the model',
  ]
  assert checkpoint.describe_mismatch(stored, stored) == []


@pytest.mark.slow
def test_incompatible_checkpoint_is_refused_and_untouched(tmp_path):
  ckpt = checkpoint.Checkpointer(str(tmp_path), keep=3)
  ckpt.save(5, _state(width=4, step=5))
  ckpt.close()
  before = _digest(str(tmp_path))

  other = checkpoint.Checkpointer(str(tmp_path), keep=3)
  with pytest.raises(ValueError, match='incompatible checkpoint') as info:
    other.restore(None, _abstract(_state(width=6)))
  other.close()
  message = str(info.value)
  assert str(tmp_path) in message
  assert (
    'params.dense.kernel has shape (3, 4) in the checkpoint but (3, 6)'
    in (message)
  )
  assert _digest(str(tmp_path)) == before


def test_restore_without_checkpoint_and_bad_keep(tmp_path):
  ckpt = checkpoint.Checkpointer(str(tmp_path), keep=1)
  with pytest.raises(ValueError, match='no checkpoint'):
    ckpt.restore(None, _abstract(_state()))
  ckpt.close()
  with pytest.raises(ValueError, match='keep_checkpoints'):
    checkpoint.Checkpointer(str(tmp_path), keep=0)


def _truncate_data_files(step_dir):
  for root, _, files in os.walk(os.path.join(step_dir, 'default')):
    if os.path.basename(root) == 'd':
      for name in files:
        with open(os.path.join(root, name), 'r+b') as f:
          f.truncate(8)


def _delete_data_folder(step_dir):
  import shutil  # noqa: PLC0415

  shutil.rmtree(os.path.join(step_dir, 'default'))


def _delete_metadata(step_dir):
  for root, _, files in os.walk(step_dir):
    for name in files:
      if 'METADATA' in name or name == 'manifest.ocdbt':
        os.remove(os.path.join(root, name))


def _corrupt_and_restore(
  workdir: str, corrupt_name: str, damage_pattern: str
) -> None:
  """The scenario of the test below; run in a child process by it."""
  import contextlib  # noqa: PLC0415
  import io  # noqa: PLC0415

  ckpt = checkpoint.Checkpointer(workdir, keep=3, async_save=False)
  ckpt.save(1, _state(step=1))
  ckpt.save(2, _state(width=4, step=2))
  ckpt.wait()
  step_dir = os.path.join(ckpt.directory, '2')
  globals()[corrupt_name](step_dir)
  left = _digest(step_dir)
  out = io.StringIO()
  with contextlib.redirect_stdout(out), orbax_quirks.QuietLeftovers() as quiet:
    step, state = ckpt.restore_latest(_abstract(_state()))
  assert step == 1 and int(state.step) == 1
  chex.assert_trees_all_equal(state.params, _state(step=1).params)
  line = out.getvalue().strip()
  assert line.startswith(f'warning: checkpoint {step_dir} is unreadable')
  # Short: the damage, not orbax's message with the whole TensorStore spec.
  damage = line.replace(step_dir, '').replace(workdir, '')
  assert '\n' not in line and len(damage) < 300, line
  assert 'tensorstore_spec' not in line and 'bound method' not in line
  assert damage_pattern in line, line  # tensorstore's text, as parsed.
  kinds = (  # A failed read's leftovers (the module doc of orbax_quirks).
    "RuntimeError('Event loop is closed')",
    'Encountered error while reading array index',
    'exception was never retrieved',
    'Task was destroyed but it is pending',
  )
  for dropped in quiet.dropped:
    assert any(kind in dropped for kind in kinds), dropped
  # Still on disk, byte for byte, out of the way of the resumed run.
  corrupt_dir = os.path.join(workdir, 'corrupt_checkpoints')
  (moved,) = os.listdir(corrupt_dir)
  assert moved.startswith('2-') and moved in line
  assert _digest(os.path.join(corrupt_dir, moved)) == left
  assert ckpt.all_steps() == [1]
  ckpt.save(2, _state(step=2))  # The resumed run can write step 2 again.
  ckpt.close()
  # Leftovers can surface until exit: quiet to the end, as the launcher.
  orbax_quirks.QuietLeftovers().start()


@pytest.mark.parametrize(
  'corrupt, damage',
  [
    # A data file of the OCDBT database, cut to 8 bytes; the first array
    # orbax reads is the step's optimizer count.
    (_truncate_data_files, 'is truncated (8 bytes where at least '),
    (_delete_data_folder, 'unreadable metadata: Unable to retrieve'),
    (_delete_metadata, 'its metadata is missing'),
  ],
)
@pytest.mark.slow
def test_restore_latest_skips_a_corrupt_checkpoint_and_keeps_it(
  tmp_path, corrupt, damage
):
  # In a child process: tensorstore's failed reads leave background work
  # behind that can bring down a long-lived test worker later on.
  result = child_testing.run(
    __file__, '_corrupt_and_restore', str(tmp_path), corrupt.__name__, damage
  )
  # orbax's abandoned reads leave nothing on the terminal.
  for noise in ('Traceback', 'Exception ignored', 'Event loop is closed'):
    assert noise not in result.stdout + result.stderr, result.stderr[-3000:]


def test_restore_latest_refuses_when_nothing_is_intact(tmp_path):
  ckpt = checkpoint.Checkpointer(str(tmp_path), keep=3, async_save=False)
  assert ckpt.restore_latest(_abstract(_state())) is None  # Nothing saved.
  ckpt.save(1, _state(step=1))
  ckpt.wait()
  _delete_metadata(os.path.join(ckpt.directory, '1'))
  with pytest.raises(ValueError, match=r'none of the checkpoints \[1\]'):
    ckpt.restore_latest(_abstract(_state()))
  ckpt.close()


def test_a_model_change_is_not_taken_for_corruption(tmp_path):
  ckpt = checkpoint.Checkpointer(str(tmp_path), keep=3, async_save=False)
  ckpt.save(1, _state(step=1))
  ckpt.wait()
  with pytest.raises(ValueError, match='incompatible checkpoint'):
    ckpt.restore_latest(_abstract(_state(width=6)))
  assert ckpt.all_steps() == [1]
  assert not (tmp_path / 'corrupt_checkpoints').exists()
  ckpt.close()


def test_prune_keeps_the_newest_and_the_protected_step(tmp_path):
  ckpt = checkpoint.Checkpointer(str(tmp_path), keep=2, async_save=False)
  for step in range(1, 6):
    ckpt.save(step, _state(step=step), protect=2)
    ckpt.wait()
  assert ckpt.all_steps() == [2, 4, 5]
  ckpt.prune(protect=None)
  assert ckpt.all_steps() == [4, 5]
  ckpt.close()


def _a_bug_in_save(*args, **kwargs):
  raise RuntimeError('a bug, not a failed write')


def test_an_unexpected_save_error_keeps_its_traceback_and_ends(tmp_path):
  ckpt = checkpoint.Checkpointer(str(tmp_path), keep=2, async_save=False)
  ckpt.save(1, _state(step=1))
  real_save, ckpt._manager.save = ckpt._manager.save, _a_bug_in_save
  seen = {}

  def scenario():  # What a caller does with an error: walk its causes.
    try:
      ckpt.save(2, _state(step=2))
    except Exception as e:  # noqa: BLE001 - the test looks at it.
      seen['error'], seen['pending'] = e, ckpt._pending
      seen['write'] = orbax_quirks.is_write_failure(e)
      seen['lines'] = traceback.format_exception(e)
    ckpt._manager.save = real_save
    seen['saved'] = ckpt.save(3, _state(step=3))  # Still usable.
    ckpt.close()

  # In a thread, with a time limit: a cycle in the cause chain hangs.
  thread = threading.Thread(target=scenario, daemon=True)
  thread.start()
  thread.join(timeout=60)
  assert not thread.is_alive(), 'the save error was never handled (a loop)'
  error = seen['error']
  assert type(error) is RuntimeError, type(error)  # Not a WriteError.
  assert error.__cause__ is None and not seen['write']
  assert traceback.extract_tb(error.__traceback__)[-1].name == '_a_bug_in_save'
  assert seen['lines'][-1] == 'RuntimeError: a bug, not a failed write\n'
  assert seen['pending'] is None and seen['saved']
  assert checkpoint.steps(str(tmp_path)) == [1, 3]


def _saved_run(tmp_path, steps=(1, 2)):
  workdir = str(tmp_path / 'run')
  ckpt = checkpoint.Checkpointer(workdir, keep=3, async_save=False)
  for step in steps:
    ckpt.save(step, _state(step=step))
  ckpt.close()
  return workdir


def test_read_gives_back_a_checkpoint_and_writes_nothing(tmp_path):
  workdir = _saved_run(tmp_path)
  before = _digest(workdir)
  assert checkpoint.steps(workdir) == [1, 2]
  newest = checkpoint.read(workdir, None, _abstract(_state()))
  chex.assert_trees_all_equal(newest, _state(step=2))
  first = checkpoint.read(workdir, 1, _abstract(_state()))
  chex.assert_trees_all_equal(first, _state(step=1))
  with pytest.raises(ValueError, match='no checkpoint of step 5 in .*run'):
    checkpoint.read(workdir, 5, _abstract(_state()))
  with pytest.raises(ValueError, match='incompatible checkpoint'):
    checkpoint.read(workdir, 2, _abstract(_state(width=6)))
  assert _digest(workdir) == before
  assert sorted(os.listdir(workdir)) == ['checkpoints']
  # A folder without checkpoints stays as it is: nothing is created.
  empty = tmp_path / 'empty'
  empty.mkdir()
  assert checkpoint.steps(str(empty)) == []
  with pytest.raises(ValueError, match='no checkpoint in .*empty'):
    checkpoint.read(str(empty), None, _abstract(_state()))
  assert os.listdir(empty) == []


def test_read_of_a_corrupt_checkpoint_is_one_line_and_moves_nothing(tmp_path):
  workdir = _saved_run(tmp_path)
  # Not a truncated array file: a failed array read leaves background work
  # that can bring down a long-lived test worker (see the child above).
  _delete_data_folder(os.path.join(workdir, 'checkpoints', '2'))
  before = _digest(workdir)
  with pytest.raises(checkpoint.CorruptCheckpointError) as info:
    checkpoint.read(workdir, 2, _abstract(_state()))
  message = str(info.value)
  assert message.startswith(
    f'checkpoint {workdir}/checkpoints/2 is unreadable (unreadable metadata: '
  )
  assert '\n' not in message and len(message) < 400, message
  assert isinstance(info.value, ValueError)  # init_from: one line.
  assert _digest(workdir) == before  # Not moved aside: another run's.


def test_a_write_failure_is_one_write_error(tmp_path, monkeypatch):
  ckpt = checkpoint.Checkpointer(str(tmp_path), keep=2, async_save=False)
  ckpt.save(1, _state(step=1))

  def full(*args, **kwargs):
    raise OSError(28, os.strerror(28), str(tmp_path / 'checkpoints/2/x'))

  monkeypatch.setattr(ckpt._manager, 'save', full)
  with pytest.raises(workdir_lib.WriteError) as info:
    ckpt.save(2, _state(step=2))
  assert str(info.value) == (
    f'cannot write checkpoint {tmp_path}/checkpoints/2: '
    f'{tmp_path}/checkpoints/2/x: No space left on device; the newest '
    f'complete checkpoint, {tmp_path}/checkpoints/1, is intact; free space '
    'or fix the cause, then relaunch to resume'
  )
  assert ckpt._pending is None
  ckpt.close()
  assert ckpt.all_steps() == [1]
