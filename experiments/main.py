"""Launches one training run: a config file, a work directory, overrides.

  python -m experiments.main --config experiments/configs/NAME.py[:ARG] \
    --workdir DIR [--config.KEY=VALUE ...]

Without --config it runs the default: MNIST with LeNet-5
(`experiments/configs/mnist.py:lenet5`), offline; about 16 s and 96.9% test
accuracy on a 2-core CPU (measured numbers in that file's docstring).
Relaunching with the same --workdir resumes from its latest checkpoint.
Several processes (hosts) join one run with --jax_distributed, plus
--coordinator_address, --num_processes and --process_id where no cluster
is detected (README, 'Several devices and several hosts').

Every expected failure (a config key that does not exist, an unknown model or
data set, a batch size that does not divide over the devices, a checkpoint of
a different model, a NaN loss) ends with one line `error: ...` on stderr and
exit status 1, never with a stack trace. This is the only module that defines
absl flags (big_vision / flax-examples style).
"""

import importlib.util
import os
import re
import sys

from absl import app
from absl import flags
import ml_collections
from ml_collections import config_flags

from experiments import cli

_DEFAULT_CONFIG = os.path.join(
  os.path.dirname(os.path.abspath(__file__)), 'configs', 'mnist.py:lenet5'
)

_WORKDIR = flags.DEFINE_string(
  'workdir',
  None,
  'Directory for checkpoints, metrics.jsonl and the resolved config; an '
  'existing one is resumed from its latest checkpoint.',
)
_DISTRIBUTED = flags.DEFINE_bool(
  'jax_distributed',
  False,
  'Call jax.distributed.initialize() first (multi-host runs: TPU pods, '
  'SLURM, or the JAX_COORDINATOR_ADDRESS environment; elsewhere add '
  '--coordinator_address, --num_processes and --process_id).',
)
_COORDINATOR = flags.DEFINE_string(
  'coordinator_address',
  None,
  'With --jax_distributed: host:port of process 0, the same on every '
  'process (for machines without an auto-detected cluster).',
)
_NUM_PROCESSES = flags.DEFINE_integer(
  'num_processes', None, 'With --jax_distributed: how many processes.'
)
_PROCESS_ID = flags.DEFINE_integer(
  'process_id',
  None,
  'With --jax_distributed: this process, 0 to --num_processes - 1.',
)


# What a config file or a --config.KEY=VALUE override can raise: ConfigDict
# reports an unknown key as KeyError/AttributeError, a config file a bad
# argument as ValueError, absl a malformed value as flags.Error.
_CONFIG_ERRORS = (flags.Error, AttributeError, KeyError, TypeError, ValueError)


def _last_line(text: str) -> str:
  """The final line of a message that embeds a traceback."""
  lines = [line.strip() for line in text.splitlines() if line.strip()]
  return lines[-1] if lines else text


def _config_error(e: Exception) -> str:
  """One readable sentence for a failure while reading the config flags."""
  text = str(e)
  through = isinstance(e, KeyError | AttributeError | TypeError)
  if through and (message := _override_through_a_value()):
    return message
  if isinstance(e, KeyError | AttributeError):
    match = re.search(r'(\w+)', text)
    key = match.group(1) if match else text
    paths = [
      arg.split('=', 1)[0].lstrip('-')
      for arg in sys.argv
      if re.match(rf'-{{1,2}}config\.(\w+\.)*{key}(=|$)', arg)
    ]
    flag = f'--{paths[0]}' if paths else f'--config.{key}'
    hint = re.search(r'Did you mean "(\w+)"', text)
    hint = f"; did you mean '{hint.group(1)}'?" if hint else ''
    return (
      f'unknown config key in {flag}: the config has no key {key!r}{hint} '
      '(the keys are in experiments/configs/common.py)'
    )
  if 'Traceback' in text:  # A config file raised: keep its own message.
    flag = re.match(r'(flag --\S+?): ', text)
    return f'{flag.group(1) if flag else "config"}: {_last_line(text)}'
  return text


def _config_file_argument() -> str:
  """The --config argument on the command line, or the default one."""
  spec = _DEFAULT_CONFIG
  for i, arg in enumerate(sys.argv):
    if re.match(r'-{1,2}config=', arg):
      spec = arg.split('=', 1)[1]
    elif arg in ('-config', '--config') and i + 1 < len(sys.argv):
      spec = sys.argv[i + 1]
  return spec


