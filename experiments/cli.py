"""What the command-line tools of experiments/ share: flags, errors, logs.

Every tool (`main`, `plot`, `summary`, `two_layer_net`) ends an expected
failure (a bad flag value, a misspelt `--config.` key, a missing or
unwritable file) with one line `error: ...` on stderr naming the flag, key or
file, and exit status 1; any other exception is a bug and keeps its
traceback. `parse_flags` is their absl `flags_parser`: it reports a bad flag
or config override as that one line, rejects stray positional arguments, and
makes `--help` print the usage and exit 0 without running the tool. Library
INFO logs (jax's backend probing, orbax's checkpoint chatter) stay off the
terminal unless the user asks for them with absl's `--verbosity`.
"""

from collections.abc import Sequence
import difflib
import importlib.util
import sys

from absl import flags
from absl import logging
import ml_collections

# What a config file or a --config.KEY=VALUE override can raise: ConfigDict
# reports an unknown key as KeyError/AttributeError and a key inside a value
# as TypeError, a config file a bad argument as ValueError, absl a malformed
# value as flags.Error.
CONFIG_ERRORS = (flags.Error, AttributeError, KeyError, TypeError, ValueError)
# absl's help flags exit with status 1 after printing the usage; asking for
# help is not a failure.
_HELP_FLAGS = ('help', 'helpshort', 'helpfull', '?')


def fail(message: object) -> None:
  """Prints one error line (whatever the message's line breaks) and exits 1."""
  text = ' '.join(str(message).split())
  print(f'error: {text}', file=sys.stderr, flush=True)
  sys.exit(1)


def quiet_library_logs() -> None:
  """Shows only warnings and errors, unless --verbosity was given."""
  if not flags.FLAGS['verbosity'].present:
    logging.set_verbosity(logging.WARNING)


def last_line(text: str) -> str:
  """The final line of a message that embeds a traceback."""
  lines = [line.strip() for line in text.splitlines() if line.strip()]
  return lines[-1] if lines else text


def _flag_args(argv: Sequence[str]):
  """(name, value or None, following argument) of each flag before '--'."""
  args = list(argv[1:])
  for i, arg in enumerate(args):
    if arg == '--':
      return
    if arg.startswith('-'):
      name, eq, value = arg.lstrip('-').partition('=')
      following = args[i + 1] if i + 1 < len(args) else None
      yield name, (value if eq else None), following


def _asks_for_help(argv: Sequence[str]) -> bool:
  return any(name in _HELP_FLAGS for name, _, _ in _flag_args(argv))


def config_spec(argv: Sequence[str], default: str | None) -> str | None:
  """The --config argument (`path.py[:ARG]`) in argv, or `default`."""
  spec = default
  for name, value, following in _flag_args(argv):
    if name == 'config':
      spec = value if value is not None else (following or spec)
  return spec


def override_keys(argv: Sequence[str]) -> list[str]:
  """The KEY of every --config.KEY=VALUE in argv, in order."""
  return [
    name.removeprefix('config.')
    for name, _, _ in _flag_args(argv)
    if name.startswith('config.')
  ]


def load_config(spec: str) -> ml_collections.ConfigDict:
  """Loads `path.py[:ARG]` as config_flags does, without any override."""
  path, _, arg = spec.partition(':')
  module_spec = importlib.util.spec_from_file_location('_config_probe', path)
  module = importlib.util.module_from_spec(module_spec)
  module_spec.loader.exec_module(module)
  return module.get_config(arg) if arg else module.get_config()


def explain_override(config: ml_collections.ConfigDict, key: str) -> str:
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


def config_error(
  e: Exception, argv: Sequence[str], default_spec: str | None = None
) -> str:
  """One readable sentence for a failure while reading the config flags."""
  spec = config_spec(argv, default_spec)
  if spec is None and override_keys(argv):
    return (
      f'--config.{override_keys(argv)[0]} needs --config '
      'experiments/configs/NAME.py first'
    )
  if isinstance(e, KeyError | AttributeError | TypeError):
    try:
      config = load_config(spec)
    except Exception:  # noqa: BLE001 - the file's own error is reported below.
      config = None
    for key in override_keys(argv) if config is not None else ():
      if message := explain_override(config, key):
        return message
  text = str(e)
  if 'Traceback' in text:  # A config file raised: keep its own message.
    flag = text.partition(': ')[0] if text.startswith('flag --') else 'config'
    return f'{flag}: {last_line(text)}'
  return text


def parse_flags(
  argv: list[str],
  config: flags.FlagHolder | None = None,
  default_spec: str | None = None,
  *,
  max_positional: int | None = 0,
) -> list[str]:
  """absl's flag parsing, with every expected failure as one error line.

  Use as `app.run(main, flags_parser=cli.parse_flags)` (or a partial binding
  `config`). A malformed or unknown flag, a config file that cannot be
  loaded and a bad `--config.KEY=VALUE` end as one `error:` line, exit 1;
  positional arguments beyond `max_positional` are refused; `--help` prints
  the usage and exits 0.

  Args:
    argv: the command line, program name first.
    config: the holder of a `config_flags.DEFINE_config_file` flag, if any;
      its file is loaded here so that its errors are reported as flag errors.
    default_spec: that flag's default `path.py[:ARG]`, if it has one.
    max_positional: how many positional arguments the tool takes (None: any
      number).

  Returns:
    argv after the flags were parsed: the program name, then the positional
    arguments.
  """
  try:
    rest = flags.FLAGS(argv)
    if config is not None and config.value is not None:
      config.value.get('seed')  # A file that failed to load raises here.
  except SystemExit as e:
    if e.code == 1 and _asks_for_help(argv):
      sys.exit(0)  # absl printed the usage.
    raise
  except CONFIG_ERRORS as e:
    fail(config_error(e, argv, default_spec))
  except OSError as e:
    fail(f'cannot load the --config file: {last_line(str(e))}')
  except SyntaxError as e:  # Not a Python file (a path mixed up).
    fail(f'cannot load the --config file {e.filename}:{e.lineno}: {e.msg}')
  if max_positional is not None and len(rest) - 1 > max_positional:
    fail(f'unexpected arguments: {" ".join(rest[1 + max_positional :])}')
  return rest
