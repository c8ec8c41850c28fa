"""Sigmoid saturates and kills gradients; its outputs are not zero-centred.

Notes (seed 003, "Activation functions", sigmoid: "3 problems: 1. Saturated
neurons 'kill' the gradients 2. Sigmoid outputs are not zero-centered";
tanh: "zero centered (nice), still kills gradients when saturated"; ReLU:
"does not saturate (in +region)", "not zero-centered output", and the dead
ReLU "annoyance"; "what can we say about the gradients on w? Always all
positive or all negative").

The study probes a 10-layer MLP (`nets.create('mlp')`, each activation with
its matched init: Xavier for sigmoid and tanh, He for ReLU) on a batch of
MNIST-5k training images:
- the norm of the loss gradient for each hidden layer's kernel at
  initialisation (backprop multiplies by the activation's slope once per
  layer, and the sigmoid's slope is at most 1/4);
- the fraction of saturated units (local slope |f'(z)| < 1e-3 on every
  image of the batch; for ReLU such a unit is dead: never active), per
  layer, at initialisation and after a short training run of the same net
  through the project's trainer (SGD + momentum, same lr for all);
- the mean activation per layer (zero-centred or not), and the share of
  hidden layers whose inputs are all of one sign for every image: there
  every weight of a unit gets a gradient of the same sign on one example
  (the notes' "always all positive or all negative").

The notes blame the vanishing gradient on saturation; at a Xavier init
almost no sigmoid unit is saturated, and the gradient still shrinks layer
by layer, because the sigmoid's slope is at most 1/4 even at 0. The study
reports both numbers.
"""

import jax
import jax.numpy as jnp
import numpy as np

from experiments.configs import mnist
from experiments.studies import report
import nets
from ops import activations as act_ops
from ops import losses

CLAIM = (
  'Sigmoid units saturate and kill the gradient, so the gradient vanishes '
  'toward the input of a deep sigmoid net (much less for tanh and ReLU); '
  'sigmoid outputs are not zero-centred (tanh outputs are).'
)
SOURCE = (
  'notes, seed 003, "Activation functions": sigmoid\'s "3 problems", tanh, '
  'ReLU (dead units)'
)

ACTIVATIONS = ('sigmoid', 'tanh', 'relu')
DEPTH = 10
SATURATED_SLOPE = 1e-3  # The issue's |grad| < 1e-3.
VANISHED = 1e-2  # Layer-1 / layer-10 gradient norm below this: vanished.
LR = 0.03


def saturated_units(
  slopes: jax.Array, threshold: float = SATURATED_SLOPE
) -> jax.Array:
  """Fraction of units whose |slope| < threshold on every example.

  Args:
    slopes: local derivatives f'(z), ``[B, units]``.
    threshold: the slope below which a unit passes (almost) no gradient.

  Returns:
    The fraction of the ``units`` columns below `threshold` in every row.
  """
  below = jnp.abs(jnp.asarray(slopes)) < threshold
  return jnp.mean(jnp.all(below, axis=0))


def one_signed_rows(inputs: jax.Array) -> jax.Array:
  """Fraction of rows (examples) whose entries are all >= 0 or all <= 0.

  For such an example every weight of a unit that reads `inputs` gets a
  gradient of the same sign (dL/dw_i = delta x_i), the notes' zig-zag.
  """
  x = jnp.asarray(inputs)
  return jnp.mean(jnp.all(x >= 0, axis=1) | jnp.all(x <= 0, axis=1))


