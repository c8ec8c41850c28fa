"""Initialization: symmetry, vanishing and exploding signals, Xavier and He.

Notes (seed 002, "Initialization"): zero and "same value" initialization do
not break the symmetry (every hidden unit of a layer gets the same gradient,
so "y_1 = y_2 = y_3" forever: "need to break 'symmetry'"); a Gaussian with a
small standard deviation makes the activations of a deep net collapse to
zero, a large one saturates tanh; ``Var[w] = 1/n`` "matches the variance of
each layer" (``Var[sum_i w_i x_i] = n Var[w] Var[x] = Var[x]``, Glorot &
Bengio 2010), and since "ReLU zeros out the half of activations" He et al.
(2015) use ``W ~ N(0, 2/n)``.

Notes and papers differ: the notes' figures (after CS231n/I2DL: 10 layers of
500 tanh units on Gaussian inputs) use ``Var[w] = 1/n`` (LeCun's fan-in rule)
under the name Xavier; Glorot & Bengio's Xavier uses ``2/(n_in + n_out)``,
which is what `ops.initializers.xavier_normal` draws (the same thing here,
where every hidden layer is square). ``Var[w] = 1/n`` matches the variance
of the *linear* step; tanh is flatter than the identity, so each layer
still shrinks the signal a little: the variance recursion (below) predicts
x0.36 over 10 layers for Xavier/tanh, and the study no longer asks for a
steady scale there (the earlier version did, and said "does not hold").

Three parts:
1. The notes' demo: N(0, 1) inputs through 10 layers of 500 units
   (`nets.create('mlp')`), per layer the activation std of each scheme, tanh
   and ReLU, on 3 init seeds, each set beside the variance recursion's
   prediction (`predicted_stds`: ``q_l = n Var[w] E[f(z_{l-1})^2]``, the
   Gaussian expectations by quadrature; exact for infinitely wide layers).
2. Zero and constant init trained on MNIST-5k (tanh, SGD + momentum): after
   training, the largest distance between two units' weight vectors of a
   hidden layer, which stays exactly 0 when the symmetry is never broken.
3. He et al.'s training check (`initialization_he.py`): 22- and 30-layer
   ReLU MLPs without BatchNorm, Xavier against He, 3 seeds.

Sub-claims and their intervals: the symmetry distance is exact
(deterministic: the interval is the point); the probes are over 3 init
seeds (log-t for ratios of scales, t otherwise); He et al.'s check is over
3 training seeds (t of per-seed losses; paired where the arms share seeds).
Thresholds are the module constants, fixed before the run.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np

from experiments.configs import mnist
from experiments.studies import initialization_he as he_check
from experiments.studies import report
from experiments.studies import verdict as verdict_lib
from experiments.studies.initialization_recursion import predicted_stds
import nets
from nets import mlp

CLAIM = (
  'Zero and constant init never break the symmetry between hidden units; '
  'small N(0, 0.01^2) weights make activations collapse with depth and '
  'N(0, 1) saturates tanh; Var[w] = 1/n matches the variance of consecutive '
  "layers (the variance recursion predicts each layer's scale) and He's "
  '2/n keeps ReLU activations steady, so that without BatchNorm a 30-layer '
  "ReLU net trains with He's init and stalls with Xavier's."
)
SOURCE = (
  'notes, seed 002, "Initialization" (zero / same value / small and large '
  'Gaussian / Var[w] = 1/n / N(0, 2/n) for ReLU); Glorot & Bengio 2010; '
  'He et al. 2015 (Fig. 3)'
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
# Var[w] * n of each random scheme on a square layer of n units.
GAIN = {
  'N(0, 0.01^2)': lambda n: 1e-4 * n,
  'N(0, 1)': lambda n: float(n),
  'Xavier': lambda n: 1.0,
  'He': lambda n: 2.0,
}
DEPTH = 10
WIDTH = 500  # The notes' demo: 10 layers of 500 units.
QUICK_WIDTH = 128
PROBE_BATCH = 1000
INIT_SEEDS = (0, 1, 2)
QUICK_INIT_SEEDS = (0,)
# Thresholds, fixed before the run.
STEADY = 2.0  # "Steady scale": last/first layer std within this factor.
COLLAPSED = 1e-2  # "Collapses": last/first std below this.
SATURATED = 0.5  # "Saturates tanh": over half of layer 10 at |a| > 0.99.
# "Predicts each layer's scale": measured within 20% of the recursion at
# every layer (the recursion is exact for infinite width; 500 units and
# 1,000 inputs leave a few per cent of sampling error over 10 layers).
RECURSION_TOLERANCE = math.log(1.2)
# The symmetry is never broken: every unit of a layer stays identical, to
# float32 round-off (0 is expected: identical units get identical updates).
SYMMETRY_TOLERANCE = 1e-6
LR = 0.01
SYMMETRY_STEPS = 400
PROTOCOL = (
  (
    'architecture',
    'the notes (after CS231n): 10 tanh layers of 500 units; He et al. '
    '(2015, Fig. 3): 22- and 30-layer plain ReLU conv nets without BN',
    '10 x 500 MLPs, tanh and ReLU, every scheme; 22- and 30-layer ReLU '
    f'MLPs of {he_check.WIDTH} units without BN; a 10 x 128 tanh MLP for '
    'the symmetry',
    'MLPs instead of conv nets for the 22/30-layer check: the variance '
    'argument is the same, and an MLP of that depth trains in seconds',
  ),
  (
    'data',
    'Gaussian inputs (the notes); ImageNet (He et al.)',
    'N(0, 1) inputs of 500 features (probes); MNIST-5k (training)',
    'offline and small',
  ),
  (
    'optimizer and learning-rate selection',
    'He et al.: SGD + momentum 0.9, the same rate for both inits',
    f'SGD + momentum 0.9, constant rate {he_check.LR} for all four arms '
    f'(and {LR} for the symmetry runs); no search',
    'one rate for all arms, as the paper; a constant rate over a short run',
  ),
  (
    'metric',
    "per-layer activation distributions (the notes' figures); training "
    'error against epochs (He et al.)',
    'per-layer activation std against the variance recursion; share of '
    'tanh units at |a| > 0.99; training loss against steps',
    'the loss instead of the error: "stalls" reads directly as no fall '
    'from ln 10',
  ),
  (
    'budget',
    'He et al.: full ImageNet training',
    f'{he_check.STEPS} steps of batch 128 per deep arm; '
    f'{SYMMETRY_STEPS} for the symmetry runs; --quick: 30 layers only, '
    f'width {he_check.QUICK_WIDTH}, {he_check.QUICK_STEPS} steps',
    'stalling shows at once; convergence within 19 epochs of MNIST-5k',
  ),
  (
    'runs/seeds',
    'one run per net',
    '3 init seeds for the probes; 3 training seeds per deep arm, paired '
    'across inits; 1 run for the (deterministic) symmetry',
    'intervals over seeds',
  ),
)


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


def train_symmetric(scheme: str, *, steps: int) -> tuple[float, ...]:
  """(test accuracy, symmetry distance, largest weight change), tanh net.

  The weight change (largest |w - w_init| over the hidden kernels) shows
  that training moved the weights while keeping the units identical.
  """
  spec = SCHEMES[scheme]
  config = make_config('tanh', spec, steps=steps, width=128)
  run = report.train(config)
  params = jax.device_get(run.state.params)
  init = mlp.resolve_init('tanh', spec)  # Deterministic: no key used.
  moved = max(
    float(np.abs(k - init(None, k.shape)).max())
    for k in (params[f'fc{i}']['kernel'] for i in range(DEPTH))
  )
  return run.final('accuracy'), symmetry_distance(params, DEPTH), moved


def probe_all(width: int, seeds) -> dict:
  """{(activation, scheme): [(stds, last-layer activations) per seed]}."""
  return {
    (act, scheme): [
      activation_stds(act, SCHEMES[scheme], width=width, seed=seed)
      for seed in seeds
    ]
    for act in ('tanh', 'relu')
    for scheme in SCHEMES
  }


def run(quick: bool = False) -> report.Result:
  """Probes every scheme, trains the symmetric ones and He et al.'s arms."""
  width = QUICK_WIDTH if quick else WIDTH
  probe = probe_all(width, QUICK_INIT_SEEDS if quick else INIT_SEEDS)
  steps = 60 if quick else SYMMETRY_STEPS
  symmetric = {
    scheme: train_symmetric(scheme, steps=steps)
    for scheme in ('zeros', 'constant 0.01')
  }
  he_arms = he_check.run(quick)
  fig = initialization_figure(probe, he_arms, width)
  return initialization_result(fig, probe, symmetric, he_arms, width, quick)


