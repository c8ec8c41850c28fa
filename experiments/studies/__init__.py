"""The lecture's claims, reproduced: one study per claim, a figure and a table.

`python -m experiments.studies NAME [--out_dir DIR] [--quick]` runs one study;
`--list` names them with their claims; `--all` runs every one and writes the
gallery. Each study is a module of this package with

  CLAIM:  the notes' claim, one sentence;
  SOURCE: where the notes (or the paper they cite) make it;
  run(quick: bool) -> report.Result

and trains through `train_lib` (via `report.train`) or probes the model code
directly. `run_study` times it and writes DIR/NAME.{png,md,json}.
"""

import importlib
import time
from types import ModuleType

from experiments.studies import report

# Name -> module, in the order of the notes.
STUDIES = {
  'activations': 'experiments.studies.activations',
  'dead_relu': 'experiments.studies.dead_relu',
  'saturation': 'experiments.studies.saturation',
  'initialization': 'experiments.studies.initialization',
  'input_standardization': 'experiments.studies.input_standardization',
  'normalization': 'experiments.studies.normalization',
  'depth': 'experiments.studies.depth',
  'regularization': 'experiments.studies.regularization',
  'lr_schedules': 'experiments.studies.lr_schedules',
  'warmup': 'experiments.studies.warmup',
  'separable': 'experiments.studies.separable',
  'shuffled_pixels': 'experiments.studies.shuffled_pixels',
  'gradients': 'experiments.studies.gradients',
  'ensemble': 'experiments.studies.ensemble',
  'softmax_temperature': 'experiments.studies.softmax_temperature',
}


def get(name: str) -> ModuleType:
  """The study module called `name`; ValueError for an unknown name."""
  if name not in STUDIES:
    raise ValueError(
      f'unknown study {name!r}; the studies are: {", ".join(STUDIES)}'
    )
  return importlib.import_module(STUDIES[name])


def command(name: str, out_dir: str, quick: bool) -> str:
  """The command line that reproduces one study's files."""
  quick_flag = ' --quick' if quick else ''
  return f'python -m experiments.studies {name} --out_dir {out_dir}{quick_flag}'


def run_study(name: str, out_dir: str, *, quick: bool = False) -> dict:
  """Runs one study, writes its files; returns the NAME.json record."""
  module = get(name)
  start = time.perf_counter()
  result = module.run(quick=quick)
  wall_time_s = time.perf_counter() - start
  paths = report.write(
    result,
    name=name,
    claim=module.CLAIM,
    source=module.SOURCE,
    out_dir=out_dir,
    command=command(name, out_dir, quick),
    wall_time_s=wall_time_s,
    quick=quick,
  )
  return {
    'name': name,
    'verdict': result.verdict,
    'summary': result.summary,
    'wall_time_s': wall_time_s,
    'paths': paths,
  }
