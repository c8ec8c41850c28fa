"""What every study shares: its result, its files, and how it trains an arm.

A study (one module of this package) returns a `Result`: a matplotlib figure,
a small table, its sub-claims with their intervals and verdicts
(`verdict.py`: holds / does not hold / inconclusive, by a rule fixed before
the run), and the protocol table that sets the study beside the paper it
scales down. `write` turns that into `DIR/NAME.png` (always `FIGURE_PX`
pixels), `DIR/NAME.md` (claim, verdict, sub-claims, protocol, table,
command, wall time, machine) and `DIR/NAME.json` (the same numbers,
machine-readable, for tests and the gallery).

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
import tempfile
from typing import Any

import jax
from matplotlib import figure as mpl_figure
import ml_collections
import numpy as np

from experiments import machine as machine_lib
from experiments.configs import common
from experiments.studies import verdict as verdict_lib

# Every figure is saved at this size: 8 x 5 inches at 150 dpi.
FIGURE_INCHES = (8.0, 5.0)
FIGURE_DPI = 150
FIGURE_PX = (1200, 750)  # (width, height)
# The momentum of `plain_sgd`, the optimizer of the studies' plain arms.
PLAIN_SGD_MOMENTUM = 0.9


# The rows every protocol table has, in this order ("| aspect | paper (cite)
# | this study | why it differs |"); a study may add rows after them.
PROTOCOL_ASPECTS = (
  'architecture',
  'data',
  'optimizer and learning-rate selection',
  'metric',
  'budget',
  'runs/seeds',
)
PROTOCOL_COLUMNS = ('aspect', 'paper (cite)', 'this study', 'why it differs')


@dataclasses.dataclass
class Result:
  """What a study measured.

  Attributes:
    figure: one idea, titled, with labelled axes (units) and a legend.
    columns: the table's header.
    rows: the table's rows (numbers are formatted by `format_cell`).
    subclaims: the claim split into `verdict.Subclaim`s, each with its
      estimate, 95% interval, threshold and verdict.
    summary: one or two sentences with the deciding numbers.
    protocol: rows (aspect, paper (cite), this study, why it differs), first
      the `PROTOCOL_ASPECTS` in order.
    values: named numbers behind the verdict (written to NAME.json; the tests
      assert on them).
    notes: optional extra lines for the .md (setup details, caveats).
    redesign: empty, or how and why the design changed after a result was
      seen (the .md prints it, so a reader knows what was not fixed
      before the run).
    preconditions: the `verdict.Precondition`s of the claim's regime,
      measured in the run (sub-claims with a kind only: format 2).
  """

  figure: Any
  columns: Sequence[str]
  rows: Sequence[Sequence[Any]]
  subclaims: Sequence[verdict_lib.Subclaim]
  summary: str
  protocol: Sequence[Sequence[str]]
  values: dict[str, Any] = dataclasses.field(default_factory=dict)
  notes: Sequence[str] = ()
  redesign: str = ''
  preconditions: Sequence[verdict_lib.Precondition] = ()

  def __post_init__(self):
    aspects = tuple(row[0] for row in self.protocol[: len(PROTOCOL_ASPECTS)])
    if aspects != PROTOCOL_ASPECTS:
      raise ValueError(
        f'the protocol table must start with the rows {PROTOCOL_ASPECTS}, '
        f'got {aspects}'
      )
    if any(len(row) != len(PROTOCOL_COLUMNS) for row in self.protocol):
      raise ValueError(f'protocol rows need {len(PROTOCOL_COLUMNS)} cells')
    verdict_lib.headline(self.subclaims, self.preconditions)

  @property
  def verdict(self) -> str:
    """The headline by the rule (see `verdict.headline`)."""
    return verdict_lib.headline(self.subclaims, self.preconditions)


def subclaim_rows(subclaims: Sequence[verdict_lib.Subclaim]) -> list[list]:
  """The .md's sub-claims table rows."""
  return [
    [
      s.claim,
      float(s.estimate),
      f'[{format_cell(float(s.ci_low))}, {format_cell(float(s.ci_high))}]',
      f'{"> " if s.direction == "above" else "< "}'
      f'{format_cell(float(s.threshold))} ({s.threshold_why})',
      f'{s.interval}; {s.seeds} seed(s)',
      f'**{s.verdict}**',
    ]
    for s in subclaims
  ]


SUBCLAIM_COLUMNS = (
  'sub-claim',
  'estimate',
  '95% interval',
  'threshold (claim side)',
  'interval from',
  'verdict',
)


