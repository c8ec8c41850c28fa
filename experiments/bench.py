r"""Benchmark: whole train steps against PyTorch, conv layers, the input.

`steps` (the default part): a jitted SGD-with-momentum train step (softmax
cross-entropy, BatchNorm in training mode) of the CIFAR ResNet-18, He et
al.'s ResNet-20 and LeNet-5 on 28x28x1, batch 128, in float32 and bfloat16
compute, against the same nets in PyTorch (channels_last; bfloat16 by
autocast; experiments/bench_torch.py). PyTorch runs in a process of its own,
as a user would run it: inside the JAX process its step was 10-20% slower
(two OpenMP runtimes). The two sides take turns (A B A B ...), never
running at the same time; each is warmed up first and reports the median of
`--rounds` steps. Then one step of each is profiled and its time split into
convolutions, normalisation, copies/converts, the optimizer and the rest
(JAX: `experiments.trace_analysis.breakdown` of a `jax.profiler` trace;
PyTorch: `torch.profiler` self times). Profiles add up thread time, so with
2 threads a kind can exceed its share of the wall time.

`layers`: ResNet-18-CIFAR's conv layer shapes, forward and both gradients,
XLA against oneDNN. `norm`: BatchNorm (training) + ReLU, forward and
backward with a fixed cotangent, on ResNet-18-CIFAR's four activation
shapes: `ops.normalization.batch_norm_train` against the autodiff of
`batch_norm_stats` + `batch_norm`. `others`: MobileNet v1 and ResNeXt-50
steps, XLA against oneDNN. `input`: the input pipeline
(experiments/bench_input.py).

  python -m experiments.bench                 # steps, ~10 min on 2 cores
  python -m experiments.bench --quick         # batch 32, 3 rounds
  python -m experiments.bench --only=steps --models=resnet18_cifar

Every line starts with the CPU model, its bfloat16/AMX flags and the load
average. Measured numbers and the machine: README, "CPU train step".
"""

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

from absl import app
from absl import flags
import jax
import jax.numpy as jnp
import numpy as np
import optax

from experiments import cli
from experiments import trace_analysis
import nets
from ops import convolution
from ops import native
from ops import normalization

PARTS = ('steps', 'layers', 'norm', 'others', 'input')
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
_QUICK = flags.DEFINE_bool(
  'quick', False, 'Batch 32, 3 rounds, small MobileNet/ResNeXt batches.'
)

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


def flax_step(name: str, batch: int, dtype, impl: str = 'auto'):
  """A jitted SGD train step of registered model `name`; () -> None.

  The returned function has `.hlo`, the compiled program's text, for
  `trace_analysis.breakdown`.
  """
  model = nets.create(name, num_classes=10, dtype=dtype)
  rng = np.random.default_rng(0)
  shape = nets.default_input_shape(name)
  x = jnp.asarray(rng.standard_normal((batch, *shape)), jnp.float32)
  y = jnp.asarray(rng.integers(0, 10, batch))
  with native.auto_impl(impl):
    variables = jax.jit(lambda x: model.init(jax.random.key(0), x))(x[:1])
  tx = optax.sgd(0.01, momentum=0.9)
  params, stats = variables['params'], variables.get('batch_stats', {})
  state = (params, stats, tx.init(params))

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
    return loss, upd.get('batch_stats', {})

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

  run.hlo = jitted.as_text()
  return run


def jax_breakdown(run) -> dict[str, float]:
  """{kind: ms} of one step of a `flax_step` (a jax.profiler trace)."""
  with tempfile.TemporaryDirectory() as tmp:
    with jax.profiler.trace(tmp):
      run()
    return trace_analysis.breakdown(tmp, run.hlo)


class TorchWorker:
  """PyTorch in its own process (experiments/bench_torch.py)."""

  def __init__(self):
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    self._proc = subprocess.Popen(
      [sys.executable, '-m', 'experiments.bench_torch'],
      stdin=subprocess.PIPE,
      stdout=subprocess.PIPE,
      stderr=subprocess.DEVNULL,  # the profiler's start/stop lines
      text=True,
      cwd=root,
    )
    self.status = self.ask('version')

  @property
  def available(self) -> bool:
    return self.status != 'unavailable'

  def ask(self, command: str) -> str:
    self._proc.stdin.write(command + '\n')
    self._proc.stdin.flush()
    reply = self._proc.stdout.readline().strip()
    if not reply or reply.startswith('error'):
      raise RuntimeError(f'PyTorch worker: {command!r} -> {reply!r}')
    return reply

  def close(self) -> None:
    self._proc.communicate('quit\n', timeout=60)


