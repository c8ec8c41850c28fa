"""The notes' 2-layer network, "trained in about 20 lines", in JAX.

Seed 003 ("Full implementation of training a 2-layer Neural Network needs ~20
lines") trains ``y_pred = sigmoid(x w1) w2`` on random data with the squared
loss ``sum (y_pred - y)^2`` and a hand-written backward pass, with
``N, D_in, H, D_out = 64, 1000, 100, 10`` and learning rate 1e-4 for 2000
steps. The numpy loop lives, jitted, in ``ops.backprop.train_two_layer_net``
(forward pass and the notes' gradients in ``ops.backprop.two_layer_net_grads``);
this script runs it and prints the loss every 200 steps.

Run: ``python -m experiments.two_layer_net`` (a few seconds on a CPU). The loss
falls from about 3e4 to under 10. It takes no arguments: `--help` prints this
text, and anything else on the command line is one `error: ...` line and
exit status 1.
"""

from collections.abc import Sequence

from absl import app
import jax

from experiments import cli
from ops import backprop

SEED = 0
STEPS = 2000
PRINT_EVERY = 200


def main(argv: Sequence[str]) -> None:
  """Trains the network and prints the loss as it falls."""
  del argv  # cli.parse_flags refused positional arguments.
  cli.quiet_library_logs()
  history = backprop.train_two_layer_net(
    jax.random.key(SEED),
    STEPS,
    n=64,
    d_in=1000,
    hidden=100,
    d_out=10,
    lr=1e-4,
  )
  for step in range(0, STEPS, PRINT_EVERY):
    print(f'step {step:5d}  loss {history[step]:12.4f}')
  print(f'step {STEPS - 1:5d}  loss {history[-1]:12.4f}')
  print(f'loss fell by a factor of {history[0] / history[-1]:.0f}')


if __name__ == '__main__':
  app.run(main, flags_parser=cli.parse_flags)
