"""Prepared TFDS data sets without TensorFlow; CIFAR decoded once.

`open_source` gives random access to a split prepared in the ArrayRecord
format (`tfds.data_source`); data that is absent, or stored in a format
without random access, raises `DatasetNotFoundError` saying how to prepare
it. Records are read with their images still encoded
(`tfds.decode.SkipDecoding`): the caller decodes them as it needs.

CIFAR-10/100 (`load_cifar`): both splits are read and their 32x32 PNGs
decoded once, a chunk of images at a time by numpy (`png_batch`; zlib
decompresses outside the GIL, so a thread pool runs the chunks), into uint8
arrays; `get_dataset` serves them on the in-memory path of the small data
sets (`InMemoryDataset`: batches gathered on device and standardised there
with the CIFAR statistics), so no image is decoded twice and the crop and
flip stay on device. ImageNet, too large for that, streams through grain
(`imagenet.py`).
"""

from collections.abc import Sequence
import concurrent.futures
import contextlib

from absl import logging
import numpy as np
import tensorflow_datasets as tfds

from ops import host
from train_lib.data import png_batch
from train_lib.data.base import DatasetNotFoundError
from train_lib.data.base import decode_rgb

SPLITS = {
  'cifar10': ('train', 'test'),
  'cifar100': ('train', 'test'),
  'imagenet2012': ('train', 'validation'),
}
_CHUNK = 2048  # Records per decoding task.


def _prepare_hint(name: str, data_dir: str | None) -> str:
  where = data_dir or '~/tensorflow_datasets'
  manual = ''
  if name == 'imagenet2012':
    manual = (
      ' ImageNet cannot be downloaded automatically: put ILSVRC2012_img_train'
      '.tar and ILSVRC2012_img_val.tar in <data_dir>/downloads/manual first.'
    )
  return (
    f'Prepare it on a machine with internet access with\n  tfds build {name} '
    f'--file_format=array_record --data_dir={where}\n(or '
    f"tfds.builder('{name}', data_dir=...).download_and_prepare("
    'file_format="array_record")), then pass '
    f'--config.data.data_dir={where}.{manual}'
  )


@contextlib.contextmanager
def _absl_errors_only():
  """Hides tfds' absl warnings while probing for a dataset that may be absent.

  Looking for an unprepared dataset makes tfds warn ("Variant folder ... has
  no dataset_info.json") before our own error, which already says what is
  missing and how to prepare it: the launch should print that line alone.
  """
  level = logging.get_verbosity()
  logging.set_verbosity(logging.ERROR)
  try:
    yield
  finally:
    logging.set_verbosity(level)


def open_source(name: str, split: str, data_dir: str | None):
  """The split's `tfds.data_source`, images left encoded (bytes).

  Raises DatasetNotFoundError if the data set is not prepared in `data_dir`
  (nothing is downloaded) or not stored as ArrayRecord.
  """
  with _absl_errors_only():
    try:
      return tfds.data_source(
        name,
        split=split,
        data_dir=data_dir,
        download=False,
        decoders={'image': tfds.decode.SkipDecoding()},
      )
    except Exception as e:  # tfds raises many types; classify them below.
      builder = tfds.builder(name, data_dir=data_dir)
      if not builder.is_prepared():
        raise DatasetNotFoundError(
          f'TFDS dataset {name!r} is not prepared in data_dir={data_dir!r}. '
          + _prepare_hint(name, data_dir)
        ) from e
      file_format = builder.info.file_format
      if 'array_record' not in str(file_format).lower():
        raise DatasetNotFoundError(
          f'TFDS dataset {name!r} in {builder.data_dir} is stored as '
          f'{file_format}, which has no random access; rebuild it as '
          'array_record. ' + _prepare_hint(name, data_dir)
        ) from e
      raise


def encoded_records(source, indices: list[int]) -> list[tuple[bytes, int]]:
  """(encoded image, label) of the records at `indices`.

  The records are `tf.train.Example` protos; parsing just these two fields
  from the raw ArrayRecord bytes is about 4x faster than tfds's generic
  parse into a dict of every feature (`source[i]`), which was a third of
  the time of decoding CIFAR. A source without the raw reader (another
  tfds version) takes tfds's parse. (tfds' `mock_data` cannot serve these
  sources: it needs TensorFlow to skip decoding; the tests use the
  format-faithful files of `testing_fixtures` instead.)
  """
  raw_source = getattr(source, 'data_source', None)
  if raw_source is None:
    return [(r['image'], r['label']) for r in source.__getitems__(indices)]
  # tfds's own copy of TensorFlow's Example proto (no TensorFlow needed).
  from tensorflow_datasets.proto import tf_example_pb2  # noqa: PLC0415

  pairs = []
  for raw in raw_source.__getitems__(indices):
    feature = tf_example_pb2.Example.FromString(raw).features.feature
    image = feature['image'].bytes_list.value[0]
    pairs.append((image, feature['label'].int64_list.value[0]))
  return pairs


def decode_split(source, threads: int | None = None):
  """All (images uint8 [N, H, W, 3], labels int32 [N]) of a source.

  Records are read and decoded in chunks of `_CHUNK` by `threads` threads,
  each chunk written into its slice of the output.
  """
  n = len(source)
  first = decode_rgb(encoded_records(source, [0])[0][0])
  images = np.empty((n, *first.shape), np.uint8)
  labels = np.empty((n,), np.int32)

  def work(start: int) -> None:
    stop = min(n, start + _CHUNK)
    pairs = encoded_records(source, list(range(start, stop)))
    labels[start:stop] = [label for _, label in pairs]
    encoded = [image for image, _ in pairs]
    batch = None
    if first.ndim == 3 and first.shape[-1] == 3:
      batch = png_batch.decode_rgb8(encoded, *first.shape[:2])
    if batch is None:  # Not all 8-bit RGB PNGs of one size: one by one.
      batch = [decode_rgb(image) for image in encoded]
    images[start:stop] = batch

  workers = threads or host.usable_cpu_count()
  with concurrent.futures.ThreadPoolExecutor(workers) as pool:
    list(pool.map(work, range(0, n, _CHUNK)))  # list(): raise any error.
  return images, labels


def load_cifar(name: str, data_dir: str | None, threads: int | None = None):
  """CIFAR-10 or -100: ((train images, labels), (test images, labels)).

  Both splits decoded once; images uint8 [N, 32, 32, 3], labels int32.
  """
  splits: Sequence[str] = SPLITS[name]
  train, test = (
    decode_split(open_source(name, split, data_dir), threads)
    for split in splits
  )
  return train, test
