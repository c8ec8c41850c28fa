r"""Benchmark: the convolution backends on whole train steps and conv layers.

The CIFAR ResNet-18 train step (nets `resnet18_cifar`, SGD with momentum,
BatchNorm, float32 and bfloat16 compute) and each of its convolution layer
shapes (forward + both gradients), for every available backend of
`ops.convolution.conv2d` ('xla', 'onednn'), and, when PyTorch is installed,
the same network written in PyTorch (channels_last; bfloat16 by autocast)
timed in the same sitting. Every variant is compiled and warmed up first;
then the variants run interleaved, one call each per round, and each line
reports the median of the rounds and its ratio to PyTorch (or to XLA for
the layer shapes). MobileNet v1 (depthwise) and ResNeXt-50 32x4d (grouped)
steps show the convolutions where XLA:CPU is weakest.

  python -m experiments.bench            # ~10 min on 2 cores
  python -m experiments.bench --quick    # smaller batches, 3 rounds
  python -m experiments.bench --only=layers --dtypes=float32

Measured numbers and the machine: README, "Native convolution".
"""

import statistics
import sys
import time

from absl import app
from absl import flags
import jax
import jax.numpy as jnp
import numpy as np
import optax

from experiments import cli
import nets
from ops import convolution
from ops import native

_BATCH = flags.DEFINE_integer('batch', 128, 'ResNet-18 batch size.')
_ROUNDS = flags.DEFINE_integer('rounds', 5, 'Timed rounds (median).')
_DTYPES = flags.DEFINE_list(
  'dtypes', ['float32', 'bfloat16'], 'Compute dtypes.'
)
_ONLY = flags.DEFINE_list(
  'only', ['resnet18', 'layers', 'others'], 'Parts to run.'
)
_QUICK = flags.DEFINE_bool(
  'quick', False, 'Batch 32, 3 rounds, small MobileNet/ResNeXt batches.'
)

PARTS = ('resnet18', 'layers', 'others')
DTYPES = {'float32': jnp.float32, 'bfloat16': jnp.bfloat16}
# ResNet-18-CIFAR's convolutions: (H, C, O, k, stride) on H x H inputs.
RESNET18_LAYERS = (
  (32, 3, 64, 3, 1),
  (32, 64, 64, 3, 1),
  (32, 64, 128, 3, 2),
  (32, 64, 128, 1, 2),
  (16, 128, 128, 3, 1),
  (16, 128, 256, 3, 2),
  (16, 128, 256, 1, 2),
  (8, 256, 256, 3, 1),
  (8, 256, 512, 3, 2),
  (8, 256, 512, 1, 2),
  (4, 512, 512, 3, 1),
)


def backends() -> list[str]:
  """The conv2d impls to compare ('auto' mixes them per layer shape)."""
  return ['xla', 'onednn'] if native.available() else ['xla']


def flax_step(name: str, batch: int, dtype, impl: str, hw: int = 32):
  """A jitted SGD train step of registered model `name`; () -> loss."""
  model = nets.create(name, num_classes=10, dtype=dtype)
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.standard_normal((batch, hw, hw, 3)), jnp.float32)
  y = jnp.asarray(rng.integers(0, 10, batch))
  with native.auto_impl(impl):
    variables = jax.jit(lambda x: model.init(jax.random.key(0), x))(x[:1])
  tx = optax.sgd(0.1, momentum=0.9)
  state = (variables['params'], variables['batch_stats'], None)
  state = (*state[:2], tx.init(state[0]))

  def loss_fn(params, stats):
    logits, upd = model.apply(
      {'params': params, 'batch_stats': stats},
      x,
      train=True,
      mutable=['batch_stats'],
    )
    loss = optax.softmax_cross_entropy_with_integer_labels(
      logits.astype(jnp.float32), y
    ).mean()
    return loss, upd['batch_stats']

  def step(state):
    params, stats, opt = state
    grads, stats = jax.grad(loss_fn, has_aux=True)(params, stats)
    updates, opt = tx.update(grads, opt, params)
    return optax.apply_updates(params, updates), stats, opt

  with native.auto_impl(impl):
    jitted = jax.jit(step, donate_argnums=0).lower(state).compile()
  box = [state]

  def run():
    box[0] = jitted(box[0])
    jax.block_until_ready(box[0])

  return run


