"""What every study shares: its result, its files, and how it trains an arm.

A study (one module of this package) returns a `Result`: a matplotlib figure,
a small table, the verdict on the notes' claim and the numbers that decide it.
`write` turns that into `DIR/NAME.png` (always `FIGURE_PX` pixels),
`DIR/NAME.md` (claim, verdict, table, command, wall time, machine) and
`DIR/NAME.json` (the same numbers, machine-readable, for tests and the
gallery).

A study that trains calls `train`, which runs `train_lib.trainer.
train_and_evaluate` on a config in a temporary workdir (no second training
loop), and gives back the `metrics.jsonl` records and the final state;
`predict` applies such a state to a whole split.
"""

from collections.abc import Sequence
import contextlib
import dataclasses
import io
import json
import os
import platform
import tempfile
from typing import Any

import jax
import matplotlib

matplotlib.use('Agg')  # Files only; studies run on headless machines.
import matplotlib.pyplot as plt  # noqa: E402 - after choosing the backend.
import ml_collections  # noqa: E402
import numpy as np  # noqa: E402

from experiments.configs import common  # noqa: E402

# Every figure is saved at this size: 8 x 5 inches at 150 dpi.
FIGURE_INCHES = (8.0, 5.0)
FIGURE_DPI = 150
FIGURE_PX = (1200, 750)  # (width, height)
# The momentum of `plain_sgd`, the optimizer of the studies' plain arms.
PLAIN_SGD_MOMENTUM = 0.9


@dataclasses.dataclass
class Result:
  """What a study measured.

  Attributes:
    figure: one idea, titled, with labelled axes (units) and a legend.
    columns: the table's header.
    rows: the table's rows (numbers are formatted by `format_cell`).
    holds: True if the notes' claim holds on this run, False if not.
    verdict: one or two sentences that say so, with the deciding number.
    values: named numbers behind the verdict (written to NAME.json; the tests
      assert on them).
    notes: optional extra lines for the .md (setup details, caveats).
  """

  figure: Any
  columns: Sequence[str]
  rows: Sequence[Sequence[Any]]
  holds: bool
  verdict: str
  values: dict[str, Any] = dataclasses.field(default_factory=dict)
  notes: Sequence[str] = ()


def format_cell(value: Any) -> str:
  """A table cell: floats with 4 significant digits, the rest as str."""
  if isinstance(value, bool):
    return str(value)
  if isinstance(value, float):
    return f'{value:.4g}'
  return str(value).replace('|', '\\|')


def markdown_table(columns: Sequence[str], rows: Sequence[Sequence[Any]]):
  """A GitHub markdown table."""
  lines = [
    '| ' + ' | '.join(format_cell(c) for c in columns) + ' |',
    '|' + '---|' * len(columns),
  ]
  for row in rows:
    if len(row) != len(columns):
      raise ValueError(f'row {row} has {len(row)} cells, not {len(columns)}')
    lines.append('| ' + ' | '.join(format_cell(v) for v in row) + ' |')
  return '\n'.join(lines)


def machine() -> str:
  """The CPU model, its core count and the JAX backend, in words."""
  model = platform.processor() or platform.machine()
  with contextlib.suppress(OSError), open('/proc/cpuinfo') as f:
    for line in f:
      if line.startswith('model name'):
        model = line.partition(':')[2].strip()
        break
  cores = (
    len(os.sched_getaffinity(0))
    if hasattr(os, 'sched_getaffinity')
    else os.cpu_count()
  )
  device = jax.devices()[0]
  return (
    f'{model}, {cores} cores; JAX {jax.__version__} on '
    f'{jax.device_count()} {device.platform.upper()} device(s)'
  )


def new_figure(ncols: int = 1, nrows: int = 1, **kwargs):
  """A figure of the studies' fixed size and its axes."""
  return plt.subplots(nrows, ncols, figsize=FIGURE_INCHES, **kwargs)


def write(
  result: Result,
  *,
  name: str,
  claim: str,
  source: str,
  out_dir: str,
  command: str,
  wall_time_s: float,
  quick: bool,
) -> dict[str, str]:
  """Writes NAME.png, NAME.md and NAME.json into `out_dir`; returns paths."""
  os.makedirs(out_dir, exist_ok=True)
  paths = {
    ext: os.path.join(out_dir, f'{name}.{ext}') for ext in ('png', 'md', 'json')
  }
  fig = result.figure
  fig.set_size_inches(*FIGURE_INCHES)
  fig.tight_layout()
  fig.savefig(paths['png'], dpi=FIGURE_DPI)
  plt.close(fig)
  verdict_word = 'holds' if result.holds else 'does not hold'
  size = 'quick (--quick: fewer steps, smaller nets)' if quick else 'full'
  lines = [
    f'# {name}',
    '',
    f'**Claim** ({source}): {claim}',
    '',
    f'**Verdict: the claim {verdict_word}.** {result.verdict}',
    '',
    f'![{name}]({name}.png)',
    '',
    markdown_table(result.columns, result.rows),
    '',
    *[f'- {note}' for note in result.notes],
    *([''] if result.notes else []),
    f'Command: `{command}`',
    '',
    f'Size: {size}. Wall time: {wall_time_s:.1f} s on {machine()}.',
    '',
  ]
  with open(paths['md'], 'w') as f:
    f.write('\n'.join(lines))
  record = {
    'name': name,
    'claim': claim,
    'source': source,
    'holds': bool(result.holds),
    'verdict': result.verdict,
    'values': result.values,
    'columns': list(result.columns),
    'rows': [[_json_cell(v) for v in row] for row in result.rows],
    'command': command,
    'wall_time_s': wall_time_s,
    'quick': quick,
    'machine': machine(),
  }
  with open(paths['json'], 'w') as f:
    json.dump(record, f, indent=1, default=_json_cell)
  return paths