def initialization_figure(probe, he_arms, width):
  """Std per layer against the recursion (tanh, ReLU); He et al.'s losses."""
  fig, axes = report.new_figure(ncols=3)
  layers = np.arange(1, DEPTH + 1)
  for ax, act in zip(axes[:2], ('tanh', 'relu'), strict=True):
    for i, scheme in enumerate(SCHEMES):
      stds = probe[act, scheme][0][0]
      if np.all(stds == 0):
        ax.plot([], [], color=f'C{i}', label=f'{scheme} (std = 0)')
        continue
      ax.semilogy(layers, stds, 'o', ms=3, color=f'C{i}', label=scheme)
      if scheme in GAIN:
        predicted = predicted_stds(act, GAIN[scheme](width))
        ax.semilogy(layers, predicted, '-', lw=0.8, color=f'C{i}')
    ax.set_xlabel('hidden layer')
    ax.set_ylabel('std of activations (log scale)')
    ax.set_title(
      f'{act}, {DEPTH} x {width}\ndots: measured, lines: recursion',
      fontsize=9,
    )
    ax.legend(fontsize=6)
  he_check.plot(axes[2], he_arms)
  fig.suptitle('Initialization: signal scale with depth, and trainability')
  return fig


def _ratio(stds: np.ndarray) -> float:
  """Last over first layer std (nan when the first is 0)."""
  return float(stds[-1] / stds[0]) if stds[0] > 0 else math.nan