def format_cell(value: Any) -> str:
  """A table cell: floats with 4 significant digits, the rest as str.

  numpy and JAX scalars count as the Python number they hold, so a cell
  reads the same in NAME.md as its value does in NAME.json.
  """
  if getattr(value, 'ndim', None) == 0 and hasattr(value, 'item'):
    value = value.item()
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
  device = jax.devices()[0]
  return (
    f'{machine_lib.cpu_model()}, {machine_lib.core_count()} cores; JAX '
    f'{jax.__version__} on '
    f'{jax.device_count()} {device.platform.upper()} device(s)'
  )


def new_figure(ncols: int = 1, nrows: int = 1, **kwargs):
  """A figure of the studies' fixed size and its axes.

  A bare `Figure`, outside pyplot: `savefig` renders it with Agg whatever
  the backend, which stays the program's (a notebook's inline one).
  """
  fig = mpl_figure.Figure(figsize=FIGURE_INCHES)
  return fig, fig.subplots(nrows, ncols, **kwargs)


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
  size = 'quick (--quick: fewer steps, smaller nets)' if quick else 'full'
  lines = [
    f'# {name}',
    '',
    f'**Claim** ({source}): {claim}',
    '',
    f'**Verdict: {result.verdict}.** {result.summary}',
    '',
    markdown_table(SUBCLAIM_COLUMNS, subclaim_rows(result.subclaims)),
    '',
    f'![{name}]({name}.png)',
    '',
    markdown_table(result.columns, result.rows),
    '',
    '**Protocol: the paper scaled down.**',
    '',
    markdown_table(PROTOCOL_COLUMNS, result.protocol),
    '',
    *[f'- {note}' for note in result.notes],
    *([''] if result.notes else []),
    *(
      [f'**Design changed after a result was seen:** {result.redesign}', '']
      if result.redesign
      else []
    ),
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
    'verdict': result.verdict,
    'summary': result.summary,
    **verdict_lib.study_fields(result.subclaims, result.preconditions),
    'protocol': [list(row) for row in result.protocol],
    'redesign': result.redesign,
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
  """One trained arm: the metrics.jsonl records and the final state.

  `checkpoints` maps each step the trainer checkpointed to the parameters
  saved there, when `train(..., keep_checkpoints=True)` asked for them.
  """

  records: list[dict[str, Any]]
  state: Any
  checkpoints: dict[int, Any] = dataclasses.field(default_factory=dict)

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


def train(
  config: ml_collections.ConfigDict,
  *,
  verbose: bool = False,
  keep_checkpoints: bool = False,
):
  """Trains `config` with the project's trainer in a throw-away workdir.

  Checkpoints go to the temporary workdir too (the trainer always saves the
  last step); the printed progress is dropped unless `verbose`. With
  `keep_checkpoints`, the parameters of every checkpoint the config asked
  for (`checkpoint_every_steps`; `keep_checkpoints` in the config must be
  large enough to keep them all) are read back before the workdir goes:
  the states of the one run along its training, for studies that probe
  them.

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
    checkpoints = _read_checkpoints(workdir, state) if keep_checkpoints else {}
  return TrainRun(records=records, state=state, checkpoints=checkpoints)


def _read_checkpoints(workdir: str, state: Any) -> dict[int, Any]:
  """{step: params} of every checkpoint in `workdir`, on the host."""
  from train_lib import checkpoint as checkpoint_lib  # noqa: PLC0415

  sharding = jax.tree.leaves(state)[0].sharding
  abstract = checkpoint_lib.abstract_like(state, sharding)
  return {
    step: jax.device_get(checkpoint_lib.read(workdir, step, abstract).params)
    for step in checkpoint_lib.steps(workdir)
  }


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

  dataset = data_lib.get_dataset(config.data, seed=config.seed)
  images, labels = dataset.host_arrays(split)
  probs = predict_images(config, state, images, dataset.num_classes)
  return probs, np.asarray(labels)


def predict_images(
  config: ml_collections.ConfigDict,
  state: Any,
  images: np.ndarray,
  num_classes: int = 10,
) -> np.ndarray:
  """Softmax probabilities [N, K] of a trained state on any `images`.

  As `predict`, on inputs the caller provides (already scaled as the
  run's data set scales its own), e.g. fresh signals from a generator.
  """
  from train_lib import step as step_lib  # noqa: PLC0415
  from train_lib import trainer  # noqa: PLC0415

  model = trainer.create_model(config, num_classes)
  variables = step_lib.variables(state.params, state.batch_stats)
  logits = jax.jit(model.apply)(variables, images)
  return np.asarray(jax.nn.softmax(np.asarray(logits, np.float64), axis=-1))


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
