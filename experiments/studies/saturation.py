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

Saturation itself is shown the way Glorot & Bengio (2010, Fig. 2) showed it
(`saturation_glorot.py`): 4 hidden layers of 1000 sigmoid units, their
"standard" init U[-1/sqrt(n), 1/sqrt(n)], SGD on minibatches of 10; the
mean activation and the share of saturated units of each layer followed
over training, on 3 seeds.

Sub-claims (thresholds fixed before the run, see the constants): the probes
at init run on 3 init seeds (t intervals over seeds; `log_t_interval` for
the gradient ratios, which spread multiplicatively); the Glorot & Bengio
part on 3 training seeds (t intervals of the per-seed extremes over
training).
"""

import jax
import jax.numpy as jnp
import numpy as np

from experiments.configs import mnist
from experiments.studies import report
from experiments.studies import saturation_glorot as glorot
from experiments.studies import verdict as verdict_lib
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
# "Much less for tanh and ReLU": the sigmoid's layer-1 / layer-10 ratio is
# at least 10x smaller than theirs.
MUCH_LESS = 0.1
NOT_CENTRED = 0.25  # Mean sigmoid output above this: not zero-centred.
CENTRED = 0.1  # |mean tanh output| below this: zero-centred.
# Glorot & Bengio's Fig. 2: the top layer's mean activation "quickly goes
# to 0"; we call it saturated below 0.1 (from 0.5 at init), and ask that
# most (over half) of its units be saturated at some point in training.
TOP_MEAN = 0.1
TOP_SATURATED = 0.5
LR = 0.03
INIT_SEEDS = (0, 1, 2)
PROTOCOL = (
  (
    'architecture',
    'Glorot & Bengio (2010, Fig. 2): MLP, 4 hidden layers of 1000 sigmoid '
    'units, U[-1/sqrt(n), 1/sqrt(n)] init; the notes: any deep sigmoid net',
    'the same 4 x 1000 sigmoid MLP and init; for the gradient at init a '
    '10 x 128 MLP per activation (Xavier for sigmoid/tanh, He for ReLU)',
    '784 inputs instead of 1024; the 10-layer probe adds the depth the '
    "notes' vanishing-gradient claim is about",
  ),
  (
    'data',
    'Shapeset-3x2 (32x32 images; their Fig. 2), MNIST among others',
    'MNIST-5k (4,000 train); probes on 300 test images (theirs: 300 test '
    'examples) and, at init, 1,000 training images',
    'offline and small',
  ),
  (
    'optimizer and learning-rate selection',
    'plain SGD, minibatch 10, rate chosen on validation',
    'plain SGD, minibatch 10, constant rate 0.1 (untuned); the 10-layer '
    'nets: SGD + momentum 0.9, rate 0.03 for all',
    'no validation search: one fixed rate, written before the run',
  ),
  (
    'metric',
    "mean (and spread) of each hidden layer's activations over training",
    'per layer over training: mean activation and the share of units with '
    "slope sigma'(z) < 0.05; at init: ||dL/dW|| per layer, mean output",
    'the saturated share makes "saturated" a number',
  ),
  (
    'budget',
    'many epochs (their Fig. 2 spans the whole run)',
    '2,000 steps of 10 (5 epochs), probed every 200; 600 steps for the '
    '10-layer nets (--quick: 40 steps, width 200)',
    'the top layer saturates within the first epoch in their figure',
  ),
  (
    'runs/seeds',
    'one run',
    '3 training seeds (Glorot & Bengio part), 3 init seeds (probes at '
    'init), 1 seed for the 10-layer training',
    'intervals over seeds',
  ),
)


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
  """Probes each activation's net at init and after training; Glorot's.

  `quick` trains only the ReLU 10-layer net (its dead units) and a narrow,
  short Glorot & Bengio run, to keep compile time down.
  """
  width = 64 if quick else 128
  steps = 30 if quick else 600
  images, labels = _batch(256 if quick else 1000)
  before, after, accuracy = {}, {}, {}
  init_seeds = {act: [] for act in ACTIVATIONS}
  for act in ACTIVATIONS:
    model = nets.create('mlp', hidden_sizes=(width,) * DEPTH, activation=act)
    probe = make_probe(model, act)
    for seed in INIT_SEEDS:
      # The trainer's init key: the first of the three its seed splits into.
      init_key = jax.random.split(jax.random.key(seed), 3)[0]
      params = model.init({'params': init_key}, images[:1])['params']
      init_seeds[act].append(probe(params, images, labels))
    before[act] = init_seeds[act][0]
    if quick and act != 'relu':
      continue
    config = make_config(act, steps=steps, width=width)
    trained = report.train(config)
    after[act] = probe(jax.device_get(trained.state.params), images, labels)
    accuracy[act] = trained.final('accuracy')
  glorot_runs = glorot.run(quick)
  fig = _figure(before, after, glorot_runs)
  return _result(
    fig, init_seeds, after, accuracy, glorot_runs, width, steps, len(images)
  )


def _figure(before, after, glorot_runs):
  fig, (ax, bx, cx) = report.new_figure(ncols=3)
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
  ax.set_title('10 layers:\ngradient norm at init', fontsize=9)
  ax.legend()
  bx.set_xlabel('hidden layer')
  bx.set_ylabel('saturated / dead units (%)')
  bx.set_title(
    f"10 layers: units with\n|f'(z)| < {SATURATED_SLOPE:g} on every image",
    fontsize=9,
  )
  bx.legend(fontsize=7)
  glorot.plot(cx, glorot_runs)
  fig.suptitle('Sigmoid MLPs on MNIST-5k: where the gradient goes')
  return fig


def _init_subclaims(init_seeds) -> list[verdict_lib.Subclaim]:
  """The gradient and zero-centring sub-claims from the probes at init."""
  n = len(INIT_SEEDS)
  decay = {
    a: [r['grad_norm'][0] / r['grad_norm'][-1] for r in init_seeds[a]]
    for a in ACTIVATIONS
  }
  # Layers 2..10 read the previous layer's activations.
  mean = {
    a: [float(np.mean(r['mean'][:-1])) for r in init_seeds[a]]
    for a in ACTIVATIONS
  }
  log_t = f'log-t over {n} init seeds (geometric mean)'
  sig = verdict_lib.log_t_interval(decay['sigmoid'])
  rel = {
    a: verdict_lib.log_t_interval(
      np.asarray(decay['sigmoid']) / np.asarray(decay[a])
    )
    for a in ('tanh', 'relu')
  }
  sig_mean = verdict_lib.t_interval(mean['sigmoid'])
  tanh_mean = verdict_lib.t_interval(np.abs(mean['tanh']))

  def sub(claim, est, threshold, direction, interval, why):
    return verdict_lib.Subclaim(
      claim=claim,
      estimate=est[0],
      ci_low=est[1],
      ci_high=est[2],
      threshold=threshold,
      direction=direction,
      seeds=n,
      interval=interval,
      threshold_why=why,
    )

  return [
    sub(
      'The gradient vanishes toward the input of a deep (10-layer) sigmoid '
      'net: ||dL/dW|| of layer 1 over layer 10 at init.',
      sig,
      VANISHED,
      'below',
      log_t,
      '"vanishes": below 1e-2 (a hundredfold loss over 10 layers)',
    ),
    *[
      sub(
        f"It vanishes much less for {a}: the sigmoid's layer-1 / layer-10 "
        f"ratio over {a}'s.",
        rel[a],
        MUCH_LESS,
        'below',
        f'{log_t}, per-seed ratio of ratios (same seeds)',
        '"much less": at least 10x',
      )
      for a in ('tanh', 'relu')
    ],
    sub(
      'Sigmoid outputs are not zero-centred (mean output, layers 1-9).',
      sig_mean,
      NOT_CENTRED,
      'above',
      f't over {n} init seeds',
      'not zero-centred: a mean above 0.25, half way to the 0.5 of a '
      'sigmoid at 0',
    ),
    sub(
      'Tanh outputs are zero-centred (|mean output|, layers 1-9).',
      tanh_mean,
      CENTRED,
      'below',
      f't over {n} init seeds',
      '"zero centered": |mean| below 0.1',
    ),
  ]


def _glorot_subclaims(runs) -> list[verdict_lib.Subclaim]:
  """Glorot & Bengio's Fig. 2: the top hidden layer saturates."""
  n = len(runs)
  top_mean = verdict_lib.t_interval([r['mean'][:, -1].min() for r in runs])
  top_sat = verdict_lib.t_interval([r['saturated'][:, -1].max() for r in runs])
  interval = (
    f't over {n} training seed(s) of the per-seed extreme over training'
    if n > 1
    else 'one seed: the interval is the point'
  )
  return [
    verdict_lib.Subclaim(
      claim='Trained from the standard init, the top hidden sigmoid layer '
      "saturates: its mean activation falls toward 0 (Glorot & Bengio's "
      'Fig. 2; lowest over training).',
      estimate=top_mean[0],
      ci_low=top_mean[1],
      ci_high=top_mean[2],
      threshold=TOP_MEAN,
      direction='below',
      seeds=n,
      interval=interval,
      threshold_why='"driven to 0" (from 0.5 at init): below 0.1',
    ),
    verdict_lib.Subclaim(
      claim=f'Most of its units saturate (slope below {glorot.SLOPE_CUT:g}'
      '; highest share over training).',
      estimate=top_sat[0],
      ci_low=top_sat[1],
      ci_high=top_sat[2],
      threshold=TOP_SATURATED,
      direction='above',
      seeds=n,
      interval=interval,
      threshold_why='"saturated neurons": over half of the layer',
    ),
  ]


