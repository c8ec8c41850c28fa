"""ImageNet's map functions: JPEG bytes -> uint8 crops, decoding less.

These run in grain's worker processes, so nothing here calls jax (workers
must never touch the accelerator: importing the package loads jax, which
starts no backend until it is called); they need numpy, Pillow,
`preprocessing`'s geometry and `base`'s image opening only.

Training (`train_crop`): the random-resized-crop box is drawn from the size
in the JPEG header (Pillow reads the header only on open) with the
element's generator, exactly as from the decoded image, so the boxes are
those of the full-decode pipeline. If the box is at least twice the output
size in both directions, the JPEG is decoded at 1/2, 1/4 or 1/8 scale in the
DCT domain (libjpeg's scaled IDCT through Pillow's `draft`), which skips
most of the decoding work; the box, scaled to match, is then resized to
`size` x `size` (bilinear with antialiasing, as `Image.resize` does), and
the result stays uint8: the /255, mean/std standardisation and the flip run
on device (the transfer is 4x smaller than float32).

Evaluation (`eval_crop`): the shorter side resized to size / 0.875 (256 for
224) and the central size x size square, done as one resize of the box of
the original image that those two steps keep (`eval_box`; the same sampling
points), with the same reduced-scale decode when the box allows (large
images).

`reduced=False` decodes at full scale: the reference that tests bound the
reduced-scale decode against.
"""

import math

import numpy as np
from PIL import Image

from train_lib.data import preprocessing
from train_lib.data.base import as_rgb
from train_lib.data.base import open_image

Box = tuple[float, float, float, float]  # (left, top, right, bottom)


def _crop_resize(image: Image.Image, box: Box, size: int, reduced: bool):
  """The `box` of `image` resized to [size, size, 3] uint8.

  With `reduced`, asks the JPEG decoder for the largest power-of-two
  reduction that keeps the box at least `size` pixels in both directions.
  """
  left, top, right, bottom = box
  if reduced and image.format == 'JPEG':
    width, height = image.size
    wanted = (
      math.ceil(width * size / (right - left)),
      math.ceil(height * size / (bottom - top)),
    )
    image.draft('RGB', wanted)  # Leaves greyscale JPEGs greyscale.
    # libjpeg's scaled output pixel j covers input pixels [j*k, (j+1)*k).
    k = round(width / image.size[0])
    box = (left / k, top / k, right / k, bottom / k)
  out = image.resize((size, size), Image.BILINEAR, box=box)
  return np.asarray(as_rgb(out))  # After the resize: fewer pixels to convert.


def train_crop(
  data: bytes, rng: np.random.Generator, size: int, *, reduced: bool = True
) -> np.ndarray:
  """Inception random-resized crop of the JPEG `data`: uint8 [size, size, 3]."""
  image = open_image(data)
  width, height = image.size
  top, left, h, w = preprocessing.random_resized_crop_box(rng, height, width)
  return _crop_resize(image, (left, top, left + w, top + h), size, reduced)


def eval_box(height: int, width: int, size: int) -> Box:
  """The box of the original image that becomes the eval crop.

  `preprocessing.resize_shorter_side` to round(size / 0.875) and then
  `preprocessing.center_crop` keep the pixels of this box: resizing the box
  alone samples the image at the same points, without resizing the rest.
  """
  short = round(size / preprocessing.EVAL_CROP_FRACTION)
  scale = short / min(height, width)
  new_h, new_w = max(1, round(height * scale)), max(1, round(width * scale))
  top, left = (new_h - size) // 2, (new_w - size) // 2
  sy, sx = height / new_h, width / new_w
  return left * sx, top * sy, (left + size) * sx, (top + size) * sy


def eval_crop(data: bytes, size: int, *, reduced: bool = True) -> np.ndarray:
  """Shorter side to size / 0.875, central square: uint8 [size, size, 3]."""
  image = open_image(data)
  width, height = image.size
  return _crop_resize(image, eval_box(height, width, size), size, reduced)


class TrainMap:
  """grain random map: record {'image': bytes, 'label'} -> uint8 crop.

  A class at module level, not a closure, so that grain can pickle it into
  its worker processes.
  """

  def __init__(self, image_size: int, reduced: bool = True):
    self.image_size, self.reduced = int(image_size), reduced

  def __call__(self, record, rng: np.random.Generator) -> dict:
    image = train_crop(
      record['image'], rng, self.image_size, reduced=self.reduced
    )
    return {'image': image, 'label': np.int32(record['label'])}


class EvalMap:
  """grain map: padded record {'image', 'label', 'mask'} -> uint8 crop."""

  def __init__(self, image_size: int, reduced: bool = True):
    self.image_size, self.reduced = int(image_size), reduced

  def __call__(self, record) -> dict:
    image = eval_crop(record['image'], self.image_size, reduced=self.reduced)
    return {
      'image': image,
      'label': np.int32(record['label']),
      'mask': record['mask'],
    }
