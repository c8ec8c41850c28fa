"""Plots of a run, of a learning-rate schedule, and of the activations.

  python -m experiments.plot --workdir runs/mnist_lenet5
      # training and eval curves from DIR/metrics.jsonl into DIR/plots/
  python -m experiments.plot --what=schedule \
      --config experiments/configs/cifar.py --out_dir plots
      # the learning rate of a config over its total_steps (schedule.png)
  python -m experiments.plot --what=activations --out_dir plots
      # every activation of ops.activations with its derivative

Figures are bare matplotlib `Figure`s written as PNG by Agg (no display
needed), outside pyplot, so the program's backend stays as it was. An
expected failure (no workdir, no metrics file, a malformed line, an output
folder that cannot be written, a bad flag or `--config.` key) prints one
`error: ...` line naming the flag, key or file, and exits with status 1.

The flags are defined in `_define_flags()`, called only when this file runs as
a program: `experiments.main` defines `--config` and `--workdir` too, and absl
flags are process-global, so defining them at import would make the two
modules impossible to import together (e.g. in one pytest process).
"""

from collections.abc import Sequence
import functools
import json
import math
import os

from absl import app
from absl import flags
from matplotlib import figure as mpl_figure
import numpy as np

from experiments import cli

METRICS_FILE = 'metrics.jsonl'
WHAT = ('metrics', 'schedule', 'activations')
_NORMS = ('l2_grads', 'l2_params', 'l2_updates')
_DPI = 120
# metrics.jsonl stores non-finite floats as strings (JSON has no NaN).
_NON_FINITE = ('nan', 'inf', '-inf', 'infinity', '-infinity')


def read_metrics(path: str) -> list[dict]:
  """Reads a metrics.jsonl file: one JSON object per non-empty line.

  Non-finite values written as strings ('nan', 'inf') become floats.

  Raises:
    FileNotFoundError: no such file.
    ValueError: the file is not text, or a line is not a JSON object with an
      integer 'step' and a string 'split'.
  """
  if not os.path.isfile(path):
    raise FileNotFoundError(f'no metrics file at {path}')
  try:
    with open(path) as f:
      lines = f.readlines()
  except UnicodeDecodeError as e:
    raise ValueError(f'{path} is not a text file ({e.reason})') from e
  records = []
  for number, line in enumerate(lines, start=1):
    if not line.strip():
      continue
    try:
      record = json.loads(line)
    except json.JSONDecodeError as e:
      raise ValueError(f'{path}:{number}: not JSON ({e.msg})') from e
    if not isinstance(record, dict) or not {'step', 'split'} <= set(record):
      raise ValueError(f'{path}:{number}: needs "step" and "split" keys')
    step, split = record['step'], record['split']
    if not isinstance(step, int) or isinstance(step, bool) or step < 0:
      raise ValueError(
        f'{path}:{number}: "step" must be an integer >= 0, got {step!r}'
      )
    if not isinstance(split, str):
      raise ValueError(f'{path}:{number}: "split" must be text, got {split!r}')
    for key, value in record.items():
      if isinstance(value, str) and value.lower() in _NON_FINITE:
        record[key] = float(value)
    records.append(record)
  if not records:
    raise ValueError(f'{path} holds no records')
  return records


def _series(records: list[dict], split: str, key: str):
  """(steps, values) of `key` in the records of `split`, sorted by step."""
  points = sorted(
    (r['step'], r[key])
    for r in records
    if r['split'] == split and isinstance(r.get(key), int | float)
  )
  if not points:
    return None
  steps, values = zip(*points, strict=True)
  return np.asarray(steps), np.asarray(values, np.float64)


def _spans_decades(values: np.ndarray) -> bool:
  """Whether positive `values` vary over 20x (a log axis then reads better)."""
  values = values[np.isfinite(values)]
  return (
    values.size > 0 and values.min() > 0 and values.max() > 20 * values.min()
  )


def _make_dir(path: str) -> None:
  """os.makedirs, with an error that names the folder that cannot be made."""
  try:
    os.makedirs(path, exist_ok=True)
  except OSError as e:
    raise OSError(f'cannot create the folder {path}: {e.strerror}') from e