def conv_layer(h, c, o, k, s, batch, dtype, impl):
  """() -> forward and both gradients of one conv layer, jitted."""
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.standard_normal((batch, h, h, c)), dtype)
  w = jnp.asarray(rng.standard_normal((k, k, c, o)) / k / np.sqrt(c), dtype)

  def f(x, w):
    y = convolution.conv2d(x, w, strides=s, padding=k // 2, impl=impl)
    return jnp.sum(y.astype(jnp.float32) ** 2)

  jitted = jax.jit(jax.grad(f, (0, 1))).lower(x, w).compile()
  return lambda: jax.block_until_ready(jitted(x, w))


def _torch():
  """The torch module, or None when PyTorch is not installed."""
  try:
    import torch  # noqa: PLC0415 (optional, never a dependency)
  except ImportError:
    return None
  return torch


def torch_status() -> str:
  torch = _torch()
  if torch is None:
    return 'PyTorch: not installed (pip install torch==2.13.0 to compare)'
  return f'PyTorch {torch.__version__}, {torch.get_num_threads()} threads'


def torch_resnet18(torch):
  """ResNet-18 for CIFAR (3x3 stem, no max-pool), as nets.resnet18_cifar."""
  nn = torch.nn

  class Block(nn.Module):
    def __init__(self, cin, cout, stride):
      super().__init__()
      self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
      self.bn1 = nn.BatchNorm2d(cout)
      self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
      self.bn2 = nn.BatchNorm2d(cout)
      self.proj = None
      if stride != 1 or cin != cout:
        self.proj = nn.Sequential(
          nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout)
        )

    def forward(self, x):
      y = torch.relu(self.bn1(self.conv1(x)))
      y = self.bn2(self.conv2(y))
      return torch.relu(y + (x if self.proj is None else self.proj(x)))

  layers = [nn.Conv2d(3, 64, 3, 1, 1, bias=False), nn.BatchNorm2d(64)]
  layers.append(nn.ReLU())
  cin = 64
  for cout, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
    layers += [Block(cin, cout, stride), Block(cout, cout, 1)]
    cin = cout
  layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(512, 10)]
  return nn.Sequential(*layers)


def torch_resnet18_step(batch: int, dname: str):
  """() -> one channels_last SGD step of PyTorch's ResNet-18, or None."""
  torch = _torch()
  if torch is None:
    return None
  torch.manual_seed(0)
  model = torch_resnet18(torch).to(memory_format=torch.channels_last)
  opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
  x = torch.randn(batch, 3, 32, 32).to(memory_format=torch.channels_last)
  y = torch.randint(0, 10, (batch,))
  bf16 = dname == 'bfloat16'

  def run():
    opt.zero_grad(set_to_none=True)
    with torch.autocast('cpu', dtype=torch.bfloat16, enabled=bf16):
      loss = torch.nn.functional.cross_entropy(model(x), y)
    loss.backward()
    opt.step()

  return run


