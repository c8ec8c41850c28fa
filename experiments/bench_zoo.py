r"""The bench's `zoo` part: every family, default against XLA and PyTorch.

Issue 28 asks, for each family of the registry, for the step with the
default convolution choice against XLA's convolutions and against PyTorch
where torchvision has the model. `ZOO` holds one model per family (a test
fails when a family is added without one or a reason in `EXCLUDED`),
torchvision's where it has the family. For each model and compute dtype
the forward and backward pass (mean softmax cross-entropy and its
gradients in train mode: BatchNorm on batch statistics, dropout on; no
optimizer, so PyTorch's side does the same work) is timed three ways,
taking turns A B C A B C (`experiments.timing.interleaved`):

  default  impl='auto': the convolutions ops/native picks for each layer
           (oneDNN or XLA's), as in a user's run;
  xla      the same program with XLA's convolutions
           (`ops.native.auto_impl('xla')`);
  torch    PyTorch's model (torchvision's; timm's MobileNet v1, which
           torchvision lacks; the bench's LeNet-5 twin) in its own process
           (experiments/bench_torch.py: channels_last, bfloat16 by
           autocast).

Images are 64x64x3, batch 16 (`--zoo_size`, `--zoo_batch`), the small size
of the earlier measurements, for the issue's budget of about ten minutes
on two cores for both dtypes. Compiling every net twice per dtype takes
much of it, and XLA's convolutions most of the rest (ResNet-50 float32:
2.9 s a step against 0.7 s by default), so `--rounds=3` is the knob that
saves time; a pilot of LeNet-5 and ResNet-50 with `--rounds=2` took 2 min
38 s at load 3.4 (2-core AMD EPYC, shared). A net built for a fixed input
(LeNet-5 28x28x1, the CIFAR WRN 32x32x3, the small CNN 8x8x1) keeps it, and
only ImageNet nets get 1000 classes. Each model's line gives the three
medians and the ratios default/xla and default/torch; the last line counts
those that meet the issue's targets (`TARGETS`). `--zoo_profile` prints,
for each that misses one, one step's time by kind of work on every side.
`--zoo_launcher` also times the launcher's whole train step
(`experiments.bench.flax_step`) default against XLA. It is off by default:
it compiles every model twice more, and the optimizer, augmentation and
metrics it adds are the same XLA code whichever convolution runs, so they
dilute the ratio without changing what it says.
"""

import contextlib
import functools
import json
from typing import NamedTuple

from absl import flags
import jax
import jax.numpy as jnp
import numpy as np

from experiments import bench_torch
from experiments import machine
from experiments import timing
import nets
from ops import losses
from ops import native
from train_lib import step as step_lib


class ZooModel(NamedTuple):
  """A family's representative and PyTorch's model of it, if any."""

  label: str  # the family as the issue names it
  name: str  # registry name
  model_kw: dict
  torch: tuple[str, str, dict] | None  # library, name, kwargs


ZOO = (
  ZooModel('LeNet', 'lenet5', {}, ('twin', 'lenet5', {})),
  ZooModel('small CNN', 'cnn_small', {}, None),
  ZooModel('AlexNet', 'alexnet', {}, ('torchvision', 'alexnet', {})),
  ZooModel('VGG', 'vgg11', {}, ('torchvision', 'vgg11', {})),
  ZooModel(
    'GoogLeNet',
    'googlenet_torchvision',
    {},
    ('torchvision', 'googlenet', {'aux_logits': False, 'init_weights': True}),
  ),
  ZooModel('ResNet', 'resnet50', {}, ('torchvision', 'resnet50', {})),
  ZooModel(
    'ResNeXt',
    'resnext50_32x4d',
    {},
    ('torchvision', 'resnext50_32x4d', {}),
  ),
  ZooModel('WRN', 'wrn16_8_cifar', {}, None),
  ZooModel('DenseNet', 'densenet121', {}, ('torchvision', 'densenet121', {})),
  # timm's MobileNet v1 clips at 6 (tests/nets/test_weights_parity.py).
  ZooModel(
    'MobileNet',
    'mobilenet_v1',
    {'relu6': True},
    ('timm', 'mobilenetv1_100', {}),
  ),
  ZooModel('ShuffleNet', 'shufflenet_v1', {}, None),  # torchvision: v2 only
)
EXCLUDED = {
  'mlp': 'no convolutions: default and XLA are one program',
  'ensemble': 'its members are GoogLeNet, ResNet and DenseNet',
}
TARGETS = {'xla': 1.05, 'torch': 1.0}  # default / side at most this
# side: `native.auto_impl` mode; None: no override, what a user's run
# picks (impl='auto', or $CONVNETS_CONV_IMPL where set).
JAX_SIDES = {'default': None, 'xla': 'xla'}
DTYPES = {'float32': jnp.float32, 'bfloat16': jnp.bfloat16}