def _subplots(nrows: int = 1, ncols: int = 1, *, figsize, **kwargs):
  """`plt.subplots` on a bare Figure: pyplot's backend is never chosen."""
  fig = mpl_figure.Figure(figsize=figsize)
  return fig, fig.subplots(nrows, ncols, **kwargs)


def _finish(fig, path: str) -> str:
  fig.tight_layout()
  try:
    fig.savefig(path, dpi=_DPI)
  except OSError as e:
    raise OSError(f'cannot write {path}: {e.strerror}') from e
  return path


def _curve_panel(ax, records, key: str, title: str, ylabel: str) -> None:
  for split, style in (('train', '-'), ('eval', 'o-')):
    series = _series(records, split, key)
    if series is not None:
      ax.plot(*series, style, label=split, markersize=4)
    top5 = _series(records, split, 'top5_accuracy')
    if key == 'accuracy' and top5 is not None:
      ax.plot(*top5, style, alpha=0.5, label=f'{split} top-5', markersize=3)
  ax.set_title(title)
  ax.set_xlabel('step')
  ax.set_ylabel(ylabel)
  ax.grid(True, alpha=0.3)
  if ax.get_legend_handles_labels()[0]:
    ax.legend()


def plot_metrics(workdir: str, out_dir: str | None = None) -> list[str]:
  """Writes curves.png (+ lr.png, norms.png when logged) for a run.

  Args:
    workdir: run directory holding metrics.jsonl.
    out_dir: where to write; default `<workdir>/plots`.

  Returns:
    The paths of the PNG files written.
  """
  if not os.path.isdir(workdir):
    raise FileNotFoundError(f'no workdir at {workdir}')
  records = read_metrics(os.path.join(workdir, METRICS_FILE))
  out_dir = out_dir or os.path.join(workdir, 'plots')
  _make_dir(out_dir)
  run = os.path.basename(os.path.normpath(workdir))
  written = []

  fig, (loss_ax, acc_ax) = _subplots(1, 2, figsize=(11, 4))
  _curve_panel(loss_ax, records, 'loss', 'Loss', 'cross-entropy loss')
  train_loss = _series(records, 'train', 'loss')
  if train_loss is not None and _spans_decades(train_loss[1]):
    loss_ax.set_yscale('log')
  _curve_panel(acc_ax, records, 'accuracy', 'Accuracy', 'accuracy')
  fig.suptitle(f'Training and evaluation curves: {run}')
  written.append(_finish(fig, os.path.join(out_dir, 'curves.png')))

  lr = _series(records, 'train', 'lr')
  if lr is not None:
    fig, ax = _subplots(figsize=(6, 4))
    ax.plot(*lr, label='learning rate')
    ax.set(title=f'Learning rate: {run}', xlabel='step', ylabel='lr')
    ax.grid(True, alpha=0.3)
    ax.legend()
    written.append(_finish(fig, os.path.join(out_dir, 'lr.png')))

  norms = [(k, _series(records, 'train', k)) for k in _NORMS]
  norms = [(k, s) for k, s in norms if s is not None]
  if norms:
    fig, axes = _subplots(1, len(norms), figsize=(4.5 * len(norms), 3.8))
    for ax, (key, series) in zip(np.atleast_1d(axes), norms, strict=True):
      ax.plot(*series)
      if _spans_decades(series[1]):
        ax.set_yscale('log')
      ax.set(title=key.replace('l2_', 'L2 norm of '), xlabel='step')
      ax.set_ylabel('L2 norm')
      ax.grid(True, alpha=0.3)
    fig.suptitle(f'Norms: {run}')
    written.append(_finish(fig, os.path.join(out_dir, 'norms.png')))
  return written