def _recursion_error(probe, width) -> dict:
  """Per random scheme, per seed: max over layers |ln(measured/predicted)|."""
  return {
    (act, scheme): [
      float(
        np.max(np.abs(np.log(stds / predicted_stds(act, GAIN[scheme](width)))))
      )
      for stds, _ in runs
    ]
    for (act, scheme), runs in probe.items()
    if scheme in GAIN
  }


def _sub(claim, est, threshold, direction, seeds, interval, why):
  return verdict_lib.Subclaim(
    claim=claim,
    estimate=est[0],
    ci_low=est[1],
    ci_high=est[2],
    threshold=threshold,
    direction=direction,
    seeds=seeds,
    interval=interval,
    threshold_why=why,
  )


def _probe_subclaims(probe, symmetric, width) -> list[verdict_lib.Subclaim]:
  n = len(probe['tanh', 'He'])
  sym = max(d for _, d, _ in symmetric.values())
  small = [
    max(_ratio(probe['tanh', 'N(0, 0.01^2)'][k][0]), _ratio(s))
    for k, (s, _) in enumerate(probe['relu', 'N(0, 0.01^2)'])
  ]
  saturated = [
    float(np.mean(np.abs(a) > 0.99)) for _, a in probe['tanh', 'N(0, 1)']
  ]
  he = [abs(math.log(_ratio(s))) for s, _ in probe['relu', 'He']]
  errors = _recursion_error(probe, width)
  worst = [max(e[k] for e in errors.values()) for k in range(n)]
  seeds = f'over {n} init seed(s)'
  return [
    _sub(
      'Zero and constant init never break the symmetry: after training, '
      'every hidden unit of a layer is still identical to the others.',
      (sym, sym, sym),
      SYMMETRY_TOLERANCE,
      'below',
      1,
      'exact (deterministic training: the largest distance between two '
      'units of a layer, over both schemes and all layers)',
      '"y_1 = y_2 = y_3": distance 0 up to float32 round-off (1e-6)',
    ),
    _sub(
      'Small N(0, 0.01^2) weights make the activations collapse with depth '
      '(std at layer 10 over layer 1, worse of tanh and ReLU).',
      verdict_lib.log_t_interval(small),
      COLLAPSED,
      'below',
      n,
      f'log-t {seeds}',
      '"collapse" to zero: below 1e-2 over 10 layers',
    ),
    _sub(
      'N(0, 1) weights saturate tanh (share of layer-10 units at |a| > 0.99).',
      verdict_lib.t_interval(saturated),
      SATURATED,
      'above',
      n,
      f't {seeds}',
      '"saturates": over half of the units',
    ),
    _sub(
      "He's N(0, 2/n) keeps ReLU activations at a steady scale over 10 "
      'layers (|ln(std at layer 10 / layer 1)|).',
      verdict_lib.t_interval(he),
      math.log(STEADY),
      'below',
      n,
      f't {seeds}',
      'a steady scale: within a factor 2 over 10 layers (ln 2)',
    ),
    _sub(
      'The variance recursion q_l = n Var[w] E[a_{l-1}^2] predicts every '
      "random scheme's per-layer std (tanh and ReLU; worst layer and "
      'scheme, |ln(measured / predicted)|).',
      verdict_lib.t_interval(worst),
      RECURSION_TOLERANCE,
      'below',
      n,
      f't {seeds} of the per-seed worst',
      'Var[w] = 1/n "matches the variance" as the recursion says: '
      'within 20% at every layer (ln 1.2)',
    ),
  ]


