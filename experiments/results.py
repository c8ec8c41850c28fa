r"""One results table for any number of runs, read from their workdirs.

  python -m experiments.results runs/*
  python -m experiments.results runs/digits_cnn runs/demo --format=markdown

One row per path given, in that order: the config (data set, and the config
file `--config` named, from the launch's command), model, parameters and
MACs per image (`nets.summarize` of the model rebuilt from config.json,
without running it), best and final evaluation accuracy and the split they
measured (`eval_split` of the eval lines: test, or validation when
`data.validation_fraction` > 0), steps done / total, images/s (median of the
train lines), wall time (the train loop's, summed over launches), compile
time (the first train step of the first launch) and the command to
reproduce it (the last line of `launches.jsonl`, which the launcher
writes). `--format=table` (default: aligned text), `markdown` or `csv` (raw
numbers: accuracies as fractions, seconds).

A path that is not a usable run still gets its row, with the reason in the
`status` column: not a directory, no config.json, no metrics (a run that
crashed before its first line, or has not started), running (its lock is
held), stopped before its last step. Only when no path given is a directory
at all (e.g. a `runs/*` that matched nothing) does the tool stop with one
`error:` line and exit status 1.
"""

from collections.abc import Sequence
import csv
import functools
import io
import json
import os
import shlex
import statistics
from typing import Any

from absl import app
from absl import flags

from experiments import cli

_FORMAT = flags.DEFINE_enum(
  'format',
  'table',
  ['table', 'markdown', 'csv'],
  'table: aligned text; markdown: a GitHub table; csv: raw numbers.',
)

# (key, heading) in the order of the table.
COLUMNS = (
  ('run', 'run'),
  ('status', 'status'),
  ('config', 'config'),
  ('model', 'model'),
  ('params', 'params'),
  ('macs', 'MACs/image'),
  ('best_accuracy', 'best eval'),
  ('final_accuracy', 'final eval'),
  ('eval_split', 'split'),
  ('steps', 'steps'),
  ('images_per_sec', 'images/s'),
  ('wall_time_s', 'wall time'),
  ('compile_time_s', 'compile'),
  ('command', 'command'),
)
NO_COMMAND = 'unknown (no launches.jsonl)'


def _read_jsonl(path: str) -> list[dict[str, Any]]:
  """The JSON objects of a file, skipping lines a kill cut short."""
  records = []
  with open(path) as f:
    for line in f:
      try:
        record = json.loads(line)
      except json.JSONDecodeError:
        continue
      if isinstance(record, dict):
        records.append(record)
  return records


def config_spec(command: str | None) -> str | None:
  """'digits.py:mlp' from a launch command's --config (None: unknown)."""
  if not command:
    return None
  try:
    argv = shlex.split(command)
  except ValueError:
    return None
  spec = cli.config_spec(argv, None)
  if spec:
    return os.path.basename(spec)
  if 'experiments.main' in argv:
    return "the launcher's default"  # experiments/main.py names it.
  return None


@functools.cache
def _model_size(config_json: str) -> tuple[int, int]:
  """(params, MACs per example) of the model a config.json describes."""
  import ml_collections  # noqa: PLC0415 - jax and nets load only if needed.

  import nets  # noqa: PLC0415
  from train_lib import data as data_lib  # noqa: PLC0415
  from train_lib import trainer  # noqa: PLC0415

  config = ml_collections.ConfigDict(json.loads(config_json))
  dataset = data_lib.get_dataset(config.data, seed=config.seed)
  model = trainer.create_model(config, dataset.num_classes)
  summary = nets.summarize(model, dataset.image_shape)
  return summary.params, summary.macs


def wall_time(records: Sequence[dict[str, Any]]) -> float | None:
  """Seconds of training summed over launches (each restarts its clock)."""
  total, last = 0.0, None
  for r in records:
    t = r.get('wall_time_s')
    if not isinstance(t, int | float):
      continue
    if last is not None and t < last:  # A relaunch started a new clock.
      total += last
    last = t
  return None if last is None else total + last


def _scores(records: Sequence[dict[str, Any]]) -> dict[str, Any]:
  """Eval, speed and time cells from metrics.jsonl's records."""
  row = {}
  evals = [r for r in records if r.get('split') == 'eval']
  if evals:
    # Ties go to the later step, as the trainer's best checkpoint does.
    best = max(evals, key=lambda r: (r['accuracy'], r['step']))
    row['best_accuracy'], row['best_step'] = best['accuracy'], best['step']
    row['final_accuracy'] = evals[-1]['accuracy']
    row['eval_split'] = evals[-1].get('eval_split', 'test')
  train = [r for r in records if r.get('split') == 'train']
  speeds = [r['images_per_sec'] for r in train if 'images_per_sec' in r]
  if speeds:
    row['images_per_sec'] = statistics.median(speeds)
  compiles = [r['compile_time_s'] for r in train if 'compile_time_s' in r]
  if compiles:
    row['compile_time_s'] = compiles[0]
  row['wall_time_s'] = wall_time(records)
  return row