def plot_schedule(config, out_dir: str) -> str:
  """Plots `create_schedule(config)` over steps 0..total_steps.

  Raises:
    ValueError: a config value a launch would refuse (`train_lib.validate`).
  """
  import jax  # noqa: PLC0415

  from train_lib import schedules  # noqa: PLC0415
  from train_lib import validate  # noqa: PLC0415

  # The values a launch would refuse (a negative lr) are refused here too.
  validate.check_config(config, num_devices=1)
  schedule = schedules.create_schedule(config)
  _make_dir(out_dir)  # After the checks, before the work.
  total = int(config.total_steps)
  steps = np.unique(np.linspace(0, total, min(total + 1, 2001)).astype(int))
  lr = np.asarray(jax.vmap(schedule)(steps.astype(np.int32)))
  fig, ax = _subplots(figsize=(7, 4))
  ax.plot(steps, lr, label=f'{config.schedule}')
  warmup = config.warmup_steps
  if warmup:
    ax.axvline(warmup, color='gray', linestyle='--', label='end of warmup')
  ax.set_title(
    f'Learning-rate schedule: {config.schedule}, lr={config.lr:g}, '
    f'{config.optimizer}, {total} steps'
  )
  ax.set(xlabel='step', ylabel='learning rate')
  ax.grid(True, alpha=0.3)
  ax.legend()
  return _finish(fig, os.path.join(out_dir, 'schedule.png'))


def plot_activations(out_dir: str, names: Sequence[str] | None = None) -> str:
  """One panel per activation of `ops.activations`: f(x) and f'(x)."""
  import jax  # noqa: PLC0415

  from ops import activations  # noqa: PLC0415

  names = list(names or activations.NAMES)
  # Unknown names fail here, before anything is computed or written.
  functions = {n: (activations.get(n), activations.get_grad(n)) for n in names}
  _make_dir(out_dir)
  x = np.linspace(-4.0, 4.0, 801, dtype=np.float32)
  cols = min(4, len(names))
  rows = math.ceil(len(names) / cols)
  # One jitted evaluation of every curve: one compile instead of hundreds of
  # eagerly dispatched small ops.
  curves = jax.jit(
    lambda x: {n: (f(x), grad(x)) for n, (f, grad) in functions.items()}
  )(x)
  fig, axes = _subplots(
    rows, cols, figsize=(3.6 * cols, 2.9 * rows), squeeze=False
  )
  for ax, name in zip(axes.flat, names, strict=False):
    value, grad = (np.asarray(c) for c in curves[name])
    ax.plot(x, value, label='f(x)')
    ax.plot(x, grad, '--', label="f'(x)")
    ax.axhline(0, color='black', linewidth=0.5)
    ax.axvline(0, color='black', linewidth=0.5)
    ax.set(title=name, xlabel='x')
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize='small')
  for ax in axes.flat[len(names) :]:
    ax.axis('off')
  fig.suptitle('Activation functions and their derivatives')
  return _finish(fig, os.path.join(out_dir, 'activations.png'))


def _define_flags() -> flags.FlagHolder:
  """Defines the CLI flags (see the module docstring for why here).

  Returns:
    The holder of the --config flag.
  """
  from ml_collections import config_flags  # noqa: PLC0415

  flags.DEFINE_string('workdir', None, 'Run directory with metrics.jsonl.')
  flags.DEFINE_enum('what', 'metrics', WHAT, 'What to plot.')
  flags.DEFINE_string(
    'out_dir', None, 'Output directory (default: <workdir>/plots).'
  )
  return config_flags.DEFINE_config_file(
    'config', None, 'Config file (for --what=schedule).', lock_config=True
  )


def main(argv: Sequence[str]) -> None:
  """Dispatches on --what; expected failures end as one error line."""
  del argv  # cli.parse_flags refused positional arguments.
  cli.quiet_library_logs()
  f = flags.FLAGS
  out_dir = f.out_dir or (f.workdir and os.path.join(f.workdir, 'plots'))
  try:
    if f.what == 'metrics':
      if not f.workdir:
        cli.fail('--workdir is required (a run directory with metrics.jsonl)')
      written = plot_metrics(f.workdir, f.out_dir)
    elif not out_dir:
      cli.fail('--out_dir (or --workdir) is required')
    elif f.what == 'schedule':
      if f.config is None:
        cli.fail('--what=schedule needs --config experiments/configs/NAME.py')
      written = [plot_schedule(f.config, out_dir)]
    else:
      written = [plot_activations(out_dir)]
  except (OSError, ValueError) as e:  # A missing or unwritable file too.
    cli.fail(e)
  for path in written:
    print(f'wrote {path}')


if __name__ == '__main__':
  config = _define_flags()
  app.run(main, flags_parser=functools.partial(cli.parse_flags, config=config))
