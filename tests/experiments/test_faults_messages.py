"""The one-line reasons of experiments/distributed.py, from real jax logs.

The log excerpts below were written by jax 0.10.2 (jaxlib's coordination
service) in tests/experiments/test_faults_peers.py's runs: a peer killed,
the coordinator killed, a peer that never started. Fast tier.
"""

from experiments import distributed

_PEER_DIED = """\
E1202 08:06:35.142473   25739 coordination_service.cc:1549] [95] Use error \
polling to propagate the following error to all tasks: UNAVAILABLE: The \
following tasks are unhealthy (stopped sending heartbeats):
1
The tasks have crashed. Check the task logs for an earlier error.
F1202 08:06:35.144040   25750 client.h:80] Terminating process because the \
JAX distributed service detected fatal errors. absl::Status: UNAVAILABLE: \
The following tasks are unhealthy (stopped sending heartbeats):
1
"""
_COORDINATOR_DIED = """\
W1202 08:09:39.534279   29529 preemption_sync_manager.cc:147] Failed to \
retrieve preemption notice from coordination service: UNAVAILABLE: Socket \
closed
F1202 08:09:39.534417   29529 client.h:80] Terminating process because the \
JAX distributed service detected fatal errors. This most likely indicates \
that another task died.
RPC: /xla.coordination.CoordinationService/PollForError
"""
_NEVER_JOINED = """\
F1202 08:47:37.509582   28168 client.h:80] Terminating process because the \
JAX distributed service detected fatal errors. absl::Status: \
DEADLINE_EXCEEDED: Deadline Exceeded
RPC: /xla.coordination.CoordinationService/RegisterTask
*** Check failure stack trace: ***
"""


def _why(text: str, others=('1',)) -> str:
  return distributed.why_aborted(
    text,
    others=list(others),
    num_processes=len(others) + 1,
    peer_timeout_s=10,
    join_timeout_s=5,
  )


def test_a_dead_peer_is_named_with_the_timeout():
  assert _why(_PEER_DIED, others=('1', '2')).startswith(
    'process 1 of 3 stopped answering (no heartbeat for 10 s'
  )


def test_a_lost_coordinator_is_named():
  assert _why(_COORDINATOR_DIED, others=('0',)).startswith(
    'lost process 0 of 2, the coordinator'
  )


def test_a_peer_that_never_joined_is_named_when_it_can_be():
  assert _why(_NEVER_JOINED, others=('0',)) == (
    'process 0 of 2 did not join within --join_timeout_s=5 s (not started, '
    'or started with another --coordinator_address)'
  )
  assert _why(_NEVER_JOINED, others=('1', '2')).startswith(
    'one or more of processes 1, 2 of 3 did not join'
  )


def test_another_fatal_error_keeps_its_message():
  text = 'F1202 08:47:37.509582   28168 foo.cc:80] Check failed: x > 0\n'
  assert _why(text) == 'aborted: Check failed: x > 0'
  assert _why('') == 'stopped by a signal'
