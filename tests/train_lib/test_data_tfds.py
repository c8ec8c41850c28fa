"""Tests of the TFDS + grain datasets under `tfds.testing.mock_data`.

References: the raw records of the mocked `tfds.data_source` (un-normalising
a batch must give back uint8 pixels of those records), hand-computed
normalisation values, and the single-process stream for the multi-process
sharding.
"""

import jax
import numpy as np
import pytest
import tensorflow_datasets as tfds

from experiments.configs import common
from train_lib import data
from train_lib.data import preprocessing

NUM_EXAMPLES = 24


@pytest.fixture(name='mock')
def _mock():
  with tfds.testing.mock_data(num_examples=NUM_EXAMPLES):
    yield


def _sharding():
  mesh = jax.sharding.Mesh(np.array(jax.devices()), ('data',))
  return jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec('data'))


def _dataset(name, image_size=16):
  config = common.get_config().data
  config.update(name=name, image_size=image_size)
  return data.get_dataset(config)


def _to_uint8(images, name):
  mean, std = preprocessing.STATS[name]
  pixels = (np.asarray(images) * np.float32(std) + np.float32(mean)) * 255
  np.testing.assert_allclose(pixels, np.round(pixels), atol=2e-3)
  return np.round(pixels).astype(np.uint8)


@pytest.mark.usefixtures('mock')
@pytest.mark.parametrize(
  'name,num_classes,shape',
  [
    ('cifar10', 10, (32, 32, 3)),
    ('cifar100', 100, (32, 32, 3)),
    ('imagenet2012', 1000, (16, 16, 3)),
  ],
)
def test_batches_shapes_dtypes_labels(name, num_classes, shape):
  ds = _dataset(name)
  assert (ds.num_classes, ds.image_shape) == (num_classes, shape)
  assert ds.num_train == ds.num_test == NUM_EXAMPLES
  sharding = _sharding()
  it = ds.train_batches(
    batch_size=16, data_key=jax.random.key(0), start_step=0, sharding=sharding
  )
  for _ in range(2):
    batch = next(it)
    assert batch['image'].shape == (16, *shape)
    assert batch['image'].dtype == np.float32
    assert batch['label'].dtype == np.int32
    labels = np.asarray(batch['label'])
    assert labels.min() >= 0 and labels.max() < num_classes
    assert batch['image'].sharding.is_equivalent_to(sharding, 4)
    assert np.isfinite(np.asarray(batch['image'])).all()
  _to_uint8(batch['image'], name)  # normalised with the right statistics


@pytest.mark.usefixtures('mock')
@pytest.mark.parametrize('name', ['cifar10', 'imagenet2012'])
def test_train_batches_deterministic_and_resumable(name):
  ds = _dataset(name)
  kw = dict(batch_size=8, sharding=_sharding())
  it = ds.train_batches(data_key=jax.random.key(5), start_step=0, **kw)
  first = [np.asarray(next(it)['image']) for _ in range(5)]
  resumed = ds.train_batches(data_key=jax.random.key(5), start_step=3, **kw)
  for step in (3, 4):
    np.testing.assert_array_equal(
      np.asarray(next(resumed)['image']), first[step]
    )
  other = ds.train_batches(data_key=jax.random.key(6), start_step=0, **kw)
  assert not np.array_equal(np.asarray(next(other)['image']), first[0])


@pytest.mark.usefixtures('mock')
def test_first_epoch_is_a_permutation_of_the_train_split():
  ds = _dataset('cifar10')
  it = ds.train_batches(
    batch_size=8, data_key=jax.random.key(1), start_step=0, sharding=_sharding()
  )
  seen = np.concatenate(
    [_to_uint8(next(it)['image'], 'cifar10') for _ in range(3)]
  )
  raw = tfds.data_source('cifar10', split='train', download=False)
  expected = np.stack([raw[i]['image'] for i in range(NUM_EXAMPLES)])
  key = lambda images: sorted(im.tobytes() for im in images)
  assert key(seen) == key(expected)
  assert not np.array_equal(seen, expected)  # shuffled (1/24! to fail)


