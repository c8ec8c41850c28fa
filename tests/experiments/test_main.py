"""Tests of experiments/main.py: launches and their failure modes.

Every expected failure must end with exactly one `error: ...` line on stderr,
no traceback, exit status 1, and no damage to an existing checkpoint (the
reference is the checkpoint files' bytes before the failed launch). The
launches run as real subprocesses with 8 fake CPU devices.
"""

import hashlib
import os
import shlex
import subprocess
import sys

import pytest
import tensorflow_datasets as tfds

from experiments.configs import synthetic
from train_lib import metrics
from train_lib import trainer
from train_lib import workdir as workdir_lib

_REPO = os.path.dirname(os.path.dirname(os.path.dirname(__file__)))
_SYNTHETIC = 'experiments/configs/synthetic.py:mlp,8x8x1,4'
_TINY = (
  # model_kw is replaced whole: the locked config has no such key yet.
  "--config.model_kw={'hidden_sizes': (16,)}",
  '--config.data.synthetic_num_train=64',
  '--config.data.synthetic_num_test=16',
  '--config.batch_size=16',
  '--config.log_every_steps=2',
)


def _launch(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
  env = dict(os.environ)
  env['XLA_FLAGS'] = '--xla_force_host_platform_device_count=8'
  env['JAX_PLATFORMS'] = 'cpu'
  return subprocess.run(
    [sys.executable, '-m', 'experiments.main', *args],
    cwd=_REPO,
    env=env,
    capture_output=True,
    text=True,
    timeout=timeout,
    check=False,
  )


def _single_error(result: subprocess.CompletedProcess) -> str:
  """Asserts a clean failure and returns its one error line."""
  assert result.returncode == 1, result.stderr
  assert 'Traceback' not in result.stderr, result.stderr
  lines = result.stderr.splitlines()
  errors = [line for line in lines if line.startswith('error:')]
  assert len(errors) == 1, result.stderr
  return errors[0]


def _digest(directory) -> dict[str, str]:
  digests = {}
  for root, _, files in os.walk(directory):
    for name in files:
      path = os.path.join(root, name)
      with open(path, 'rb') as f:
        digests[path] = hashlib.sha256(f.read()).hexdigest()
  return digests


def _train_tiny(workdir, total_steps: int = 4) -> None:
  """A 4-step run with a checkpoint at the end, in this process."""
  config = synthetic.get_config('mlp,8x8x1,4')
  config.model_kw.hidden_sizes = (16,)
  config.data.synthetic_num_train = 64
  config.data.synthetic_num_test = 16
  config.batch_size = 16
  config.total_steps = total_steps
  config.log_every_steps = 2
  trainer.train_and_evaluate(config, str(workdir))


def test_unknown_config_key(tmp_path):
  result = _launch(
    '--config', _SYNTHETIC, '--workdir', str(tmp_path), '--config.lrr=0.1'
  )
  line = _single_error(result)
  assert 'unknown config key' in line and "'lrr'" in line
  assert "did you mean 'lr'" in line
  assert not os.listdir(tmp_path)


@pytest.mark.parametrize(
  ('override', 'key', 'value'),
  [
    ('--config.model.name=resnet5', 'model', "'mlp'"),
    ('--config.lr.peak=0.1', 'lr', None),
  ],
)
def test_override_inside_a_value_names_the_key(tmp_path, override, key, value):
  # `model` is a string and `lr` a float: ml_collections itself raises a
  # bare TypeError / AttributeError that names neither.
  result = _launch('--config', _SYNTHETIC, '--workdir', str(tmp_path), override)
  line = _single_error(result)
  flag = override.split('=')[0]
  assert f'bad config key in {flag}: {key!r} holds the value' in line
  if value:
    assert value in line
  assert f'set --config.{key}=' in line
  assert not os.listdir(tmp_path)


@pytest.mark.slow
def test_unknown_model(tmp_path):
  result = _launch(
    '--config',
    'experiments/configs/synthetic.py:resnet2000,8x8x1',
    '--workdir',
    str(tmp_path),
  )
  assert "unknown model 'resnet2000'" in _single_error(result)


@pytest.mark.parametrize(
  ('args', 'message'),
  [
    (('--process_id=1',), '--process_id given without --jax_distributed'),
    (
      ('--jax_distributed', '--num_processes=2', '--process_id=2'),
      '--process_id must be in [0, --num_processes), got 2',
    ),
  ],
)
def test_bad_distributed_flags(tmp_path, args, message):
  result = _launch('--workdir', str(tmp_path / 'run'), *args)
  assert message in _single_error(result)
  assert not os.listdir(tmp_path)


@pytest.mark.slow
def test_unknown_dataset(tmp_path):
  result = _launch(
    '--config',
    _SYNTHETIC,
    '--workdir',
    str(tmp_path / 'run'),
    '--config.data.name=svhn',
  )
  line = _single_error(result)
  assert "Unknown dataset 'svhn'" in line and 'cifar10' in line
  assert not os.listdir(tmp_path)


@pytest.mark.parametrize(
  ('config', 'name'),
  [
    ('experiments/configs/cifar.py:resnet20_cifar', 'cifar10'),
    ('experiments/configs/imagenet.py:resnet50', 'imagenet2012'),
  ],
)
@pytest.mark.parametrize('half_prepared', [False, True])
@pytest.mark.slow
def test_missing_tfds_data_says_how_to_prepare_it(
  tmp_path, config, name, half_prepared
):
  data_dir = tmp_path / 'tfds'
  data_dir.mkdir()
  if half_prepared:  # An interrupted build leaves an empty version folder.
    version = str(tfds.builder_cls(name).VERSION)
    (data_dir / name / version).mkdir(parents=True)
  result = _launch(
    '--config',
    config,
    '--workdir',
    str(tmp_path / 'run'),
    f'--config.data.data_dir={data_dir}',
  )
  line = _single_error(result)
  assert f'{name!r} is not prepared' in line
  assert f'tfds build {name} --file_format=array_record' in line
  # That line alone: no tfds warning about the empty folder before it.
  assert result.stderr.strip() == line, result.stderr
  assert not (tmp_path / 'run').exists()
  if half_prepared:
    assert not os.listdir(data_dir / name / version)
  else:
    assert not os.listdir(data_dir)


@pytest.mark.slow
def test_batch_size_not_dividing_devices(tmp_path):
  result = _launch(
    '--config',
    _SYNTHETIC,
    '--workdir',
    str(tmp_path),
    *_TINY,
    '--config.batch_size=12',
  )
  line = _single_error(result)
  assert '12' in line and '8' in line


@pytest.mark.slow
def test_incompatible_checkpoint_is_refused_and_kept(tmp_path):
  _train_tiny(tmp_path)
  before = _digest(tmp_path)
  assert {'config.json', 'metrics.jsonl'} <= set(os.listdir(tmp_path))
  wider = (
    '--config',
    _SYNTHETIC,
    '--workdir',
    str(tmp_path),
    *_TINY,
    "--config.model_kw={'hidden_sizes': (32,)}",
    '--config.total_steps=8',
  )
  line = _single_error(_launch(*wider))
  # The config check names the change first ...
  assert 'model_kw.hidden_sizes: [16] -> [32]' in line
  assert _digest(tmp_path) == before
  # ... and with the change allowed, the checkpoint says what differs.
  result = _launch(*wider, '--allow_config_change')
  line = _single_error(result)
  assert 'incompatible checkpoint' in line and str(tmp_path) in line
  assert 'params.' in line and '(16,)' in line and '(32,)' in line
  assert "written by model 'mlp'" in line
  # Nothing in the workdir changed: checkpoints, config.json, metrics.jsonl.
  assert _digest(tmp_path) == before


@pytest.mark.slow
def test_nan_loss_stops_with_one_line_and_keeps_checkpoint(tmp_path):
  _train_tiny(tmp_path)
  before = _digest(tmp_path / 'checkpoints')
  result = _launch(
    '--config',
    _SYNTHETIC,
    '--workdir',
    str(tmp_path),
    *_TINY,
    '--config.lr=1e30',
    '--config.total_steps=40',
    '--config.checkpoint_every_steps=100',
    '--allow_config_change',  # The change of lr is the point here.
  )
  line = _single_error(result)
  assert 'loss is nan at step' in line or 'loss is inf at step' in line
  assert 'last good checkpoint: step 4' in line
  assert _digest(tmp_path / 'checkpoints') == before
  assert sorted(os.listdir(tmp_path / 'checkpoints')) == ['4']


@pytest.mark.slow
def test_default_config_runs_without_config_flag(tmp_path):
  args = (
    '--workdir',
    str(tmp_path),
    '--config.total_steps=4',
    '--config.warmup_steps=0',
    '--config.log_every_steps=2',
    '--config.batch_size=16',
    # The default model_kw, with spaces and quotes the recorded command must
    # keep through a shell.
    "--config.model_kw={'activation': 'relu', 'pool': 'max'}",
    '--config.eval_batch_size=200',
  )
  result = _launch(*args)
  assert result.returncode == 0, result.stderr
  assert 'step 4/4' in result.stdout and 'first train step' in result.stdout
  records = metrics.read_metrics(str(tmp_path))
  assert [r['step'] for r in records if r['split'] == 'train'] == [2, 4]
  (final,) = [r for r in records if r['split'] == 'eval']
  assert final['step'] == 4 and 0 <= final['accuracy'] <= 1
  assert trainer.read_config(str(tmp_path))['model'] == 'lenet5'
  assert os.listdir(tmp_path / 'checkpoints') == ['4']
  # The command that reproduces the launch, as a shell would split it.
  (launch,) = workdir_lib.read_launches(str(tmp_path))
  assert launch['start_step'] == 0 and launch['total_steps'] == 4
  assert shlex.split(launch['command']) == [
    'python',
    '-m',
    'experiments.main',
    *args,
  ]


@pytest.mark.slow
def test_unexpected_exception_keeps_its_traceback(tmp_path):
  # A ValueError that is not one of the launcher's expected failures (here
  # planted in place of the trainer) is a bug: it must not be tidied into
  # one line, and the exit status is non-zero.
  script = (
    'import sys\n'
    'from absl import app\n'
    'from train_lib import trainer\n'
    'def planted_bug(config, workdir, **kwargs):\n'
    "  raise ValueError('planted bug')\n"
    'trainer.train_and_evaluate = planted_bug\n'
    'from experiments import main\n'
    'app.run(main.main)\n'
  )
  env = dict(os.environ, JAX_PLATFORMS='cpu')
  result = subprocess.run(
    [sys.executable, '-c', script, '--workdir', str(tmp_path / 'run')],
    cwd=_REPO,
    env=env,
    capture_output=True,
    text=True,
    timeout=120,
    check=False,
  )
  assert result.returncode != 0
  assert 'Traceback' in result.stderr and 'planted bug' in result.stderr
  assert 'error: planted bug' not in result.stderr
