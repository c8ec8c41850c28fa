r"""Benchmark: the CIFAR and ImageNet input pipelines, in images/s per core.

On the format-faithful tfds fixtures (train_lib/data/testing_fixtures.py: real
JPEGs of ImageNet's sizes, 32x32 PNGs for CIFAR), built into a temporary
directory unless --data_dir holds them already:

* one process, one thread, images per CPU-second (= per core) and per
  wall-second: reading the records (tfds' parse), the full JPEG decode, the
  training map (bytes -> uint8 224x224 random-resized crop, at reduced scale
  where the box allows, and without it for comparison) and the eval map
  (shorter side 256, central 224);
* the training pipeline (`ImagenetDataset.local_train_batches`, batches of
  32) with 0 workers (threads) and 1 and 2 spawned worker processes, and
  with the launcher's default (`num_workers=-1`, built by `get_dataset`:
  the count measured once per machine and kept in the choice cache, or
  measured now if none is kept), in images per wall-second and per core,
  timed as the measurement times them (`imagenet.measure_rate`: start-up
  excluded), and the 1 -> 2 scaling;
* CIFAR decoded once (`tfds_source.decode_split`) with 1 thread (per core)
  and with one thread per CPU;
* the host-to-device copy of a uint8 and a float32 batch of 128 crops;
* whether the input targets of issue 28 are met: the eval map >= 500
  images per CPU-s, CIFAR decode (1 thread) >= 10,000 per CPU-s, and the
  default training stream >= 350 images per wall-s per core.

  python -m experiments.bench_input      # about 1 CPU-minute (5 min loaded)
  python -m experiments.bench_input --data_dir=/tmp/fx --cifar_images=50000

The machine (CPU model, CPU count, load average before and after) is
printed with the numbers: on a shared machine they are lower bounds.
Results: README, "Input pipeline: tfds and grain".
"""

import argparse
from collections.abc import Callable, Sequence
import functools
import os
import tempfile

from absl import flags
import jax
import numpy as np

from experiments import machine
from experiments import timing
from experiments.configs import common
from train_lib import data
from train_lib.data import base
from train_lib.data import imagenet
from train_lib.data import jpeg_crop
from train_lib.data import tfds_source

SIZE = 224
BATCH = 32
# Issue 28's input targets: (what, unit, threshold).
TARGETS = {
  'eval': ('eval map', 'images per CPU-s', 500),
  'cifar': ('CIFAR-10 decode, 1 thread', 'images per CPU-s', 10_000),
  'stream': (
    'training stream, default workers',
    'images per wall-s per core',
    350,
  ),
}


def _rate(fn: Callable[[int], object], n: int, rounds: int) -> tuple:
  """(per CPU-second, per wall-second) of `rounds` passes of fn(0..n-1)."""
  fn(0)  # Warm-up: imports, first allocations.

  def passes():
    for _ in range(rounds):
      for i in range(n):
        fn(i)

  took = timing.timed(passes)
  return rounds * n / took.cpu_s, rounds * n / took.wall_s


def _row(name: str, rates: tuple) -> None:
  print(f'| {name} | {rates[0]:,.0f} | {rates[1]:,.0f} |', flush=True)


def bench_maps(data_dir: str, rounds: int) -> float:
  """One thread: reading, decoding and the two maps, per CPU-second.

  Returns the eval map's images per CPU-second.
  """
  source = tfds_source.open_source('imagenet2012', 'train', data_dir)
  n = len(source)
  records = [source[i] for i in range(n)]
  jpegs = [r['image'] for r in records]
  pixels = sum(np.prod(base.open_image(j).size) for j in jpegs) / n
  kbytes = sum(len(j) for j in jpegs) / n / 1000
  print(
    f'\nImageNet fixture: {n} JPEGs, {pixels / 1000:.0f}k pixels and '
    f'{kbytes:.0f} KB on average; one thread.\n'
  )
  print('| step | images per CPU-s (per core) | images per wall-s |')
  print('| --- | ---: | ---: |')
  _row('read the record (tfds parse)', _rate(lambda i: source[i], n, rounds))
  _row(
    'full decode to RGB', _rate(lambda i: base.decode_rgb(jpegs[i]), n, rounds)
  )
  train = jpeg_crop.TrainMap(SIZE)
  full = jpeg_crop.TrainMap(SIZE, reduced=False)
  rng = lambda i: np.random.default_rng(i)  # noqa: E731
  _row(
    'train map (crop box, reduced decode, resize)',
    _rate(lambda i: train(records[i], rng(i)), n, rounds),
  )
  _row(
    'train map, full-scale decode',
    _rate(lambda i: full(records[i], rng(i)), n, rounds),
  )
  eval_rates = _rate(lambda i: jpeg_crop.eval_crop(jpegs[i], SIZE), n, rounds)
  _row('eval map (shorter side 256, centre 224)', eval_rates)
  return eval_rates[0]