def _json_cell(value: Any) -> Any:
  if hasattr(value, 'item'):
    return value.item()
  if isinstance(value, str | int | float | bool) or value is None:
    return value
  return str(value)


@dataclasses.dataclass
class TrainRun:
  """One trained arm: the metrics.jsonl records and the final state."""

  records: list[dict[str, Any]]
  state: Any

  def series(self, key: str, split: str = 'train') -> tuple[list, list]:
    """(steps, values) of `key` in the records of `split`."""
    pairs = [
      (r['step'], r[key])
      for r in self.records
      if r['split'] == split and key in r
    ]
    return [s for s, _ in pairs], [v for _, v in pairs]

  def final(self, key: str, split: str = 'eval') -> float:
    """The last logged value of `key` in `split`."""
    _, values = self.series(key, split)
    if not values:
      raise KeyError(f'no {split} record has {key!r}')
    return values[-1]


def train(config: ml_collections.ConfigDict, *, verbose: bool = False):
  """Trains `config` with the project's trainer in a throw-away workdir.

  Checkpoints go to the temporary workdir too (the trainer always saves the
  last step); the printed progress is dropped unless `verbose`.

  Returns:
    A `TrainRun`.
  """
  from train_lib import metrics as metrics_lib  # noqa: PLC0415
  from train_lib import trainer  # noqa: PLC0415

  with tempfile.TemporaryDirectory(prefix='study-') as workdir:
    sink = (
      contextlib.nullcontext()
      if verbose
      else contextlib.redirect_stdout(io.StringIO())
    )
    with sink:
      state = trainer.train_and_evaluate(config, workdir)
    records = metrics_lib.read_metrics(workdir)
  return TrainRun(records=records, state=state)


def predict(
  config: ml_collections.ConfigDict, state: Any, split: str
) -> tuple[np.ndarray, np.ndarray]:
  """Softmax probabilities [N, K] of a trained state on a whole split.

  Rebuilds the run's data set and model from its config (as the trainer
  does) and applies the final parameters in evaluation mode (no dropout,
  BatchNorm running statistics) to every image of `split`.

  Args:
    config: the config the state was trained with.
    state: the final `TrainState` of `report.train(config)`.
    split: 'train' or 'test' (the held-out split the evaluations measure:
      the validation split when `config.data.validation_fraction` > 0).

  Returns:
    (probabilities [N, K] float64, labels [N] int).
  """
  from train_lib import data as data_lib  # noqa: PLC0415 (slow import)
  from train_lib import step as step_lib  # noqa: PLC0415
  from train_lib import trainer  # noqa: PLC0415

  dataset = data_lib.get_dataset(config.data, seed=config.seed)
  images, labels = dataset.host_arrays(split)
  model = trainer.create_model(config, dataset.num_classes)
  variables = step_lib.variables(state.params, state.batch_stats)
  logits = jax.jit(model.apply)(variables, images)
  probs = np.asarray(jax.nn.softmax(np.asarray(logits, np.float64), axis=-1))
  return probs, np.asarray(labels)


def plain_sgd(
  config: ml_collections.ConfigDict, **keys: Any
) -> ml_collections.ConfigDict:
  """`config` without its recipe: SGD + momentum 0.9 at a constant rate.

  No warmup, weight decay, label smoothing or pixel shifts, no evaluation
  before the end and no checkpoint but the trainer's last one, so that the
  arms of a study differ only in what the study varies. `keys` (any key of
  experiments/configs/common.py, e.g. `lr`, `seed`, `total_steps`) are set
  last, with `common.set_keys`.
  """
  common.set_keys(
    config,
    optimizer='momentum',
    momentum=PLAIN_SGD_MOMENTUM,
    schedule='constant',
    warmup_steps=0,
    weight_decay=0.0,
    label_smoothing=0.0,
    crop_padding=0,
    eval_every_steps=0,
    checkpoint_every_steps=0,
  )
  common.set_keys(config, **keys)
  return config