def make_probe(model, activation):
  """A jitted probe of `model`: (params, images, labels) -> per-layer stats.

  One compiled function per net, used before and after training. Its
  result maps 'grad_norm' (||dL/dW_l||), 'saturated' (fraction of units),
  'mean' (mean activation) and 'one_signed' (share of images whose
  activations, the next layer's input, are all of one sign) to ``[DEPTH]``
  arrays.
  """
  slope_fn = act_ops.get_grad(activation)
  fn = act_ops.get(activation)

  def is_hidden(module, method_name):
    name = module.name or ''  # The top module has no name.
    return method_name == '__call__' and name.startswith('fc')

  def loss_fn(params, images, labels):
    logits, state = model.apply(
      {'params': params},
      images,
      capture_intermediates=is_hidden,
      mutable=['intermediates'],
    )
    loss = losses.softmax_cross_entropy_with_integer_labels(
      logits=logits, labels=labels
    )
    return jnp.mean(loss), state['intermediates']

  @jax.jit
  def stats(params, images, labels):
    grads, inter = jax.grad(loss_fn, has_aux=True)(params, images, labels)
    out = {'grad_norm': [], 'saturated': [], 'mean': [], 'one_signed': []}
    for i in range(DEPTH):
      z = inter[f'fc{i}']['__call__'][0]  # [B, units], pre-activation
      a = fn(z)
      out['grad_norm'].append(jnp.linalg.norm(grads[f'fc{i}']['kernel']))
      out['saturated'].append(saturated_units(slope_fn(z)))
      out['mean'].append(jnp.mean(a))
      out['one_signed'].append(one_signed_rows(a))
    return {k: jnp.stack(v) for k, v in out.items()}

  def probe(params, images, labels):
    return {
      k: [float(x) for x in v]
      for k, v in jax.device_get(stats(params, images, labels)).items()
    }

  return probe


def make_config(activation, *, steps, width, seed=0):
  """MNIST-5k config of one training arm (SGD + momentum, constant lr)."""
  config = mnist.get_config('mlp')
  report.plain_sgd(
    config,
    seed=seed,
    lr=LR,
    total_steps=steps,
    log_every_steps=steps,
  )
  config.model_kw.hidden_sizes = (width,) * DEPTH
  config.model_kw.dropout_rate = 0.0
  config.model_kw.activation = activation
  return config


def _batch(n: int):
  """The first n MNIST-5k training images and labels, normalised."""
  from train_lib import data as data_lib  # noqa: PLC0415 - not for --list.

  dataset = data_lib.get_dataset(mnist.get_config('mlp').data)
  images, labels = dataset.host_arrays('train')
  return jnp.asarray(images[:n]), jnp.asarray(labels[:n])


def run(quick: bool = False) -> report.Result:
  """Probes each activation's net at init and after training.

  `quick` trains only the ReLU net (its dead units), to keep compile time
  down; the verdict rests on the probes at init.
  """
  width = 64 if quick else 128
  steps = 30 if quick else 600
  images, labels = _batch(256 if quick else 1000)
  before, after, accuracy = {}, {}, {}
  for act in ACTIVATIONS:
    config = make_config(act, steps=steps, width=width)
    model = nets.create('mlp', hidden_sizes=(width,) * DEPTH, activation=act)
    # The trainer's init key: the first of the three its seed splits into.
    init_key = jax.random.split(jax.random.key(config.seed), 3)[0]
    params = model.init({'params': init_key}, images[:1])['params']
    probe = make_probe(model, act)
    before[act] = probe(params, images, labels)
    if quick and act != 'relu':
      continue
    trained = report.train(config)
    after[act] = probe(jax.device_get(trained.state.params), images, labels)
    accuracy[act] = trained.final('accuracy')
  fig = _figure(before, after)
  return _result(fig, before, after, accuracy, width, steps, len(images))


def _figure(before, after):
  fig, (ax, bx) = report.new_figure(ncols=2)
  layers = np.arange(1, DEPTH + 1)
  for i, act in enumerate(ACTIVATIONS):
    ax.semilogy(
      layers, before[act]['grad_norm'], 'o-', ms=3, color=f'C{i}', label=act
    )
    bx.plot(
      layers,
      100 * np.array(before[act]['saturated']),
      'o--',
      ms=3,
      color=f'C{i}',
      label=f'{act}, at init',
    )
    if act not in after:
      continue
    bx.plot(
      layers,
      100 * np.array(after[act]['saturated']),
      's-',
      ms=3,
      color=f'C{i}',
      label=f'{act}, trained',
    )
  ax.set_xlabel('hidden layer (1 = next to the input)')
  ax.set_ylabel('||dL/dW|| at init (log scale)')
  ax.set_title('Gradient norm per layer at initialisation')
  ax.legend()
  bx.set_xlabel('hidden layer')
  bx.set_ylabel('saturated / dead units (%)')
  bx.set_title(f"Units with |f'(z)| < {SATURATED_SLOPE:g} on every image")
  bx.legend(fontsize=7)
  fig.suptitle(f'A {DEPTH}-layer MLP on MNIST-5k: where the gradient goes')
  return fig


