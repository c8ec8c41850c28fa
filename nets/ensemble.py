"""An ensemble of diverse architectures fused by averaging probabilities.

The notes (seed 002, "Ensemble of Diverse Architecture"): the ILSVRC 2016
winner (Trimps-Soushen) fused Inception-v3/v4, Inception-ResNet-v2,
ResNet-200 and WRN-68-3 and cut the top-5 error from 3.52% (best single
model) to 2.99%. The fusion here is the plain average of the members' softmax
probabilities, ``p = 1/M sum_m softmax(f_m(x))``.

Output: ``log p`` (log of the averaged probabilities), ``[B, num_classes]``.
It behaves as logits everywhere: ``softmax(log p) = p`` exactly, so
``softmax_cross_entropy_with_integer_labels(logits=log p, ...)`` is the
cross-entropy of the fused prediction and argmax/top-k accuracy are those of
``p``. The module has the same ``init``/``apply`` API as any model
(``train``, ``'dropout'`` rng, ``'batch_stats'``); each member's variables live
under ``members_{i}`` (flax's naming of a sequence field).

``nets.create('ensemble', members=(...), ...)`` (registered in
``nets/registry.py``, which knows every name) builds members by name;
``ensemble_tiny`` fuses three tiny nets of different families for tests.
"""

from collections.abc import Sequence
import functools

import flax.linen as nn
import jax
import jax.numpy as jnp

from nets import mobilenet
from nets import shufflenet
from nets import vgg
from ops import losses


class Ensemble(nn.Module):
  """Averages the softmax outputs of its member models.

  Attributes:
    members: the member modules; each maps ``(x, train)`` to logits of the
      same number of classes.
    weights: optional non-negative fusion weights (normalised to sum 1);
      None means the plain average.
  """

  members: Sequence[nn.Module]
  weights: Sequence[float] | None = None

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    """Returns ``log`` of the (weighted) mean member probability."""
    if not self.members:
      raise ValueError('an Ensemble needs at least one member')
    weights = self.weights or (1.0,) * len(self.members)
    if len(weights) != len(self.members) or min(weights) < 0:
      raise ValueError(
        f'need one non-negative weight per member, got {tuple(weights)}'
      )
    w = jnp.asarray(weights, jnp.float32) / jnp.sum(jnp.asarray(weights))
    log_probs = []
    for member in self.members:
      logits = member(x, train=train).astype(jnp.float32)
      log_probs.append(losses.log_softmax(logits, axis=-1))
    stacked = jnp.stack(log_probs)  # [M, B, K]
    # log sum_m w_m p_m, computed stably from the log-probabilities.
    return losses.logsumexp(stacked + jnp.log(w)[:, None, None], axis=0)


def from_constructors(
  constructors: Sequence, weights: Sequence[float] | None = None, **kwargs
) -> Ensemble:
  """Builds an :class:`Ensemble` from member constructors and shared kwargs.

  Args:
    constructors: callables returning member modules (e.g. registry entries).
    weights: optional fusion weights.
    **kwargs: passed to every constructor (``num_classes``, ``dtype``).

  Returns:
    The ensemble; member ``i``'s variables are under ``members_{i}``.
  """
  members = tuple(make(**kwargs) for make in constructors)
  return Ensemble(members=members, weights=weights)


ensemble_tiny = functools.partial(
  from_constructors,
  (vgg.vgg_tiny_bn, mobilenet.mobilenet_v1_tiny, shufflenet.shufflenet_v1_tiny),
)

MODELS: dict = {'ensemble_tiny': ensemble_tiny}
