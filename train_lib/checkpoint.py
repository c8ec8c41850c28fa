"""Checkpoints of the training state with orbax (the only orbax user here).

A checkpoint is the whole `TrainState`, so restoring it resumes the run
exactly (the contract is in train_lib/trainer.py); it lives in
`<workdir>/checkpoints/<step>/`. `Checkpointer` is the run's own: it saves
in a background thread, keeps the newest `keep` checkpoints and the
best-evaluated one (`prune`: a slowly diverging run keeps its last healthy
state) and resumes from the newest intact one (`restore_latest`: one that
cannot be read is reported in one short line and moved aside to
`<workdir>/corrupt_checkpoints/`, never deleted). `read` and `steps` look at
another run's checkpoints and never write, move or delete anything.

orbax writes into a temporary folder renamed to `<step>` once every array is
on disk, and older checkpoints are pruned only after a newer one is
complete, so a save that fails (a full disk, a quota, an I/O error) loses
nothing: it raises `WriteError` naming the folder, the file and the cause.
Any other error is a bug and keeps its traceback. What orbax leaves on the
terminal after a failure is dropped inside `orbax_quirks.QuietLeftovers()`,
which the trainer enters around a run.

Restoring uses an abstract target (shapes, dtypes, shardings), so that orbax
gives the optax state back as named tuples, not lists. The checkpoint's
metadata is first compared with it leaf by leaf: a checkpoint of another
model raises one `ValueError` naming the first differences, touching nothing.
"""

from collections.abc import Iterator
import contextlib
import gc
import os
import shutil
import time
from typing import Any

import jax
import orbax.checkpoint as ocp

from nets import weights
from train_lib import orbax_quirks
from train_lib import workdir as workdir_lib


class CorruptCheckpointError(ValueError):
  """A checkpoint whose files cannot be read."""


def _leaf_specs(tree: Any) -> dict[str, tuple[tuple[int, ...], str]]:
  """Maps 'params.Dense_0.kernel'-style names to (shape, dtype)."""
  return {
    jax.tree_util.keystr(path, simple=True, separator='.'): (
      tuple(getattr(leaf, 'shape', ())),
      str(getattr(leaf, 'dtype', type(leaf).__name__)),
    )
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]
  }


def _priority(name: str) -> tuple[int, str]:
  # Parameters first: they name the layer; optimizer slots repeat them.
  order = ('params', 'batch_stats', 'step')
  head = name.split('.', 1)[0]
  return (order.index(head) if head in order else len(order), name)


def describe_mismatch(stored: Any, expected: Any) -> list[str]:
  """How a checkpoint's `stored` metadata differs from the `expected` tree.

  One short sentence per difference (a shape, a dtype, a missing or an
  extra leaf); empty when the trees are compatible.
  """
  have, want = _leaf_specs(stored), _leaf_specs(expected)
  changed, missing, extra = [], [], []
  for name in sorted(want.keys() & have.keys(), key=_priority):
    (have_shape, have_dtype), (want_shape, want_dtype) = have[name], want[name]
    if have_shape != want_shape:
      changed.append(
        f'{name} has shape {have_shape} in the checkpoint but '
        f'{want_shape} in the model'
      )
    elif have_dtype != want_dtype:
      changed.append(
        f'{name} has dtype {have_dtype} in the checkpoint but '
        f'{want_dtype} in the model'
      )
  for name in sorted(want.keys() - have.keys(), key=_priority):
    missing.append(f'{name} is missing from the checkpoint')
  for name in sorted(have.keys() - want.keys(), key=_priority):
    extra.append(f'{name} is in the checkpoint but not in the model')
  # Shape changes first: they name the layer that differs most directly.
  return changed + missing + extra


def _directory(workdir: str) -> str:
  return os.path.join(os.path.abspath(workdir), 'checkpoints')


