"""Tests of train_lib/checkpoint.py: orbax save/restore of a TrainState.

References: the saved arrays themselves (a restore must give them back bit
for bit, with the optax named tuples intact), hand-written expected mismatch
sentences, and the file bytes of a checkpoint (an incompatible restore must
leave them unchanged).
"""

import gc
import hashlib
import logging
import os
import subprocess
import sys

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from train_lib import checkpoint
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


def _corrupt_and_restore(workdir: str, corrupt_name: str) -> None:
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
  with contextlib.redirect_stdout(out):
    step, state = ckpt.restore_latest(_abstract(_state()))
  assert step == 1 and int(state.step) == 1
  chex.assert_trees_all_equal(state.params, _state(step=1).params)
  line = out.getvalue().strip()
  assert line.startswith(f'warning: checkpoint {step_dir} is unreadable')
  # Short: the damage, not orbax's message with the whole TensorStore spec.
  damage = line.replace(step_dir, '').replace(workdir, '')
  assert '\n' not in line and len(damage) < 300, line
  assert 'tensorstore_spec' not in line and 'bound method' not in line
  # Still on disk, byte for byte, out of the way of the resumed run.
  corrupt_dir = os.path.join(workdir, 'corrupt_checkpoints')
  (moved,) = os.listdir(corrupt_dir)
  assert moved.startswith('2-') and moved in line
  assert _digest(os.path.join(corrupt_dir, moved)) == left
  assert ckpt.all_steps() == [1]
  ckpt.save(2, _state(step=2))  # The resumed run can write step 2 again.
  ckpt.close()


@pytest.mark.parametrize(
  'corrupt', [_truncate_data_files, _delete_data_folder, _delete_metadata]
)
@pytest.mark.slow
def test_restore_latest_skips_a_corrupt_checkpoint_and_keeps_it(
  tmp_path, corrupt
):
  # In a child process: tensorstore's failed reads leave background work
  # behind that can bring down a long-lived test worker later on.
  script = (
    'import runpy, sys\n'
    f'module = runpy.run_path({__file__!r})\n'
    f'module["_corrupt_and_restore"]({str(tmp_path)!r}, {corrupt.__name__!r})\n'
  )
  repo = os.path.dirname(os.path.dirname(os.path.dirname(__file__)))
  result = subprocess.run(
    [sys.executable, '-c', script],
    cwd=repo,
    env=dict(os.environ, JAX_PLATFORMS='cpu', XLA_FLAGS=''),
    capture_output=True,
    text=True,
    timeout=120,
    check=False,
  )
  assert result.returncode == 0, result.stderr[-3000:]
  # orbax's abandoned reads leave nothing on the terminal.
  for noise in ('Traceback', 'Exception ignored', 'Event loop is closed'):
    assert noise not in result.stdout + result.stderr, result.stderr[-3000:]


def _orbax_like_coroutine():
  """A suspended coroutine whose code, by its file name, is orbax's."""

  class InFlight:  # A read that has not completed.
    def __await__(self):
      yield

  async def _read_array_index_and_device_put():
    try:
      await InFlight()
    except BaseException as e:  # As orbax's serialization.py does.
      raise Exception('Encountered error while reading array index') from e

  function = _read_array_index_and_device_put
  function.__code__ = function.__code__.replace(
    co_filename=os.path.join(checkpoint._ORBAX_DIR, 'serialization.py')
  )
  coroutine = function()
  coroutine.send(None)  # Suspended, as a read in flight.
  return coroutine


@pytest.mark.slow
def test_leftover_filter_drops_orbax_reports_and_passes_others(monkeypatch):
  seen = []
  monkeypatch.setattr(sys, 'unraisablehook', seen.append)
  leftovers = checkpoint._OrbaxLeftovers()
  leftovers.start()
  coroutine = _orbax_like_coroutine()
  del coroutine  # Closed now: its GeneratorExit becomes an Exception.
  gc.collect()

  class Unrelated:
    def __del__(self):
      raise KeyError('a real bug')

  Unrelated()
  leftovers.stop()
  assert sys.unraisablehook == seen.append  # The previous hook is back.
  assert [type(u.exc_value) for u in seen] == [KeyError]
  # After stop(), an orbax leftover is reported again.
  coroutine = _orbax_like_coroutine()
  del coroutine
  gc.collect()
  assert [type(u.exc_value) for u in seen] == [KeyError, Exception]


def _asyncio_report(error: BaseException) -> logging.LogRecord:
  """The record asyncio logs for a future whose exception nobody read."""
  return logging.LogRecord(
    'asyncio',
    logging.ERROR,
    'base_events.py',
    1771,
    'Future exception was never retrieved\nfuture: <Future finished '
    'exception=%r>',
    (error,),
    (type(error), error, error.__traceback__),
  )


def test_leftover_filter_drops_failed_write_futures_and_passes_others():
  # As in a full-disk save: tensorstore's error, set on the future from C++
  # (no Python frames), and the same error re-raised by orbax's code.
  written = ValueError(
    'OUT_OF_RANGE: Error writing "params.fc0.bias/0" in OCDBT database at '
    'local file "/w/checkpoints/14.orbax-checkpoint-tmp/default/": Failed '
    "to write 1175 bytes to file 11: File too large [os_error_code='27']"
  )

  def write_fragment():
    raise RuntimeError('fragment failed') from written

  write_fragment.__code__ = write_fragment.__code__.replace(
    co_filename=os.path.join(checkpoint._ORBAX_DIR, 'serialization.py')
  )
  try:
    write_fragment()
  except RuntimeError as e:
    gathered = e
  leftovers = checkpoint._OrbaxLeftovers()
  assert not leftovers.filter(_asyncio_report(written))
  assert not leftovers.filter(_asyncio_report(gathered))
  try:
    raise ValueError('a real bug in a user callback')
  except ValueError as e:
    unrelated = e
  assert leftovers.filter(_asyncio_report(unrelated))


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
