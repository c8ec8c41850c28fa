"""Fixtures for the tests of nets/.

The tests of nets/ check shapes, counts and numerics to float32 tolerances,
never speed, so XLA compiles their programs with most optimizations off
(`jax_disable_most_optimizations`: much less compile time for the same
results); the flag is restored after the session, so other test folders
keep the default.
"""

import jax
import pytest


@pytest.fixture(scope='session', autouse=True)
def _fast_compiles():
  old = jax.config.read('jax_disable_most_optimizations')
  jax.config.update('jax_disable_most_optimizations', True)
  yield
  jax.config.update('jax_disable_most_optimizations', old)
