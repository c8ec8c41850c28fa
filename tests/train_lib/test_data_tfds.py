"""The TFDS paths on format-faithful files: CIFAR decoded once, ImageNet crops.

The fixtures are tfds's own builders (imagenet2012 5.1.0, cifar10/100
3.0.2) writing ArrayRecord files of real JPEGs and PNGs
(train_lib/data/testing_fixtures.py), read by the real `tfds.data_source` +
grain path. References: tfds's own image decoding (Pillow, independent of ours),
the full-resolution decode + resize for the reduced-scale JPEG decode, the
single-process stream for the process shards, hand values for the
standardisation. Worker processes and the launcher: test_data_tfds_slow.py.
"""

import io
import struct
import types
import zlib

from absl import flags
import jax
import numpy as np
from PIL import Image
import pytest
import tensorflow_datasets as tfds

from experiments.configs import common
from train_lib import data
from train_lib.data import base
from train_lib.data import jpeg_crop
from train_lib.data import normalize
from train_lib.data import png_batch
from train_lib.data import preprocessing
from train_lib.data import tfds_source


def _sharding():
  mesh = jax.sharding.Mesh(np.array(jax.devices()), ('data',))
  return jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec('data'))


def _dataset(name, data_dir, **kw):
  config = common.get_config().data
  config.update(name=name, data_dir=data_dir, image_size=32, num_workers=0)
  config.update(**kw)
  return data.get_dataset(config)


def _pixels(images, name):
  """Standardised float32 back to uint8 (checks they were uint8 before)."""
  mean, std = preprocessing.STATS[name]
  pixels = (np.asarray(images) * np.float32(std) + np.float32(mean)) * 255
  np.testing.assert_allclose(pixels, np.round(pixels), atol=3e-3)
  return np.round(pixels).astype(np.uint8)


def _decoded(name, split, data_dir):
  """tfds's own decoding of every record: the independent reference."""
  source = tfds.data_source(name, split=split, data_dir=data_dir)
  records = [source[i] for i in range(len(source))]
  return [r['image'] for r in records], [r['label'] for r in records]


def test_fixtures_hold_what_the_real_data_sets_hold(data_dir, tfds_sizes):
  for name, (n_train, n_test) in tfds_sizes.items():
    builder = tfds.builder(name, data_dir=data_dir)
    version = '5.1.0' if name == 'imagenet2012' else '3.0.2'
    assert str(builder.info.version) == version
    assert builder.info.file_format.value == 'array_record'
    labels = builder.info.features['label'].num_classes  # tfds's own count
    assert labels == base.NUM_CLASSES[name]
    splits = tfds_source.SPLITS[name]
    assert [builder.info.splits[s].num_examples for s in splits] == [
      n_train,
      n_test,
    ]
  source = tfds_source.open_source('imagenet2012', 'train', data_dir)
  images = [Image.open(io.BytesIO(source[i]['image'])) for i in range(24)]
  assert {im.format for im in images} == {'JPEG'}
  sizes = [im.size for im in images]
  assert sizes.count((500, 375)) + sizes.count((333, 500)) >= 12
  assert max(max(s) for s in sizes) == 1600 and min(min(s) for s in sizes) < 224
  assert sum(im.mode == 'L' for im in images) == 2
  assert sum(bool(im.info.get('progressive')) for im in images) == 1
  png = tfds_source.open_source('cifar10', 'train', data_dir)[0]['image']
  image = Image.open(io.BytesIO(png))
  assert (image.format, image.mode, image.size) == ('PNG', 'RGB', (32, 32))


