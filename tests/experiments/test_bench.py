"""Tests of experiments/bench.py, its zoo part and its PyTorch worker.

No timing is asserted. References: hand-written operator names and their
kinds; the HLO of the bench's step, which must hold what the bench says it
times (the launcher's step: donated state, the metrics with their norms; the
native convolution's custom calls, one per pass of each conv layer, in the
compute dtype; XLA's own convolutions otherwise); the config keys the
PyTorch twin must follow; the worker's line protocol answered by the worker
itself; where PyTorch is installed, the parameter counts of the twins
against the Flax nets they stand for and the twin's augmentation against
the padded batch. The zoo part (bench_zoo.py): the registry's family list
(a family added without a zoo model fails), `jax.grad` of the model's
train-mode loss written here, the parameter counts of PyTorch's models
against the Flax nets, and hand-made medians for the summary's counts.
"""

import functools
import io
import json
import re
import subprocess
import sys

from absl import flags
from absl.testing import flagsaver
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments import bench
from experiments import bench_torch
from experiments import bench_zoo
import nets
from nets import registry
from ops import native
from ops.native import loader
from tests.nets import torch_testing

_NATIVE = ('forward', 'backward_data', 'backward_weights')


def test_torch_operator_kinds():
  assert bench_torch.kind('aten::mkldnn_convolution') == 'conv'
  assert bench_torch.kind('aten::convolution_backward') == 'conv'
  assert bench_torch.kind('aten::native_batch_norm_backward') == 'norm'
  assert bench_torch.kind('aten::copy_') == 'copy/convert'
  assert bench_torch.kind('aten::_to_copy') == 'copy/convert'
  assert bench_torch.kind('Optimizer.step#SGD.step') == 'optimizer'
  assert bench_torch.kind('aten::_foreach_add_') == 'optimizer'
  assert bench_torch.kind('aten::relu') == 'other'
  assert set(bench_torch.KINDS) == set(bench.trace_analysis.KINDS)


def test_steps_use_the_launch_recipes():
  resnet = bench.launch_config('resnet18_cifar', 'bfloat16')
  assert (resnet.optimizer, resnet.weight_decay_mode) == ('momentum', 'l2')
  assert resnet.augment.crop_padding == 4 and resnet.augment.random_flip
  assert resnet.compute_dtype == 'bfloat16'
  lenet = bench.launch_config('lenet5', 'float32')
  assert lenet.optimizer == 'adamw' and lenet.label_smoothing == 0.1
  other = bench.launch_config('mobilenet_v1', 'float32')
  assert other.model == 'mobilenet_v1'


def test_torch_recipe_has_every_key_the_twin_reads():
  recipe = bench.torch_recipe(bench.launch_config('resnet20_cifar', 'float32'))
  assert set(recipe) == set(bench_torch.RECIPE_KEYS)
  assert recipe['crop_padding'] == 4 and recipe['weight_decay'] == 1e-4
  json.loads(json.dumps(recipe, separators=(',', ':')))  # one protocol word
  config = bench.launch_config('resnet20_cifar', 'float32')
  config.augment.mixup_alpha = 0.2
  config.ema_decay = 0.99
  with pytest.raises(ValueError, match=r"\['ema_decay', 'mixup_alpha'\]"):
    bench.torch_recipe(config)


def _targets(hlo: str) -> dict[str, list[str]]:
  """{native pass: result dtypes of its custom calls} in an HLO text."""
  found = {}
  for kind in _NATIVE:
    pattern = rf'= (\w+)\[[^\n]*custom_call_target="onednn_conv_{kind}"'
    found[kind] = re.findall(pattern, hlo)
  return found


@pytest.mark.slow  # compiles four train steps
@pytest.mark.parametrize('dtype', ['float32', 'bfloat16'])
def test_bench_step_is_the_launchers_step_on_the_asked_backend(dtype):
  config = bench.launch_config('lenet5', dtype)
  xla = bench.flax_step(config, 8, impl='xla')
  metrics = xla()
  assert set(metrics) == {
    'loss',
    'accuracy',
    'lr',
    'l2_grads',
    'l2_params',
    'l2_updates',
  }
  assert all(np.isfinite(float(v)) for v in metrics.values())
  assert xla()['lr'] > metrics['lr']  # the state advanced: step 1 -> 2
  # The state is donated: its buffers are aliased to the outputs.
  assert 'input_output_alias={' in xla.hlo.splitlines()[0]
  # The recipe's augmentation: the batch zero-padded by 2 for the crop.
  assert re.search(r' pad\([^\n]*padding=0_0x2_2x2_2x0_0', xla.hlo)
  # LeNet-5's 2 conv layers: 2 forward, 2 weight gradients, 1 input
  # gradient (the first layer's input is data), all XLA's here.
  assert len(re.findall(r' convolution\(', xla.hlo)) == 5
  assert _targets(xla.hlo) == {kind: [] for kind in _NATIVE}
  assert ('bf16[' in xla.hlo) == (dtype == 'bfloat16')
  if not loader.builds(dtype):
    pytest.skip(f'oneDNN has no {dtype} convolution on this CPU')
  onednn = bench.flax_step(config, 8, impl='onednn')
  dt = {'float32': 'f32', 'bfloat16': 'bf16'}[dtype]
  assert _targets(onednn.hlo) == {
    'forward': [dt, dt],
    'backward_data': [dt],
    'backward_weights': [dt, dt],
  }
  assert ' convolution(' not in onednn.hlo


