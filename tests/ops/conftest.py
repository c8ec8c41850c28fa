"""Test setup for ops/: compile with most XLA optimisations off.

The ops tests run many small programs once each, so XLA's optimisation
passes cost more than they save (about a third of the tier's CPU time).
No test here measures speed or numerics that depend on the optimiser: every
comparison is against an independent reference with a tolerance. The flag is
process-global and not part of jax's compilation cache key, so the fixture
restores it after each test.
"""

import jax
import pytest

_FLAG = 'jax_disable_most_optimizations'


@pytest.fixture(autouse=True)
def _fast_compile():
  before = jax.config.values[_FLAG]
  jax.config.update(_FLAG, True)
  yield
  jax.config.update(_FLAG, before)