def bench_workers(data_dir: str, seconds: float) -> float:
  """The training pipeline with 0, 1, 2 and the default workers.

  Returns the default's images per wall-second per core.
  """
  config = common.get_config().data  # the launcher's defaults
  config.update(name='imagenet2012', data_dir=data_dir, image_size=SIZE)
  ds = data.get_dataset(config)
  key = imagenet.workers_key(ds, BATCH)
  kept = imagenet.workers_cache(SIZE).get(key)
  chosen = ds.workers_for(BATCH)  # measures unless kept
  cache = imagenet.workers_cache(SIZE)  # read again: what was measured
  entry = cache.get(key) or {}
  when = 'in an earlier run' if kept else 'now'
  measured = ', '.join(
    f'{n}: {rate:,.0f}' for n, rate in entry.get('images_per_s', {}).items()
  )
  print(
    f'\nDefault num_workers={ds.num_workers}: {chosen}, measured {when} '
    f'(images per wall-s by workers: {measured or "-"}; kept in '
    f'{cache.path or "memory only"}).'
  )
  print(
    f'\nImageNet training batches of {BATCH} (wall clock, start-up excluded, '
    f'{seconds:g} s each).\n'
  )
  cores = machine.core_count()
  print('| workers | images per wall-s | per core |')
  print('| --- | ---: | ---: |')
  rates = {}
  for name, workers in (('0', 0), ('1', 1), ('2', 2), ('default', chosen)):
    rate = imagenet.measure_rate(
      ds, local_batch=BATCH, workers=workers, seconds=seconds
    )
    rates[name] = rate
    label = f'default (-1: {chosen})' if name == 'default' else name
    print(f'| {label} | {rate:,.0f} | {rate / cores:,.0f} |', flush=True)
  scaling = rates['2'] / rates['1'] / 2
  print(f'\nScaling 1 -> 2 workers: {scaling:.0%} of linear.')
  return rates['default'] / cores


def bench_cifar(data_dir: str) -> float:
  """CIFAR-10 decoded once; returns 1 thread's images per CPU-second."""
  source = tfds_source.open_source('cifar10', 'train', data_dir)
  n = len(source)
  print(f'\nCIFAR-10 fixture: {n} PNGs decoded once.\n')
  print('| threads | images per CPU-s | images per wall-s |')
  print('| --- | ---: | ---: |')
  per_cpu_s = {}
  for threads in sorted({1, machine.core_count()}):
    took = timing.timed(
      functools.partial(tfds_source.decode_split, source, threads)
    )
    per_cpu_s[threads] = n / took.cpu_s
    print(
      f'| {threads} | {n / took.cpu_s:,.0f} | {n / took.wall_s:,.0f} |',
      flush=True,
    )
  return per_cpu_s[1]


def print_targets(measured: dict[str, float]) -> None:
  """Issue 28's input targets against this run's numbers."""
  print(f'\nInput targets on {machine.core_count()} cores.\n')
  print('| target | unit | measured | threshold | met |')
  print('| --- | --- | ---: | ---: | --- |')
  for key, (what, unit, threshold) in TARGETS.items():
    value = measured[key]
    met = 'yes' if value >= threshold else 'no'
    print(f'| {what} | {unit} | {value:,.0f} | {threshold:,} | {met} |')


def bench_transfer(rounds: int) -> None:
  device = jax.devices()[0]
  print(f'\nHost-to-device copy of 128 crops to {device.platform}.\n')
  print('| dtype | MB | ms | GB/s |')
  print('| --- | ---: | ---: | ---: |')
  for dtype in (np.uint8, np.float32):
    batch = np.ones((128, SIZE, SIZE, 3), dtype)
    put = functools.partial(jax.device_put, batch, device)
    seconds = timing.median(put, rounds)
    print(
      f'| {np.dtype(dtype).name} | {batch.nbytes / 1e6:.1f} | '
      f'{seconds * 1e3:.2f} | {batch.nbytes / seconds / 1e9:.1f} |'
    )


def main(argv: Sequence[str] | None = None) -> None:
  """Runs the input benchmark; `argv` as sys.argv (program name first)."""
  parser = argparse.ArgumentParser(
    prog='python -m experiments.bench_input', description=__doc__.split('\n')[0]
  )
  parser.add_argument('--data_dir', help='where the fixtures are (or go)')
  parser.add_argument('--imagenet_images', type=int, default=100)
  parser.add_argument('--cifar_images', type=int, default=10_000)
  parser.add_argument('--rounds', type=int, default=3, help='passes timed')
  parser.add_argument(
    '--seconds', type=float, default=1.0, help='timed per worker count'
  )
  args = parser.parse_args(list(argv or ['bench_input'])[1:])
  if not flags.FLAGS.is_parsed():  # grain's worker start-up reads its absl
    flags.FLAGS.mark_as_parsed()  # flags; this program defines none.
  import tensorflow_datasets as tfds  # noqa: PLC0415

  # Test data, imported only by the command that builds it.
  from train_lib.data import testing_fixtures  # noqa: PLC0415

  tfds.disable_progress_bar()
  data_dir = args.data_dir or tempfile.mkdtemp(prefix='bench_input_')
  start_load = machine.load_average(digits=2)
  testing_fixtures.build_imagenet(
    data_dir, num_train=args.imagenet_images, num_validation=10
  )
  testing_fixtures.build_cifar(
    data_dir, num_train=args.cifar_images, num_test=10
  )
  print(
    f'CPU: {machine.cpu_model()}, {os.cpu_count()} CPUs '
    f'({machine.core_count()} usable); load average {start_load} (1, 5, 15 '
    'min) at the start.'
  )
  measured = {'eval': bench_maps(data_dir, args.rounds)}
  measured['stream'] = bench_workers(data_dir, args.seconds)
  measured['cifar'] = bench_cifar(data_dir)
  bench_transfer(args.rounds * 3)
  print_targets(measured)
  print(
    f'\nLoad average at the end: {machine.load_average(digits=2)}; data in '
    f'{data_dir}.'
  )


if __name__ == '__main__':
  import sys

  main(sys.argv)
