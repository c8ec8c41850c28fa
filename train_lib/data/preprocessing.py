"""Image statistics and crop geometry of CIFAR and ImageNet (no jax).

* CIFAR-10/100: uint8 [32, 32, 3] pixels, standardised per channel on
  device (train_lib.data.normalize) with the training-set statistics. The
  CIFAR-10 values are the mean and (population) standard deviation of the
  50,000 training images, mean (0.4914, 0.4822, 0.4465), std (0.2470,
  0.2435, 0.2616); CIFAR-100: mean (0.5071, 0.4865, 0.4409), std (0.2673,
  0.2564, 0.2762). (The often
  copied std (0.2023, 0.1994, 0.2010) is the mean of per-image stds, not the
  dataset std.) Padding-crop, flips, cutout and mixup are done on device in
  the train step, not here.
* ImageNet: the usual ResNet recipe (He et al. 2016; Szegedy et al. 2015 for
  the crop). Training: an Inception-style random-resized crop (a box of
  8%-100% of the area and aspect ratio in [3/4, 4/3], 10 attempts, else the
  central square, `random_resized_crop_box`) resized to `image_size` x
  `image_size` with bilinear interpolation. Evaluation: resize the shorter
  side to `image_size / 0.875` (256 for 224), then take the central
  `image_size` square (`resize_shorter_side`, `center_crop`: the full-size
  reference of `jpeg_crop.eval_crop`). Both are then standardised on device
  with the ImageNet statistics mean (0.485, 0.456, 0.406), std (0.229, 0.224,
  0.225). The crops themselves are made from the JPEG bytes by `jpeg_crop`;
  the horizontal flip is left to the train step on device, like every other
  augmentation.
"""

import math

import numpy as np
from PIL import Image

from train_lib.data.base import as_rgb

CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)
CIFAR100_MEAN = (0.5071, 0.4865, 0.4409)
CIFAR100_STD = (0.2673, 0.2564, 0.2762)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
EVAL_CROP_FRACTION = 0.875  # 224 / 256

STATS = {
  'cifar10': (CIFAR10_MEAN, CIFAR10_STD),
  'cifar100': (CIFAR100_MEAN, CIFAR100_STD),
  'imagenet2012': (IMAGENET_MEAN, IMAGENET_STD),
}


def resize_shorter_side(image: np.ndarray, size: int) -> np.ndarray:
  """Resizes so that the shorter side is `size`, keeping the aspect ratio."""
  pil = as_rgb(image)
  w, h = pil.size
  scale = size / min(h, w)
  new = (max(1, round(w * scale)), max(1, round(h * scale)))
  return np.asarray(pil.resize(new, Image.BILINEAR))


def center_crop(image: np.ndarray, size: int) -> np.ndarray:
  """The central `size` x `size` window of an image at least that large."""
  h, w = image.shape[:2]
  if h < size or w < size:
    raise ValueError(f'cannot crop {size}x{size} from a {h}x{w} image.')
  top, left = (h - size) // 2, (w - size) // 2
  return image[top : top + size, left : left + size]


def random_resized_crop_box(
  rng: np.random.Generator,
  height: int,
  width: int,
  *,
  area_range: tuple[float, float] = (0.08, 1.0),
  ratio_range: tuple[float, float] = (3 / 4, 4 / 3),
  attempts: int = 10,
) -> tuple[int, int, int, int]:
  """An Inception-style crop box (top, left, h, w) inside the image.

  Area fraction uniform in `area_range`, aspect ratio w/h log-uniform in
  `ratio_range`; when no attempt fits, the central square is used.
  """
  area = height * width
  log_lo, log_hi = math.log(ratio_range[0]), math.log(ratio_range[1])
  for _ in range(attempts):
    target = area * rng.uniform(*area_range)
    ratio = math.exp(rng.uniform(log_lo, log_hi))
    w = round(math.sqrt(target * ratio))
    h = round(math.sqrt(target / ratio))
    if 0 < h <= height and 0 < w <= width:
      top = int(rng.integers(0, height - h + 1))
      left = int(rng.integers(0, width - w + 1))
      return top, left, h, w
  side = min(height, width)
  return (height - side) // 2, (width - side) // 2, side, side
