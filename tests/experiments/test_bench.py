"""Tests of experiments/bench.py and its PyTorch worker, bench_torch.py.

No timing is asserted. References: hand-written operator names and their
kinds; the HLO of the bench's step, which must hold what the bench says it
times (the launcher's step: donated state, the metrics with their norms; the
native convolution's custom calls, one per pass of each conv layer, in the
compute dtype; XLA's own convolutions otherwise); the config keys the
PyTorch twin must follow; the worker's line protocol answered by the worker
itself; where PyTorch is installed, the parameter counts of the twins
against the Flax nets they stand for and the twin's augmentation against
the padded batch.
"""

import io
import json
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments import bench
from experiments import bench_torch
import nets
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
      'quit',
    ],
    out,
  )
  replies = out.getvalue().splitlines()
  assert len(replies) == 4
  if replies[0] == 'unavailable':
    assert replies == ['unavailable'] * 4
    return
  assert replies[0].startswith('PyTorch ') and replies[1] == 'ready'
  assert float(replies[2]) > 0
  assert replies[3].startswith('error: setup')


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
