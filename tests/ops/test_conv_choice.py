"""Tests of the measured convolution backend (ops/native/choice.py).

Nothing here depends on timing: the measurement is replaced by a fake
(`choice.measure`, a module-level hook) that returns hand-set times, and
which backend a traced convolution took is read from its jaxpr (XLA's
`conv_general_dilated` or the oneDNN custom call), independently of the
choice code. One test times a tiny convolution for real and checks only
that both times were recorded and both backends agree on the values.
tests/conftest.py pins CONVNETS_CONV_IMPL=prefer_onednn for the suite;
these tests clear it, and keep every cache file in a tmp folder.
"""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments.configs import synthetic
from ops import choice_cache
from ops import convolution
from ops import native
from ops.native import choice
from train_lib import trainer
from train_lib import validate

XEON = 'model name\t: Intel Xeon Platinum\nflags\t\t: fpu avx2 amx_bf16\n'
SMALL = ((2, 4, 4, 3), (3, 3, 3, 4))  # x, w: oneDNN's call overhead wins
BIG = ((8, 16, 16, 8), (3, 3, 8, 8))


@pytest.fixture(autouse=True)
def fresh(tmp_path, monkeypatch):
  why = native.unavailable_reason()
  if why:
    pytest.skip(f'oneDNN convolution unavailable: {why}')
  monkeypatch.delenv(native.ENV, raising=False)
  monkeypatch.setenv(choice_cache.ENV, str(tmp_path / 'choices'))
  choice.forget()
  yield
  choice.forget()


class FakeMeasure:
  """Hand-set times per x shape; counts its calls."""

  def __init__(self, times=None):
    self.times = times or {}
    self.calls = []

  def __call__(self, conv):
    self.calls.append(conv)
    if conv.x_shape not in self.times:
      raise AssertionError(f'{conv.key()} was measured')
    return self.times[conv.x_shape]


def _traced_impl(x_shape, w_shape, dtype=jnp.float32, **kw) -> str:
  """Which backend conv2d(impl='auto') takes when a fresh function traces."""
  x = jax.ShapeDtypeStruct(x_shape, dtype)
  w = jax.ShapeDtypeStruct(w_shape, dtype)
  text = str(jax.make_jaxpr(lambda x, w: convolution.conv2d(x, w, **kw))(x, w))
  xla, onednn = 'conv_general_dilated' in text, 'onednn_conv' in text
  assert xla != onednn, text
  return 'xla' if xla else 'onednn'


def _fake(monkeypatch, times=None) -> FakeMeasure:
  fake = FakeMeasure(times)
  monkeypatch.setattr(choice, 'measure', fake)
  return fake


TIMES = {  # SMALL: XLA 3x faster; BIG: oneDNN 3x faster.
  SMALL[0]: {'xla_ms': 1.0, 'onednn_ms': 3.0},
  BIG[0]: {'xla_ms': 6.0, 'onednn_ms': 2.0},
  (2, 4, 4, 4): {'xla_ms': 1.0, 'onednn_ms': 1.0},
}


def test_the_faster_backend_is_chosen_per_shape(monkeypatch):
  fake = _fake(monkeypatch, TIMES)
  assert _traced_impl(*SMALL) == 'xla'
  assert _traced_impl(*BIG) == 'onednn'
  assert [c.x_shape for c in fake.calls] == [SMALL[0], BIG[0]]
  assert _traced_impl(*SMALL) == 'xla'  # this process: no second measure
  assert len(fake.calls) == 2
  with open(choice.cache().path) as f:
    entries = json.load(f)['entries']
  assert entries['float32 x2x4x4x3 w3x3x3x4 s1x1 p1x1x1x1 d1x1 g1'] == {
    'impl': 'xla',
    'xla_ms': 1.0,
    'onednn_ms': 3.0,
  }
  assert sorted(e['impl'] for e in entries.values()) == ['onednn', 'xla']


def test_the_key_holds_every_geometry_field(monkeypatch):
  fake = _fake(monkeypatch, TIMES)
  _traced_impl(*SMALL)
  _traced_impl(*SMALL, strides=2)
  _traced_impl(*SMALL, padding='VALID')
  _traced_impl(*SMALL, dilation=2, padding=2)
  keys = [c.key() for c in fake.calls]
  assert keys == [
    'float32 x2x4x4x3 w3x3x3x4 s1x1 p1x1x1x1 d1x1 g1',
    'float32 x2x4x4x3 w3x3x3x4 s2x2 p0x1x0x1 d1x1 g1',  # SAME: 1 extra
    'float32 x2x4x4x3 w3x3x3x4 s1x1 p0x0x0x0 d1x1 g1',
    'float32 x2x4x4x3 w3x3x3x4 s1x1 p2x2x2x2 d2x2 g1',
  ]
  _traced_impl((2, 4, 4, 4), (3, 3, 1, 4), groups=4, dtype=jnp.bfloat16)
  if native.supports(jnp.bfloat16):  # else XLA, unmeasured
    assert fake.calls[-1].key() == (
      'bfloat16 x2x4x4x4 w3x3x1x4 s1x1 p1x1x1x1 d1x1 g4'
    )


