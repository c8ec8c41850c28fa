"""Test data: small CIFAR and ImageNet in the real tfds format, built offline.

Not part of the training path: nothing in train_lib imports this module (it
imports tfds's private builder modules and scikit-learn's sample images);
the tests and `experiments.bench_input` import it where they build data.

They need files that `tfds.data_source` reads exactly as it reads the real
data sets, without a download and without TensorFlow. The builders here
subclass tfds's own (`imagenet2012` 5.1.0, `cifar10` / `cifar100` 3.0.2):
same name, version, features and split names, written as ArrayRecord; only
the generator is ours. It yields encoded bytes, which tfds stores untouched
(a numpy image would go through TensorFlow's encoder), so the records hold
what the real ones hold:

* ImageNet: JPEGs cut from the two photographs scikit-learn ships (a
  Chinese temple and a flower, 640x427), resized, with a little sensor-like
  noise, at JPEG quality 80-95 (about 80 KB and 230k pixels on average over
  the cycle; ImageNet averages about 110 KB). Image i has the size and kind
  of entry i % 50 of `IMAGENET_SPECS`: mostly 500x375 and 333x500 as in
  ImageNet, a tail of 800-1600 px, greyscale images, one progressive JPEG
  and two images smaller than 224 (the training crop must then upscale).
* CIFAR: 32x32x3 PNGs of downscaled cuts of the same photographs.

Labels are i % num_classes. The builders must live in a module of a package
(tfds refuses builders defined in `__main__`), and `download_and_prepare`
needs `importlib_resources`, pinned in constraints.txt.

  from train_lib.data import testing_fixtures
  testing_fixtures.build_imagenet(data_dir, num_train=32, num_validation=16)
  tfds.data_source('imagenet2012', split='train', data_dir=data_dir)
"""

import functools
import io

import numpy as np
from PIL import Image
import tensorflow_datasets as tfds
from tensorflow_datasets.datasets.imagenet2012 import (
  imagenet2012_dataset_builder as imagenet_builder,
)
from tensorflow_datasets.image_classification import cifar

# One cycle of (width, height, mode, progressive); 41 of 50 are the usual
# ImageNet sizes. The special ones come early, so that a fixture of a dozen
# images already holds each kind.
_SPECIAL = {
  1: (333, 500, 'L', False),  # greyscale portrait
  3: (1600, 1200, 'RGB', False),
  5: (200, 150, 'RGB', False),  # smaller than 224
  7: (500, 375, 'RGB', True),  # progressive
  9: (150, 200, 'L', False),  # small and greyscale
  11: (1024, 768, 'RGB', False),
  13: (800, 600, 'RGB', False),
  30: (500, 333, 'RGB', False),
  40: (375, 500, 'RGB', False),
}
IMAGENET_SPECS = tuple(
  _SPECIAL.get(i, (333, 500, 'RGB', False) if i % 4 == 2 else
               (500, 375, 'RGB', False))
  for i in range(50)
)  # fmt: skip


@functools.cache
def _photos() -> tuple[np.ndarray, ...]:
  """scikit-learn's two sample photographs, uint8 [427, 640, 3]."""
  from sklearn.datasets import load_sample_images  # noqa: PLC0415

  return tuple(load_sample_images().images)


def _cut(rng: np.random.Generator, width: int, height: int) -> Image.Image:
  """A random window of a photograph with aspect width/height, resized."""
  photo = _photos()[rng.integers(2)]
  ph, pw = photo.shape[:2]
  scale = rng.uniform(0.5, 1.0)
  w = min(pw, round(scale * min(pw, ph * width / height)))
  h = min(ph, round(w * height / width))
  top, left = rng.integers(0, ph - h + 1), rng.integers(0, pw - w + 1)
  window = photo[top : top + h, left : left + w]
  if rng.integers(2):
    window = window[:, ::-1]
  return Image.fromarray(np.ascontiguousarray(window)).resize(
    (width, height), Image.BICUBIC
  )


