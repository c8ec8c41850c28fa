"""Tests of the measured input worker count (`config.data.num_workers=-1`).

The measurement is replaced by a fake (`imagenet.measure_rate`) whose rates
are hand-written, so the expected choice is read off the table, and a fake
that raises proves where nothing may be measured. One test measures for
real on the tiny fixture and checks only that the answer is a candidate:
no test asserts a speed. That the count never changes a batch is
test_data_tfds_slow.py's `test_batches_do_not_depend_on_the_worker_count`.
"""

import json
import logging
import multiprocessing
import pathlib

from absl import flags
import jax
import numpy as np
import pytest

from experiments.configs import common
from ops import choice_cache
from ops import host
from train_lib import data
from train_lib.data import imagenet

BATCH = 8


@pytest.fixture(name='cache_dir', autouse=True)
def _cache_dir(tmp_path, monkeypatch):
  """Every choice of these tests goes to a folder of their own."""
  where = tmp_path / 'choices'
  monkeypatch.setenv(choice_cache.ENV, str(where))
  return where


@pytest.fixture(name='flags_parsed')
def _flags_parsed():
  """absl flags parsed for the test only, as an absl app's are for a run."""
  parsed = flags.FLAGS.is_parsed()
  if not parsed:
    flags.FLAGS.mark_as_parsed()
  yield
  if not parsed:
    flags.FLAGS.unparse_flags()


def _config(**kw):
  config = common.get_config().data
  config.update(name='imagenet2012', image_size=32)
  config.update(**kw)
  return config


def _fake(monkeypatch, rates, cores):
  """Replaces the measurement by `rates`; returns the counts it is asked."""
  asked = []

  def measure(ds, *, local_batch, workers, seconds):
    assert local_batch in (BATCH, 2 * BATCH) and seconds > 0
    assert isinstance(ds, imagenet.ImagenetDataset)
    asked.append(workers)
    return rates[workers]

  monkeypatch.setattr(imagenet, 'measure_rate', measure)
  monkeypatch.setattr(host, 'usable_cpu_count', lambda: cores)
  return asked


def _never(monkeypatch):
  def measure(*args, **kw):
    raise AssertionError('measured where nothing may be')

  monkeypatch.setattr(imagenet, 'measure_rate', measure)


def test_candidates_are_zero_then_powers_of_two_and_the_core_count():
  assert imagenet.worker_candidates(1) == [0, 1]
  assert imagenet.worker_candidates(2) == [0, 1, 2]
  assert imagenet.worker_candidates(6) == [0, 1, 2, 4, 6]
  assert imagenet.worker_candidates(8) == [0, 1, 2, 4, 8]
  assert imagenet.worker_candidates(64) == [0, 1, 2, 4, 8, 16, 32]


@pytest.mark.usefixtures('flags_parsed')
@pytest.mark.parametrize(
  'rates,expected',
  [
    ({0: 916, 1: 483, 2: 848, 4: 800}, 0),  # this machine's numbers
    ({0: 300, 1: 200, 2: 390, 4: 380}, 2),
    ({0: 300, 1: 200, 2: 390, 4: 400}, 4),
  ],
)
def test_the_fastest_candidate_is_chosen_and_logged(
  data_dir, monkeypatch, caplog, rates, expected
):
  asked = _fake(monkeypatch, rates, cores=4)
  ds = data.get_dataset(_config(data_dir=data_dir))
  assert ds.num_workers == -1
  with caplog.at_level(logging.INFO, logger='absl'):
    assert ds.workers_for(BATCH) == expected
    assert ds.workers_for(BATCH) == expected  # remembered, not re-read
  assert asked == [0, 1, 2, 4]
  lines = [r.getMessage() for r in caplog.records if r.name == 'absl']
  assert len(lines) == 1
  assert lines[0].startswith(f'input workers: {expected}; ')
  assert f'1: {rates[1]}' in lines[0] and f'2: {rates[2]}' in lines[0]


@pytest.mark.usefixtures('flags_parsed')
def test_the_search_stops_where_more_workers_are_slower(data_dir, monkeypatch):
  rates = {0: 100, 1: 200, 2: 170, 4: 1000, 8: 1000}
  asked = _fake(monkeypatch, rates, cores=8)
  ds = data.get_dataset(_config(data_dir=data_dir))
  assert ds.workers_for(BATCH) == 1  # 170 < 0.9 * 200: 4 and 8 untried
  assert asked == [0, 1, 2]


