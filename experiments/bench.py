r"""Benchmark: whole train steps against PyTorch, conv layers, the input.

`steps` (the default part): the train step a launch runs
(`train_lib.step.make_train_step` on the model's config in
experiments/configs: its optimizer, weight decay, label smoothing and
on-device augmentation, the metrics with their norms, the batch sharded
over the devices' mesh, the state donated) of the CIFAR ResNet-18 and He et
al.'s ResNet-20 (cifar.py) and LeNet-5 on 28x28x1 (mnist.py), batch 128, in
float32 and bfloat16 compute, against the same nets and recipe in PyTorch
(channels_last; bfloat16 by autocast; experiments/bench_torch.py). PyTorch
runs in a process of its own, as a user would run it (two OpenMP runtimes
in one process slow it down). The two sides take turns (A B A B ...), never
running at the same time; each is warmed up first and reports the median of
`--rounds` steps (`experiments.timing.interleaved`). Then one step of each
is profiled and its time split into convolutions, normalisation,
copies/converts, the optimizer and the rest (JAX:
`experiments.trace_analysis.breakdown` of a `jax.profiler` trace; PyTorch:
`torch.profiler` self times). Profiles add up thread time, so with 2
threads a kind can exceed its share of the wall time.

`layers`: ResNet-18-CIFAR's conv layer shapes, forward and both gradients,
XLA against oneDNN. `norm`: BatchNorm (training) + ReLU, forward and
backward with a fixed cotangent, on ResNet-18-CIFAR's four activation
shapes: `ops.normalization.batch_norm_train` against the autodiff of
`batch_norm_stats` + `batch_norm`. `zoo`: one model per family of the
registry, forward and backward at 64 px, batch 16, with the default
convolutions against XLA's and against PyTorch's model in its own process
(experiments/bench_zoo.py). `input`: the input pipeline
(experiments/bench_input.py).

  python -m experiments.bench                 # steps, ~10 min on 2 cores
  python -m experiments.bench --quick         # batch 32, 3 rounds
  python -m experiments.bench --only=steps --models=resnet18_cifar
  python -m experiments.bench --only=zoo      # every family (bench_zoo)
  python -m experiments.bench --only=zoo --zoo_models=lenet5,resnet50

Every line starts with the CPU model, its bfloat16/AMX flags and the load
average. Measured numbers and the machine: README, "CPU train step".
"""

import contextlib
import json
import sys
import tempfile

from absl import app
from absl import flags
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from experiments import bench_torch
from experiments import bench_zoo
from experiments import cli
from experiments import machine
from experiments import timing
from experiments import trace_analysis
from experiments.configs import cifar
from experiments.configs import common
from experiments.configs import mnist
import nets
from ops import convolution
from ops import native
from ops import normalization
from train_lib import optim
from train_lib import sharding as sharding_lib
from train_lib import state as state_lib
from train_lib import step as step_lib
from train_lib import trainer

PARTS = ('steps', 'layers', 'norm', 'zoo', 'input')
_BATCH = flags.DEFINE_integer('batch', 128, 'Batch size of the steps.')
_ROUNDS = flags.DEFINE_integer('rounds', 5, 'Timed rounds (median).')
_DTYPES = flags.DEFINE_list(
  'dtypes', ['float32', 'bfloat16'], 'Compute dtypes.'
)
_ONLY = flags.DEFINE_list(
  'only', ['steps'], 'Parts to run: ' + ', '.join(PARTS) + '.'
)
_MODELS = flags.DEFINE_list(
  'models', ['resnet18_cifar', 'resnet20_cifar', 'lenet5'], 'steps: nets.'
)
_QUICK = flags.DEFINE_bool('quick', False, 'Batch 32, 3 rounds.')

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


def launch_config(name: str, dtype_name: str) -> ml_collections.ConfigDict:
  """The config users launch model `name` with, in `dtype_name` compute.

  Its recipe in experiments/configs where it has one (the CIFAR nets:
  cifar.py; LeNet-5 and the MLP: mnist.py), else the shared defaults with
  that model: optimizer, weight decay, label smoothing and augmentation
  are what a launch runs.
  """
  if name in cifar.VARIANTS:
    config = cifar.get_config(name)
  elif name in mnist.VARIANTS:
    config = mnist.get_config(name)
  else:
    config = common.get_config()
    config.model = name
  config.compute_dtype = dtype_name
  return config


