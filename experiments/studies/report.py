"""What every study shares: its result and its files (and, re-exported, how
it trains an arm and draws its figure).

A study (one module of this package) returns a `Result`: a matplotlib
figure, a small table, its sub-claims with their intervals and verdicts
(`verdict.py`: holds / does not hold / inconclusive, by a rule fixed before
the run; in format 2 also checks and preconditions), and the protocol table
that sets the study beside the paper it scales down. `write` turns that
into `DIR/NAME.png` (always `figures.FIGURE_PX` pixels), `DIR/NAME.md` (the
page, `page.study_page`) and `DIR/NAME.json` (the same numbers,
machine-readable, for tests and the gallery).

The shared skeleton is split by job, and every public name stays reachable
here, where the studies and their tests have always found it:

* `arms.py`: the training arms (`train`, `TrainRun`, `predict`,
  `predict_images`, `plain_sgd`, `make_config`);
* `figures.py`: the figure's fixed size (`new_figure`, `FIGURE_PX`);
* `page.py`: the page and its markdown tables (`markdown_table`,
  `format_cell`, the column names, `PROTOCOL_ASPECTS`);
* `readable.py`: numbers as a student reads them, for pages and summaries.

A study calls them as `report.train(...)`, so that a test can replace
`report.train` with a fake.
"""

from collections.abc import Sequence
import dataclasses
import json
import os
from typing import Any

import jax

from experiments import machine as machine_lib
from experiments.studies import arms
from experiments.studies import figures
from experiments.studies import page
from experiments.studies import verdict as verdict_lib

# The training arms (arms.py).
PLAIN_SGD_MOMENTUM = arms.PLAIN_SGD_MOMENTUM
TrainRun = arms.TrainRun
train = arms.train
predict = arms.predict
predict_images = arms.predict_images
plain_sgd = arms.plain_sgd
make_config = arms.make_config
# The figure (figures.py).
FIGURE_INCHES = figures.FIGURE_INCHES
FIGURE_DPI = figures.FIGURE_DPI
FIGURE_PX = figures.FIGURE_PX
new_figure = figures.new_figure
# The page and its tables (page.py).
PROTOCOL_ASPECTS = page.PROTOCOL_ASPECTS
PROTOCOL_COLUMNS = page.PROTOCOL_COLUMNS
SUBCLAIM_COLUMNS = page.SUBCLAIM_COLUMNS
format_cell = page.format_cell
markdown_table = page.markdown_table
subclaim_rows = page.subclaim_rows


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
    lead: format 2: the page's opening, two or three plain sentences for a
      student (what was tested, what came out, what it means for the
      claim; numbers by `readable`); empty: `readable.fallback_lead` makes
      them from the verdict and the counts.
    caption: format 2: the figure's caption on the page (what it shows and
      how far the budget reaches, e.g. "9 of the paper's 164 epochs").
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
  lead: str = ''
  caption: str = ''

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
    if (self.lead or self.caption) and not page.is_format_2(self):
      raise ValueError('lead and caption are for format 2 (sub-claim kinds)')

  @property
  def verdict(self) -> str:
    """The headline by the rule (see `verdict.headline`)."""
    return verdict_lib.headline(self.subclaims, self.preconditions)


def machine() -> str:
  """The CPU model, its core count and the JAX backend, in words."""
  device = jax.devices()[0]
  return (
    f'{machine_lib.cpu_model()}, {machine_lib.core_count()} cores; JAX '
    f'{jax.__version__} on '
    f'{jax.device_count()} {device.platform.upper()} device(s)'
  )


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
  figures.save(result.figure, paths['png'])
  where = machine()
  text = page.study_page(
    result,
    name=name,
    claim=claim,
    source=source,
    command=command,
    wall_time_s=wall_time_s,
    quick=quick,
    machine=where,
  )
  with open(paths['md'], 'w') as f:
    f.write(text)
  record = {
    'name': name,
    'claim': claim,
    'source': source,
    'verdict': result.verdict,
    'summary': result.summary,
    **(
      {'lead': page.lead(result), 'caption': result.caption}
      if page.is_format_2(result)
      else {}
    ),
    **verdict_lib.study_fields(result.subclaims, result.preconditions),
    'protocol': [list(row) for row in result.protocol],
    'redesign': result.redesign,
    'values': result.values,
    'columns': list(result.columns),
    'rows': [[_json_cell(v) for v in row] for row in result.rows],
    'command': command,
    'wall_time_s': wall_time_s,
    'quick': quick,
    'machine': where,
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