def _override_through_a_value() -> str | None:
  """Names an override like --config.model.name where `model` is a value.

  ml_collections reports it as a bare TypeError ("string indices must be
  integers") or AttributeError; this loads the config file again, without
  overrides, to find which part of which --config.A.B flag is not a group
  of keys.
  """
  path, _, arg = _config_file_argument().partition(':')
  try:
    spec = importlib.util.spec_from_file_location('_config_probe', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    config = module.get_config(arg) if arg else module.get_config()
  except Exception:  # noqa: BLE001 - only a better message is at stake.
    return None
  for argument in sys.argv:
    match = re.match(r'-{1,2}config\.((?:\w+\.)+\w+)(=|$)', argument)
    if not match:
      continue
    node, parts = config, match.group(1).split('.')
    for depth, part in enumerate(parts[:-1]):
      node = (
        node.get(part) if isinstance(node, ml_collections.ConfigDict) else None
      )
      if node is not None and not isinstance(node, ml_collections.ConfigDict):
        key = '.'.join(parts[: depth + 1])
        return (
          f'bad config key in --config.{match.group(1)}: {key!r} holds the '
          f'value {node!r}, not a group of keys (set --config.{key}=... '
          'instead; the keys are in experiments/configs/common.py)'
        )
  return None


try:
  # Overrides of the default config are applied while the flag is defined.
  _CONFIG = config_flags.DEFINE_config_file(
    'config',
    _DEFAULT_CONFIG,
    'Config file, optionally with an argument: path/to/config.py[:ARG].',
    lock_config=True,
  )
except _CONFIG_ERRORS as e:
  cli.fail(_config_error(e))


def _parse_flags(argv: list[str]) -> list[str]:
  """Parses flags like absl, but reports a bad flag as one error line."""
  try:
    argv = flags.FLAGS(argv)
    _CONFIG.value.get('seed')  # A file that failed to load raises here.
  except _CONFIG_ERRORS as e:
    cli.fail(_config_error(e))
  except OSError as e:
    cli.fail(f'cannot load the --config file: {_last_line(str(e))}')
  return argv


def _distributed_settings() -> dict[str, object]:
  """The explicit jax.distributed settings given by flags (may be empty)."""
  settings = {
    'coordinator_address': _COORDINATOR.value,
    'num_processes': _NUM_PROCESSES.value,
    'process_id': _PROCESS_ID.value,
  }
  settings = {k: v for k, v in settings.items() if v is not None}
  if settings and not _DISTRIBUTED.value:
    names = ', '.join(f'--{k}' for k in settings)
    cli.fail(f'{names} given without --jax_distributed')
  num, pid = settings.get('num_processes'), settings.get('process_id')
  if num is not None and num < 1:
    cli.fail(f'--num_processes must be >= 1, got {num}')
  if pid is not None and (pid < 0 or (num is not None and pid >= num)):
    cli.fail(f'--process_id must be in [0, --num_processes), got {pid}')
  return settings


def _initialize_distributed(settings: dict[str, object]) -> None:
  """`jax.distributed.initialize(**settings)`, before any other jax call."""
  import jax  # noqa: PLC0415

  platforms = jax.config.jax_platforms or 'cpu'  # Unset: maybe CPU.
  if settings and 'cpu' in platforms.split(','):
    # CPU devices of different processes only talk through a collectives
    # library; gloo ships with jaxlib (the default in recent jax, not in
    # older ones). It must be chosen before the backend starts.
    jax.config.update('jax_cpu_collectives_implementation', 'gloo')
  try:
    jax.distributed.initialize(**settings)
  except (RuntimeError, ValueError) as e:
    cli.fail(f'jax.distributed.initialize failed: {_last_line(str(e))}')


def main(argv: list[str]) -> None:
  """Runs `train_and_evaluate` and turns expected failures into one line."""
  if len(argv) > 1:
    cli.fail(f'unexpected arguments: {" ".join(argv[1:])}')
  # Library INFO logs (orbax writes a dozen lines per checkpoint) would
  # drown the progress lines; --verbosity=0 brings them back.
  cli.quiet_library_logs()
  if not _WORKDIR.value:
    cli.fail('--workdir is required (e.g. --workdir runs/demo)')
  settings = _distributed_settings()
  if _DISTRIBUTED.value:
    _initialize_distributed(settings)
  # Imported here so that `--help` and flag errors answer without jax.
  from train_lib import trainer  # noqa: PLC0415

  try:
    trainer.train_and_evaluate(_CONFIG.value, _WORKDIR.value)
  except (trainer.ConfigError, trainer.DivergedError) as e:
    cli.fail(e)  # Anything else is a bug and keeps its traceback.


if __name__ == '__main__':
  app.run(main, flags_parser=_parse_flags)