def _result(fig, init_seeds, after, accuracy, glorot_runs, width, steps, n):
  before = {a: init_seeds[a][0] for a in ACTIVATIONS}
  subclaims = _init_subclaims(init_seeds) + _glorot_subclaims(glorot_runs)
  decay = {
    a: float(
      np.exp(
        np.mean([np.log(r['grad_norm'][0] / r['grad_norm'][-1]) for r in rs])
      )
    )
    for a, rs in init_seeds.items()
  }
  mean_act = {a: float(np.mean(before[a]['mean'][:-1])) for a in ACTIVATIONS}
  one_signed = {
    a: float(np.mean(before[a]['one_signed'][:-1])) for a in ACTIVATIONS
  }
  rows = []
  for a in ACTIVATIONS:
    rows.append(
      (
        f'10 x {width} {a}',
        decay[a],
        max(before[a]['saturated']),
        max(after[a]['saturated']) if a in after else 'not trained',
        mean_act[a],
        one_signed[a],
        accuracy.get(a, 'not trained'),
      )
    )
  for k, r in enumerate(glorot_runs):
    rows.append(
      (
        f'4 x {glorot.WIDTH} sigmoid, U init, seed {k}',
        '-',
        float(r['saturated'][0].max()),
        float(r['saturated'][-1].max()),
        ' / '.join(f'{v:.2f}' for v in r['mean'][-1]),
        '-',
        r['accuracy'],
      )
    )
  top = glorot_runs[0]
  summary = (
    f'At init, from layer {DEPTH} back to layer 1 the gradient norm '
    f'shrinks by x{decay["sigmoid"]:.1e} in the sigmoid net against '
    f'x{decay["tanh"]:.2g} (tanh) and x{decay["relu"]:.2g} (ReLU), with '
    f'{100 * max(before["sigmoid"]["saturated"]):.0f}% of sigmoid units '
    'saturated: the slope of at most 1/4, not saturation, does it there. '
    f'Mean sigmoid output {mean_act["sigmoid"]:.2f}, tanh '
    f"{mean_act['tanh']:.2f}. In Glorot & Bengio's net the top layer's "
    f'mean activation falls to {subclaims[5].estimate:.3f} (mean over '
    f'seeds of the lowest; 0.5 at init) with up to '
    f'{100 * subclaims[6].estimate:.0f}% of its units saturated; layers '
    '1-4 end at mean '
    + ' / '.join(f'{v:.2f}' for v in top['mean'][-1])
    + ' (seed 0).'
  )
  values = {
    'grad_decay_layer1_over_last': decay,
    'grad_norm_at_init': {a: before[a]['grad_norm'] for a in ACTIVATIONS},
    'saturated_at_init': {a: before[a]['saturated'] for a in ACTIVATIONS},
    'saturated_trained': {a: after[a]['saturated'] for a in after},
    'mean_activation': mean_act,
    'one_signed_inputs': one_signed,
    'test_accuracy': accuracy,
    'glorot': [
      {
        'steps': r['steps'],
        'mean': r['mean'].tolist(),
        'saturated': r['saturated'].tolist(),
        'accuracy': r['accuracy'],
      }
      for r in glorot_runs
    ],
  }
  notes = (
    f'{DEPTH} hidden layers of {width} units; Xavier normal before sigmoid '
    'and tanh, He normal before ReLU; biases 0. Probes at init on the first '
    f'{n} MNIST-5k training images, init seeds '
    f'{", ".join(map(str, INIT_SEEDS))} (the table: seed 0, gradient ratio '
    'the geometric mean over seeds).',
    f'Training of the 10-layer nets: batch 128, SGD + momentum 0.9, '
    f'constant lr {LR}, {steps} steps, seed 0, no regularisation.',
    'Saturated / dead (10 layers): a unit whose slope is below 1e-3 on '
    'every probe image (for ReLU: never active). One-signed inputs: share '
    'of (image, layer 2..10) pairs whose input vector is all >= 0 or all '
    '<= 0.',
    f'Glorot & Bengio rows: 4 x {glorot.WIDTH} sigmoid, U[-1/sqrt(n), '
    f'1/sqrt(n)] init, plain SGD lr {glorot.LR}, batch {glorot.BATCH}, '
    f'{glorot.STEPS} steps, probed every {glorot.PROBE_EVERY} on '
    f'{glorot.PROBE_IMAGES} test images; "max saturated" columns: the '
    f'largest layer share of (image, unit) pairs with slope < '
    f'{glorot.SLOPE_CUT:g} at init and at the end; "mean activation": '
    'layers 1-4 at the end.',
  )
  return report.Result(
    figure=fig,
    columns=(
      'net',
      f'grad norm layer 1 / layer {DEPTH} (init)',
      'max saturated / dead units, init',
      'max saturated / dead units, trained',
      'mean activation',
      'one-signed inputs (init)',
      'test accuracy (trained)',
    ),
    rows=rows,
    subclaims=subclaims,
    summary=summary,
    protocol=PROTOCOL,
    values=values,
    notes=notes,
  )