@pytest.mark.slow
def test_worker_protocol_without_or_with_torch():
  recipe = bench.torch_recipe(bench.launch_config('lenet5', 'float32'))
  word = json.dumps(recipe, separators=(',', ':'))
  out = io.StringIO()
  bench_torch.serve(
    [
      'version',
      f'setup lenet5 float32 2 {word}',
      'step',
      'setup lenet5 float32 2',  # no recipe
      f'zoo bfloat16 2 {bench_zoo.torch_spec(bench_zoo.entry("lenet5"), 64)}',
      'step',
      'zoo float32 2 {"library":"torchvision","name":"nope"}',
      'quit',
    ],
    out,
  )
  replies = out.getvalue().splitlines()
  assert len(replies) == 7
  if replies[0] == 'unavailable':
    assert replies == ['unavailable'] * 7
    return
  assert replies[0].startswith('PyTorch ') and replies[1] == 'ready'
  assert float(replies[2]) > 0
  assert replies[3].startswith('error: setup')
  assert replies[4] == 'ready' and float(replies[5]) > 0
  assert replies[6].startswith('error: zoo') and 'lacks' in replies[6]


@pytest.mark.slow  # imports torch (seconds)
@pytest.mark.parametrize('name', ['lenet5', 'resnet20_cifar'])
def test_torch_twins_have_the_flax_parameter_counts(name):
  torch = torch_testing.torch()  # fails, not skips, without the test extra
  model_kw = bench.launch_config(name, 'float32').model_kw.to_dict()
  twin = bench_torch.build(torch, name, **model_kw)
  count = sum(p.numel() for p in twin.parameters())
  model = nets.create(name, num_classes=10, **model_kw)
  x = jnp.zeros((1, *nets.default_input_shape(name)))
  params = jax.eval_shape(lambda: model.init(jax.random.key(0), x))['params']
  assert count == sum(int(np.prod(p.shape)) for p in jax.tree.leaves(params))


@pytest.mark.slow  # imports torch (seconds)
def test_torch_augment_crops_the_padded_batch_and_flips():
  torch = torch_testing.torch()  # fails, not skips, without the test extra
  torch.manual_seed(0)
  b, c, h, w, pad = 64, 2, 5, 6, 2
  x = torch.arange(b * c * h * w, dtype=torch.float32).reshape(b, c, h, w) + 1
  padded = torch.nn.functional.pad(x, (pad,) * 4)
  out = bench_torch.augment(torch, x, crop_padding=pad, random_flip=True)
  assert out.shape == x.shape
  offsets, flips = set(), 0
  for i in range(b):
    windows = {
      (oy, ox, flip)
      for oy in range(2 * pad + 1)
      for ox in range(2 * pad + 1)
      for flip in (False, True)
      if torch.equal(
        out[i],
        (lambda v: v.flip(2) if flip else v)(
          padded[i, :, oy : oy + h, ox : ox + w]
        ),
      )
    }
    assert len(windows) == 1, (i, windows)  # a window of its own example
    (oy, ox, flip) = windows.pop()
    offsets.add((oy, ox))
    flips += flip
  assert len(offsets) > 10 and 10 < flips < 54  # offsets and flips vary
  same = bench_torch.augment(torch, x, crop_padding=0, random_flip=False)
  assert torch.equal(same, x)