def test_a_near_tie_keeps_onednn():
  assert choice.decide({'xla_ms': 1.0, 'onednn_ms': 1.05}) == 'onednn'
  assert choice.decide({'xla_ms': 1.0, 'onednn_ms': 1.2}) == 'xla'
  assert choice.decide({'xla_ms': 2.0, 'onednn_ms': 1.0}) == 'onednn'


def test_a_second_process_reuses_the_file(monkeypatch, capsys):
  _fake(monkeypatch, TIMES)
  assert (_traced_impl(*SMALL), _traced_impl(*BIG)) == ('xla', 'onednn')
  choice.forget()  # as a new process: a new ChoiceCache on the same file
  again = _fake(monkeypatch)  # any measurement fails
  assert (_traced_impl(*SMALL), _traced_impl(*BIG)) == ('xla', 'onednn')
  assert again.calls == []
  assert 'warning' not in capsys.readouterr().err


def _one_warning(capsys) -> str:
  lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
  assert len(lines) == 1 and lines[0].startswith('warning: '), lines
  return lines[0]


def test_a_corrupt_file_is_ignored_with_one_warning(monkeypatch, capsys):
  path = choice.cache().path
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, 'w') as f:
    f.write('{"format": 1, "entr')
  choice.forget()
  fake = _fake(monkeypatch, TIMES)
  assert _traced_impl(*SMALL) == 'xla'
  assert _traced_impl(*BIG) == 'onednn'
  assert len(fake.calls) == 2
  assert 'cannot be read' in _one_warning(capsys)
  assert os.path.exists(path + '.bad')


def test_a_foreign_file_is_ignored_with_one_warning(monkeypatch, capsys):
  ours = choice.cache()
  theirs = choice_cache.ChoiceCache(
    choice.KIND, choice.context(), ours.directory, cpuinfo=XEON
  )
  key = choice.make(*SMALL, 'float32', (1, 1), ((1, 1),) * 2, (1, 1), 1).key()
  theirs.put(key, {'impl': 'onednn', 'xla_ms': 9.0, 'onednn_ms': 1.0})
  os.replace(theirs.path, ours.path)  # copied in by hand
  choice.forget()
  fake = _fake(monkeypatch, TIMES)
  assert _traced_impl(*SMALL) == 'xla'  # measured here, not the Xeon's
  assert len(fake.calls) == 1
  assert 'another machine (Intel Xeon Platinum)' in _one_warning(capsys)


@pytest.mark.parametrize(
  ('mode', 'small', 'big'),
  [
    ('xla', 'xla', 'xla'),
    ('onednn', 'onednn', 'onednn'),
    ('prefer_onednn', 'onednn', 'onednn'),
  ],
)
def test_forced_modes_never_measure(monkeypatch, mode, small, big):
  fake = _fake(monkeypatch)
  with native.auto_impl(mode):
    assert (_traced_impl(*SMALL), _traced_impl(*BIG)) == (small, big)
  monkeypatch.setenv(native.ENV, mode)
  assert (_traced_impl(*SMALL), _traced_impl(*BIG)) == (small, big)
  assert fake.calls == []
  assert not os.path.exists(choice.cache().path)


def test_dtypes_onednn_cannot_build_stay_on_xla_unmeasured(monkeypatch):
  fake = _fake(monkeypatch)
  assert _traced_impl(*SMALL, dtype=jnp.float16) == 'xla'
  assert fake.calls == []


def test_several_processes_never_measure(monkeypatch):
  fake = _fake(monkeypatch)
  monkeypatch.setattr(jax, 'process_count', lambda: 2)
  assert (_traced_impl(*SMALL), _traced_impl(*BIG)) == ('onednn', 'onednn')
  assert fake.calls == []
  assert 'several processes' in native.backend_status()


def test_the_block_overrides_the_environment(monkeypatch):
  fake = _fake(monkeypatch, TIMES)
  monkeypatch.setenv(native.ENV, 'xla')  # read at trace time, not import
  assert native.mode() == 'xla'
  assert _traced_impl(*BIG) == 'xla'
  with native.auto_impl('onednn'):
    assert _traced_impl(*SMALL) == 'onednn'
    with native.auto_impl('auto'):  # the innermost block wins
      assert native.mode() == 'auto'
      assert _traced_impl(*SMALL) == 'xla'
    assert native.mode() == 'onednn'
  assert native.mode() == 'xla'
  assert len(fake.calls) == 1
  monkeypatch.setenv(native.ENV, '')  # empty: the default, 'auto'
  assert native.mode() == 'auto'