@pytest.mark.usefixtures('mock')
@pytest.mark.parametrize('batch_size', [8, 16])  # 24 examples: divides or not
def test_eval_covers_every_example_once_in_order(batch_size):
  ds = _dataset('cifar10')
  batches = list(ds.eval_batches(batch_size=batch_size, sharding=_sharding()))
  assert len(batches) == -(-NUM_EXAMPLES // batch_size)
  mask = np.concatenate([np.asarray(b['mask']) for b in batches])
  assert mask.dtype == np.float32 and mask.sum() == NUM_EXAMPLES
  images = np.concatenate([_to_uint8(b['image'], 'cifar10') for b in batches])
  labels = np.concatenate([np.asarray(b['label']) for b in batches])
  raw = tfds.data_source('cifar10', split='test', download=False)
  for i in range(NUM_EXAMPLES):
    np.testing.assert_array_equal(images[i], raw[i]['image'])
    assert labels[i] == raw[i]['label']


@pytest.mark.usefixtures('mock')
def test_imagenet_eval_batches():
  ds = _dataset('imagenet2012', image_size=8)
  batches = list(ds.eval_batches(batch_size=16, sharding=_sharding()))
  assert [b['image'].shape for b in batches] == [(16, 8, 8, 3)] * 2
  assert sum(float(b['mask'].sum()) for b in batches) == NUM_EXAMPLES


@pytest.mark.usefixtures('mock')
def test_process_shards_union_to_the_global_batch():
  ds = _dataset('cifar10')
  key = jax.random.key(2)
  batch, processes = 8, 2
  whole = ds.train_elements(key, process_index=0, process_count=1)
  parts = [
    ds.train_elements(key, process_index=p, process_count=processes)
    for p in range(processes)
  ]
  for step in range(3):
    expected = [whole[step * batch + i]['image'] for i in range(batch)]
    local = batch // processes
    got = [
      parts[p][step * local + i]['image']
      for p in range(processes)
      for i in range(local)
    ]
    key_fn = lambda images: sorted(im.tobytes() for im in images)
    assert key_fn(got) == key_fn(expected)
  evals = [
    ds.eval_elements(16, process_index=p, process_count=processes)
    for p in range(processes)
  ]
  assert [len(e) for e in evals] == [16, 16]
  assert sum(float(e[i]['mask']) for e in evals for i in range(16)) == 24


def test_missing_data_raises_with_instructions(tmp_path):
  config = common.get_config().data
  config.update(name='cifar10', data_dir=str(tmp_path))
  with pytest.raises(data.DatasetNotFoundError, match='tfds build cifar10'):
    data.get_dataset(config)
  assert issubclass(data.DatasetNotFoundError, ValueError)
  assert not list(tmp_path.iterdir())  # nothing was downloaded or written


def test_normalize_hand_values():
  image = np.zeros((1, 1, 3), np.uint8)
  image[0, 0] = (255, 0, 51)
  out = preprocessing.normalize(image, (0.5, 0.5, 0.2), (0.25, 0.5, 0.1))
  np.testing.assert_allclose(out[0, 0], [2.0, -1.0, 0.0], atol=1e-6)


def test_imagenet_geometry():
  image = np.arange(40 * 60 * 3, dtype=np.uint8).reshape(40, 60, 3)
  assert preprocessing.resize_shorter_side(image, 20).shape == (20, 30, 3)
  np.testing.assert_array_equal(
    preprocessing.center_crop(image, 10), image[15:25, 25:35]
  )
  assert preprocessing.imagenet_eval(image, 16).shape == (16, 16, 3)
  rng = np.random.default_rng(0)
  for _ in range(50):
    top, left, h, w = preprocessing.random_resized_crop_box(rng, 40, 60)
    assert top >= 0 and top + h <= 40 and left >= 0 and left + w <= 60
    assert 0.08 * 2400 * 0.9 <= h * w <= 2400
    assert 3 / 4 * 0.8 <= w / h <= 4 / 3 * 1.25
  # No box of 100% area with ratio 2 fits a square: central-square fallback.
  box = preprocessing.random_resized_crop_box(
    rng, 10, 10, area_range=(1.0, 1.0), ratio_range=(2.0, 2.0)
  )
  assert box == (0, 0, 10, 10)
  out = preprocessing.imagenet_train(image, rng, 12)
  assert out.shape == (12, 12, 3) and out.dtype == np.float32