def _manager(
  directory: str, *, create: bool, async_save: bool = False
) -> ocp.CheckpointManager:
  # Rotation is `prune`'s job (it also keeps the best checkpoint).
  options = ocp.CheckpointManagerOptions(
    create=create, enable_async_checkpointing=async_save
  )
  return ocp.CheckpointManager(
    directory, options=options, item_handlers=ocp.StandardCheckpointHandler()
  )


def _restore(manager, workdir: str, step: int, abstract: Any) -> Any:
  """Checkpoint `step` read into `abstract`, once its metadata fits it.

  Raises CorruptCheckpointError (unreadable metadata or arrays), or
  ValueError (written for a different state: another model or config).
  """
  root = os.path.join(_directory(workdir), str(step))
  corrupt = lambda why: CorruptCheckpointError(
    f'checkpoint {root} is unreadable ({why})'
  )
  try:
    metadata = manager.item_metadata(step)
  except Exception as e:  # noqa: BLE001 - any read failure is corruption.
    damage = orbax_quirks.describe_damage(e, root)
    raise corrupt(f'unreadable metadata: {damage}') from e
  stored = getattr(metadata, 'tree', metadata)
  if stored is None:
    raise corrupt('its metadata is missing')
  problems = describe_mismatch(stored, abstract)
  if problems:
    raise ValueError(
      f'incompatible checkpoint in {workdir} (step {step}, written by a '
      f'different model or config): {weights.first_few(problems, "; ")}. '
      'Use a new --workdir or the config that wrote it'
    )
  try:
    return manager.restore(step, args=ocp.args.StandardRestore(abstract))
  except Exception as e:  # noqa: BLE001 - tensorstore, file errors...
    raise corrupt(orbax_quirks.describe_damage(e, root)) from e


def steps(workdir: str) -> list[int]:
  """The saved steps of `workdir`, oldest first (nothing is written)."""
  with contextlib.closing(_manager(_directory(workdir), create=False)) as m:
    return sorted(m.all_steps())


def read(workdir: str, step: int | None, abstract: Any) -> Any:
  """Checkpoint `step` (None: the newest) of `workdir`, read into `abstract`.

  Nothing is written, moved or deleted. Raises ValueError: no such
  checkpoint, one written for another state, or (CorruptCheckpointError)
  one whose files cannot be read.
  """
  directory = _directory(workdir)
  with contextlib.closing(_manager(directory, create=False)) as manager:
    saved = manager.all_steps()
    step = max(saved, default=None) if step is None else step
    if step not in saved:
      which = 'checkpoint' if step is None else f'checkpoint of step {step}'
      raise ValueError(f'no {which} in {directory}')
    return _restore(manager, workdir, step, abstract)


