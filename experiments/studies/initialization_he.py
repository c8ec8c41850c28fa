"""He et al.'s (2015) training check, for the initialization study.

Their Fig. 3: deep plain ReLU nets without BatchNorm, initialised with
Xavier's ``Var[w] = 1/n`` or with theirs, ``Var[w] = 2/n`` ("ReLU zeros out
the half of activations", as the notes put it), trained alike. At 22 layers
both converge, theirs sooner; at 30 layers the Xavier net "completely
stalls" while theirs converges.

Here: ReLU MLPs of 22 and 30 hidden layers of `WIDTH` units on MNIST-5k (an
MLP, where their nets are convolutional on ImageNet: the signal's variance
argument is the same for both), Xavier normal against He normal on every
layer, biases 0, SGD + momentum 0.9 at one constant rate for all arms, 3
seeds. Metric: the training loss (the trainer's logged mean over each
`LOG_EVERY` steps) against steps; "stalls" is measured as the fall of the
loss below ln 10, its value at a uniform output.
"""

import math

import numpy as np

from experiments.configs import mnist
from experiments.studies import report

DEPTHS = (22, 30)  # He et al.'s Fig. 3.
QUICK_DEPTHS = (30,)
INITS = {'Xavier': 'xavier_normal', 'He': 'he_normal'}
WIDTH = 128
QUICK_WIDTH = 32
# Fixed before the run: one rate for every arm (He et al. train both inits
# alike); 600 steps of 128 (19 epochs of MNIST-5k), 3 seeds.
LR = 0.01
STEPS = 600
QUICK_STEPS = 40
LOG_EVERY = 20
SEEDS = (0, 1, 2)
QUICK_SEEDS = (0,)
CHANCE_LOSS = math.log(10.0)  # Uniform output over 10 classes.
# "Completely stalls": the loss falls by less than 0.1 nat from ln 10 over
# the run (a net that learns only the class prior falls by ~0, MNIST-5k's
# classes being balanced). "Converges": a training loss below 0.5 nat by the
# end (about 85% training accuracy).
STALL_DROP = 0.1
CONVERGED_LOSS = 0.5


def config(depth: int, init: str, *, seed: int, quick: bool):
  """MNIST-5k config of one arm: a plain ReLU MLP, SGD + momentum."""
  steps = QUICK_STEPS if quick else STEPS
  cfg = mnist.get_config('mlp')
  report.plain_sgd(
    cfg, seed=seed, lr=LR, total_steps=steps, log_every_steps=LOG_EVERY
  )
  cfg.model_kw.hidden_sizes = (QUICK_WIDTH if quick else WIDTH,) * depth
  cfg.model_kw.dropout_rate = 0.0
  cfg.model_kw.activation = 'relu'
  cfg.model_kw.kernel_init = INITS[init]
  return cfg


def train_arm(depth: int, init: str, *, seed: int, quick: bool) -> dict:
  """(steps, training loss) of one arm; nan losses if it diverged."""
  from train_lib import trainer  # noqa: PLC0415 - heavy; not for --list.

  try:
    run = report.train(config(depth, init, seed=seed, quick=quick))
  except trainer.DivergedError:
    steps = QUICK_STEPS if quick else STEPS
    return {'steps': [steps], 'loss': [math.nan]}
  steps, loss = run.series('loss', 'train')
  return {'steps': list(steps), 'loss': [float(v) for v in loss]}


def run(quick: bool) -> dict[tuple[int, str], list[dict]]:
  """{(depth, init): [one dict per seed]}."""
  return {
    (depth, init): [
      train_arm(depth, init, seed=seed, quick=quick)
      for seed in (QUICK_SEEDS if quick else SEEDS)
    ]
    for depth in (QUICK_DEPTHS if quick else DEPTHS)
    for init in INITS
  }


def final_loss(arm: list[dict]) -> np.ndarray:
  """Per seed, the last logged training loss (inf if it diverged)."""
  last = np.array([r['loss'][-1] for r in arm], np.float64)
  return np.where(np.isfinite(last), last, np.inf)


def plot(ax, arms: dict) -> None:
  """Training loss against steps, per arm (seeds: thin lines)."""
  styles = {'Xavier': '--', 'He': '-'}
  for k, ((depth, init), runs) in enumerate(arms.items()):
    color = f'C{k}'
    for i, r in enumerate(runs):
      ax.plot(
        r['steps'],
        r['loss'],
        styles[init],
        color=color,
        lw=1.4 if i == 0 else 0.6,
        label=f'{depth} layers, {init}' if i == 0 else None,
      )
  ax.axhline(CHANCE_LOSS, color='grey', ls=':', lw=0.8, label='ln 10')
  ax.set_xlabel('step (batch 128)')
  ax.set_ylabel('training loss')
  ax.set_title('He et al.: deep ReLU MLPs\nwithout BN', fontsize=9)
  ax.legend(fontsize=7)