def torch_recipe(config: ml_collections.ConfigDict) -> dict:
  """What PyTorch's twin step must do to match `config`'s (bench_torch).

  Raises ValueError for what the twin does not implement (cutout, mixup,
  cutmix, gradient clipping or accumulation, EMA).
  """
  extras = {
    'cutout_size': config.augment.cutout_size,
    'mixup_alpha': config.augment.mixup_alpha,
    'cutmix_alpha': config.augment.cutmix_alpha,
    'grad_clip_norm': config.grad_clip_norm,
    'grad_accum_steps': config.grad_accum_steps - 1,
    'ema_decay': config.ema_decay,
  }
  if any(extras.values()):
    used = sorted(k for k, v in extras.items() if v)
    raise ValueError(f'the PyTorch twin does not implement {used}')
  return {
    'model_kw': config.model_kw.to_dict(),
    'optimizer': config.optimizer,
    'lr': config.lr,
    **{k: config.optimizer_kw[k] for k in ('momentum', 'b1', 'b2', 'eps')},
    'weight_decay': config.weight_decay,
    'weight_decay_mode': config.weight_decay_mode,
    'decay_all_params': config.decay_all_params,
    'label_smoothing': config.label_smoothing,
    'crop_padding': config.augment.crop_padding,
    'random_flip': config.augment.random_flip,
  }


def flax_step(
  config: ml_collections.ConfigDict,
  batch: int,
  impl: str | None = 'auto',
  *,
  shape: tuple[int, ...] | None = None,
  num_classes: int = 10,
):
  """The launcher's train step of `config` on a fixed batch; () -> metrics.

  `train_lib.step.make_train_step`, as `train_lib.trainer` builds it: the
  config's optimizer and augmentation, the metrics with their norms, the
  batch sharded over the devices' mesh and the state donated. The batch is
  standard normal float32 images (what the data sets hand the step) of
  `shape` (default: the net's own) with labels in [0, 10). `impl`: the
  `ops.native.auto_impl` mode of the convolutions (None: no override,
  what a user's run picks). The returned function has `.hlo`, the compiled
  program's text, for `trace_analysis.breakdown`.
  """
  model = trainer.create_model(config, num_classes=num_classes)
  tx, schedule = optim.create_optimizer(config)
  mesh = sharding_lib.make_mesh()
  rng = np.random.default_rng(0)
  shape = shape or nets.default_input_shape(config.model)
  data = {
    'image': rng.standard_normal((batch, *shape), np.float32),
    'label': rng.integers(0, 10, batch).astype(np.int32),
  }
  data = jax.device_put(data, sharding_lib.batch_sharding(mesh))
  # The trainer's keys: init, data (unused: the batch is fixed), loop.
  init_key, _, loop_key = jax.random.split(jax.random.key(config.seed), 3)
  with native.auto_impl(impl) if impl else contextlib.nullcontext():
    state = state_lib.create_train_state(
      model=model,
      tx=tx,
      init_key=init_key,
      example_input=jnp.zeros((1, *shape), jnp.float32),
      ema=config.ema_decay > 0,
      sharding=sharding_lib.replicated_sharding(mesh),
    )
    step = step_lib.make_train_step(model, tx, schedule, config, mesh)
    # Compiled here, where `impl` holds: a call outside the context would
    # trace again with the default.
    compiled = step.lower(state, data, loop_key).compile()
  box = [state]

  def run():
    box[0], metrics = compiled(box[0], data, loop_key)
    return jax.block_until_ready(metrics)

  run.hlo = compiled.as_text()
  return run


def jax_breakdown(run) -> dict[str, float]:
  """{kind: ms} of one step of a `flax_step` (a jax.profiler trace)."""
  with tempfile.TemporaryDirectory() as tmp:
    with jax.profiler.trace(tmp):
      run()
    return trace_analysis.breakdown(tmp, run.hlo)


def bench_steps(models, dtypes, batch: int, rounds: int, worker) -> None:
  """Each net's step, JAX against PyTorch, A B interleaved; breakdowns."""
  for name in models:
    for dname in dtypes:
      config = launch_config(name, dname)
      run = flax_step(config, batch)
      runs = {'jax': run}
      if worker.available:
        recipe = json.dumps(torch_recipe(config), separators=(',', ':'))
        worker.ask(f'setup {name} {dname} {batch} {recipe}')
        runs['torch'] = lambda: float(worker.ask('step'))  # its own time
      med = timing.interleaved(runs, rounds)
      ratio = (
        f'  {med["jax"] / med["torch"]:.2f}x torch' if 'torch' in med else ''
      )
      sides = '  '.join(f'{k} {v * 1e3:8.1f} ms' for k, v in med.items())
      print(
        f'{name} step, batch {batch}, {dname}: {sides}{ratio} '
        f'(median of {rounds}, load {machine.load_average(minutes=(1,))})',
        flush=True,
      )
      print(bench_torch.kinds_line('jax', jax_breakdown(run)), flush=True)
      if worker.available:
        print(
          bench_torch.kinds_line('torch', json.loads(worker.ask('profile')))
        )


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


def report(title: str, medians: dict[str, float], reference: str) -> None:
  ref = medians.get(reference)
  for name, sec in medians.items():
    ratio = f'  {sec / ref:.2f}x {reference}' if ref else ''
    print(f'{title:<34} {name:<16} {sec * 1e3:9.1f} ms{ratio}', flush=True)


