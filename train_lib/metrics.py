"""Run outputs: the `metrics.jsonl` log and the terminal progress line.

`metrics.jsonl` holds one JSON object per line, e.g.

  {"step": 200, "split": "train", "loss": 0.31, "accuracy": 0.91, "lr": 1e-3,
   "l2_grads": 0.8, "l2_params": 31.2, "l2_updates": 0.05,
   "steps_averaged": 100, "images_per_sec": 5120.0, "wall_time_s": 12.3}

with `split` 'train' (averages over the `steps_averaged` steps since the
previous train line: fewer than log_every_steps only on the first line after
resuming from a checkpoint taken between two train lines)
or 'eval' (the whole test split). `experiments/plot.py` and any notebook read
it with one `json.loads` per line. A resumed run first drops the lines past
the restored step, so the file always describes one consistent run.
"""

from collections.abc import Mapping
import json
import math
import os
from typing import Any

import numpy as np

FILENAME = 'metrics.jsonl'


def _to_python(value: Any) -> Any:
  if isinstance(value, np.ndarray | np.generic):
    value = value.item()
  if isinstance(value, float) and not math.isfinite(value):
    return str(value)  # JSON has no NaN/inf; keep the line parseable.
  return value


class MetricsWriter:
  """Appends metric records to `<workdir>/metrics.jsonl`."""

  def __init__(self, workdir: str, *, enabled: bool = True):
    """Creates a writer.

    Args:
      workdir: the run's directory (created if needed).
      enabled: False on all but the first process of a multi-host run, so
        that exactly one process writes the file.
    """
    self.path = os.path.join(workdir, FILENAME)
    self.enabled = enabled
    if enabled:
      os.makedirs(workdir, exist_ok=True)

  def truncate_after(self, step: int) -> int:
    """Drops the records with a step after `step` (used when resuming).

    Lines that do not parse (a run killed mid-write) are dropped too.

    Returns:
      The number of lines kept.
    """
    if not self.enabled or not os.path.exists(self.path):
      return 0
    kept = []
    with open(self.path) as f:
      for line in f:
        try:
          record = json.loads(line)
        except json.JSONDecodeError:
          continue
        if isinstance(record, dict) and record.get('step', 0) <= step:
          kept.append(json.dumps(record) + '\n')
    tmp_path = self.path + '.tmp'
    with open(tmp_path, 'w') as f:
      f.writelines(kept)
    os.replace(tmp_path, self.path)
    return len(kept)

  def write(self, step: int, split: str, metrics: Mapping[str, Any]) -> None:
    """Appends one record `{'step': step, 'split': split, **metrics}`."""
    if not self.enabled:
      return
    record = {'step': int(step), 'split': split}
    record.update({k: _to_python(v) for k, v in metrics.items()})
    with open(self.path, 'a') as f:
      f.write(json.dumps(record) + '\n')


def read_metrics(workdir: str) -> list[dict[str, Any]]:
  """Reads every record of `<workdir>/metrics.jsonl`."""
  with open(os.path.join(workdir, FILENAME)) as f:
    return [json.loads(line) for line in f if line.strip()]


def mean_metrics(
  history: list[Mapping[str, Any]],
) -> dict[str, float]:
  """Averages per-step metric dicts (host numpy scalars) key by key."""
  if not history:
    return {}
  return {
    key: float(np.mean([np.asarray(m[key], np.float64) for m in history]))
    for key in history[0]
  }


def format_duration(seconds: float) -> str:
  """Formats seconds as '1h02m', '3m05s' or '12.3s'."""
  if not math.isfinite(seconds):
    return '?'
  if seconds >= 3600:
    return f'{int(seconds // 3600)}h{int(seconds % 3600 // 60):02d}m'
  if seconds >= 60:
    return f'{int(seconds // 60)}m{int(seconds % 60):02d}s'
  return f'{seconds:.1f}s'


def progress_line(
  *,
  step: int,
  total_steps: int,
  metrics: Mapping[str, float],
  images_per_sec: float,
  eta_s: float,
) -> str:
  """The periodic terminal line: step/total, loss, accuracy, speed, ETA."""
  width = len(str(total_steps))
  parts = [f'step {step:>{width}}/{total_steps}']
  for key in ('loss', 'accuracy', 'top5_accuracy', 'lr'):
    if key in metrics:
      fmt = '.3g' if key == 'lr' else '.4f'
      parts.append(f'{key} {metrics[key]:{fmt}}')
  parts.append(f'{images_per_sec:.0f} img/s')
  parts.append(f'ETA {format_duration(eta_s)}')
  return ' | '.join(parts)


def eval_line(step: int, metrics: Mapping[str, float]) -> str:
  """The terminal line of an evaluation."""
  items = [f'{k} {v:.4f}' for k, v in metrics.items() if k != 'wall_time_s']
  return f'eval @ step {step}: ' + ' | '.join(items)
