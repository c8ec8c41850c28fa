"""Tests of experiments/bench.py and its PyTorch worker, bench_torch.py.

No timing is asserted. References: hand-written operator names and their
kinds, the worker's line protocol answered by the worker itself, and, where
PyTorch is installed, the parameter counts of the PyTorch twins against the
Flax nets they stand for.
"""

import io

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments import bench
from experiments import bench_torch
import nets


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


def test_machine_line_names_cpu_flags_and_load():
  line = bench.machine_line()
  assert line.startswith('CPU: ') and 'load average' in line
  assert 'avx512_bf16' in line  # either had or lacked, always said


@pytest.mark.slow
def test_worker_protocol_without_or_with_torch():
  out = io.StringIO()
  bench_torch.serve(['version', 'setup lenet5 float32 2', 'step', 'quit'], out)
  replies = out.getvalue().splitlines()
  assert len(replies) == 3
  if replies[0] == 'unavailable':
    assert replies == ['unavailable'] * 3
    return
  assert replies[0].startswith('PyTorch ') and replies[1] == 'ready'
  assert float(replies[2]) > 0


@pytest.mark.slow  # imports torch (seconds)
@pytest.mark.parametrize('name', ['lenet5', 'resnet20_cifar'])
def test_torch_twins_have_the_flax_parameter_counts(name):
  torch = pytest.importorskip('torch')
  twin = bench_torch.build(torch, name)
  count = sum(p.numel() for p in twin.parameters())
  model = nets.create(name, num_classes=10)
  x = jnp.zeros((1, *nets.default_input_shape(name)))
  params = jax.eval_shape(lambda: model.init(jax.random.key(0), x))['params']
  assert count == sum(int(np.prod(p.shape)) for p in jax.tree.leaves(params))


@pytest.mark.slow
def test_flax_step_runs_models_without_batch_stats():
  run = bench.flax_step('lenet5', 2, jnp.float32)
  run()
  assert 'ENTRY' in run.hlo
