"""Tests of train_lib/profiling.py: the step trace and its breakdown.

References: hand-written specs and HLO lines with their known kinds; the
trace of a program whose only expensive op is a convolution; a counting
stand-in for the train step, which says which calls were traced; and one
end-to-end run of the trainer with `profile_steps` set.
"""

import glob

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments.configs import synthetic
from train_lib import profiling
from train_lib import trainer


@pytest.mark.parametrize(
  ('spec', 'want'), [('', None), (' ', None), ('3,5', (3, 5)), ('2,2', (2, 2))]
)
def test_parse_steps(spec, want):
  assert profiling.parse_steps(spec) == want


@pytest.mark.parametrize('spec', ['3', '5,3', '0,2', 'a,b', '1,2,3'])
def test_parse_steps_rejects(spec):
  with pytest.raises(ValueError, match='profile_steps'):
    profiling.parse_steps(spec)


def _traces(directory):
  return glob.glob(f'{directory}/profile/plugins/profile/*/*.trace.json.gz')


def test_trace_steps_traces_exactly_the_chosen_calls(tmp_path, monkeypatch):
  events = []
  monkeypatch.setattr(
    jax.profiler, 'start_trace', lambda *a, **k: events.append('start')
  )
  monkeypatch.setattr(jax.profiler, 'stop_trace', lambda: events.append('stop'))

  def train_fn(state):
    events.append(state)
    return state + 1, {}

  fn = profiling.trace_steps(train_fn, (3, 4), str(tmp_path), first_step=1)
  state = 1
  for _ in range(6):
    state, _ = fn(state)
  assert events == [1, 2, 'start', 3, 4, 'stop', 5, 6]
  # Resumed at step 4: traced from there to END; past END: untouched.
  events.clear()
  fn = profiling.trace_steps(train_fn, (3, 4), str(tmp_path), first_step=4)
  fn(4)
  fn(5)
  assert events == ['start', 4, 'stop', 5]
  assert profiling.trace_steps(train_fn, (3, 4), 'x', first_step=5) is train_fn
  assert profiling.trace_steps(train_fn, None, 'x', first_step=1) is train_fn


def test_op_kinds_of_hand_written_hlo():
  hlo = '\n'.join(
    [
      'HloModule m',
      '%fused_computation.1 (p: f32[4]) -> f32[4] {',
      '  %mul.9 = f32[4]{0} multiply(%p, %p)',
      '}',
      'ENTRY %main (a: f32[2,4,4,8]) -> f32[8] {',
      '  %ffi_call.3 = f32[2,4,4,8]{3,2,1,0} custom-call(%a, %w), '
      'custom_call_target="onednn_conv_forward", metadata={op_name='
      '"jit(step)/jvp(Net)/conv1/ffi_call"}',
      '  %convolution.4 = f32[2,4,4,8]{3,2,1,0} convolution(%a, %w), '
      'metadata={op_name="jit(step)/transpose(jvp(Net))/conv_general_dilated"}',
      '  %fusion.5 = f32[8]{0} fusion(%a), kind=kLoop, calls=%fused, '
      'metadata={op_name="jit(step)/jvp(Net)/block1/norm2/reduce_sum"}',
      '  %copy.6 = f32[2,4,4,8]{0,3,2,1} copy(%a), metadata={op_name='
      '"jit(step)/jvp(Net)/relu"}',
      '  %convert_fusion.7 = bf16[8]{0} fusion(%a), kind=kLoop, calls=%f',
      '  %multiply.8 = f32[8]{0} multiply(%b, %c), metadata={op_name='
      '"jit(step)/mul"}',
      '  ROOT %add.10 = f32[8]{0} add(%b, %c), metadata={op_name='
      '"jit(step)/transpose(jvp(Net))/add"}',
      '}',
    ]
  )
  assert profiling.op_kinds(hlo) == {
    'ffi_call.3': 'conv',
    'convolution.4': 'conv',
    'fusion.5': 'norm',
    'copy.6': 'copy/convert',
    'convert_fusion.7': 'copy/convert',
    'multiply.8': 'optimizer',
    'add.10': 'other',
  }  # the fused computation's own instructions are not ops of the trace


def test_breakdown_of_a_convolution_trace(tmp_path):
  x = jnp.asarray(np.random.default_rng(0).standard_normal((8, 32, 32, 32)))
  w = jnp.ones((3, 3, 32, 32), jnp.float32) / 300

  def f(x, w):
    y = jax.lax.conv_general_dilated(
      x, w, (1, 1), 'SAME', dimension_numbers=('NHWC', 'HWIO', 'NHWC')
    )
    return y + 1.0

  jitted = jax.jit(f).lower(x, w).compile()
  jitted(x, w).block_until_ready()
  with jax.profiler.trace(str(tmp_path)):
    for _ in range(2):
      jitted(x, w).block_until_ready()
  times = profiling.op_times(str(tmp_path))
  kinds = profiling.breakdown(str(tmp_path), jitted.as_text(), steps=2)
  assert set(kinds) == set(profiling.KINDS)
  assert sum(kinds.values()) == pytest.approx(sum(times.values()) / 2)
  assert kinds['conv'] > 0 and kinds['norm'] == 0
  # 2 * 8 * 32 * 32 * 32 * 32 * 9 flops: the conv is most of the time.
  assert kinds['conv'] > kinds['other']


def test_breakdown_without_a_trace_is_an_error(tmp_path):
  with pytest.raises(FileNotFoundError, match='no trace'):
    profiling.op_times(str(tmp_path))


@pytest.mark.slow
def test_trainer_writes_the_profile_of_the_chosen_steps(tmp_path, capsys):
  config = synthetic.get_config('mlp,8x8x1,4')
  config.model_kw.hidden_sizes = (16,)
  config.data.synthetic_num_train = 64
  config.data.synthetic_num_test = 16
  config.batch_size = 16
  config.total_steps = 3
  config.eval_every_steps = 0
  config.checkpoint_every_steps = 0
  config.profile_steps = '2,3'
  trainer.train_and_evaluate(config, str(tmp_path / 'run'))
  assert len(_traces(tmp_path / 'run')) == 1
  assert 'profile of steps 2-3' in capsys.readouterr().out
  config.profile_steps = '3,1'
  with pytest.raises(trainer.ConfigError, match='profile_steps'):
    trainer.train_and_evaluate(config, str(tmp_path / 'bad'))
  assert not (tmp_path / 'bad').exists()  # refused before any write


def test_profiling_is_off_by_default(tmp_path):
  from experiments.configs import common  # noqa: PLC0415

  assert profiling.parse_steps(common.get_config().profile_steps) is None
