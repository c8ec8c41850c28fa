"""Glorot & Bengio's (2010) saturation experiment, for the saturation study.

Their Fig. 2: a net of 4 hidden layers of 1000 sigmoid units, the "standard"
init ``W ~ U[-1/sqrt(n), 1/sqrt(n)]`` (n the fan-in; their eq. 1), biases 0,
trained by plain SGD on minibatches of 10; the mean and spread of each
hidden layer's activations on 300 fixed test examples are followed during
training. Their finding: the top hidden layer saturates at once (its
activations are driven to 0) and stays there a long time, while the lower
layers stay near 0.5.

Here: the same net and init on MNIST-5k (784 inputs; Glorot & Bengio's Fig.
2 is on Shapeset-3x2, 1024 inputs, and they report MNIST too), plain SGD
(no momentum) at a constant rate on batches of 10 through the project's
trainer, 3 seeds. The trainer checkpoints every `PROBE_EVERY` steps and
`report.train` reads the checkpoints back; at each of them (and at the
init) every hidden layer is probed on the first `PROBE_IMAGES` test images:
the mean activation and the share of (example, unit) pairs whose slope
sigma'(z) = a (1 - a) is below `SLOPE_CUT`.
"""

import jax
import jax.numpy as jnp
import numpy as np

from experiments.configs import common
from experiments.configs import mnist
from experiments.studies import report
import nets

DEPTH = 4
WIDTH = 1000
QUICK_WIDTH = 200
BATCH = 10  # Glorot & Bengio's minibatch.
# Fixed before the run: 2,000 steps of 10 = 5 epochs of the 4,000 images,
# probed every 200 steps (their Fig. 2 follows the first epochs, where the
# top layer saturates at once). Rate: plain SGD at 0.1, untuned (they tuned
# theirs on validation; the issue asks for their protocol, not its rate).
STEPS = 2000
QUICK_STEPS = 40
PROBE_EVERY = 200
QUICK_PROBE_EVERY = 20
LR = 0.1
SEEDS = (0, 1, 2)
QUICK_SEEDS = (0,)
PROBE_IMAGES = 300  # Their 300 fixed test examples.
# A unit is saturated on an example when its slope is under a fifth of the
# sigmoid's peak slope 1/4: a < 0.053 or a > 0.947.
SLOPE_CUT = 0.05


def config(*, seed: int, quick: bool):
  """MNIST-5k config: 4 x 1000 sigmoid MLP, standard init, SGD, batch 10."""
  steps = QUICK_STEPS if quick else STEPS
  cfg = mnist.get_config('mlp')
  report.plain_sgd(
    cfg,
    seed=seed,
    lr=LR,
    total_steps=steps,
    batch_size=BATCH,
    log_every_steps=steps,
  )
  common.set_keys(
    cfg,
    optimizer='sgd',
    checkpoint_every_steps=QUICK_PROBE_EVERY if quick else PROBE_EVERY,
    keep_checkpoints=steps,  # Keep every one: each is a probe point.
  )
  cfg.model_kw.hidden_sizes = (QUICK_WIDTH if quick else WIDTH,) * DEPTH
  cfg.model_kw.dropout_rate = 0.0
  cfg.model_kw.activation = 'sigmoid'
  cfg.model_kw.kernel_init = 'standard_uniform'
  return cfg


def layer_stats(model, params, images) -> dict[str, np.ndarray]:
  """Per hidden layer: mean activation and share of saturated units.

  Returns:
    {'mean': [DEPTH], 'saturated': [DEPTH]}; saturated is the share of
    (example, unit) pairs with sigma'(z) = a (1 - a) < `SLOPE_CUT`.
  """
  _, acts = nets.capture_intermediates(
    model, {'params': params}, images, r'drop\d+'
  )
  a = [jnp.asarray(acts[f'drop{i}']) for i in range(DEPTH)]
  return {
    'mean': np.array([float(x.mean()) for x in a]),
    'saturated': np.array(
      [float(jnp.mean(x * (1 - x) < SLOPE_CUT)) for x in a]
    ),
  }


def train_and_probe(*, seed: int, quick: bool, images) -> dict:
  """One seed: steps, per-layer stats over training, test accuracy."""
  cfg = config(seed=seed, quick=quick)
  model = nets.create(
    'mlp',
    hidden_sizes=cfg.model_kw.hidden_sizes,
    activation='sigmoid',
    kernel_init='standard_uniform',
  )
  # The trainer's init key: the first of the three its seed splits into.
  init_key = jax.random.split(jax.random.key(seed), 3)[0]
  init = model.init({'params': init_key}, images[:1])['params']
  run = report.train(cfg, keep_checkpoints=True)
  steps = [0, *sorted(run.checkpoints)]
  stats = [layer_stats(model, init, images)] + [
    layer_stats(model, run.checkpoints[s], images) for s in steps[1:]
  ]
  return {
    'steps': steps,
    'mean': np.stack([s['mean'] for s in stats]),  # [probes, DEPTH]
    'saturated': np.stack([s['saturated'] for s in stats]),
    'accuracy': float(run.final('accuracy')),
  }


def probe_images(n: int = PROBE_IMAGES) -> jax.Array:
  """The first `n` MNIST-5k test images, as the trainer scales them."""
  from train_lib import data as data_lib  # noqa: PLC0415 - not for --list.

  dataset = data_lib.get_dataset(mnist.get_config('mlp').data)
  images, _ = dataset.host_arrays('test')
  return jnp.asarray(images[:n])


def run(quick: bool) -> list[dict]:
  """Every seed's probes over training."""
  images = probe_images()
  return [
    train_and_probe(seed=seed, quick=quick, images=images)
    for seed in (QUICK_SEEDS if quick else SEEDS)
  ]


def plot(ax, runs: list[dict]) -> None:
  """Per-layer mean activation over training (seed 0 solid, others thin)."""
  for i in range(DEPTH):
    for k, r in enumerate(runs):
      ax.plot(
        r['steps'],
        r['mean'][:, i],
        '-' if k == 0 else ':',
        color=f'C{i}',
        lw=1.5 if k == 0 else 0.8,
        label=f'layer {i + 1}' if k == 0 else None,
      )
  ax.set_ylim(-0.02, 1.0)
  ax.set_xlabel('SGD step (batch 10)')
  ax.set_ylabel('mean sigmoid activation (300 test images)')
  ax.set_title(
    'Glorot & Bengio: 4 x 1000 sigmoid\nU[-1/sqrt(n), 1/sqrt(n)] init',
    fontsize=9,
  )
  ax.legend(fontsize=7)