@pytest.mark.slow  # imports torch (seconds)
def test_torch_optimizer_follows_the_recipe():
  torch = torch_testing.torch()  # fails, not skips, without the test extra
  recipe = bench.torch_recipe(bench.launch_config('resnet20_cifar', 'float32'))
  model = bench_torch.build(torch, 'resnet20_cifar')
  opt = bench_torch.optimizer(torch, model, recipe)
  assert type(opt) is torch.optim.SGD
  decayed, plain = opt.param_groups
  assert decayed['weight_decay'] == 1e-4 and plain['weight_decay'] == 0.0
  assert all(p.ndim > 1 for p in decayed['params'])
  assert all(p.ndim == 1 for p in plain['params'])
  assert decayed['momentum'] == 0.9 and not decayed['nesterov']
  lenet = bench.torch_recipe(bench.launch_config('lenet5', 'float32'))
  opt = bench_torch.optimizer(torch, bench_torch.build(torch, 'lenet5'), lenet)
  assert type(opt) is torch.optim.AdamW
  assert opt.param_groups[0]['weight_decay'] == 0.05


def test_zoo_has_a_model_for_every_family():
  covered = {nets.family(zoo.name) for zoo in bench_zoo.ZOO}
  assert not covered & set(bench_zoo.EXCLUDED)
  assert covered | set(bench_zoo.EXCLUDED) == set(registry.FAMILIES)
  labels = {zoo.label: zoo for zoo in bench_zoo.ZOO}
  issue = ('VGG', 'ResNet', 'ResNeXt', 'DenseNet', 'GoogLeNet', 'MobileNet')
  assert set(issue + ('ShuffleNet', 'LeNet')) <= set(labels)
  for label in ('VGG', 'ResNet', 'ResNeXt', 'DenseNet', 'GoogLeNet'):
    assert labels[label].torch[0] == 'torchvision', label


def test_zoo_inputs_keep_fixed_shapes_and_resize_imagenet_nets():
  assert bench_zoo.input_shape('resnet50', 64) == (64, 64, 3)
  assert bench_zoo.input_shape('lenet5', 64) == (28, 28, 1)
  assert bench_zoo.input_shape('wrn16_8_cifar', 64) == (32, 32, 3)
  assert bench_zoo.num_classes('densenet121') == 1000
  assert bench_zoo.num_classes('lenet5') == 10
  spec = json.loads(bench_zoo.torch_spec(bench_zoo.entry('vgg11'), 48))
  assert spec == {
    'library': 'torchvision',
    'name': 'vgg11',
    'kwargs': {},
    'shape': [3, 48, 48],
    'classes': 1000,
  }
  assert set(spec) == set(bench_torch.ZOO_KEYS)
  assert bench_zoo.entry('resnet18').torch is None  # not in ZOO: no twin


def _reference_loss(model, params, batch_stats, x, labels, key):
  """Mean -log softmax(logits)[label] in train mode, written here."""
  variables = {'params': params}
  if batch_stats:
    variables['batch_stats'] = batch_stats
  logits, updates = model.apply(
    variables, x, train=True, rngs={'dropout': key}, mutable=['batch_stats']
  )
  logp = jax.nn.log_softmax(logits.astype(jnp.float32))
  picked = jnp.take_along_axis(logp, labels[:, None], axis=1)
  return -jnp.mean(picked), updates['batch_stats']


@pytest.mark.slow  # compiles a small ResNet three times
def test_zoo_jax_step_is_grad_of_the_models_loss():
  zoo = bench_zoo.entry('resnet_tiny')
  run = bench_zoo.jax_step(zoo, 'float32', 4, 64)
  (loss, stats), grads = run()
  params, batch_stats, x, labels, key = run.args
  assert x.shape == (4, 32, 32, 3) and labels.shape == (4,)
  (want, want_stats), want_grads = jax.value_and_grad(
    _reference_loss, argnums=1, has_aux=True
  )(run.model, params, batch_stats, x, labels, key)
  np.testing.assert_allclose(loss, want, rtol=1e-5)
  assert float(loss) > 0.5  # ~log 10 at initialisation
  close = functools.partial(np.testing.assert_allclose, rtol=1e-4, atol=1e-6)
  jax.tree.map(close, grads, want_grads)
  jax.tree.map(close, stats, want_stats)  # BatchNorm ran in train mode
  moved = jax.tree.map(
    lambda a, b: float(jnp.max(jnp.abs(a - b))), stats, batch_stats
  )
  assert max(jax.tree.leaves(moved)) > 1e-3
  assert max(float(jnp.max(jnp.abs(g))) for g in jax.tree.leaves(grads)) > 0
  xla = bench_zoo.jax_step(zoo, 'float32', 4, 64, impl='xla')
  (loss_xla, _), grads_xla = xla()
  np.testing.assert_allclose(loss_xla, want, rtol=1e-4)
  jax.tree.map(
    functools.partial(np.testing.assert_allclose, rtol=1e-3, atol=1e-5),
    grads_xla,
    want_grads,
  )
  assert ' convolution(' in xla.hlo and 'onednn_conv' not in xla.hlo
  if native.available():  # the default takes oneDNN for some layer
    assert 'custom_call_target="onednn_conv' in run.hlo


