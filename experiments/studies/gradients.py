"""Backpropagation against numerical differentiation: evaluations and time.

Notes (seed 004, week 5): backprop costs O(|theta|), numerical
differentiation O(|theta|^2): central differences make 2 |theta| evaluations
of a loss that costs O(|theta|), backprop one forward and one backward pass,
which seed 001 writes by hand (`ops.backprop.mlp_backward`).

On 64 -> h -> 10 tanh MLPs over the digits training images (float64), an
untimed pass per size counts the loss calls and compares the gradients (the
checks); `REPEATS` repeats then time every size in turn, in CPU time. The
claims: the mean over the repeats of the log-log slope of time on |theta|
(larger half of the sizes) against 1.5. The precondition: a loss call costs
a fixed overhead plus O(|theta|) arithmetic, so the numerical slope is 2
minus the overhead's share; at the largest net that share must be under a
quarter. `--quick` (h <= 16) does not reach it: 'not tested'.
"""

from collections.abc import Callable, Sequence
import dataclasses

import jax
from jax.flatten_util import ravel_pytree
import jax.numpy as jnp
import numpy as np

from experiments import timing
from experiments.studies import report
from experiments.studies import verdict as verdict_lib
from ops import backprop
from ops import losses
from train_lib.data import small

CLAIM = (
  'A numerical (central-difference) gradient costs 2|theta| loss '
  'evaluations, O(|theta|^2) work, against one forward and one backward '
  'pass, O(|theta|), for backpropagation; the hand-written backward pass '
  'gives the gradient jax.grad gives.'
)
SOURCE = (
  'notes, seed 004 (week 5), "Backpropagation vs. numerical '
  'differentiation"; seed 001, "Backpropagation in action"'
)

HIDDEN_FULL = (1, 2, 4, 8, 16, 32, 64, 128)
HIDDEN_QUICK = (1, 2, 4, 8, 16)
ACTIVATION = 'tanh'  # Smooth: central differences never straddle a kink.
LOSS = 'softmax_cross_entropy_with_integer_labels'
EPS = 1e-6
# Central differences in float64: truncation ~eps^2 |f'''| / 6 ~ 1e-13,
# round-off ~1.1e-16 * ln 10 / eps ~ 3e-10; 1e-8 leaves a factor 30 and is
# 1e5 times below the gradient entries: a wrong gradient cannot pass.
NUMERICAL_TOL = 1e-8
HAND_TOL = 1e-12  # The same float64 arithmetic reordered: a few round-offs.
TIME_REPEATS = 15  # Calls per backward-pass median.
# O(|theta|^2) against O(|theta|): a fitted power nearer 2 than 1, or 1 than 2.
SLOPE_SPLIT = 1.5
# The precondition: an evaluation's fixed cost under a quarter of one at the
# largest net (the numerical time's local slope there above 1.75).
FIXED_SHARE_MAX = 0.25
# The pilot: the committed one-sweep run before this version at h <= 128,
# fitted over h >= 16: (slope, standard error from the residuals, for a
# repeat's spread); repeats enough at twice that spread.
PILOT = {'numerical': (1.73, 0.048), 'jax.grad': (0.79, 0.086)}
REPEATS = max(
  verdict_lib.seeds_for(abs(m - SLOPE_SPLIT), 2 * e) for m, e in PILOT.values()
)
SEEDS_WHY = (
  'pilot (the earlier one-sweep run, h <= 128): slopes 1.73 (standard '
  'error 0.048, numerical) and 0.79 (0.086, jax.grad), 0.23 and 0.71 from '
  f'1.5; verdict.seeds_for(distance, twice the error) = {REPEATS} repeats'
)
PROTOCOL = (
  (
    'architecture',
    "any loss of |theta| parameters (week 5); seed 001's MLP backward",
    '64 -> h -> 10 tanh MLP, h = 1 .. 128 (|theta| = 85 .. 9,610)',
    'small nets: a numerical gradient at |theta| = 9,610 is half a minute',
  ),
  (
    'data',
    'unspecified',
    '899 training images of scikit-learn digits, one batch, float64',
    'float64 so central differences reach 1e-9',
  ),
  ('optimizer and learning-rate selection', 'none', 'none', '-'),
  (
    'metric',
    'loss evaluations, and work: O(|theta|^2) vs O(|theta|)',
    'loss calls; log-log slope of CPU time on |theta| (larger sizes)',
    'CPU time: this process only; a precondition bounds fixed costs',
  ),
  ('budget', '-', f'8 sizes x {REPEATS} repeats (--quick: h <= 16)', '-'),
  ('runs/seeds', '-', f'{REPEATS} timing repeats, a slope each', 'no seeds'),
)
# The page's opening after the checks, by headline.
LEADS = {
  'holds': "The numerical gradient's CPU time grew about as |theta|^2 and "
  "backprop's about as |theta|, as the notes say: at the largest net "
  'backprop was {speedup:,.0f} times faster, a gap that grows with the net.',
  'does not hold': "The timings went against the notes' O(.) at these sizes.",
  'inconclusive': "The timings do not decide the notes' O(.) at these sizes.",
  'not tested': 'Fixed per-call costs still dominated at these sizes, so '
  'the timings say nothing about the O(.) claim either way.',
}
# The timed quantities, one list over the repeats per size.
TIMES = ('numerical_s', 'jax_grad_s')
COLUMNS = ('h', '|theta|', 'loss calls', 'numerical (s)', 'jax.grad (ms)')