def _he_subclaims(he_arms) -> list[verdict_lib.Subclaim]:
  """He et al.'s Fig. 3: 30 layers stall with Xavier, train with He."""
  subs = []
  if (30, 'Xavier') in he_arms:
    xavier = he_check.final_loss(he_arms[30, 'Xavier'])
    he = he_check.final_loss(he_arms[30, 'He'])
    n = len(he)
    drop = np.minimum(he_check.CHANCE_LOSS - xavier, he_check.CHANCE_LOSS)
    subs += [
      _sub(
        'Without BN a 30-layer ReLU MLP with Xavier init stalls (fall of '
        'the training loss from ln 10 by the end).',
        verdict_lib.t_interval(drop),
        he_check.STALL_DROP,
        'below',
        n,
        f't over {n} training seed(s)',
        '"completely stalls" (He et al.): less than 0.1 nat of progress',
      ),
      _sub(
        'With He init the same 30-layer net trains (final training loss).',
        verdict_lib.t_interval(np.minimum(he, 1e6)),
        he_check.CONVERGED_LOSS,
        'below',
        n,
        f't over {n} training seed(s)',
        '"converges": training loss below 0.5 (about 85% training accuracy)',
      ),
    ]
  if (22, 'Xavier') in he_arms:
    gap = np.minimum(
      he_check.final_loss(he_arms[22, 'Xavier'])
      - he_check.final_loss(he_arms[22, 'He']),
      1e6,
    )
    subs.append(
      _sub(
        "At 22 layers He's init trains faster than Xavier's (final "
        'training loss, Xavier minus He).',
        verdict_lib.t_interval(gap),
        0.0,
        'above',
        len(gap),
        f'paired t over {len(gap)} training seeds (the arms share seeds)',
        '"ours starts reducing error earlier" (He et al.): a positive gap',
      ),
    )
  return subs