def test_zoo_summary_counts_the_targets():
  result = bench_zoo.Result
  results = [
    result('a', 'float32', {'default': 1.0, 'xla': 1.0, 'torch': 0.9}),
    result('b', 'float32', {'default': 1.2, 'xla': 1.0}),
    result('c', 'bfloat16', {'default': 1.0, 'xla': 2.0, 'torch': 2.0}),
    result('d', 'bfloat16', {'default': 1.04, 'xla': 1.0, 'torch': 1.0}),
  ]
  assert bench_zoo.summary_line(results) == (
    'zoo summary: default <= 1.05x xla in 3 of 4 (not: b float32); '
    'default <= 1.00x torch in 1 of 3 (not: a float32, d bfloat16)'
  )
  line = bench_zoo.model_line(bench_zoo.entry('resnet50'), results[0], 16, 64)
  assert 'resnet50 (ResNet) fwd+bwd, batch 16, 64x64x3, float32' in line
  assert '1.00x xla  1.11x torch (torchvision resnet50)' in line


@pytest.mark.parametrize(
  ('overrides', 'named'),
  [
    ({'zoo_models': ['resnet50', 'resnet_5o']}, "['resnet_5o']"),
    ({'zoo_batch': 0}, '--zoo_batch'),
  ],
)
def test_cli_rejects_bad_zoo_flags_with_one_line(overrides, named, capsys):
  if not flags.FLAGS.is_parsed():
    flags.FLAGS.mark_as_parsed()
  with (
    flagsaver.flagsaver(only=['zoo'], **overrides),
    pytest.raises(SystemExit) as exit_info,
  ):
    bench.main(['bench'])
  assert exit_info.value.code == 1
  lines = capsys.readouterr().err.splitlines()
  assert (
    len(lines) == 1 and lines[0].startswith('error: ') and named in lines[0]
  )


_TWINS = [zoo for zoo in bench_zoo.ZOO if zoo.torch]


@pytest.mark.slow  # imports torch and torchvision, builds ImageNet nets
@pytest.mark.parametrize('zoo', _TWINS, ids=[z.name for z in _TWINS])
def test_zoo_torch_models_are_the_flax_nets_and_step(zoo):
  torch = torch_testing.torch()  # fails, not skips, without the test extra
  torch_testing.torchvision()
  spec = json.loads(bench_zoo.torch_spec(zoo, 64))
  step = bench_torch.make_zoo_step(torch, spec, 'bfloat16', 2)
  count = sum(p.numel() for p in step.model.parameters())
  classes = bench_zoo.num_classes(zoo.name)
  model = nets.create(zoo.name, num_classes=classes, **zoo.model_kw)
  x = jnp.zeros((1, *bench_zoo.input_shape(zoo.name, 64)))
  params = jax.eval_shape(lambda: model.init(jax.random.key(0), x))['params']
  assert count == sum(int(np.prod(p.shape)) for p in jax.tree.leaves(params))
  loss = step()
  assert loss.dtype == torch.float32 and torch.isfinite(loss)
  grads = [p.grad for p in step.model.parameters()]
  assert all(g is not None and torch.isfinite(g).all() for g in grads)
  assert step.model.training
  if any(isinstance(m, torch.nn.Dropout) for m in step.model.modules()):
    return  # a new dropout mask: the next gradients differ anyway
  first = [g.clone() for g in grads]
  step()  # the gradients are dropped between steps, not accumulated
  for g, p in zip(first, step.model.parameters(), strict=True):
    torch.testing.assert_close(p.grad, g)


@pytest.mark.slow  # a child process that imports torch and torchvision
def test_torch_worker_never_imports_jax():
  spec = bench_zoo.torch_spec(bench_zoo.entry('resnet50'), 32)
  code = (
    'import io, sys\n'
    'from experiments import bench_torch\n'
    'out = io.StringIO()\n'
    f'bench_torch.serve([{f"zoo float32 2 {spec}"!r}, "step"], out)\n'
    'print(out.getvalue().split()[0], "jax" in sys.modules)\n'
  )
  proc = subprocess.run(
    [sys.executable, '-c', code],
    capture_output=True,
    text=True,
    timeout=300,
    check=True,
    cwd=bench_zoo.__file__.rsplit('/experiments/', 1)[0],
  )
  assert proc.stdout.split()[-1] == 'False', proc.stdout
  assert proc.stdout.split()[0] in ('ready', 'unavailable'), proc.stdout