class CallCounter:
  """Wraps `fn` and counts its Python calls in `calls`."""

  def __init__(self, fn: Callable):
    self.fn, self.calls = fn, 0

  def __call__(self, *args, **kwargs):
    self.calls += 1
    return self.fn(*args, **kwargs)


def fit_slope(x: Sequence[float], y: Sequence[float]) -> float:
  """Least-squares slope of log y against log x (the power of a power law)."""
  x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
  if x.size < 2 or np.any(x <= 0) or np.any(y <= 0):
    raise ValueError('fit_slope needs two or more positive points')
  return float(np.polyfit(np.log(x), np.log(y), 1)[0])


def max_abs_diff(a: jax.typing.ArrayLike, b: jax.typing.ArrayLike) -> float:
  """max |a - b| over all entries (shapes must match)."""
  a, b = np.asarray(a), np.asarray(b)
  if a.shape != b.shape:
    raise ValueError(f'shapes differ: {a.shape} vs {b.shape}')
  return float(np.max(np.abs(a - b)))


def mlp_problem(hidden: int, x: jax.Array, labels: jax.Array):
  """A 64 -> hidden -> 10 tanh MLP: (params, flat theta, unravel, loss)."""
  sizes = (x.shape[1], hidden, 10)
  # numpy draws: jax.random would compile its kernels for every new shape.
  rng = np.random.default_rng(hidden)
  params = []
  for n_in, n_out in zip(sizes[:-1], sizes[1:], strict=True):
    # Xavier normal, as before a tanh; biases small but non-zero so their
    # gradients are not special.
    std = np.sqrt(2.0 / (n_in + n_out))
    w = jnp.asarray(std * rng.standard_normal((n_in, n_out)))
    params.append((w, jnp.asarray(0.1 * rng.standard_normal(n_out))))
  theta, unravel = ravel_pytree(params)

  def loss(theta: jax.Array) -> jax.Array:
    logits = backprop.mlp_forward(unravel(theta), x, ACTIVATION)
    return losses.softmax_cross_entropy_with_integer_labels(
      logits=logits, labels=labels
    ).mean()

  return params, theta, unravel, loss


class Size:
  """One MLP size: its jitted loss and gradients; `row` its measurements."""

  def __init__(self, hidden: int, x: jax.Array, labels: jax.Array):
    self.params, self.theta, _, loss = mlp_problem(hidden, x, labels)
    self.loss = jax.jit(loss)
    self.loss(self.theta).block_until_ready()
    # Backprop's loss calls, counted as the numerical ones: the compiled
    # gradient calls the loss once, while tracing (one forward pass, then
    # the backward pass of that trace).
    self.traced = CallCounter(loss)
    self.auto_grad = jax.jit(jax.grad(self.traced))
    self.hand_grad = jax.jit(
      lambda p: ravel_pytree(
        backprop.mlp_backward(p, x, labels, ACTIVATION, LOSS)[1]
      )[0]
    )
    self.row = {'hidden': hidden, 'params': int(self.theta.size)}
    self.row.update({'evaluations': [], **{key: [] for key in TIMES}})

  def numerical(self) -> timing.Timing:
    """One central-difference pass, its calls counted: (grad, CPU s, wall s)."""
    counted = CallCounter(self.loss)
    result = timing.timed(
      lambda: backprop.numerical_grad(counted, self.theta, eps=EPS)
    )
    self.row['evaluations'].append(counted.calls)
    return result

  def exact(self) -> dict:
    """The untimed first pass: loss calls and gradient differences."""
    numerical, auto = self.numerical().result, self.auto_grad(self.theta)
    hand = self.hand_grad(self.params)
    self.row['backprop_evaluations'] = self.traced.calls
    self.row['numerical_vs_jax_grad'] = max_abs_diff(numerical, auto)
    self.row['hand_vs_jax_grad'] = max_abs_diff(hand, auto)
    return self.row

  def time(self) -> None:
    """One timed repeat, appended to the row's lists."""
    self.row['numerical_s'].append(self.numerical().cpu_s)
    auto = lambda: self.auto_grad(self.theta)  # noqa: E731
    self.row['jax_grad_s'].append(
      timing.median(auto, TIME_REPEATS, clock='cpu')
    )