@pytest.mark.parametrize('name', ['cifar10', 'cifar100'])
def test_cifar_is_decoded_once_into_device_memory(name, data_dir):
  ds = _dataset(name, data_dir)
  assert isinstance(ds, data.InMemoryDataset)
  assert (ds.num_classes, ds.image_shape) == (int(name[5:]), (32, 32, 3))
  for split, tfds_split in (('train', 'train'), ('test', 'test')):
    images, labels = ds.host_arrays(split)
    expected, expected_labels = _decoded(name, tfds_split, data_dir)
    assert images.dtype == np.uint8
    np.testing.assert_array_equal(images, np.stack(expected))
    np.testing.assert_array_equal(labels, expected_labels)
  batches = ds.train_batches(
    batch_size=8, data_key=jax.random.key(0), sharding=_sharding()
  )
  first_epoch = np.concatenate(
    [_pixels(next(batches)['image'], name) for _ in range(ds.num_train // 8)]
  )
  key = lambda images: sorted(im.tobytes() for im in images)
  assert key(first_epoch) == key(ds.host_arrays('train')[0])


def test_cifar_validation_split_is_carved_from_train(data_dir):
  ds = _dataset('cifar10', data_dir, validation_fraction=0.25)
  assert (ds.eval_split, ds.num_train, ds.num_test) == ('validation', 38, 10)
  train = _dataset('cifar10', data_dir).host_arrays('train')[0]
  both = np.concatenate([ds.host_arrays('train')[0], ds.host_arrays('test')[0]])
  key = lambda images: sorted(im.tobytes() for im in images)
  assert key(both) == key(train)


def test_cifar_decoding_threads_change_nothing(data_dir):
  source = tfds_source.open_source('cifar10', 'train', data_dir)
  indices = list(range(len(source)))
  by_tfds = [(r['image'], r['label']) for r in source.__getitems__(indices)]
  assert tfds_source.encoded_records(source, indices) == by_tfds
  plain = types.SimpleNamespace(__getitems__=source.__getitems__)
  assert tfds_source.encoded_records(plain, indices) == by_tfds
  one = tfds_source.decode_split(source, threads=1)
  many = tfds_source.decode_split(source, threads=3)
  for a, b in zip(one, many, strict=True):
    np.testing.assert_array_equal(a, b)


def _png(image: np.ndarray, kinds) -> bytes:
  """An 8-bit RGB PNG of `image` with row r filtered by kinds[r] (0-4)."""
  height, width, _ = image.shape
  rows, above = [], np.zeros(width * 3, np.int16)
  for r, kind in enumerate(kinds):
    x = image[r].reshape(-1).astype(np.int16)
    left = np.concatenate([np.zeros(3, np.int16), x[:-3]])
    up_left = np.concatenate([np.zeros(3, np.int16), above[:-3]])
    p = left + above - up_left
    pa, pb, pc = np.abs(p - left), np.abs(p - above), np.abs(p - up_left)
    paeth = np.where(
      (pa <= pb) & (pa <= pc), left, np.where(pb <= pc, above, up_left)
    )
    predicted = [0, left, above, (left + above) // 2, paeth][kind]
    rows.append(bytes([kind]) + ((x - predicted) % 256).astype('u1').tobytes())
    above = x

  def chunk(kind: bytes, body: bytes) -> bytes:
    crc = zlib.crc32(kind + body)
    return struct.pack('>I', len(body)) + kind + body + struct.pack('>I', crc)

  header = struct.pack('>IIBBBBB', width, height, 8, 2, 0, 0, 0)
  return (
    b'\x89PNG\r\n\x1a\n'
    + chunk(b'IHDR', header)
    + chunk(b'IDAT', zlib.compress(b''.join(rows)))
    + chunk(b'IEND', b'')
  )


def test_png_batch_decode_equals_pillow_for_every_filter(data_dir):
  rng = np.random.default_rng(0)
  images = rng.integers(0, 256, (12, 32, 32, 3), dtype=np.uint8)
  images[::2] //= 7  # smoother rows too
  pngs = [
    _png(im, [(k + r) % 5 for r in range(32)]) for k, im in enumerate(images)
  ]
  pillow = [np.asarray(Image.open(io.BytesIO(p))) for p in pngs]
  np.testing.assert_array_equal(pillow, images)  # the encoder is right
  np.testing.assert_array_equal(png_batch.decode_rgb8(pngs, 32, 32), images)
  source = tfds_source.open_source('cifar10', 'train', data_dir)
  fixture = [image for image, _ in tfds_source.encoded_records(source, [0, 1])]
  np.testing.assert_array_equal(
    png_batch.decode_rgb8(fixture, 32, 32),
    [np.asarray(Image.open(io.BytesIO(p))) for p in fixture],
  )
  grey = io.BytesIO()
  Image.fromarray(images[0, ..., 0]).save(grey, 'PNG')
  assert png_batch.decode_rgb8([pngs[0], grey.getvalue()], 32, 32) is None
  assert png_batch.decode_rgb8(pngs[:1], 16, 64) is None


def _encoded(image: Image.Image, kind: str) -> bytes:
  out = io.BytesIO()
  image.save(out, kind)
  return out.getvalue()


def test_decode_rgb_makes_every_mode_rgb():
  grey = np.array([[0, 128, 255], [7, 64, 200]], np.uint8)
  as_grey_rgb = np.repeat(grey[..., None], 3, axis=-1)
  # Greyscale: the level in R, G and B, from bytes and from arrays.
  decoded = base.decode_rgb(_encoded(Image.fromarray(grey), 'PNG'))
  assert decoded.dtype == np.uint8
  np.testing.assert_array_equal(decoded, as_grey_rgb)
  np.testing.assert_array_equal(base.as_rgb(grey[..., None]), as_grey_rgb)
  np.testing.assert_array_equal(base.as_rgb(grey), as_grey_rgb)
  # Palette: each index looked up in the palette.
  palette = np.array([[255, 0, 0], [0, 255, 0], [10, 20, 30]], np.uint8)
  index = np.array([[0, 1, 2], [2, 2, 0]], np.uint8)
  indexed = Image.fromarray(index, mode='P')
  indexed.putpalette(palette.reshape(-1).tolist())
  np.testing.assert_array_equal(
    base.decode_rgb(_encoded(indexed, 'PNG')), palette[index]
  )
  # RGB: unchanged.
  rgb = np.stack([grey, 255 - grey, grey // 3], axis=-1)
  png = _encoded(Image.fromarray(rgb), 'PNG')
  np.testing.assert_array_equal(base.decode_rgb(png), rgb)


def test_standardize_hand_values():
  pixels = np.array([[255, 0, 51]], np.uint8)
  stats = ((0.5, 0.5, 0.2), (0.25, 0.5, 0.1))
  out = jax.jit(normalize.standardize, static_argnums=1)(pixels, stats)
  assert out.dtype == np.float32
  np.testing.assert_allclose(out[0], [2.0, -1.0, 0.0], atol=1e-6)


def test_imagenet_batches_are_standardised_crops_of_the_stream(data_dir):
  ds = _dataset('imagenet2012', data_dir)
  assert (ds.num_train, ds.num_test, ds.image_shape) == (24, 10, (32, 32, 3))
  key, sharding = jax.random.key(3), _sharding()
  batches = ds.train_batches(batch_size=8, data_key=key, sharding=sharding)
  host = ds.local_train_batches(key, local_batch=8)
  elements = ds.train_elements(key, process_index=0, process_count=1)
  for step in range(4):  # 32 elements: into the second epoch.
    batch, expected = next(batches), next(host)
    assert batch['image'].dtype == np.float32
    assert batch['image'].sharding.is_equivalent_to(sharding, 4)
    np.testing.assert_array_equal(
      _pixels(batch['image'], 'imagenet2012'), expected['image']
    )
    np.testing.assert_array_equal(batch['label'], expected['label'])
    for i in (0, 7):
      np.testing.assert_array_equal(
        expected['image'][i], elements[step * 8 + i]['image']
      )
  # The crops are those of the element's generator: grain's random_map.
  source = tfds_source.open_source('imagenet2012', 'train', data_dir)
  labels = sorted(source[i]['label'] for i in range(24))
  first = ds.local_train_batches(key, local_batch=24)
  assert sorted(next(first)['label']) == labels  # an epoch is a permutation


def test_imagenet_resume_and_other_key(data_dir):
  ds = _dataset('imagenet2012', data_dir)
  key = jax.random.key(5)
  straight = ds.local_train_batches(key, local_batch=8)
  first = [next(straight)['image'] for _ in range(5)]
  resumed = ds.local_train_batches(key, local_batch=8, start_step=3)
  for step in (3, 4):
    np.testing.assert_array_equal(next(resumed)['image'], first[step])
  other = ds.local_train_batches(jax.random.key(6), local_batch=8)
  assert not np.array_equal(next(other)['image'], first[0])


def test_workers_without_parsed_flags_are_an_error(data_dir, monkeypatch):
  # grain's workers read absl flags; a data module does not parse them for
  # the program (it did: mark_as_parsed, for the rest of the process).
  marked = []
  monkeypatch.setattr(flags.FlagValues, 'is_parsed', lambda self: False)
  monkeypatch.setattr(
    flags.FlagValues, 'mark_as_parsed', lambda self: marked.append(self)
  )
  ds = _dataset('imagenet2012', data_dir)
  with pytest.raises(ValueError, match='num_workers=1 needs parsed absl'):
    ds.local_train_batches(jax.random.key(5), local_batch=8, num_workers=1)
  assert not marked


def test_process_shards_interleave_to_the_global_batch(data_dir):
  ds = _dataset('imagenet2012', data_dir)
  key, batch, processes = jax.random.key(2), 8, 2
  whole = ds.local_train_batches(key, local_batch=batch)
  parts = [
    ds.local_train_batches(
      key, local_batch=batch // processes, process_index=p, process_count=2
    )
    for p in range(processes)
  ]
  for _ in range(3):
    expected = next(whole)
    for p, part in enumerate(parts):
      got = next(part)
      np.testing.assert_array_equal(got['image'], expected['image'][p::2])
      np.testing.assert_array_equal(got['label'], expected['label'][p::2])
  evals = [
    ds.eval_elements(8, process_index=p, process_count=2) for p in range(2)
  ]
  assert [len(e) for e in evals] == [8, 8]
  assert sum(float(e[i]['mask']) for e in evals for i in range(8)) == 10


@pytest.mark.parametrize('batch_size', [8, 16])  # 10 examples, padded
def test_imagenet_eval_is_every_example_once_in_order(batch_size, data_dir):
  ds = _dataset('imagenet2012', data_dir)
  batches = list(ds.eval_batches(batch_size=batch_size, sharding=_sharding()))
  assert len(batches) == -(-10 // batch_size)
  mask = np.concatenate([np.asarray(b['mask']) for b in batches])
  assert mask.sum() == 10 and not mask[10:].any()
  images = [_pixels(b['image'], 'imagenet2012') for b in batches]
  images = np.concatenate(images)
  labels = np.concatenate([np.asarray(b['label']) for b in batches])
  decoded, expected_labels = _decoded('imagenet2012', 'validation', data_dir)
  np.testing.assert_array_equal(labels[:10], expected_labels)
  differences = [
    # Reference: the full decode resized (shorter side 37 for 32), cropped.
    np.abs(image - preprocessing.center_crop(
      preprocessing.resize_shorter_side(full, 37), 32
    )).mean()
    for image, full in zip(images[:10].astype(float), decoded, strict=True)
  ]  # fmt: skip
  assert max(differences) < 5.0 and np.mean(differences) < 2.5


# (largest, mean) mean absolute difference in pixel levels per output size:
# decoding at 1/2-1/8 scale averages the pixels another way than the resize
# of the full decode does, which shows most on small outputs.
BOUNDS = {64: (5.0, 2.0), 224: (2.5, 1.5)}


@pytest.mark.parametrize('size', sorted(BOUNDS))
def test_reduced_scale_decode_stays_close_to_full_decode(size, data_dir):
  source = tfds_source.open_source('imagenet2012', 'train', data_dir)
  train, evals = [], []
  for i in range(len(source)):
    jpeg = source[i]['image']
    full = base.decode_rgb(jpeg)  # Pillow at full size, then crop + resize.
    fast = jpeg_crop.train_crop(jpeg, np.random.default_rng(i), size)
    top, left, h, w = preprocessing.random_resized_crop_box(
      np.random.default_rng(i), *full.shape[:2]
    )
    reference = Image.fromarray(full).resize(
      (size, size), Image.BILINEAR, box=(left, top, left + w, top + h)
    )
    train.append(np.abs(fast.astype(float) - reference).mean())
    reference = preprocessing.center_crop(
      preprocessing.resize_shorter_side(full, round(size / 0.875)), size
    )
    fast = jpeg_crop.eval_crop(jpeg, size).astype(float)
    evals.append(np.abs(fast - reference).mean())
  largest, mean = BOUNDS[size]
  reduced = [d for d in train if d > 0]  # 0: the box was decoded in full.
  assert len(reduced) >= (2 if size == 224 else 20)
  assert max(reduced) < largest and np.mean(reduced) < mean
  assert max(evals) < largest and np.mean(evals) < mean


def test_missing_data_raises_with_instructions(tmp_path):
  config = common.get_config().data
  config.update(name='cifar10', data_dir=str(tmp_path))
  with pytest.raises(data.DatasetNotFoundError, match='tfds build cifar10'):
    data.get_dataset(config)
  assert issubclass(data.DatasetNotFoundError, ValueError)
  assert not list(tmp_path.iterdir())  # nothing was downloaded or written


def test_imagenet_geometry():
  image = np.arange(40 * 60 * 3, dtype=np.uint8).reshape(40, 60, 3)
  assert preprocessing.resize_shorter_side(image, 20).shape == (20, 30, 3)
  np.testing.assert_array_equal(
    preprocessing.center_crop(image, 10), image[15:25, 25:35]
  )
  # 40x60 -> shorter side round(16 / 0.875) = 18: 18x27, crop at (1, 5).
  left, top, right, bottom = jpeg_crop.eval_box(40, 60, 16)
  np.testing.assert_allclose(
    (left, top, right, bottom),
    (5 * 60 / 27, 1 * 40 / 18, 21 * 60 / 27, 17 * 40 / 18),
  )
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