def machine_line() -> str:
  """CPU model, its bfloat16 / AMX flags, and the load average."""
  model, flags_ = 'unknown CPU', set()
  try:
    with open('/proc/cpuinfo') as f:
      for line in f:
        if line.startswith('model name') and model == 'unknown CPU':
          model = line.split(':', 1)[1].strip()
        elif line.startswith('flags') and not flags_:
          flags_ = set(line.split(':', 1)[1].split())
  except OSError:
    pass
  have = [
    f for f in ('avx2', 'avx512f', 'avx512_bf16', 'amx_bf16') if f in flags_
  ]
  missing = [f for f in ('avx512_bf16', 'amx_bf16') if f not in flags_]
  load = ', '.join(f'{v:.1f}' for v in os.getloadavg())
  return (
    f'CPU: {model}, {len(os.sched_getaffinity(0))} cores; has '
    f'{" ".join(have) or "none of avx2/avx512"}; lacks '
    f'{" ".join(missing) or "nothing"}; load average {load}'
  )


def _kinds_line(side: str, kinds: dict[str, float] | None) -> str:
  if kinds is None:
    return f'  {side:<6} (no profile)'
  parts = '  '.join(f'{k} {v:7.1f}' for k, v in kinds.items())
  return f'  {side:<6} ms/step by kind: {parts}  sum {sum(kinds.values()):.1f}'


def bench_steps(models, dtypes, batch: int, rounds: int, worker) -> None:
  """Each net's step, JAX against PyTorch, A B interleaved; breakdowns."""
  for name in models:
    for dname in dtypes:
      run = flax_step(name, batch, DTYPES[dname])
      runs = {'jax': run}
      if worker.available:
        worker.ask(f'setup {name} {dname} {batch}')
        runs['torch'] = lambda: float(worker.ask('step'))
      run()  # the worker warmed itself up
      times = {side: [] for side in runs}
      for _ in range(rounds):
        for side, fn in runs.items():
          start = time.perf_counter()
          took = fn()
          times[side].append(took or time.perf_counter() - start)
      med = {side: statistics.median(t) for side, t in times.items()}
      ratio = (
        f'  {med["jax"] / med["torch"]:.2f}x torch' if 'torch' in med else ''
      )
      sides = '  '.join(f'{k} {v * 1e3:8.1f} ms' for k, v in med.items())
      load = os.getloadavg()[0]
      print(
        f'{name} step, batch {batch}, {dname}: {sides}{ratio} '
        f'(median of {rounds}, load {load:.1f})',
        flush=True,
      )
      print(_kinds_line('jax', jax_breakdown(run)), flush=True)
      if worker.available:
        print(_kinds_line('torch', json.loads(worker.ask('profile'))))


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


def bench_layers(batch: int, dtypes: list[str], rounds: int) -> None:
  for dname in dtypes:
    for h, c, o, k, s in RESNET18_LAYERS:
      runs = {
        impl: conv_layer(h, c, o, k, s, batch, DTYPES[dname], impl)
        for impl in backends()
      }
      title = f'conv {h}x{h}x{c}->{o} k{k} s{s} {dname}'
      report(title, time_interleaved(runs, rounds), 'xla')


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
      report(title, time_interleaved(runs, rounds), 'composite')
    print(f'load average {os.getloadavg()[0]:.1f}', flush=True)


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
  cli.quiet_library_logs()
  print(machine_line(), flush=True)
  print(native.backend_status(), flush=True)
  print(f'jax {jax.__version__}, {len(jax.devices())} device(s)', flush=True)
  if 'steps' in _ONLY.value:
    worker = TorchWorker()
    print(
      worker.status
      if worker.available
      else 'PyTorch: not installed (pip install torch==2.13.0 to compare)',
      flush=True,
    )
    try:
      bench_steps(_MODELS.value, _DTYPES.value, batch, rounds, worker)
    finally:
      worker.close()
  if 'layers' in _ONLY.value:
    bench_layers(batch, _DTYPES.value, rounds)
  if 'norm' in _ONLY.value:
    bench_norm(batch, _DTYPES.value, rounds)
  if 'others' in _ONLY.value:
    bench_others(quick, _DTYPES.value, rounds)
  if 'input' in _ONLY.value:
    from experiments import bench_input  # noqa: PLC0415 (its own flags)

    bench_input.main(argv)


if __name__ == '__main__':
  sys.exit(app.run(main))