def run(quick: bool = False) -> report.Result:
  """Measures every size; `quick` stops at h = 16 (|theta| = 1210)."""
  with jax.enable_x64(True):
    (x, labels), _ = small.load_digits()  # The 899 training images.
    x = jnp.asarray(x.reshape(len(x), -1), jnp.float64)  # [899, 64]
    hidden = HIDDEN_QUICK if quick else HIDDEN_FULL
    sizes = [Size(h, x, labels) for h in hidden]
    rows = [size.exact() for size in sizes]
    # Every size in turn within a repeat, so a change in the machine's
    # speed hits all the sizes of one slope alike.
    for _ in range(REPEATS):
      for size in sizes:
        size.time()
  return summarize(rows, quick=quick)


def slopes(rows: Sequence[dict], key: str) -> np.ndarray:
  """Per repeat, the log-log slope of `key` on |theta| (larger half)."""
  upper = rows[len(rows) // 2 :]
  times = np.asarray([r[key] for r in upper])  # [sizes, repeats]
  params = [r['params'] for r in upper]
  return np.asarray([fit_slope(params, t) for t in times.T])


def fixed_share(rows: Sequence[dict]) -> float:
  """The smallest net's CPU time per loss call over the largest's, median
  over the repeats: the share of an evaluation that is fixed overhead."""
  small_net, large_net = (
    np.asarray(r['numerical_s']) / (2 * r['params'])
    for r in (rows[0], rows[-1])
  )
  return float(np.median(small_net / large_net))


def slope_claim(
  claim: str, values: np.ndarray, direction: str, why: str
) -> verdict_lib.Subclaim:
  """A claim on the mean per-repeat slope: its t interval over the repeats
  (`verdict.paired_difference` against 0 is that one-sample interval)."""
  sub = verdict_lib.paired_difference(
    claim,
    values,
    np.zeros(len(values)),
    threshold=SLOPE_SPLIT,
    direction=direction,
    threshold_why=why,
    seeds_why=SEEDS_WHY,
  )
  how = f"mean of {len(values)} repeats' log-log slopes, t interval"
  return dataclasses.replace(sub, interval=how)


def subclaims_of(rows: Sequence[dict]) -> list[verdict_lib.Subclaim]:
  """The four checks (the worst over the sizes), then the two claims."""
  worst = {key: max(r[key] for r in rows) for key in rows[0] if '_vs_' in key}
  calls = [(n, r['params']) for r in rows for n in r['evaluations']]
  below = {'direction': 'below', 'runs': len(rows)}
  return [
    verdict_lib.check(
      'Central differences call the loss exactly 2|theta| times.',
      max(abs(n - 2 * p) for n, p in calls),
      threshold=0.5,
      why='"2|theta| evaluations": no pass is a call off (value: the worst)',
      **{**below, 'runs': len(calls)},
    ),
    verdict_lib.check(
      'Backpropagation calls the loss once: one forward and one backward pass.',
      max(r['backprop_evaluations'] for r in rows),
      threshold=1.5,
      why='"one forward and one backward pass": under two traced loss calls',
      **below,
    ),
    verdict_lib.check(
      'The hand-written backward pass gives the gradient jax.grad gives.',
      worst['hand_vs_jax_grad'],
      threshold=HAND_TOL,
      why='the same float64 arithmetic reordered: a few hundred round-offs',
      **below,
    ),
    verdict_lib.check(
      'The central-difference gradient is that gradient too.',
      worst['numerical_vs_jax_grad'],
      threshold=NUMERICAL_TOL,
      why='eps = 1e-6 in float64: round-off ~3e-10, entries 1e5 times more',
      **below,
    ),
    slope_claim(
      'The numerical gradient takes O(|theta|^2) CPU time.',
      slopes(rows, 'numerical_s'),
      'above',
      '"O(|theta|^2)" against O(|theta|): a fitted power nearer 2 than 1',
    ),
    slope_claim(
      'Backpropagation (jax.grad) takes O(|theta|) CPU time.',
      slopes(rows, 'jax_grad_s'),
      'below',
      '"O(|theta|)" against O(|theta|^2): a fitted power nearer 1 than 2',
    ),
  ]


def summarize(rows: Sequence[dict], *, quick: bool) -> report.Result:
  """The result from the rows (one per size, as `Size.row` builds them)."""
  subclaims = subclaims_of(rows)
  hand, numerical, num, auto = subclaims[2:]
  share = fixed_share(rows)
  preconditions = [
    verdict_lib.Precondition.compare(
      "fixed cost's share of one loss evaluation at the largest net",
      share,
      threshold=FIXED_SHARE_MAX,
      direction='below',
    )
  ]
  median = {key: [float(np.median(r[key])) for r in rows] for key in TIMES}
  speedup = median['numerical_s'][-1] / median['jax_grad_s'][-1]
  params = [r['params'] for r in rows]
  reason = verdict_lib.unmet_reason(preconditions)
  summary = (f'{reason} ' if reason else '') + (
    f"Over {num.seeds} repeats the numerical gradient's CPU time grew as "
    f'|theta| to the power {num.estimate:.2f} (95% interval '
    f"{num.ci_low:.2f} to {num.ci_high:.2f}) and jax.grad's as the power "
    f'{auto.estimate:.2f} ({auto.ci_low:.2f} to {auto.ci_high:.2f}); the '
    f'threshold is 1.5. At |theta| = {params[-1]:,} a numerical gradient '
    f'took {median["numerical_s"][-1]:.1f} s of CPU, {speedup:,.0f} times '
    f'jax.grad, and fixed costs were {100 * share:.0f}% of a loss call.'
  )
  if quick:
    summary += ' (--quick stops at small nets, where that overhead rules.)'
  headline = verdict_lib.headline(subclaims, preconditions)
  lead = (
    'Central differences called the loss exactly 2|theta| times and '
    'backprop once, and both gave the gradient jax.grad gives: the four '
    'exact checks pass. ' + LEADS[headline].format(speedup=speedup)
  )
  table = [
    (r['hidden'], r['params'], r['evaluations'][0], t, 1e3 * t_auto)
    for r, t, t_auto in zip(rows, *median.values(), strict=True)
  ]
  return report.Result(
    figure=figure(rows, median),
    columns=COLUMNS,
    rows=table,
    subclaims=subclaims,
    summary=summary,
    protocol=PROTOCOL,
    preconditions=preconditions,
    lead=lead,
    caption=f'CPU time per gradient, median over {num.seeds} repeats (bars: '
    'their range); dotted: slopes 2 and 1. The nets reach |theta| = '
    f'{params[-1]:,}, where fixed costs are {100 * share:.0f}% of a loss call.',
    values={
      'params': params,
      'evaluations': [r['evaluations'][0] for r in rows],
      'backprop_evaluations': [r['backprop_evaluations'] for r in rows],
      'counts_exact': subclaims[0].estimate == 0,
      **{f'slopes_{k}': slopes(rows, k).tolist() for k in TIMES},
      'fixed_share_at_largest': share,
      'max_abs_diff_numerical': numerical.estimate,
      'max_abs_diff_hand': hand.estimate,
      'speedup_at_largest': speedup,
      'times_per_repeat': {k: [r[k] for r in rows] for k in TIMES},
    },
    notes=(
      'Times are CPU times of this process (all its threads); jax.grad '
      f'jitted, median of {TIME_REPEATS} calls. The machine is at the foot.',
    ),
  )


def figure(rows: Sequence[dict], median: dict):
  """CPU time per gradient against |theta| (median; bars: the repeats'
  range), with dotted slopes 2 and 1 through the largest net's times."""
  params = np.asarray([r['params'] for r in rows], np.float64)
  fig, ax = report.new_figure()
  for key, label, power in (
    ('numerical_s', 'numerical (central differences)', 2),
    ('jax_grad_s', 'backprop (jax.grad)', 1),
  ):
    times = np.asarray(median[key])
    low, high = (np.asarray([f(r[key]) for r in rows]) for f in (min, max))
    label += f': fitted slope {slopes(rows, key).mean():.2f}'
    bars = [times - low, high - times]
    ax.errorbar(params, times, bars, marker='o', capsize=2, label=label)
    guide = times[-1] * (params / params[-1]) ** power
    ax.loglog(params, guide, ':', color='grey', label=f'slope {power}: notes')
  ax.set(
    xlabel='parameters |theta| (log scale)',
    ylabel='CPU time per gradient (s, log scale)',
    title='Numerical gradient: time ~ |theta|^2; backprop: ~ |theta|',
  )
  ax.legend(loc='upper left', fontsize=8)
  return fig