def imagenet_jpeg(index: int, seed: int = 0) -> bytes:
  """The JPEG bytes of fixture image `index` (size and kind from the cycle)."""
  width, height, mode, progressive = IMAGENET_SPECS[index % 50]
  rng = np.random.default_rng([seed, index])
  pixels = np.asarray(_cut(rng, width, height), np.float32)
  noise = rng.standard_normal(pixels.shape, dtype=np.float32)
  pixels += 6.0 * noise  # sensor noise
  image = Image.fromarray(np.clip(pixels, 0, 255, out=pixels).astype(np.uint8))
  out = io.BytesIO()
  image.convert(mode).save(
    out,
    'JPEG',
    quality=int(rng.choice([80, 90, 95])),
    progressive=progressive,
  )
  return out.getvalue()


def cifar_png(index: int, seed: int = 0) -> bytes:
  """The PNG bytes of a 32x32x3 fixture image."""
  rng = np.random.default_rng([seed, index, 32])
  out = io.BytesIO()
  _cut(rng, 32, 32).save(out, 'PNG')
  return out.getvalue()


class Imagenet2012(imagenet_builder.Builder, skip_registration=True):
  """tfds's imagenet2012 5.1.0 with generated JPEGs instead of the tars."""

  name = 'imagenet2012'

  def __init__(self, *, sizes: dict[str, int], seed: int = 0, **kwargs):
    self._sizes, self._seed = sizes, seed
    super().__init__(**kwargs)

  def _split_generators(self, dl_manager):
    del dl_manager  # Nothing to download.
    return {
      split: self._generate_examples(split, n, offset)
      for offset, (split, n) in enumerate(self._sizes.items())
    }

  def _generate_examples(self, split, n, offset):
    # Each split starts at its own point of the cycle of sizes.
    for i in range(n):
      index = offset * 1000 + i
      label = index % 1000
      file_name = f'n{label:08d}_{index}.JPEG'
      yield (
        file_name,
        {
          'image': imagenet_jpeg(index, self._seed),
          'label': label,
          'file_name': file_name,
        },
      )


class _CifarMixin:
  """The generator shared by the CIFAR-10 and CIFAR-100 fixtures."""

  def __init__(self, *, sizes: dict[str, int], seed: int = 0, **kwargs):
    self._sizes, self._seed = sizes, seed
    super().__init__(**kwargs)

  def _split_generators(self, dl_manager):
    del dl_manager
    return {
      split: self._generate_examples(split, n, offset)
      for offset, (split, n) in enumerate(self._sizes.items())
    }

  def _generate_examples(self, split, n, offset):
    labels = self.info.features['label'].num_classes
    for i in range(n):
      index = offset * 100_000 + i
      record = {
        'id': f'{split}_{i:05d}',
        'image': cifar_png(index, self._seed),
        'label': index % labels,
      }
      if 'coarse_label' in self.info.features:
        record['coarse_label'] = index % 20
      yield i, record


class Cifar10(_CifarMixin, cifar.Cifar10, skip_registration=True):
  """tfds's cifar10 3.0.2 with generated PNGs."""

  name = 'cifar10'


class Cifar100(_CifarMixin, cifar.Cifar100, skip_registration=True):
  """tfds's cifar100 3.0.2 with generated PNGs."""

  name = 'cifar100'


def _build(builder_cls, data_dir: str, sizes: dict[str, int], seed: int):
  builder = builder_cls(data_dir=str(data_dir), sizes=sizes, seed=seed)
  builder.download_and_prepare(
    file_format='array_record',
    download_config=tfds.download.DownloadConfig(verify_ssl=False),
  )
  return builder.data_dir


def build_imagenet(
  data_dir: str, *, num_train: int = 32, num_validation: int = 16, seed: int = 0
) -> str:
  """Writes imagenet2012 5.1.0 ('train', 'validation') under `data_dir`.

  Returns the version directory written (skipped if already there).
  """
  sizes = {'train': num_train, 'validation': num_validation}
  return _build(Imagenet2012, data_dir, sizes, seed)


def build_cifar(
  data_dir: str,
  name: str = 'cifar10',
  *,
  num_train: int = 64,
  num_test: int = 32,
  seed: int = 0,
) -> str:
  """Writes cifar10 or cifar100 3.0.2 ('train', 'test') under `data_dir`."""
  builder_cls = {'cifar10': Cifar10, 'cifar100': Cifar100}[name]
  sizes = {'train': num_train, 'test': num_test}
  return _build(builder_cls, data_dir, sizes, seed)
