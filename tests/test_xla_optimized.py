"""The tightest numeric tolerances once more, with XLA's optimisations on.

tests/conftest.py compiles every test with most XLA optimisations off (the
suite's time is mostly compilation), so a tolerance such as 2e-5 on the
hand-written BatchNorm gradient would otherwise be confirmed on unoptimised
XLA only, while training runs optimised programs, whose fusions and
reordered reductions round differently. This runs the tests that hold
those tolerances in a child pytest with ``CONVNETS_XLA_OPTIMIZED=1``, which
makes conftest leave XLA's defaults on and check after every test that they
stayed on: the BatchNorm op and layer against autodiff and float64, the
oneDNN convolution against XLA, and weight import against torchvision and
against a numpy forward pass.
"""

import os
import pathlib
import subprocess
import sys
from xml.etree import ElementTree

import jax
import pytest

_ROOT = pathlib.Path(__file__).resolve().parents[1]
_TESTS = (
  'tests/test_xla_optimized.py::test_optimization_level_follows_the_variable',
  'tests/ops/test_normalization.py::'
  'test_batch_norm_train_matches_autodiff_of_the_composite',
  'tests/ops/test_normalization.py::'
  'test_batch_norm_train_shifted_data_large_mean',
  'tests/nets/test_norms.py::'
  'test_batch_norm_train_gradients_match_autodiff_of_the_formula',
  'tests/ops/test_native_conv.py::test_forward_and_gradients_match_lax',
  'tests/ops/test_native_conv.py::test_grad_of_grad_matches_lax',
  'tests/ops/test_native_conv.py::'
  'test_model_forward_equal_between_backends[resnext_tiny]',
  'tests/nets/test_weights.py::'
  'test_import_matches_a_forward_pass_in_torch_conventions',
  'tests/nets/test_weights.py::'
  'test_resnet18_matches_torchvision_and_exports_back',
)
# Skips the unoptimised suite makes too: this CPU has no oneDNN bfloat16
# convolution (native.supports), or the library is not built here.
_MACHINE_SKIPS = ('convolution backend:', 'oneDNN convolution unavailable')


def test_optimization_level_follows_the_variable():
  # Here: optimisations off. In the child below: proof that they were on.
  optimized = os.environ.get('CONVNETS_XLA_OPTIMIZED') == '1'
  assert jax.config.read('jax_disable_most_optimizations') is not optimized


@pytest.mark.slow
def test_tolerances_hold_with_xla_optimizations_on(tmp_path):
  report = tmp_path / 'junit.xml'
  env = {
    k: v
    for k, v in os.environ.items()
    if not k.startswith(('PYTEST_XDIST', 'PYTEST_CURRENT_TEST'))
  }
  env['CONVNETS_XLA_OPTIMIZED'] = '1'
  run = subprocess.run(
    [sys.executable, '-m', 'pytest', '-q', '-p', 'no:cacheprovider']
    + ['-p', 'no:xdist', f'--junitxml={report}', *_TESTS],
    cwd=_ROOT,
    env=env,
    capture_output=True,
    text=True,
    timeout=1800,
    check=False,
  )
  tail = run.stdout[-3000:] + run.stderr[-2000:]
  assert run.returncode == 0, tail
  cases = list(ElementTree.parse(report).getroot().iter('testcase'))
  for node in _TESTS:  # every test ran, and passed unless the CPU forbids it
    name = node.split('::')[1]
    mine = [
      c
      for c in cases
      if c.get('name') == name or c.get('name').startswith(f'{name}[')
    ]
    assert mine, f'{node} did not run:\n{tail}'
    for case in mine:
      skip = case.find('skipped')
      if skip is not None:
        assert skip.get('message', '').startswith(_MACHINE_SKIPS), (
          f'{case.get("name")} skipped: {skip.get("message")}'
        )
    assert any(c.find('skipped') is None for c in mine), f'{node} all skipped'