def read_run(path: str) -> dict[str, Any]:
  """One row of the table: the values read from the workdir `path`."""
  row = {'run': path}
  if not os.path.isdir(path):
    what = 'a file' if os.path.exists(path) else 'no such directory'
    return {**row, 'status': f'not a workdir ({what})'}
  launches = (
    _read_jsonl(os.path.join(path, 'launches.jsonl'))
    if os.path.exists(os.path.join(path, 'launches.jsonl'))
    else []
  )
  command = launches[-1].get('command') if launches else None
  row['command'] = command or NO_COMMAND
  config_path = os.path.join(path, 'config.json')
  try:
    with open(config_path) as f:
      config_json = f.read()
    config = json.loads(config_json)
  except FileNotFoundError:
    return {**row, 'status': 'no config.json (not a run, or it never started)'}
  except (OSError, ValueError) as e:
    return {**row, 'status': f'config.json unreadable: {e}'}
  spec = config_spec(command)
  data_name = config.get('data', {}).get('name', '?')
  row['config'] = f'{data_name} ({spec})' if spec else data_name
  row['model'] = config.get('model', '?')
  status = []
  try:
    row['params'], row['macs'] = _model_size(config_json)
  except Exception as e:  # noqa: BLE001 - a run's odd config; say why.
    status.append(f'model not summarised: {cli.last_line(str(e))}')
  metrics_path = os.path.join(path, 'metrics.jsonl')
  records = _read_jsonl(metrics_path) if os.path.exists(metrics_path) else []
  total = config.get('total_steps')
  if not records:
    status.insert(0, 'no metrics (crashed before its first line, or empty)')
    row['steps'] = f'0/{total}'
    return {**row, 'status': '; '.join(status)}
  done = max(r.get('step', 0) for r in records)
  row['steps'] = f'{done}/{total}'
  row.update(_scores(records))
  if os.path.exists(os.path.join(path, 'lock')):
    state = 'running (or killed: its lock is held)'
  elif isinstance(total, int) and done < total:
    state = f'stopped at step {done}'
  else:
    state = 'done'
  if len(launches) > 1:
    state += f' ({len(launches)} launches)'
  return {**row, 'status': '; '.join([state, *status])}


def _cell(key: str, row: dict[str, Any]) -> str:
  """The text of one cell (table and markdown)."""
  value = row.get(key)
  if value is None:
    return '-'
  if key == 'params':
    return f'{value:,}'
  if key == 'macs':
    return f'{value / 1e6:,.2f} M'
  if key == 'best_accuracy':
    return f'{100 * value:.2f}% @{row["best_step"]}'
  if key == 'final_accuracy':
    return f'{100 * value:.2f}%'
  if key == 'images_per_sec':
    return f'{value:,.0f}'
  if key in ('wall_time_s', 'compile_time_s'):
    from train_lib import metrics  # noqa: PLC0415 - imports jax.

    return metrics.format_duration(value)
  return str(value)


def render(rows: Sequence[dict[str, Any]], fmt: str) -> str:
  """The rows as 'table' (aligned text), 'markdown' or 'csv'."""
  if fmt == 'csv':
    out = io.StringIO()
    writer = csv.writer(out, lineterminator='\n')
    writer.writerow([key for key, _ in COLUMNS] + ['best_step'])
    for row in rows:
      keys = [key for key, _ in COLUMNS] + ['best_step']
      writer.writerow(['' if row.get(k) is None else row[k] for k in keys])
    return out.getvalue().rstrip('\n')
  heads = [head for _, head in COLUMNS]
  cells = [[_cell(key, row) for key, _ in COLUMNS] for row in rows]
  if fmt == 'markdown':
    lines = ['| ' + ' | '.join(heads) + ' |', '|' + '---|' * len(heads)]
    for line in cells:
      escaped = [c.replace('|', '\\|') for c in line]
      escaped[-1] = f'`{escaped[-1]}`' if line[-1] != NO_COMMAND else line[-1]
      lines.append('| ' + ' | '.join(escaped) + ' |')
    return '\n'.join(lines)
  widths = [max(map(len, col)) for col in zip(heads, *cells, strict=True)]
  numeric = {'params', 'macs', 'images_per_sec', 'wall_time_s'}
  numeric |= {'compile_time_s', 'best_accuracy', 'final_accuracy', 'steps'}

  def line(values):
    return '  '.join(
      v.rjust(w) if key in numeric else v.ljust(w)
      for (key, _), v, w in zip(COLUMNS, values, widths, strict=True)
    ).rstrip()

  return '\n'.join([line(heads), *(line(c) for c in cells)])


def main(argv: Sequence[str]) -> None:
  """Prints the table of the workdirs given as arguments."""
  cli.quiet_library_logs()
  paths = list(argv[1:])
  if not paths:
    cli.fail(
      'pass one or more workdirs, e.g. python -m experiments.results runs/*'
    )
  if not any(os.path.isdir(p) for p in paths):
    cli.fail(f'none of {" ".join(paths)} is a directory (a run workdir)')
  print(render([read_run(p) for p in paths], _FORMAT.value))


if __name__ == '__main__':
  app.run(
    main,
    flags_parser=functools.partial(cli.parse_flags, max_positional=None),
  )