def bench_layers(batch: int, dtypes: list[str], rounds: int) -> None:
  for dname in dtypes:
    for h, c, o, k, s in RESNET18_LAYERS:
      runs = {
        impl: conv_layer(h, c, o, k, s, batch, DTYPES[dname], impl)
        for impl in backends()
      }
      title = f'conv {h}x{h}x{c}->{o} k{k} s{s} {dname}'
      report(title, timing.interleaved(runs, rounds), 'xla')


def norm_relu(h, c, batch, dtype, composite: bool):
  """() -> BatchNorm (training) + ReLU, forward and backward, jitted."""
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.standard_normal((batch, h, h, c)), dtype)
  ct = jnp.asarray(rng.standard_normal((batch, h, h, c)), dtype)
  scale, bias = jnp.ones((c,)), jnp.zeros((c,))

  def bn(x, scale, bias):
    if composite:  # the autodiff of statistics + normalisation
      mean, var = normalization.batch_norm_stats(x)
      return normalization.batch_norm(
        x, mean=mean, var=var, scale=scale, bias=bias
      )
    return normalization.batch_norm_train(x, scale=scale, bias=bias)[0]

  def f(x, scale, bias):
    relu = lambda *a: jnp.maximum(bn(*a), 0).astype(dtype)
    return jax.vjp(relu, x, scale, bias)[1](ct)  # a fixed cotangent

  jitted = jax.jit(f).lower(x, scale, bias).compile()
  return lambda: jax.block_until_ready(jitted(x, scale, bias))


def bench_norm(batch: int, dtypes: list[str], rounds: int) -> None:
  """BatchNorm + ReLU per ResNet-18 activation: one op vs the composite."""
  for dname in dtypes:
    for h, c in ((32, 64), (16, 128), (8, 256), (4, 512)):
      runs = {
        kind: norm_relu(h, c, batch, DTYPES[dname], kind == 'composite')
        for kind in ('composite', 'one op')
      }
      title = f'batchnorm+relu {h}x{h}x{c} {dname}'
      report(title, timing.interleaved(runs, rounds), 'composite')
    print(f'load average {machine.load_average(minutes=(1,))}', flush=True)


def _run_with_worker(part, *args, **kwargs) -> None:
  """part(*args, worker, **kwargs) with a PyTorch worker, closed after."""
  worker = bench_torch.TorchWorker()
  print(
    worker.status
    if worker.available
    else 'PyTorch: not installed (pip install torch==2.13.0 to compare)',
    flush=True,
  )
  try:
    part(*args, worker, **kwargs)
  finally:
    worker.close()


def _zoo_flax_step(name, dname, batch, shape, classes, impl):
  """The launcher's step of `name` at the zoo's shape (bench_zoo)."""
  config = launch_config(name, dname)
  return flax_step(config, batch, impl, shape=shape, num_classes=classes)


def main(argv: list[str]) -> None:
  if len(argv) > 1 and 'input' not in _ONLY.value:
    cli.fail(f'unexpected arguments {argv[1:]}')
  quick = _QUICK.value
  batch = 32 if quick and not _BATCH.present else _BATCH.value
  rounds = 3 if quick and not _ROUNDS.present else _ROUNDS.value
  if batch < 1 or rounds < 1:
    cli.fail(f'--batch and --rounds must be positive, got {batch}, {rounds}')
  unknown = [d for d in _DTYPES.value if d not in DTYPES]
  unknown += [p for p in _ONLY.value if p not in PARTS]
  unknown += [m for m in _MODELS.value if m not in nets.list_models()]
  if unknown:
    cli.fail(f'unknown --dtypes/--only/--models values {unknown}')
  if 'zoo' in _ONLY.value and bench_zoo.check_flags():
    cli.fail(bench_zoo.check_flags())
  cli.quiet_library_logs()
  print(machine.cpu_line(), flush=True)
  print(native.backend_status(), flush=True)
  print(f'jax {jax.__version__}, {len(jax.devices())} device(s)', flush=True)
  if 'steps' in _ONLY.value:
    _run_with_worker(bench_steps, _MODELS.value, _DTYPES.value, batch, rounds)
  if 'layers' in _ONLY.value:
    bench_layers(batch, _DTYPES.value, rounds)
  if 'norm' in _ONLY.value:
    bench_norm(batch, _DTYPES.value, rounds)
  if 'zoo' in _ONLY.value:
    _run_with_worker(
      bench_zoo.bench_zoo,
      _DTYPES.value,
      rounds,
      breakdown=jax_breakdown,
      flax_step=_zoo_flax_step,
    )
  if 'input' in _ONLY.value:
    from experiments import bench_input  # noqa: PLC0415 (its own flags)

    bench_input.main(argv)


if __name__ == '__main__':
  sys.exit(app.run(main))