_MODELS = flags.DEFINE_list(
  'zoo_models', [z.name for z in ZOO], 'zoo: registry names to time.'
)
_BATCH = flags.DEFINE_integer('zoo_batch', 16, 'zoo: batch size.')
_SIZE = flags.DEFINE_integer('zoo_size', 64, "zoo: ImageNet nets' pixels.")
_PROFILE = flags.DEFINE_bool(
  'zoo_profile', False, 'zoo: profile the models that miss a target.'
)
_LAUNCHER = flags.DEFINE_bool(
  'zoo_launcher', False, 'zoo: also the launcher step, default vs XLA.'
)


class Result(NamedTuple):
  """One model and dtype: {'default'|'xla'|'torch': median seconds}."""

  name: str
  dtype: str
  medians: dict[str, float]


def entry(name: str) -> ZooModel:
  """`ZOO`'s entry for `name`, or one without PyTorch for another net."""
  for zoo in ZOO:
    if zoo.name == name:
      return zoo
  return ZooModel(nets.family(name), name, {}, None)


def input_shape(name: str, size: int) -> tuple[int, ...]:
  """(H, W, C): size x size x 3 for ImageNet nets, else the net's own."""
  shape = nets.default_input_shape(name)
  return (size, size, 3) if shape == (224, 224, 3) else shape


def num_classes(name: str) -> int:
  return 1000 if nets.default_input_shape(name) == (224, 224, 3) else 10


def loss_fn(model, params, batch_stats, x, labels, dropout_key):
  """Mean cross-entropy in train mode: (loss, updated batch statistics)."""
  logits, updates = model.apply(
    step_lib.variables(params, batch_stats),
    x,
    train=True,
    rngs={'dropout': dropout_key},
    mutable=['batch_stats'],
  )
  loss = losses.softmax_cross_entropy_with_integer_labels(
    logits=logits.astype(jnp.float32), labels=labels
  )
  return jnp.mean(loss), updates.get('batch_stats', batch_stats)


def jax_step(zoo: ZooModel, dname: str, batch: int, size: int, **kw):
  """() -> ((loss, batch statistics), gradients) of `zoo`'s net, compiled.

  Args:
    zoo: the model.
    dname: compute dtype, 'float32' or 'bfloat16' (parameters float32).
    batch: batch size; the images are standard normal, labels uniform.
    size: pixels of an ImageNet net's input (`input_shape`).
    **kw: `impl` (an `ops.native.auto_impl` mode for the convolutions,
      e.g. 'xla'; default None: the user's default), `variables` (the
      net's, to share between calls; initialised when absent).

  Returns:
    The function, with `.hlo` (the compiled program's text, for the
    profile), `.model` and `.args` (its arguments, for a reference).
  """
  impl, variables = kw.pop('impl', None), kw.pop('variables', None)
  if kw:
    raise TypeError(f'unexpected arguments {sorted(kw)}')
  model_kw = dict(zoo.model_kw)
  if dname != 'float32':
    model_kw['dtype'] = DTYPES[dname]
  classes = num_classes(zoo.name)
  model = nets.create(zoo.name, num_classes=classes, **model_kw)
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.standard_normal((batch, *input_shape(zoo.name, size))))
  x = x.astype(jnp.float32)  # what the data sets hand the step
  labels = jnp.asarray(rng.integers(0, classes, batch), jnp.int32)
  if variables is None:
    variables = init_variables(zoo, size)
  args = (variables['params'], variables.get('batch_stats', {}), x, labels)
  args += (jax.random.key(1),)  # dropout
  grad_fn = jax.value_and_grad(functools.partial(loss_fn, model), has_aux=True)
  # The convolutions are chosen at trace time, so compile here.
  with native.auto_impl(impl) if impl else contextlib.nullcontext():
    compiled = jax.jit(grad_fn).lower(*args).compile()

  def run():
    return jax.block_until_ready(compiled(*args))

  run.hlo, run.model, run.args = compiled.as_text(), model, args
  return run


def init_variables(zoo: ZooModel, size: int) -> dict:
  """The net's float32 variables (a bfloat16 net has the same ones)."""
  model = nets.create(
    zoo.name, num_classes=num_classes(zoo.name), **zoo.model_kw
  )
  x = jnp.zeros((1, *input_shape(zoo.name, size)), jnp.float32)
  return jax.jit(functools.partial(model.init, train=False))(
    {'params': jax.random.key(0)}, x
  )


def torch_spec(zoo: ZooModel, size: int) -> str:
  """bench_torch's SPEC of `zoo`'s PyTorch model, one JSON word."""
  library, name, kwargs = zoo.torch
  h, w, c = input_shape(zoo.name, size)
  spec = {
    'library': library,
    'name': name,
    'kwargs': kwargs,
    'shape': [c, h, w],
    'classes': num_classes(zoo.name),
  }
  return json.dumps(spec, separators=(',', ':'))