def torch_conv_layer(h, c, o, k, s, batch, dname):
  """() -> forward and both gradients of one channels_last conv, or None."""
  torch = _torch()
  if torch is None:
    return None
  dtype = torch.bfloat16 if dname == 'bfloat16' else torch.float32
  x = torch.randn(batch, c, h, h, dtype=dtype)
  x = x.to(memory_format=torch.channels_last).requires_grad_()
  w = torch.randn(o, c, k, k, dtype=dtype)
  w = w.to(memory_format=torch.channels_last).requires_grad_()

  def run():
    y = torch.nn.functional.conv2d(x, w, stride=s, padding=k // 2)
    torch.autograd.grad((y.float() ** 2).sum(), (x, w))

  return run


def time_interleaved(runs: dict, rounds: int) -> dict[str, float]:
  """Median wall seconds per variant; each runs once per round, in turn."""
  for run in runs.values():  # warm-up
    run()
  times = {name: [] for name in runs}
  for _ in range(rounds):
    for name, run in runs.items():
      start = time.perf_counter()
      run()
      times[name].append(time.perf_counter() - start)
  return {name: statistics.median(t) for name, t in times.items()}


def report(title: str, medians: dict[str, float], reference: str) -> None:
  ref = medians.get(reference)
  for name, sec in medians.items():
    ratio = f'  {sec / ref:.2f}x {reference}' if ref else ''
    print(f'{title:<34} {name:<16} {sec * 1e3:9.1f} ms{ratio}', flush=True)


def bench_resnet18(batch: int, dtypes: list[str], rounds: int) -> None:
  runs = {}
  for dname in dtypes:
    for impl in backends() + (['auto'] if native.available() else []):
      runs[f'{impl} {dname}'] = flax_step(
        'resnet18_cifar', batch, DTYPES[dname], impl
      )
    torch_run = torch_resnet18_step(batch, dname)
    if torch_run is not None:
      runs[f'torch {dname}'] = torch_run
  medians = time_interleaved(runs, rounds)
  for dname in dtypes:
    group = {k: v for k, v in medians.items() if k.endswith(dname)}
    ref = f'torch {dname}' if f'torch {dname}' in group else f'xla {dname}'
    report(f'resnet18_cifar step, batch {batch}', group, ref)


def bench_layers(batch: int, dtypes: list[str], rounds: int) -> None:
  for dname in dtypes:
    for h, c, o, k, s in RESNET18_LAYERS:
      runs = {
        impl: conv_layer(h, c, o, k, s, batch, DTYPES[dname], impl)
        for impl in backends()
      }
      torch_run = torch_conv_layer(h, c, o, k, s, batch, dname)
      if torch_run is not None:
        runs['torch'] = torch_run
      title = f'conv {h}x{h}x{c}->{o} k{k} s{s} {dname}'
      report(title, time_interleaved(runs, rounds), 'xla')


def bench_others(quick: bool, dtypes: list[str], rounds: int) -> None:
  for name, batch in (('mobilenet_v1', 64), ('resnext50_32x4d', 32)):
    batch = batch // 4 if quick else batch
    for dname in dtypes:
      runs = {
        impl: flax_step(name, batch, DTYPES[dname], impl) for impl in backends()
      }
      title = f'{name} step, batch {batch}, 32x32'
      report(f'{title} {dname}', time_interleaved(runs, rounds), 'xla')


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    cli.fail(f'unexpected arguments {argv[1:]}')
  quick = _QUICK.value
  batch = 32 if quick and not _BATCH.present else _BATCH.value
  rounds = 3 if quick and not _ROUNDS.present else _ROUNDS.value
  if batch < 1 or rounds < 1:
    cli.fail(f'--batch and --rounds must be positive, got {batch}, {rounds}')
  unknown = [d for d in _DTYPES.value if d not in DTYPES]
  unknown += [p for p in _ONLY.value if p not in PARTS]
  if unknown:
    cli.fail(f'unknown --dtypes/--only values {unknown}')
  cli.quiet_library_logs()
  print(native.backend_status(), flush=True)
  print(f'jax {jax.__version__}, {len(jax.devices())} device(s)', flush=True)
  print(torch_status(), flush=True)
  if 'resnet18' in _ONLY.value:
    bench_resnet18(batch, _DTYPES.value, rounds)
  if 'layers' in _ONLY.value:
    bench_layers(batch, _DTYPES.value, rounds)
  if 'others' in _ONLY.value:
    bench_others(quick, _DTYPES.value, rounds)


if __name__ == '__main__':
  sys.exit(app.run(main))