class Checkpointer:
  """Saves and restores `TrainState`s under `<workdir>/checkpoints`."""

  def __init__(self, workdir: str, *, keep: int, async_save: bool = True):
    """Opens (creating if needed) `<workdir>/checkpoints`; `prune` keeps the
    newest `keep` (>= 1); `async_save` writes in a background thread."""
    if keep < 1:
      raise ValueError(f'keep_checkpoints must be >= 1, got {keep}')
    self.workdir = workdir
    self.keep = keep
    self.directory = _directory(workdir)
    self._manager = _manager(self.directory, create=True, async_save=async_save)
    self._pending = None  # (step, protect) of a save not known complete.

  def latest_step(self) -> int | None:
    """The newest saved step, or None when there is no checkpoint."""
    return self._manager.latest_step()

  def all_steps(self) -> list[int]:
    """All saved steps, oldest first."""
    return sorted(self._manager.all_steps())

  def save(self, step: int, state: Any, *, protect: int | None = None) -> bool:
    """Saves `state` as checkpoint `step`; False if that step exists.

    Once it is complete (`wait`), keeps only the newest `keep` checkpoints
    and step `protect` (the best-evaluated one). Raises WriteError when the
    files cannot be written (nothing older is pruned then).
    """
    if step in self._manager.all_steps():
      return False
    self.wait()  # The previous save: complete (then pruned), or an error.
    self._pending = (step, protect)
    with self._writing(step):
      return self._manager.save(step, args=ocp.args.StandardSave(state))

  @contextlib.contextmanager
  def _writing(self, step: int) -> Iterator[None]:
    """Turns a failed write of checkpoint `step` into one WriteError.

    Any error forgets the pending save; one that is not a failed write
    propagates unchanged (a bug: its traceback is what helps).
    """
    try:
      yield
    except Exception as e:
      self._pending = None
      if not orbax_quirks.is_write_failure(e):
        raise
      kept = [f'{self.directory}/{s}' for s in self.all_steps()[-1:]]
      newest = (
        f'the newest complete checkpoint, {kept[0]}, is intact'
        if kept
        else 'no checkpoint was complete yet'
      )
      raise workdir_lib.WriteError(
        f'cannot write checkpoint {self.directory}/{step}: '
        f'{orbax_quirks.write_cause(e)}; {newest}; free space or fix the '
        'cause, then relaunch to resume'
      ) from e

  def prune(self, protect: int | None = None) -> None:
    """Deletes all but the newest `keep` checkpoints and step `protect`."""
    steps = self.all_steps()
    for step in steps[: -self.keep]:
      if step != protect:
        self._manager.delete(step)

  def restore(self, step: int | None, abstract_state: Any) -> Any:
    """Restores checkpoint `step` (None: the latest) into the target.

    `abstract_state` is a `jax.ShapeDtypeStruct` tree of the state; the
    arrays get its shapes and shardings. Raises ValueError (no checkpoint,
    another state) or CorruptCheckpointError (unreadable files).
    """
    step = self.latest_step() if step is None else step
    if step is None:
      raise ValueError(f'no checkpoint to restore in {self.directory}')
    return _restore(self._manager, self.workdir, step, abstract_state)

  def restore_latest(self, abstract_state: Any) -> tuple[int, Any] | None:
    """Restores the newest intact checkpoint; None when there is none at all.

    A checkpoint that cannot be read is reported in one line and moved to
    `<workdir>/corrupt_checkpoints/`; the next older one is tried.

    Raises:
      ValueError: a readable checkpoint written for a different state, or
        checkpoints exist but none of them is intact.
    """
    steps = self.all_steps()
    for step in reversed(steps):
      try:
        return step, self.restore(step, abstract_state)
      except CorruptCheckpointError as e:
        gc.collect()  # Abandoned reads are reported now (orbax_quirks).
        print(
          f'warning: {e}; kept as {self._move_aside(step)}; trying an older '
          'one',
          flush=True,
        )
    if steps:
      raise ValueError(
        f'none of the checkpoints {steps} in {self.directory} is intact '
        f'(they were moved to {self._corrupt_dir()}); use a new --workdir '
        'to start afresh'
      )
    return None

  def _corrupt_dir(self) -> str:
    return os.path.join(os.path.abspath(self.workdir), 'corrupt_checkpoints')

  def _move_aside(self, step: int) -> str:
    target = os.path.join(
      self._corrupt_dir(), f'{step}-{time.strftime("%Y%m%d-%H%M%S")}'
    )
    if jax.process_index() == 0:
      os.makedirs(self._corrupt_dir(), exist_ok=True)
      shutil.move(os.path.join(self.directory, str(step)), target)
    self._manager.reload()
    return target

  def wait(self) -> None:
    """Blocks until pending saves are on disk, then prunes.

    Raises:
      WriteError: the pending save failed (nothing older was pruned).
    """
    if self._pending is None:
      return
    step, protect = self._pending
    with self._writing(step):
      self._manager.wait_until_finished()
    self._pending = None
    self.prune(protect)

  def close(self) -> None:
    """Waits for pending saves and releases the manager."""
    try:
      self.wait()
    finally:
      self._manager.close()


def abstract_like(state: Any, sharding: jax.sharding.Sharding) -> Any:
  """The restore target of `state` (arrays or `jax.eval_shape` output):
  ShapeDtypeStructs whose every leaf has `sharding` (the state is replicated).
  """
  return jax.tree.map(
    lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding), state
  )