def initialization_result(fig, probe, symmetric, he_arms, width, quick):
  """The Result: sub-claims, the table of probes and arms, the values."""
  subclaims = _probe_subclaims(probe, symmetric, width) + _he_subclaims(he_arms)
  errors = _recursion_error(probe, width)
  rows = []
  for (act, scheme), runs in probe.items():
    stds = np.mean([s for s, _ in runs], axis=0)
    predicted = (
      predicted_stds(act, GAIN[scheme](width)) if scheme in GAIN else None
    )
    rows.append(
      (
        f'{act}, {scheme}',
        float(stds[0]),
        float(stds[-1]),
        '-' if predicted is None else float(predicted[-1]),
        _ratio(stds),
        '-' if predicted is None else max(errors[act, scheme]),
        float(np.mean([np.mean(np.abs(a) > 0.99) for _, a in runs]))
        if act == 'tanh'
        else '-',
      )
    )
  for (depth, init), runs in he_arms.items():
    losses = he_check.final_loss(runs)
    rows.append(
      (
        f'{depth}-layer ReLU MLP, {init} (trained)',
        '-',
        '-',
        '-',
        '-',
        '-',
        'final training loss ' + ' '.join(f'{v:.3f}' for v in losses),
      )
    )
  for scheme, (acc, dist, moved) in symmetric.items():
    rows.append(
      (
        f'tanh, {scheme} (trained)',
        '-',
        '-',
        '-',
        '-',
        '-',
        f'symmetry distance {dist:.3g}, weight change {moved:.3g}, test '
        f'accuracy {acc:.3f}',
      )
    )
  xavier_tanh = _ratio(np.mean([s for s, _ in probe['tanh', 'Xavier']], 0))
  recursion = predicted_stds('tanh', 1.0)
  he_steady = math.exp(subclaims[3].estimate)
  summary = (
    f'After training, the largest distance between two hidden units of a '
    f'layer is {subclaims[0].estimate:.3g} under zero/constant init. Over '
    f'{DEPTH} layers of {width}, the std changes by '
    f'x{subclaims[1].estimate:.1e} under N(0, 0.01^2) (worse of tanh and '
    f'ReLU), by a factor {he_steady:.2f} for ReLU/He, x{xavier_tanh:.2f} '
    f'for tanh/Xavier (the recursion predicts '
    f'x{recursion[-1] / recursion[0]:.2f}); the recursion misses no layer '
    f'of any scheme by more than x{math.exp(subclaims[4].estimate):.3f} '
    f'(mean over seeds of the worst). {100 * subclaims[2].estimate:.0f}% of '
    'tanh units saturate under N(0, 1).'
  )
  he_subs = subclaims[5:]
  if he_subs:
    summary += ' ' + ' '.join(
      f'{s.claim.split(" (")[0]}: {s.estimate:.3f} [{s.ci_low:.3f}, '
      f'{s.ci_high:.3f}].'
      for s in he_subs
    )
  values = {
    'std_per_layer': {
      f'{a}/{s}': [float(v) for v in np.mean([r[0] for r in runs], axis=0)]
      for (a, s), runs in probe.items()
    },
    'recursion_max_log_error': {f'{a}/{s}': e for (a, s), e in errors.items()},
    'symmetry_distance': {s: d for s, (_, d, _) in symmetric.items()},
    'weight_change': {s: m for s, (_, _, m) in symmetric.items()},
    'he_check_final_loss': {
      f'{d}/{i}': [float(v) for v in he_check.final_loss(runs)]
      for (d, i), runs in he_arms.items()
    },
    'he_check_curves': {f'{d}/{i}': runs for (d, i), runs in he_arms.items()},
  }
  notes = (
    f'Probe: {DEPTH} hidden layers of {width} units, {PROBE_BATCH} inputs '
    'x ~ N(0, I), biases 0; std over all units and inputs of each layer, '
    'the mean over the init seeds in the table. Recursion: '
    'predicted_stds (Gauss-Hermite for tanh, closed form for ReLU).',
    f'Symmetry: a 10 x 128 tanh MLP on MNIST-5k, batch 128, SGD + momentum '
    f'0.9, lr {LR}, {60 if quick else SYMMETRY_STEPS} steps; distance: max '
    'over hidden layers and unit pairs of the distance of their incoming '
    'weights and bias, after training.',
    f'He et al. check: ReLU MLPs of {he_check.WIDTH} units (--quick: '
    f'{he_check.QUICK_WIDTH}), Xavier normal or He normal on every layer, '
    f'SGD + momentum 0.9, lr {he_check.LR}, batch 128, {he_check.STEPS} '
    "steps; loss: the trainer's mean over each logging interval.",
  )
  return report.Result(
    figure=fig,
    columns=(
      'net / init',
      'std layer 1',
      f'std layer {DEPTH}',
      f'predicted std layer {DEPTH}',
      f'std ratio {DEPTH}/1',
      'max |ln(measured / predicted)|',
      'saturated at layer 10 / trained outcome',
    ),
    rows=rows,
    subclaims=subclaims,
    summary=summary,
    protocol=PROTOCOL,
    values=values,
    notes=notes,
  )