def test_bad_modes_are_one_clear_error(monkeypatch):
  monkeypatch.setenv(native.ENV, 'fast')
  message = (
    r"\$CONVNETS_CONV_IMPL must be one of 'auto', 'xla', 'onednn', "
    r"'prefer_onednn', got 'fast'"
  )
  with pytest.raises(ValueError, match=message):
    _traced_impl(*SMALL)
  with (
    pytest.raises(ValueError, match="impl must be one of .* got 'bogus'"),
    native.auto_impl('bogus'),
  ):
    pass


def test_the_status_line_names_the_cache_file():
  status = native.backend_status()
  assert status.startswith('convolution backend: oneDNN 3.')
  assert 'measured once per convolution shape' in status
  assert choice.cache().path in status
  with native.auto_impl('xla'):
    assert native.backend_status().startswith('convolution backend: XLA (')


def test_no_tracer_leaks_from_a_measurement_inside_jit(monkeypatch):
  _fake(monkeypatch, TIMES)
  x = jnp.asarray(np.random.default_rng(0).standard_normal(BIG[0]), 'float32')
  w = jnp.asarray(np.random.default_rng(1).standard_normal(BIG[1]), 'float32')
  with jax.checking_leaks():
    y = jax.jit(lambda x, w: convolution.conv2d(x, w))(x, w)
  want = convolution.conv2d(x, w, impl='xla')
  np.testing.assert_allclose(y, want, rtol=2e-5, atol=2e-5 * np.abs(want).max())


def test_a_real_measurement_of_a_tiny_convolution():
  x_shape, w_shape = (2, 5, 5, 3), (3, 3, 3, 4)
  conv = choice.make(x_shape, w_shape, 'float32', (1, 1), ((1, 1),) * 2,
                     (1, 1), 1)  # fmt: skip
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.standard_normal(x_shape), jnp.float32)
  w = jnp.asarray(rng.standard_normal(w_shape), jnp.float32)

  def loss(x, w, impl):
    return jnp.sum(jnp.sin(convolution.conv2d(x, w, impl=impl)))

  with jax.checking_leaks():  # measured while tracing
    got = jax.jit(jax.value_and_grad(lambda x, w: loss(x, w, 'auto'), (0, 1)))(
      x, w
    )
  entry = choice.cache().get(conv.key())
  assert entry['xla_ms'] > 0 and entry['onednn_ms'] > 0
  assert entry['impl'] == choice.decide(entry)
  other = 'onednn' if entry['impl'] == 'xla' else 'xla'
  want = jax.value_and_grad(lambda x, w: loss(x, w, other), (0, 1))(x, w)
  for g, r in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
    np.testing.assert_allclose(g, r, rtol=1e-4, atol=1e-4)


def test_conv_impl_is_validated_with_one_clear_message():
  config = synthetic.get_config('cnn_small,8x8x1,smoke=True')
  validate.check_config(config, 8)
  config.conv_impl = 'bogus'
  with pytest.raises(ValueError) as info:
    validate.check_config(config, 8)
  assert str(info.value) == (
    "conv_impl must be one of 'auto', 'xla', 'onednn', 'prefer_onednn', "
    "got 'bogus'"
  )
  config.conv_impl = 'onednn'
  config.compute_dtype = 'float16'
  with pytest.raises(ValueError, match=r"conv_impl='onednn' cannot run: "):
    validate.check_config(config, 8)


@pytest.mark.slow  # a two-step training run of a small CNN
def test_the_trainer_applies_conv_impl(tmp_path, monkeypatch):
  calls = []
  original = native.conv2d

  def spy(*args, **kw):
    calls.append(kw)
    return original(*args, **kw)

  monkeypatch.setattr(native, 'conv2d', spy)
  monkeypatch.setenv(native.ENV, 'onednn')  # the config must win
  assert _traced_impl(*SMALL) == 'onednn' and calls  # the spy sees oneDNN
  calls.clear()
  config = synthetic.get_config('cnn_small,8x8x1,smoke=True')
  config.conv_impl = 'xla'
  trainer.train_and_evaluate(config, str(tmp_path / 'run'))
  assert calls == []  # init, train and eval steps all on XLA
  config.conv_impl = 'bogus'
  with pytest.raises(trainer.ConfigError, match='conv_impl must be one of'):
    trainer.train_and_evaluate(config, str(tmp_path / 'bad'))


@pytest.mark.slow
def test_the_trainer_measures_only_the_steps_shapes(tmp_path, monkeypatch):
  config = synthetic.get_config('cnn_small,8x8x1,smoke=True')

  class Recording(FakeMeasure):
    def __call__(self, conv):
      self.calls.append(conv)
      return {'xla_ms': 1.0, 'onednn_ms': 2.0}

  fake = Recording()
  monkeypatch.setattr(choice, 'measure', fake)
  trainer.train_and_evaluate(config, str(tmp_path / 'run'))
  batches = {conv.x_shape[0] for conv in fake.calls}
  # Init traces on one example with the static rule: no batch-1 shapes.
  assert fake.calls and 1 not in batches
  assert batches <= {config.batch_size, config.eval_batch_size}
