"""Initialization: symmetry, vanishing and exploding signals, Xavier and He.

Notes (seed 002, "Initialization"): zero and "same value" initialization do
not break the symmetry (every hidden unit of a layer gets the same gradient,
so "y_1 = y_2 = y_3" forever: "need to break 'symmetry'"); a Gaussian with a
small standard deviation makes the activations of a deep net collapse to
zero, a large one saturates tanh; Xavier's ``Var[w] = 1/n`` (Glorot & Bengio
2010) matches the variance of consecutive layers, and since "ReLU zeros out
the half of activations" He et al. (2015) use ``W ~ N(0, 2/n)``.

Notes and papers differ: the notes' figures (after CS231n/I2DL) use tanh
and ``Var[w] = 1/n`` (LeCun's fan-in rule) under the name Xavier; Glorot &
Bengio's Xavier uses ``2/(n_in + n_out)``, which is what `ops.initializers.
xavier_normal` draws (the same thing here, where every hidden layer is
square).

Two parts:
1. Probe at initialisation, as the notes' figures do: Gaussian inputs
   N(0, 1) through a 10-layer MLP (`nets.create('mlp')`, equal widths), the
   standard deviation of each layer's activations for each scheme, for tanh
   and for ReLU nets.
2. A short training run of each scheme on MNIST-5k through the project's
   trainer (same SGD + momentum and learning rate for every arm): test
   accuracy, and for every hidden layer the largest distance between two of
   its units' weight vectors (incoming weights and bias), which stays
   exactly 0 when the symmetry is never broken.
"""

from collections.abc import Sequence
import math

import jax
import jax.numpy as jnp
import numpy as np

from experiments.configs import mnist
from experiments.studies import report
import nets
from nets import mlp

CLAIM = (
  'Zero and constant init never break the symmetry between hidden units; '
  'small N(0, 0.01^2) weights make activations collapse with depth and '
  'N(0, 1) saturates tanh (explodes ReLU); Xavier keeps tanh activations '
  'and He keeps ReLU activations at a steady scale over 10 layers.'
)
SOURCE = (
  'notes, seed 002, "Initialization" (zero / same value / small and large '
  'Gaussian / Var[w] = 1/n / N(0, 2/n) for ReLU); Glorot & Bengio 2010; '
  'He et al. 2015'
)

# Label -> MLP kernel_init (applied to every layer, head included).
SCHEMES = {
  'zeros': 'zeros',
  'constant 0.01': 'constant:0.01',
  'N(0, 0.01^2)': 'normal:0.01',
  'N(0, 1)': 'normal:1',
  'Xavier': 'xavier_normal',
  'He': 'he_normal',
}
DEPTH = 10
STEADY = 2.0  # "Keeps the scale": last/first layer std within this factor.
COLLAPSED = 1e-2  # "Collapses": last/first std below this.
LR = 0.01


def max_pairwise_distance(kernel: np.ndarray, bias=None) -> float:
  """Largest Euclidean distance between two units' weight vectors.

  Args:
    kernel: ``[in, out]``; unit j's incoming weights are ``kernel[:, j]``.
    bias: optional ``[out]``, appended to each unit's vector.

  Returns:
    ``max_{i, j} ||w_i - w_j||`` (0 exactly iff all units are identical).
  """
  w = np.asarray(kernel, np.float64)
  if bias is not None:
    w = np.concatenate([w, np.asarray(bias, np.float64)[None, :]], axis=0)
  best = 0.0
  for j in range(w.shape[1]):
    d = np.sqrt(((w - w[:, j : j + 1]) ** 2).sum(axis=0)).max()
    best = max(best, float(d))
  return best


def symmetry_distance(params, depth: int) -> float:
  """Max over the hidden layers fc0..fc{depth-1} of max_pairwise_distance."""
  return max(
    max_pairwise_distance(params[f'fc{i}']['kernel'], params[f'fc{i}']['bias'])
    for i in range(depth)
  )


