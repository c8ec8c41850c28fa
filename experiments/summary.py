r"""Prints a model's per-layer table (params, MACs, activations) or a results
table of every registered model, without compiling or running any model.

Counts come from `nets.summarize` (shapes traced with `jax.eval_shape`); MACs
are for one input and count convolutions and dense layers, as the papers'
complexity tables do.

Usage:
  python -m experiments.summary --model=vgg16
  python -m experiments.summary --model=resnet20_cifar --input_shape=32,32,3
  python -m experiments.summary --model=mobilenet_v1_050 --num_classes=10
  python -m experiments.summary --all

An expected failure (an unknown model, a malformed or too small
--input_shape, a bad flag value) prints one `error: ...` line naming the flag
and exits with status 1.
"""

from collections.abc import Sequence

from absl import app
from absl import flags

from experiments import cli
import nets

_MODEL = flags.DEFINE_string('model', None, 'Registered model name.')
_INPUT_SHAPE = flags.DEFINE_string(
  'input_shape',
  None,
  "One input without batch axis, e.g. 224,224,3 (default: the model's).",
)
_NUM_CLASSES = flags.DEFINE_integer(
  'num_classes',
  None,
  "Classes of the classifier (default: the model's).",
  lower_bound=1,
)
_ALL = flags.DEFINE_bool('all', False, 'One row per registered model.')


def parse_shape(text: str) -> tuple[int, ...]:
  """'224,224,3' -> (224, 224, 3); ValueError on anything else."""
  try:
    shape = tuple(int(d) for d in text.split(','))
  except ValueError:
    shape = ()
  if not shape or min(shape) < 1:
    raise ValueError(
      f'--input_shape must be positive integers like 224,224,3, got {text!r}'
    )
  return shape


def _build(name: str, num_classes: int | None):
  kwargs = {} if num_classes is None else {'num_classes': num_classes}
  return nets.create(name, **kwargs)


def model_table(
  name: str,
  input_shape: Sequence[int] | None = None,
  num_classes: int | None = None,
) -> str:
  """The per-layer summary table of one registered model."""
  shape = input_shape or nets.default_input_shape(name)
  summary = nets.summarize(_build(name, num_classes), shape)
  return f'{name}: {summary.table()}'


def all_models_table(
  names: Sequence[str] | None = None, num_classes: int | None = None
) -> str:
  """One row (input, params, MACs) per model, a results table."""
  names = nets.list_models() if names is None else names
  rows = [('model', 'input', 'params', 'MACs')]
  for name in names:
    shape = nets.default_input_shape(name)
    s = nets.summarize(_build(name, num_classes), shape)
    rows.append(
      (
        name,
        'x'.join(map(str, shape)),
        f'{s.params:,}',
        f'{s.macs / 1e6:,.1f} M',
      )
    )
  widths = [max(len(r[i]) for r in rows) for i in range(4)]
  lines = [
    '  '.join(
      c.ljust(w) if i < 2 else c.rjust(w)
      for i, (c, w) in enumerate(zip(row, widths, strict=True))
    )
    for row in rows
  ]
  lines.insert(1, '-' * len(lines[0]))
  return '\n'.join(lines)


def main(argv: Sequence[str]) -> None:
  """Prints the table asked for; expected failures end as one error line."""
  del argv  # cli.parse_flags refused positional arguments.
  cli.quiet_library_logs()
  try:
    if _ALL.value:
      if _MODEL.value or _INPUT_SHAPE.value:
        cli.fail(
          '--all summarises every model at its own input shape; '
          'drop --model/--input_shape'
        )
      print(all_models_table(num_classes=_NUM_CLASSES.value))
      return
    if not _MODEL.value:
      cli.fail('pass --model=NAME or --all')
    shape = None
    if _INPUT_SHAPE.value:
      shape = parse_shape(_INPUT_SHAPE.value)
  except ValueError as e:
    cli.fail(e)
  try:
    table = model_table(_MODEL.value, shape, _NUM_CLASSES.value)
  except ValueError as e:  # An unknown model, a shape it cannot take.
    given = ''.join(
      f' --{flag.name}={flag.value}'
      for flag in (_INPUT_SHAPE, _NUM_CLASSES)
      if flag.present
    )
    cli.fail(f'--model={_MODEL.value}{given}: {e}')
  print(table)


if __name__ == '__main__':
  app.run(main, flags_parser=cli.parse_flags)