@pytest.mark.usefixtures('flags_parsed')
def test_a_second_dataset_reuses_the_file(data_dir, monkeypatch, cache_dir):
  asked = _fake(monkeypatch, {0: 300, 1: 200, 2: 390}, cores=2)
  assert data.get_dataset(_config(data_dir=data_dir)).workers_for(BATCH) == 2
  (path,) = cache_dir.glob('input_workers-*.json')
  saved = json.loads(path.read_text())
  assert saved['machine']['image_size'] == '32'
  (entry,) = saved['entries'].values()
  assert entry == {'workers': 2, 'images_per_s': {'0': 300, '1': 200, '2': 390}}
  _never(monkeypatch)
  again = data.get_dataset(_config(data_dir=data_dir))
  assert again.workers_for(BATCH) == 2
  assert asked == [0, 1, 2]
  # Another batch or crop size is another measurement.
  asked.clear()
  _fake(monkeypatch, {0: 300, 1: 200, 2: 100}, cores=2)
  assert again.workers_for(2 * BATCH) == 0
  bigger = data.get_dataset(_config(data_dir=data_dir, image_size=64))
  assert bigger.workers_for(BATCH) == 0


@pytest.mark.usefixtures('flags_parsed')
def test_a_corrupt_file_is_measured_again(data_dir, monkeypatch, capsys):
  asked = _fake(monkeypatch, {0: 300, 1: 200, 2: 390}, cores=2)
  path = pathlib.Path(imagenet.workers_cache(32).path)
  path.parent.mkdir(parents=True)
  path.write_text('{"format": 1, "entries": {"imagenet')  # torn
  assert data.get_dataset(_config(data_dir=data_dir)).workers_for(BATCH) == 2
  assert asked == [0, 1, 2]
  err = capsys.readouterr().err.splitlines()
  assert len(err) == 1 and err[0].startswith('warning: choice cache')


@pytest.mark.usefixtures('flags_parsed')
def test_an_explicit_count_is_never_measured(data_dir, monkeypatch, cache_dir):
  _never(monkeypatch)
  for workers in (0, 3):
    ds = data.get_dataset(_config(data_dir=data_dir, num_workers=workers))
    assert ds.workers_for(BATCH) == workers
  assert not cache_dir.exists()
  with pytest.raises(ValueError, match='num_workers must be >= 0, or -1'):
    data.get_dataset(_config(data_dir=data_dir, num_workers=-2))


def test_without_parsed_flags_minus_one_is_zero_unmeasured(
  data_dir, monkeypatch, cache_dir
):
  _never(monkeypatch)
  parsed = flags.FLAGS.is_parsed()
  if parsed:
    flags.FLAGS.unparse_flags()
  try:
    ds = data.get_dataset(_config(data_dir=data_dir))
    assert ds.workers_for(BATCH) == 0
  finally:
    if parsed:
      flags.FLAGS.mark_as_parsed()
  assert not cache_dir.exists()


@pytest.mark.usefixtures('flags_parsed')
def test_the_stream_runs_with_the_choice(data_dir, monkeypatch):
  _fake(monkeypatch, {0: 900, 1: 400, 2: 800}, cores=2)
  ds = data.get_dataset(_config(data_dir=data_dir))
  key = jax.random.key(3)
  chosen = ds.local_train_batches(key, local_batch=BATCH)
  threads = ds.local_train_batches(key, local_batch=BATCH, num_workers=0)
  np.testing.assert_array_equal(next(chosen)['image'], next(threads)['image'])
  assert not multiprocessing.active_children()


@pytest.mark.parametrize('name', ['digits', 'synthetic', 'cifar10'])
@pytest.mark.usefixtures('flags_parsed')
def test_in_memory_datasets_start_no_workers(
  data_dir, monkeypatch, cache_dir, name
):
  _never(monkeypatch)
  config = common.get_config().data
  config.update(name=name, num_workers=-1, data_dir=data_dir)
  ds = data.get_dataset(config)
  assert isinstance(ds, data.InMemoryDataset)
  mesh = jax.sharding.Mesh(np.array(jax.devices()), ('data',))
  sharding = jax.sharding.NamedSharding(
    mesh, jax.sharding.PartitionSpec('data')
  )
  next(
    ds.train_batches(
      batch_size=8, data_key=jax.random.key(0), start_step=0, sharding=sharding
    )
  )
  assert not multiprocessing.active_children()
  assert not cache_dir.exists()


@pytest.mark.slow
@pytest.mark.usefixtures('flags_parsed')
def test_a_real_measurement_returns_a_candidate(
  data_dir, monkeypatch, tmp_path
):
  monkeypatch.setattr(host, 'usable_cpu_count', lambda: 2)
  ds = data.get_dataset(_config(data_dir=data_dir))
  cache = imagenet.workers_cache(32, str(tmp_path / 'real'))
  chosen = imagenet.choose_workers(ds, BATCH, cache=cache, seconds=0.2)
  assert chosen in (0, 1, 2)
  saved = json.loads(pathlib.Path(cache.path).read_text())
  (entry,) = saved['entries'].values()
  rates = {int(n): rate for n, rate in entry['images_per_s'].items()}
  assert set(rates) in ({0, 1}, {0, 1, 2})  # 2 is skipped only if slower
  assert all(rate > 0 for rate in rates.values())
  assert max(rates, key=rates.get) == chosen == entry['workers']
  assert not multiprocessing.active_children()
