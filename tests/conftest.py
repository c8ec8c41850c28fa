"""Test setup: 8 fake CPU devices, so sharding tests run on any laptop.

The flag must be set before jax is first imported, which is why it lives here,
as does the persistent compilation cache's variable, kept off for every test,
and the convolution backend's rule, pinned for every test.
"""

import os
import tempfile

_FLAG = '--xla_force_host_platform_device_count=8'
if _FLAG not in os.environ.get('XLA_FLAGS', ''):
  os.environ['XLA_FLAGS'] = (
    os.environ.get('XLA_FLAGS', '') + ' ' + _FLAG
  ).strip()
os.environ.setdefault('JAX_PLATFORMS', 'cpu')
# conv2d(impl='auto') would time oneDNN against XLA on every convolution
# shape a test traces (ops/native/choice.py): slow, and which backend wins
# depends on the machine's load. The suite keeps the rule that needs no
# timing, oneDNN wherever it builds the dtype, here and in the launches it
# starts; tests/ops/test_conv_choice.py tests the measured choice itself.
os.environ['CONVNETS_CONV_IMPL'] = 'prefer_onednn'
# Measured choices (the input workers, a convolution test's) go to a folder
# of this session, never to the user's ~/.cache/convnets-jax/choices.
if 'CONVNETS_CHOICE_CACHE_DIR' not in os.environ:
  os.environ['CONVNETS_CHOICE_CACHE_DIR'] = tempfile.mkdtemp(
    prefix='convnets-choices-'
  )
# No test reads or fills a persistent compilation cache. jax reads this
# variable when first imported, so a user's value is dropped before that ...
os.environ.pop('JAX_COMPILATION_CACHE_DIR', None)

import jax  # noqa: E402 - after XLA_FLAGS, which jax reads when first imported.
import pytest  # noqa: E402

# ... and the launches the tests start see it empty, which turns the cache of
# experiments/main.py (its --compile_cache_dir default) off. Set after the
# import above, so this process keeps jax's default (no cache folder, which
# an empty value is not on GPUs: jax would put XLA's autotuning cache in the
# working directory). The cache's own tests pass --compile_cache_dir.
os.environ['JAX_COMPILATION_CACHE_DIR'] = ''

# No test measures speed, and every numeric check has a tolerance against an
# independent reference (bit-exactness tests compare two runs built the same
# way), so XLA compiles with most optimisations off: the suite spends most of
# its CPU time compiling many small programs once each. Optimisations fuse
# and reorder, which changes rounding, so tests/test_xla_optimized.py runs
# the tightest tolerances again in a child pytest with this variable set to
# 1, which leaves XLA's defaults on.
_OPTIMIZED = os.environ.get('CONVNETS_XLA_OPTIMIZED') == '1'
jax.config.update('jax_disable_most_optimizations', not _OPTIMIZED)


@pytest.fixture(autouse=True)
def _check_optimization_level_stays():
  yield
  assert jax.config.read('jax_disable_most_optimizations') != _OPTIMIZED, (
    "a test changed XLA's optimisation level"
  )