def ratio(result: Result, side: str) -> float | None:
  """default / side, or None when `side` was not timed."""
  if side not in result.medians:
    return None
  return result.medians['default'] / result.medians[side]


def model_line(zoo: ZooModel, result: Result, batch: int, size: int) -> str:
  """One model and dtype: the medians and the ratios."""
  h, w, c = input_shape(zoo.name, size)
  sides = '  '.join(f'{k} {v * 1e3:8.1f} ms' for k, v in result.medians.items())
  ratios = '  '.join(
    f'{ratio(result, side):.2f}x {side}'
    for side in TARGETS
    if side in result.medians
  )
  source = f' ({zoo.torch[0]} {zoo.torch[1]})' if zoo.torch else ''
  return (
    f'{zoo.name} ({zoo.label}) fwd+bwd, batch {batch}, {h}x{w}x{c}, '
    f'{result.dtype}: {sides}  {ratios}{source}'
  )


def summary_line(results: list[Result]) -> str:
  """How many (model, dtype) meet each of `TARGETS`, naming the misses."""
  parts = []
  for side, bound in TARGETS.items():
    timed = [r for r in results if side in r.medians]
    misses = [f'{r.name} {r.dtype}' for r in timed if ratio(r, side) > bound]
    line = f'default <= {bound:.2f}x {side} in {len(timed) - len(misses)}'
    line += f' of {len(timed)}'
    parts.append(line + (f' (not: {", ".join(misses)})' if misses else ''))
  return 'zoo summary: ' + '; '.join(parts)


def check_flags() -> str:
  """What is wrong with the zoo flags ('' if nothing)."""
  unknown = [m for m in _MODELS.value if m not in nets.list_models()]
  if unknown:
    return f'unknown --zoo_models values {unknown}'
  if _BATCH.value < 1 or _SIZE.value < 1:
    sizes = f'{_BATCH.value}, {_SIZE.value}'
    return f'--zoo_batch and --zoo_size must be positive, got {sizes}'
  return ''


def bench_zoo(dtypes, rounds: int, worker, *, breakdown, flax_step) -> None:
  """The zoo part with the flags' models, batch and size (module doc).

  Args:
    dtypes: compute dtype names.
    rounds: timed rounds (median).
    worker: a started `bench_torch.TorchWorker`.
    breakdown: run -> {kind: ms} of one JAX step (bench.jax_breakdown).
    flax_step: (name, dtype, batch, shape, classes, impl) -> the launcher's
      step (bench.flax_step of the model's launch config).
  """
  batch, size, results = _BATCH.value, _SIZE.value, []
  for name in _MODELS.value:
    zoo = entry(name)
    variables = init_variables(zoo, size)
    for dname in dtypes:
      runs = {
        side: jax_step(zoo, dname, batch, size, impl=impl, variables=variables)
        for side, impl in JAX_SIDES.items()
      }
      if zoo.torch and worker.available:
        try:
          worker.ask(f'zoo {dname} {batch} {torch_spec(zoo, size)}')
          runs['torch'] = lambda: float(worker.ask('step'))  # its own time
        except RuntimeError as e:  # e.g. torchvision missing: say so, go on
          print(f'  no PyTorch side: {e}', flush=True)
      result = Result(name, dname, timing.interleaved(runs, rounds))
      results.append(result)
      load = machine.load_average(minutes=(1,))
      print(
        f'{model_line(zoo, result, batch, size)} (median of {rounds}, '
        f'load {load})',
        flush=True,
      )
      missed = any((ratio(result, s) or 0) > b for s, b in TARGETS.items())
      if _PROFILE.value and missed:
        for side in ('default', 'xla'):
          print(bench_torch.kinds_line(side, breakdown(runs[side])))
        if 'torch' in runs:
          kinds = json.loads(worker.ask('profile'))
          print(bench_torch.kinds_line('torch', kinds), flush=True)
      del runs
      if _LAUNCHER.value:
        _launcher(zoo, dname, batch, size, rounds, flax_step)
  print(summary_line(results), flush=True)


def _launcher(zoo, dname, batch, size, rounds, flax_step) -> None:
  shape, classes = input_shape(zoo.name, size), num_classes(zoo.name)
  runs = {
    side: flax_step(zoo.name, dname, batch, shape, classes, impl)
    for side, impl in JAX_SIDES.items()
  }
  med = timing.interleaved(runs, rounds)
  print(
    f'  launcher step: default {med["default"] * 1e3:8.1f} ms  xla '
    f'{med["xla"] * 1e3:8.1f} ms  {med["default"] / med["xla"]:.2f}x xla',
    flush=True,
  )
