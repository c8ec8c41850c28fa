"""Fixtures for the tests of nets/.

The tests of nets/ check shapes, counts and numerics to float32 tolerances,
never speed, so XLA compiles their programs with most optimizations off
(`jax_disable_most_optimizations`: much less compile time, same results to
those tolerances). JAX has no context manager for this flag, so the fixture
sets it for each test of this folder and restores it after, leaving the
other folders' tests (run in the same process) at the default.
"""

import jax
import pytest

_FLAG = 'jax_disable_most_optimizations'


@pytest.fixture(autouse=True)
def _fast_compiles():
  old = jax.config.read(_FLAG)
  jax.config.update(_FLAG, True)
  yield
  jax.config.update(_FLAG, old)