def _result(fig, before, after, accuracy, width, steps, batch):
  decay = {
    a: before[a]['grad_norm'][0] / before[a]['grad_norm'][-1]
    for a in ACTIVATIONS
  }
  # Layers 2..10 read the previous layer's activations.
  mean_act = {a: float(np.mean(before[a]['mean'][:-1])) for a in ACTIVATIONS}
  one_signed = {
    a: float(np.mean(before[a]['one_signed'][:-1])) for a in ACTIVATIONS
  }
  vanishes = decay['sigmoid'] < VANISHED and all(
    decay['sigmoid'] < decay[a] / 10 for a in ('tanh', 'relu')
  )
  centred = mean_act['sigmoid'] > 0.25 and abs(mean_act['tanh']) < 0.1
  holds = bool(vanishes and centred)
  rows = []
  for a in ACTIVATIONS:
    rows.append(
      (
        a,
        decay[a],
        max(before[a]['saturated']),
        max(after[a]['saturated']) if a in after else 'not trained',
        mean_act[a],
        one_signed[a],
        accuracy.get(a, 'not trained'),
      )
    )
  verdict = (
    f'From layer {DEPTH} back to layer 1 the gradient norm shrinks by '
    f'x{decay["sigmoid"]:.1e} in the sigmoid net against '
    f'x{decay["tanh"]:.2g} (tanh) and x{decay["relu"]:.2g} (ReLU); at that '
    f'init {100 * max(before["sigmoid"]["saturated"]):.0f}% of sigmoid units '
    'are saturated, so the slope of at most 1/4, not saturation, does it. '
    f'Mean sigmoid activation {mean_act["sigmoid"]:.2f} (tanh '
    f'{mean_act["tanh"]:.2f}): '
    f'{"not zero-centred, as the notes say" if centred else "unexpected"}.'
  )
  if 'sigmoid' in accuracy:
    verdict += (
      f' Trained alike, the sigmoid net reaches {accuracy["sigmoid"]:.0%} test'
      f' accuracy (tanh {accuracy["tanh"]:.0%}, ReLU {accuracy["relu"]:.0%}).'
    )
  if not vanishes:
    verdict += ' The sigmoid gradient does NOT vanish as the notes say.'
  values = {
    'grad_decay_layer1_over_last': decay,
    'grad_norm_at_init': {a: before[a]['grad_norm'] for a in ACTIVATIONS},
    'saturated_at_init': {a: before[a]['saturated'] for a in ACTIVATIONS},
    'saturated_trained': {a: after[a]['saturated'] for a in after},
    'mean_activation': mean_act,
    'one_signed_inputs': one_signed,
    'test_accuracy': accuracy,
  }
  notes = (
    f'{DEPTH} hidden layers of {width} units; Xavier normal before sigmoid '
    'and tanh, He normal before ReLU; biases 0. Probes on the first '
    f'{batch} MNIST-5k training images.',
    f'Training: batch 128, SGD + momentum 0.9, constant lr {LR}, {steps} '
    'steps, seed 0, no regularisation.',
    'Saturated / dead: a unit whose slope is below 1e-3 on every probe '
    'image (for ReLU: never active). One-signed inputs: share of (image, '
    'layer 2..10) pairs whose input vector is all >= 0 or all <= 0.',
  )
  return report.Result(
    figure=fig,
    columns=(
      'activation',
      f'grad norm layer 1 / layer {DEPTH} (init)',
      'max saturated / dead units, init',
      'max saturated / dead units, trained',
      'mean activation (init)',
      'one-signed inputs (init)',
      'test accuracy (trained)',
    ),
    rows=rows,
    holds=holds,
    verdict=verdict,
    values=values,
    notes=notes,
  )
