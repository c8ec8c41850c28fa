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
exit status 1; any other exception is a bug and keeps its traceback. This is
the only module that defines absl flags (big_vision / flax-examples style).
"""

import difflib
import importlib.util
import os
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
_ALLOW_CONFIG_CHANGE = flags.DEFINE_bool(
  'allow_config_change',
  False,
  'Resume a run whose config changed in a way that alters what it computes '
  '(refused by default); the change is recorded in config_history.jsonl.',
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
# reports an unknown key as KeyError/AttributeError and a key inside a value
# as TypeError, a config file a bad argument as ValueError, absl a malformed
# value as flags.Error.
_CONFIG_ERRORS = (flags.Error, AttributeError, KeyError, TypeError, ValueError)


def _last_line(text: str) -> str:
  """The final line of a message that embeds a traceback."""
  lines = [line.strip() for line in text.splitlines() if line.strip()]
  return lines[-1] if lines else text


def _argv_config_spec() -> str:
  """The --config argument on the command line, or the default one."""
  spec = _DEFAULT_CONFIG
  for arg, following in zip(sys.argv, [*sys.argv[1:], None], strict=True):
    name, eq, value = arg.lstrip('-').partition('=')
    if name == 'config' and arg.startswith('-'):
      spec = value if eq else (following or spec)
  return spec


def _argv_override_keys() -> list[str]:
  """The KEY of every --config.KEY=VALUE on the command line, in order."""
  keys = []
  for arg in sys.argv[1:]:
    name = arg.lstrip('-').partition('=')[0]
    if arg.startswith('-') and name.startswith('config.'):
      keys.append(name.removeprefix('config.'))
  return keys


def _load_config(spec: str) -> ml_collections.ConfigDict:
  """Loads `path.py[:ARG]` as config_flags does, without any override."""
  path, _, arg = spec.partition(':')
  module_spec = importlib.util.spec_from_file_location('_config_probe', path)
  module = importlib.util.module_from_spec(module_spec)
  module_spec.loader.exec_module(module)
  return module.get_config(arg) if arg else module.get_config()


def _explain_override(config: ml_collections.ConfigDict, key: str) -> str:
  """Why `--config.KEY=...` cannot apply to `config` ('' if it can)."""
  node, parts = config, key.split('.')
  for depth, part in enumerate(parts):
    prefix = '.'.join(parts[:depth])
    if not isinstance(node, ml_collections.ConfigDict):
      return (
        f'bad config key in --config.{key}: {prefix!r} holds the value '
        f'{node!r}, not a group of keys (set --config.{prefix}=... instead; '
        'the keys are in experiments/configs/common.py)'
      )
    if part not in node:
      close = difflib.get_close_matches(part, list(node.keys()), n=1)
      hint = f"; did you mean '{close[0]}'?" if close else ''
      return (
        f'unknown config key in --config.{key}: the config has no key '
        f'{part!r}{hint} (the keys are in experiments/configs/common.py)'
      )
    node = node[part]
  return ''


def _config_error(e: Exception) -> str:
  """One readable sentence for a failure while reading the config flags."""
  if isinstance(e, KeyError | AttributeError | TypeError):
    try:
      config = _load_config(_argv_config_spec())
    except Exception:  # noqa: BLE001 - the file's own error is reported below.
      config = None
    for key in _argv_override_keys() if config is not None else ():
      if message := _explain_override(config, key):
        return message
  text = str(e)
  if 'Traceback' in text:  # A config file raised: keep its own message.
    flag = text.partition(': ')[0] if text.startswith('flag --') else 'config'
    return f'{flag}: {_last_line(text)}'
  return text


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
  import jax  # noqa: PLC0415

  from ops import native  # noqa: PLC0415
  from train_lib import trainer  # noqa: PLC0415

  if jax.process_index() == 0:  # Which convolution runs, and why.
    print(native.backend_status(), flush=True)

  try:
    trainer.train_and_evaluate(
      _CONFIG.value,
      _WORKDIR.value,
      allow_config_change=_ALLOW_CONFIG_CHANGE.value,
    )
  except trainer.EXPECTED_ERRORS as e:
    cli.fail(e)  # Anything else is a bug and keeps its traceback.
  except trainer.Interrupted as e:
    print(str(e), file=sys.stderr, flush=True)
    sys.exit(e.exit_code)


if __name__ == '__main__':
  app.run(main, flags_parser=_parse_flags)
