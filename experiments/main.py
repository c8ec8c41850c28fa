"""Launches one training run: a config file, a work directory, overrides.

  python -m experiments.main --config experiments/configs/NAME.py[:ARG] \
    --workdir DIR [--config.KEY=VALUE ...]

Without --config it runs the default: MNIST with LeNet-5
(`experiments/configs/mnist.py:lenet5`), offline; about 16 s and 96.9% test
accuracy on a 2-core CPU (measured numbers in that file's docstring).
Relaunching with the same --workdir resumes from its latest checkpoint.
Several processes (hosts) join one run with --jax_distributed, plus
--coordinator_address, --num_processes and --process_id where no cluster
is detected (README, 'Several devices and several hosts'). Each process then
gives up with one `error:` line naming the process that died (within
--peer_timeout_s, 100 s by default) or that never joined (within
--join_timeout_s, 300 s); its native logs go to
`<workdir>/logs/process_<i>.log` (`experiments/distributed.py`).
Compiled programs are kept in a per-user cache folder (jax's persistent
compilation cache, `experiments/compile_cache.py`), so a relaunch or a rerun
of a config starts without compiling again; `--compile_cache_dir=` (empty)
turns the cache off.

Every expected failure (a config key that does not exist, an unknown model or
data set, a batch size that does not divide over the devices, a checkpoint of
a different model, a NaN loss) ends with one line `error: ...` on stderr and
exit status 1; any other exception is a bug and keeps its traceback. This is
the only module that defines absl flags (big_vision / flax-examples style).
"""

import functools
import os
import shlex
import sys
import time

from absl import app
from absl import flags
from ml_collections import config_flags

from experiments import cli
from experiments import compile_cache
from experiments import distributed

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
_COMPILE_CACHE_DIR = flags.DEFINE_string(
  'compile_cache_dir',
  compile_cache.default_directory(),
  'Folder of the persistent compilation cache, shared by all runs: a '
  'relaunch or a rerun of a config loads its compiled programs instead of '
  'compiling them again. Empty (--compile_cache_dir=) turns it off. '
  'Default: $JAX_COMPILATION_CACHE_DIR if set, else '
  '$XDG_CACHE_HOME/convnets-jax/jax or ~/.cache/convnets-jax/jax.',
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
_PEER_TIMEOUT = flags.DEFINE_integer(
  'peer_timeout_s',
  100,
  'With --jax_distributed: a process whose heartbeats stop for this long is '
  'taken as dead (killed, crashed, preempted), and the others stop with one '
  "line naming it (jax's heartbeat timeout).",
  lower_bound=1,
)
_JOIN_TIMEOUT = flags.DEFINE_integer(
  'join_timeout_s',
  300,
  'With --jax_distributed: how long to wait for all processes to join before '
  'giving up with one line naming the missing ones.',
  lower_bound=1,
)


try:
  # Overrides of the default config are applied while the flag is defined.
  _CONFIG = config_flags.DEFINE_config_file(
    'config',
    _DEFAULT_CONFIG,
    'Config file, optionally with an argument: path/to/config.py[:ARG].',
    lock_config=True,
  )
except cli.CONFIG_ERRORS as e:
  cli.fail(cli.config_error(e, sys.argv, _DEFAULT_CONFIG))


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
    jax.distributed.initialize(
      **settings,
      initialization_timeout=_JOIN_TIMEOUT.value,
      heartbeat_timeout_seconds=_PEER_TIMEOUT.value,
      shutdown_timeout_seconds=_PEER_TIMEOUT.value,
    )
  except (RuntimeError, ValueError) as e:
    reason = distributed.join_error(
      e, settings.get('process_id'), _JOIN_TIMEOUT.value
    )
    print(f'error: {reason}', file=sys.stderr, flush=True)
    os._exit(1)  # Not sys.exit: jax's exit handler would wait for the peers.


def main(argv: list[str]) -> None:
  """Runs `train_and_evaluate` and turns expected failures into one line."""
  # Library INFO logs (orbax writes a dozen lines per checkpoint) would
  # drown the progress lines; --verbosity=0 brings them back.
  cli.quiet_library_logs()
  if not _WORKDIR.value:
    cli.fail('--workdir is required (e.g. --workdir runs/demo)')
  settings = _distributed_settings()
  if _DISTRIBUTED.value:
    log = os.environ.get(distributed.WORKER_LOG_ENV)
    if log is None:  # The launched process: it supervises, the worker trains.
      distributed.supervise(
        distributed.log_path(_WORKDIR.value, settings.get('process_id')),
        process_id=settings.get('process_id'),
        num_processes=settings.get('num_processes'),
        peer_timeout_s=_PEER_TIMEOUT.value,
        join_timeout_s=_JOIN_TIMEOUT.value,
      )
    distributed.redirect_native_logs(log)
    _initialize_distributed(settings)
  # Imported here so that `--help` and flag errors answer without jax.
  import jax  # noqa: PLC0415

  from ops import native  # noqa: PLC0415
  from train_lib import orbax_quirks  # noqa: PLC0415
  from train_lib import trainer  # noqa: PLC0415

  # What orbax leaves after a failed checkpoint read or write can surface as
  # late as at exit, after the trainer's own filter ended: kept quiet in this
  # process (the launch's own) until it ends.
  orbax_quirks.QuietLeftovers().start()

  # Before the first compilation; an unusable folder warns and is skipped.
  cache_status = compile_cache.enable(_COMPILE_CACHE_DIR.value)
  leader = jax.process_index() == 0
  if leader:  # Which convolution runs and why; where compiled programs go.
    print(native.backend_status(), flush=True)
    if cache_status:
      print(cache_status, flush=True)

  try:
    trainer.train_and_evaluate(
      _CONFIG.value,
      _WORKDIR.value,
      allow_config_change=_ALLOW_CONFIG_CHANGE.value,
      # As typed (argv holds only what the flags left), for launches.jsonl.
      command=shlex.join(['python', '-m', 'experiments.main', *sys.argv[1:]]),
      note_before_done=compile_cache.summary,
    )
  except trainer.EXPECTED_ERRORS as e:
    cli.fail(e)  # Anything else is a bug and keeps its traceback.
  except trainer.Interrupted as e:
    print(str(e), file=sys.stderr, flush=True)
    sys.exit(e.exit_code)
  except jax.errors.JaxRuntimeError:
    if _DISTRIBUTED.value:  # Most likely a dead peer: jax stops this process
      time.sleep(_PEER_TIMEOUT.value + 30)  # soon, and the supervisor says so.
    raise


if __name__ == '__main__':
  app.run(
    main,
    flags_parser=functools.partial(
      cli.parse_flags, config=_CONFIG, default_spec=_DEFAULT_CONFIG
    ),
  )
