"""Tests of train_lib/profiling.py: the trace of chosen train steps.

References: hand-written specs; a counting stand-in for the train step and
for the profiler, which say which calls were traced and when the trace
started and stopped; and one end-to-end run of the trainer with
`profile_steps` set. The offline analysis of a trace is
tests/experiments/test_trace_analysis.py's.
"""

import glob

import jax
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


@pytest.fixture(name='events')
def _events(monkeypatch):
  """The calls of the train step and the profiler, in order."""
  events = []
  monkeypatch.setattr(
    jax.profiler, 'start_trace', lambda *a, **k: events.append('start')
  )
  monkeypatch.setattr(jax.profiler, 'stop_trace', lambda: events.append('stop'))
  return events


def _counting_step(events, raise_at=None):
  def train_fn(state):
    events.append(state)
    if state == raise_at:
      raise FloatingPointError(f'step {state}')
    return state + 1, {}

  return train_fn


def test_trace_steps_traces_exactly_the_chosen_calls(tmp_path, events):
  train_fn = _counting_step(events)
  with profiling.trace_steps(
    train_fn, (3, 4), str(tmp_path), first_step=1
  ) as fn:
    state = 1
    for _ in range(6):
      state, _ = fn(state)
  assert events == [1, 2, 'start', 3, 4, 'stop', 5, 6]
  # Resumed at step 4: traced from there to END; past END: untouched.
  events.clear()
  with profiling.trace_steps(
    train_fn, (3, 4), str(tmp_path), first_step=4
  ) as fn:
    fn(4)
    fn(5)
  assert events == ['start', 4, 'stop', 5]
  for steps, first in (((3, 4), 5), (None, 1)):
    with profiling.trace_steps(train_fn, steps, 'x', first_step=first) as fn:
      assert fn is train_fn


def test_a_step_that_raises_stops_the_trace(tmp_path, events, capsys):
  fn_steps = profiling.trace_steps(
    _counting_step(events, raise_at=3), (2, 5), str(tmp_path), first_step=1
  )
  with pytest.raises(FloatingPointError, match='step 3'), fn_steps as fn:
    state = 1
    for _ in range(6):
      state, _ = fn(state)
  assert events == [1, 'start', 2, 3, 'stop']
  assert 'profile of steps 2-3 (the run stopped before step 5)' in (
    capsys.readouterr().out
  )


def test_a_loop_that_ends_before_end_stops_the_trace(tmp_path, events):
  with profiling.trace_steps(
    _counting_step(events), (2, 9), str(tmp_path), first_step=1
  ) as fn:
    for state in (1, 2, 3):  # Stopped early, as by a signal.
      fn(state)
  assert events == [1, 'start', 2, 3, 'stop']
  # Ended before START: nothing was started, so nothing is stopped.
  events.clear()
  with profiling.trace_steps(
    _counting_step(events), (5, 9), str(tmp_path), first_step=1
  ) as fn:
    fn(1)
  assert events == [1]


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


@pytest.mark.parametrize(
  ('spec', 'message'),
  [
    ('3,1', r"profile_steps='3,1': need 1 <= START <= END"),
    ('2,4', r"profile_steps='2,4': END 4 is past total_steps 3"),
  ],
)
def test_trainer_refuses_a_profile_it_cannot_take(tmp_path, spec, message):
  config = synthetic.get_config('mlp,8x8x1,4')
  config.total_steps = 3
  config.profile_steps = spec
  with pytest.raises(trainer.ConfigError, match=message):
    trainer.train_and_evaluate(config, str(tmp_path / 'bad'))
  assert not (tmp_path / 'bad').exists()  # refused before any write


def test_profiling_is_off_by_default(tmp_path):
  from experiments.configs import common  # noqa: PLC0415

  assert profiling.parse_steps(common.get_config().profile_steps) is None