def activation_stds(
  activation: str,
  kernel_init: str,
  *,
  width: int,
  depth: int = DEPTH,
  batch: int = 1000,
  seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
  """Per-layer activation std at init, on N(0, 1) inputs of `width` features.

  Returns:
    ``(stds [depth], last-layer activations)``.
  """
  model = nets.create(
    'mlp',
    hidden_sizes=(width,) * depth,
    activation=activation,
    kernel_init=kernel_init,
  )
  x_key, init_key = jax.random.split(jax.random.key(seed))
  x = jax.random.normal(x_key, (batch, width), jnp.float32)
  variables = model.init({'params': init_key}, x)
  _, acts = nets.capture_intermediates(model, variables, x, r'drop\d+')
  stds = np.array([float(jnp.std(acts[f'drop{i}'])) for i in range(depth)])
  return stds, np.asarray(acts[f'drop{depth - 1}'])


def make_config(activation, kernel_init, *, steps, width, seed=0):
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
  config.model_kw.kernel_init = kernel_init
  return config


def train_arm(activation, scheme, *, steps, width) -> tuple[float, ...]:
  """(test accuracy, symmetry distance, largest weight change).

  The weight change (largest |w - w_init| over the hidden kernels) is only
  measured for the deterministic schemes (zeros, constant); it is nan for
  the random ones and everything is nan if training diverged.
  """
  from train_lib import trainer  # noqa: PLC0415 - heavy; not for --list.

  spec = SCHEMES[scheme]
  config = make_config(activation, spec, steps=steps, width=width)
  try:
    run = report.train(config)
  except trainer.DivergedError:
    return math.nan, math.nan, math.nan
  params = jax.device_get(run.state.params)
  moved = math.nan
  if scheme in ('zeros', 'constant 0.01'):
    init = mlp.resolve_init(activation, spec)  # Deterministic: no key used.
    moved = max(
      float(np.abs(k - init(None, k.shape)).max())
      for k in (params[f'fc{i}']['kernel'] for i in range(DEPTH))
    )
  return run.final('accuracy'), symmetry_distance(params, DEPTH), moved


def _arms(quick: bool) -> Sequence[tuple[str, str]]:
  """The (activation, scheme) pairs that train."""
  if quick:
    return (('tanh', 'zeros'), ('tanh', 'constant 0.01'))
  return (
    ('tanh', 'zeros'),
    ('tanh', 'constant 0.01'),
    ('tanh', 'N(0, 0.01^2)'),
    ('tanh', 'N(0, 1)'),
    ('tanh', 'Xavier'),
    ('relu', 'N(0, 0.01^2)'),
    ('relu', 'N(0, 1)'),
    ('relu', 'Xavier'),
    ('relu', 'He'),
  )


# The probes --quick keeps: those its verdict needs.
_QUICK_PROBES = (
  ('tanh', 'N(0, 0.01^2)'),
  ('tanh', 'N(0, 1)'),
  ('tanh', 'Xavier'),
  ('relu', 'N(0, 0.01^2)'),
  ('relu', 'He'),
)


def run(quick: bool = False) -> report.Result:
  """Probes every scheme at init, then trains each; `quick`: fewer arms."""
  width = 64 if quick else 128
  pairs = (
    _QUICK_PROBES
    if quick
    else [(act, scheme) for act in ('tanh', 'relu') for scheme in SCHEMES]
  )
  probe = {
    (act, scheme): activation_stds(act, SCHEMES[scheme], width=width)
    for act, scheme in pairs
  }
  trained = {
    arm: train_arm(*arm, steps=60 if quick else 400, width=width)
    for arm in _arms(quick)
  }
  fig = _figure(probe, trained)
  return _result(fig, probe, trained, width, quick)


def _ratio(stds: np.ndarray) -> float:
  """Last over first layer std (nan when the first is 0)."""
  return float(stds[-1] / stds[0]) if stds[0] > 0 else math.nan


def _figure(probe, trained):
  fig, axes = report.new_figure(ncols=3)
  layers = np.arange(1, DEPTH + 1)
  for ax, act in zip(axes[:2], ('tanh', 'relu'), strict=True):
    for i, scheme in enumerate(SCHEMES):
      if (act, scheme) not in probe:
        continue
      stds = probe[act, scheme][0]
      if np.all(stds == 0):
        ax.plot([], [], color=f'C{i}', label=f'{scheme} (std = 0)')
        continue
      ax.semilogy(layers, stds, 'o-', ms=3, color=f'C{i}', label=scheme)
    ax.set_xlabel('hidden layer')
    ax.set_ylabel('std of activations (log scale)')
    ax.set_title(f'{act} net at init, N(0, 1) inputs')
    ax.legend(fontsize=7)
  cx = axes[2]
  labels, accs = [], []
  for act, scheme in trained:
    labels.append(f'{act}, {scheme}')
    accs.append(trained[act, scheme][0])  # nan: diverged
  y = np.arange(len(labels))
  cx.barh(y, np.nan_to_num(np.array(accs) * 100.0), color='C7', alpha=0.5)
  for yi, label, acc in zip(y, labels, accs, strict=True):
    text = 'diverged' if math.isnan(acc) else f'{100 * acc:.1f}%'
    cx.text(1, yi, f'{label}: {text}', va='center', fontsize=7)
  cx.set_yticks([])
  cx.invert_yaxis()
  cx.set_xlim(0, 100)
  cx.set_xlabel('MNIST-5k test accuracy (%)')
  cx.set_title('Test accuracy after training')
  fig.suptitle(
    f'Initialization of a {DEPTH}-layer MLP: signal scale and trainability'
  )
  return fig


def _result(fig, probe, trained, width, quick):
  ratios = {key: _ratio(stds) for key, (stds, _) in probe.items()}
  sat = {
    scheme: float(np.mean(np.abs(probe[act, scheme][1]) > 0.99))
    for act, scheme in probe
    if act == 'tanh'
  }
  rows = []
  for key in [*probe, *(k for k in trained if k not in probe)]:
    stds = probe[key][0] if key in probe else None
    acc, dist, moved = trained.get(key, (None, None, None))
    rows.append(
      (
        *key,
        '' if stds is None else float(stds[0]),
        '' if stds is None else float(stds[-1]),
        ratios.get(key, ''),
        sat[key[1]] if key[0] == 'tanh' and key[1] in sat else '',
        _cell(acc, 'diverged'),
        _cell(dist, 'diverged'),
        _cell(moved, ''),
      )
    )
  symmetric = [a for a in trained if a[1] in ('zeros', 'constant 0.01')]
  sym = [trained[a][1] for a in symmetric]
  he = ratios['relu', 'He']
  small = ratios['relu', 'N(0, 0.01^2)']
  xavier = ratios['tanh', 'Xavier']
  checks = {
    'symmetry never broken (distance 0)': all(d == 0.0 for d in sym),
    'He keeps ReLU std': 1 / STEADY <= he <= STEADY,
    'Xavier keeps tanh std': 1 / STEADY <= xavier <= STEADY,
    'N(0, 0.01^2) collapses': small < COLLAPSED
    and ratios['tanh', 'N(0, 0.01^2)'] < COLLAPSED,
    'N(0, 1) saturates tanh': sat['N(0, 1)'] > 0.5,
  }
  holds = all(checks.values())
  failed = [name for name, ok in checks.items() if not ok]
  verdict = (
    f'After training, the largest distance between two hidden units of a '
    f'layer is {max(sym):.3g} under zero/constant init; over {DEPTH} layers '
    f'the activation std changes by x{he:.2f} (ReLU, He), x{xavier:.2f} '
    f'(tanh, Xavier), x{small:.1e} (ReLU, N(0, 0.01^2)); '
    f'{100 * sat["N(0, 1)"]:.0f}% of tanh units saturate (|a| > 0.99) '
    'under N(0, 1).'
  )
  if failed:
    verdict += (
      f' Not as the notes say: {"; ".join(failed)} fails (criterion: '
      f'within x{STEADY:g} over {DEPTH} layers).'
    )
  if not checks['Xavier keeps tanh std']:
    verdict += (
      ' Xavier slows the decay of tanh activations by orders of magnitude '
      'against N(0, 0.01^2) but does not stop it: tanh is flatter than the '
      'identity that Xavier assumes, so each layer shrinks the std a little'
    )
    if ('tanh', 'He') in ratios:
      he_tanh = ratios['tanh', 'He']
      verdict += f" (a larger gain does: He's variance gives x{he_tanh:.2f})"
    verdict += '.'
  values = {
    'weight_change': {
      f'{a}/{s}': _json(trained[a, s][2]) for a, s in symmetric
    },
    'symmetry_distance': {
      f'{a}/{s}': _json(d) for (a, s), (_, d, _) in trained.items()
    },
    'test_accuracy': {
      f'{a}/{s}': _json(acc) for (a, s), (acc, _, _) in trained.items()
    },
    'std_per_layer': {
      f'{a}/{s}': [float(v) for v in stds]
      for (a, s), (stds, _) in probe.items()
    },
    'he_relu_std_ratio': he,
    'small_relu_std_ratio': small,
    'xavier_tanh_std_ratio': xavier,
    'large_tanh_saturated_fraction': sat['N(0, 1)'],
    'checks': checks,
  }
  notes = (
    f'Probe: {DEPTH} hidden layers of {width} units, 1000 inputs x ~ N(0, I),'
    ' biases 0; std over all units and inputs of each layer.',
    f'Training: same net on MNIST-5k, batch 128, SGD + momentum 0.9, lr {LR}'
    f', {60 if quick else 400} steps; "diverged": non-finite loss. Symmetry '
    'distance: max over hidden layers and unit pairs of the distance of '
    'their incoming weights and bias, after training.',
  )
  return report.Result(
    figure=fig,
    columns=(
      'activation',
      'init',
      'std layer 1',
      f'std layer {DEPTH}',
      f'std ratio {DEPTH}/1',
      f'saturated at layer {DEPTH}',
      'test accuracy',
      'symmetry distance',
      'largest weight change',
    ),
    rows=rows,
    holds=holds,
    verdict=verdict,
    values=values,
    notes=notes,
  )


def _cell(value, nan_text: str):
  """A table cell: '' when not measured, `nan_text` for nan."""
  if value is None:
    return ''
  return nan_text if math.isnan(value) else value


def _json(value: float) -> float | None:
  return None if math.isnan(value) else float(value)
