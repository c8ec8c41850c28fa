"""Backpropagation against numerical differentiation: evaluations and time.

Notes (seed 004, CENG 501 week 5, "Backpropagation vs. numerical
differentiation"): backpropagation costs ``O(|theta|)``, numerical
differentiation ``O(|theta|^2)``. Central differences perturb each of the
``|theta|`` parameters up and down, ``2 |theta|`` evaluations of a loss whose
own cost is ``O(|theta|)``; backprop needs one forward and one backward pass.
Seed 001 ("Backpropagation in action") writes that backward pass by hand,
``ops.backprop.mlp_backward``.

The study takes one-hidden-layer tanh MLPs (64 -> h -> 10, h = 1 .. 256, so
|theta| = 75 h + 10) with the softmax cross-entropy over the 899 training
images of scikit-learn's digits, in float64, and per size: counts the loss
evaluations of ``ops.backprop.numerical_grad`` with a counter around the
loss, times it, and times one gradient by ``jax.grad`` and by the hand-written
backward (both jitted, median of repeats). Times are the process's CPU time,
the work the notes' O(.) counts (wall time on a shared machine measures the
other processes too; the numerical gradient's wall time is in the table). It
fits log-log slopes.

The notes' ``O(|theta|^2)`` is asymptotic: one evaluation costs a fixed
overhead (dispatch, a few hundred microseconds of CPU here) plus
``O(|theta|)`` arithmetic, so on small nets the numerical gradient's time
grows like ``|theta|`` and its slope approaches 2 only once the arithmetic
dominates; the slopes are fitted on the larger half of the sizes for that
reason, and the table gives every size. The evaluation count has no such
caveat: it is exactly ``2 |theta|``.

Sub-claims and their intervals: the counts and the gradient differences are
exact (deterministic; the interval is the point); the two power laws get the
95% t interval of their least-squares log-log slope (n - 2 degrees of
freedom over the n larger sizes, one timing per size). Thresholds, fixed
before the run: O(|theta|^2) means a slope nearer 2 than 1 (> 1.5), O(|theta|)
one nearer 1 than 2 (< 1.5).
"""

from collections.abc import Callable, Sequence

import jax
from jax.flatten_util import ravel_pytree
import jax.numpy as jnp
import numpy as np
from scipy import stats

from experiments import machine
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

HIDDEN_FULL = (1, 2, 4, 8, 16, 32, 64, 128, 256)
HIDDEN_QUICK = (1, 2, 4, 8, 16)
ACTIVATION = 'tanh'  # Smooth: central differences never straddle a kink.
LOSS = 'softmax_cross_entropy_with_integer_labels'
EPS = 1e-6
# Central differences in float64: truncation error eps^2 |f'''| / 6 ~ 1e-13
# and round-off ~ u |f| / eps = 1.1e-16 * 2.3 / 1e-6 ~ 3e-10 (u the unit
# round-off, |f| ~ ln 10 the loss at init); 1e-8 leaves a factor 30 for the
# loss's own summation error, and is 1e5 times below the gradient's entries
# (~1e-3 .. 1e-1), so a wrong gradient cannot pass.
NUMERICAL_TOL = 1e-8
# The hand backward and jax.grad do the same float64 arithmetic in another
# order: they differ by a few units of round-off.
HAND_TOL = 1e-12
TIME_REPEATS = 15
# O(|theta|^2) against O(|theta|): the fitted power is nearer 2 than 1, or
# nearer 1 than 2.
SLOPE_SPLIT = 1.5
EXACT = (
  'exact (a deterministic count or computation: the interval is the point)'
)
PROTOCOL = (
  (
    'architecture',
    'any differentiable loss of |theta| parameters (notes, week 5); seed '
    "001's hand-written MLP backward",
    '64 -> h -> 10 tanh MLP, h = 1 .. 256 (|theta| = 85 .. 19,210)',
    'small nets: a numerical gradient of |theta| = 19,210 already costs a '
    'minute of CPU',
  ),
  (
    'data',
    'unspecified',
    '899 training images of scikit-learn digits, one full batch, float64',
    'float64 so central differences reach 1e-9',
  ),
  (
    'optimizer and learning-rate selection',
    'none (a gradient, no training)',
    'none; central differences with eps = 1e-6',
    '-',
  ),
  (
    'metric',
    'loss evaluations and work as functions of |theta|: 2|theta| and '
    'O(|theta|^2) vs O(|theta|)',
    'counted loss calls; CPU time per gradient and its log-log slope over '
    'the larger half of the sizes; max |difference| of the gradients',
    'CPU time, not wall time: the cores are shared; the O(.) is asymptotic, '
    "so the slope is fitted where an evaluation's fixed cost matters least",
  ),
  (
    'budget',
    '-',
    '9 sizes, one numerical gradient each, backprop median of 15 calls '
    '(--quick: h <= 16)',
    '-',
  ),
  (
    'runs/seeds',
    '-',
    'one timing per size; slope intervals from the regression',
    'the counts are exact; timing noise enters through the residuals',
  ),
)


class CallCounter:
  """Wraps `fn` and counts its Python calls in `calls`."""

  def __init__(self, fn: Callable):
    self.fn = fn
    self.calls = 0

  def __call__(self, *args, **kwargs):
    self.calls += 1
    return self.fn(*args, **kwargs)


def fit_slope(x: Sequence[float], y: Sequence[float]) -> float:
  """Least-squares slope of log y against log x (the power of a power law)."""
  x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
  if x.size < 2 or np.any(x <= 0) or np.any(y <= 0):
    raise ValueError('fit_slope needs two or more positive points')
  return float(np.polyfit(np.log(x), np.log(y), 1)[0])


def slope_interval(
  x: Sequence[float], y: Sequence[float]
) -> tuple[float, float, float]:
  """(slope, low, high): log-log least-squares slope and its 95% t interval.

  The interval is slope +- t_{0.975, n-2} * its standard error; with two
  points (no residual degrees of freedom) it is the point itself.
  """
  x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
  if x.size < 2 or np.any(x <= 0) or np.any(y <= 0):
    raise ValueError('slope_interval needs two or more positive points')
  fit = stats.linregress(np.log(x), np.log(y))
  if x.size == 2:
    return fit.slope, fit.slope, fit.slope
  half = stats.t.ppf(0.975, x.size - 2) * fit.stderr
  return float(fit.slope), float(fit.slope - half), float(fit.slope + half)


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
    # Xavier normal, as before a tanh; biases start small but non-zero so
    # their gradients are not special.
    std = np.sqrt(2.0 / (n_in + n_out))
    w = jnp.asarray(std * rng.standard_normal((n_in, n_out)))
    b = jnp.asarray(0.1 * rng.standard_normal(n_out))
    params.append((w, b))
  theta, unravel = ravel_pytree(params)

  def loss(theta: jax.Array) -> jax.Array:
    logits = backprop.mlp_forward(unravel(theta), x, ACTIVATION)
    return losses.softmax_cross_entropy_with_integer_labels(
      logits=logits, labels=labels
    ).mean()

  return params, theta, unravel, loss


def measure(hidden: int, x: jax.Array, labels: jax.Array) -> dict:
  """Evaluations, times and gradient differences for one MLP size."""
  params, theta, unravel, loss = mlp_problem(hidden, x, labels)
  jitted_loss = jax.jit(loss)
  jitted_loss(theta).block_until_ready()
  counted = CallCounter(jitted_loss)
  # CPU time (all threads of this process) is the work the notes' O(.)
  # counts; wall time would also count the other processes on the cores.
  numerical, numerical_s, numerical_wall_s = timing.timed(
    lambda: backprop.numerical_grad(counted, theta, eps=EPS)
  )
  evaluations = counted.calls
  if numerical_s < 1.0:
    # Cheap sizes: time again, now that the perturbation is compiled (its
    # compilation, tens of ms, is under 5% of a run over 1 s).
    _, numerical_s, numerical_wall_s = timing.timed(
      lambda: backprop.numerical_grad(jitted_loss, theta, eps=EPS)
    )

  # Backprop's evaluations, counted the same way: the compiled gradient
  # calls the loss once, while tracing: one forward pass, then the backward
  # pass of that trace.
  counted_loss = CallCounter(loss)
  auto_grad = jax.jit(jax.grad(counted_loss))
  auto = auto_grad(theta)
  hand_grad = jax.jit(
    lambda p: ravel_pytree(
      backprop.mlp_backward(p, x, labels, ACTIVATION, LOSS)[1]
    )[0]
  )
  hand = hand_grad(params)
  return {
    'hidden': hidden,
    'params': int(theta.size),
    'evaluations': evaluations,
    'backprop_evaluations': counted_loss.calls,
    'numerical_s': numerical_s,
    'numerical_wall_s': numerical_wall_s,
    'jax_grad_s': timing.median(
      lambda: auto_grad(theta), TIME_REPEATS, clock='cpu'
    ),
    'hand_s': timing.median(
      lambda: hand_grad(params), TIME_REPEATS, clock='cpu'
    ),
    'numerical_vs_jax_grad': max_abs_diff(numerical, auto),
    'hand_vs_jax_grad': max_abs_diff(hand, auto),
  }


def digits_batch() -> tuple[jax.Array, jax.Array]:
  """The 899 digits training images, flattened to [899, 64], and labels."""
  (train_x, train_y), _ = small.load_digits()
  x = jnp.asarray(train_x.reshape(len(train_x), -1), jnp.float64)
  return x, jnp.asarray(train_y)


def run(quick: bool = False) -> report.Result:
  """Measures every size; `quick` stops at h = 16 (|theta| = 1210)."""
  hidden_sizes = HIDDEN_QUICK if quick else HIDDEN_FULL
  with jax.enable_x64(True):
    x, labels = digits_batch()
    rows = [measure(h, x, labels) for h in hidden_sizes]
  return summarize(rows, quick=quick)


def summarize(rows: Sequence[dict], *, quick: bool) -> report.Result:
  """Slopes, verdict, table and figure from the per-size measurements."""
  params = [r['params'] for r in rows]
  upper = slice(len(rows) // 2, None)  # The larger half of the sizes.
  slopes = {
    'evaluations': fit_slope(params, [r['evaluations'] for r in rows]),
    'numerical_s': fit_slope(
      params[upper], [r['numerical_s'] for r in rows][upper]
    ),
    'jax_grad_s': fit_slope(
      params[upper], [r['jax_grad_s'] for r in rows][upper]
    ),
    'hand_s': fit_slope(params[upper], [r['hand_s'] for r in rows][upper]),
  }
  counts_off = max(abs(r['evaluations'] - 2 * r['params']) for r in rows)
  counts_exact = counts_off == 0
  backprop_calls = max(r['backprop_evaluations'] for r in rows)
  numerical_err = max(r['numerical_vs_jax_grad'] for r in rows)
  hand_err = max(r['hand_vs_jax_grad'] for r in rows)
  fit_params = params[upper]
  numerical = slope_interval(
    fit_params, [r['numerical_s'] for r in rows][upper]
  )
  backward = slope_interval(fit_params, [r['jax_grad_s'] for r in rows][upper])
  n_fit = len(fit_params)
  regression = (
    f'95% t interval of the log-log least-squares slope over the {n_fit} '
    f'largest sizes (|theta| >= {fit_params[0]:,}; {n_fit - 2} df), one '
    'timing per size'
  )

  def exact(claim, estimate, threshold, why):
    return verdict_lib.Subclaim(
      claim=claim,
      estimate=float(estimate),
      ci_low=float(estimate),
      ci_high=float(estimate),
      threshold=threshold,
      direction='below',
      seeds=1,
      interval=EXACT,
      threshold_why=why,
    )

  subclaims = [
    exact(
      'Central differences call the loss exactly 2|theta| times.',
      counts_off,
      0.5,
      '"2|theta| evaluations", exactly: the count differs from 2|theta| by '
      'less than one call at every size (estimate: the largest difference)',
    ),
    exact(
      'Backpropagation evaluates the loss once: one forward and one '
      'backward pass.',
      backprop_calls,
      1.5,
      '"one forward and one backward pass": fewer than two traced loss '
      'calls (estimate: the most at any size)',
    ),
    verdict_lib.Subclaim(
      claim='The numerical gradient takes O(|theta|^2) CPU time.',
      estimate=numerical[0],
      ci_low=numerical[1],
      ci_high=numerical[2],
      threshold=SLOPE_SPLIT,
      direction='above',
      seeds=1,
      interval=regression,
      threshold_why='"O(|theta|^2)" against O(|theta|): a fitted power '
      'nearer 2 than 1',
    ),
    verdict_lib.Subclaim(
      claim='Backpropagation (jax.grad) takes O(|theta|) CPU time.',
      estimate=backward[0],
      ci_low=backward[1],
      ci_high=backward[2],
      threshold=SLOPE_SPLIT,
      direction='below',
      seeds=1,
      interval=regression,
      threshold_why='"O(|theta|)" against O(|theta|^2): a fitted power '
      'nearer 1 than 2',
    ),
    exact(
      'The hand-written backward pass gives the gradient jax.grad gives.',
      hand_err,
      HAND_TOL,
      'the same float64 arithmetic in another order: max |difference| '
      'below 1e-12, a few hundred units of round-off',
    ),
    exact(
      'The central-difference gradient is that gradient too.',
      numerical_err,
      NUMERICAL_TOL,
      'eps = 1e-6 in float64: round-off ~3e-10; max |difference| below '
      '1e-8, 1e5 times below the gradient entries',
    ),
  ]
  last = rows[-1]
  speedup = last['numerical_s'] / last['jax_grad_s']
  summary = (
    f'Central differences called the loss exactly 2|theta| times at every '
    f'size ({"yes" if counts_exact else "NO"}; fitted slope '
    f'{slopes["evaluations"]:.3f}), backprop once. CPU-time slopes on the '
    f'larger sizes: numerical {numerical[0]:.2f} [{numerical[1]:.2f}, '
    f'{numerical[2]:.2f}], jax.grad {backward[0]:.2f} [{backward[1]:.2f}, '
    f'{backward[2]:.2f}], hand backward {slopes["hand_s"]:.2f} '
    f'(notes: 2 and 1); at |theta| = {last["params"]:,} one numerical '
    f'gradient took {last["numerical_s"]:.2f} s of CPU, {speedup:,.0f}x '
    'jax.grad. '
    f'Gradients agree: numerical vs jax.grad {numerical_err:.1e}, hand vs '
    f'jax.grad {hand_err:.1e}.'
  )
  if quick:
    summary += (
      ' (--quick stops at small nets, where a fixed per-call cost '
      'dominates each evaluation.)'
    )
  table = [
    (
      r['hidden'],
      r['params'],
      r['evaluations'],
      r['numerical_s'],
      r['numerical_wall_s'],
      r['jax_grad_s'] * 1e3,
      r['hand_s'] * 1e3,
      r['numerical_vs_jax_grad'],
      r['hand_vs_jax_grad'],
    )
    for r in rows
  ]
  return report.Result(
    figure=figure(rows, slopes),
    columns=(
      'hidden h',
      '|theta|',
      'loss evaluations (numerical)',
      'numerical CPU (s)',
      'numerical wall (s)',
      'jax.grad CPU (ms)',
      'hand backward CPU (ms)',
      'max abs diff numerical vs jax.grad',
      'max abs diff hand vs jax.grad',
    ),
    rows=table,
    subclaims=subclaims,
    summary=summary,
    protocol=PROTOCOL,
    values={
      'params': params,
      'evaluations': [r['evaluations'] for r in rows],
      'backprop_evaluations': [r['backprop_evaluations'] for r in rows],
      'counts_exact': counts_exact,
      'slope_evaluations': slopes['evaluations'],
      'slope_numerical_s': slopes['numerical_s'],
      'slope_jax_grad_s': slopes['jax_grad_s'],
      'slope_numerical_ci95': list(numerical[1:]),
      'slope_jax_grad_ci95': list(backward[1:]),
      'slope_hand_s': slopes['hand_s'],
      'max_abs_diff_numerical': numerical_err,
      'max_abs_diff_hand': hand_err,
      'numerical_tolerance': NUMERICAL_TOL,
      'hand_tolerance': HAND_TOL,
      'speedup_at_largest': speedup,
    },
    notes=(
      'MLP 64 -> h -> 10, tanh, softmax cross-entropy averaged over the 899 '
      'digits training images, float64; central differences with eps = '
      f'{EPS:g} (ops.backprop.numerical_grad), evaluations counted by a '
      'wrapper around the loss.',
      'Times: process CPU time of one gradient; numerical timed once (again '
      'if under 1 s, after compilation), jax.grad and the hand backward '
      f'jitted, median of {TIME_REPEATS} calls. Slopes: least squares in '
      'log-log over the larger half of the sizes (|theta| >= '
      f'{params[len(rows) // 2]:,}).',
      'Load average at the end: '
      f'{machine.load_average(minutes=(1,))} (1 min); wall times on a '
      'loaded machine are inflated, CPU times much less so.',
    ),
  )


def figure(rows: Sequence[dict], slopes: dict):
  """Evaluations (left) and time (right) per gradient against |theta|."""
  params = np.asarray([r['params'] for r in rows], np.float64)
  fig, (ax_n, ax_t) = report.new_figure(ncols=2)
  ax_n.loglog(
    params,
    [r['evaluations'] for r in rows],
    'o-',
    label=f'numerical: counted (slope {slopes["evaluations"]:.2f})',
  )
  ax_n.loglog(params, 2 * params, 'k:', label='2 |theta|')
  ax_n.loglog(
    params,
    [r['backprop_evaluations'] for r in rows],
    's-',
    label='backprop: 1 forward + 1 backward',
  )
  ax_n.set_xlabel('parameters |theta| (log scale)')
  ax_n.set_ylabel('loss evaluations per gradient (log scale)')
  ax_n.set_title('Evaluations per gradient')
  ax_n.legend(loc='upper left', fontsize=8)

  upper = slice(len(rows) // 2, None)
  for key, label, marker in (
    ('numerical_s', 'numerical', 'o'),
    ('jax_grad_s', 'backprop (jax.grad)', 's'),
    ('hand_s', 'backprop (hand, ops.backprop)', '^'),
  ):
    times = np.asarray([r[key] for r in rows])
    line = ax_t.loglog(params, times, marker, label=None)[0]
    # The fitted power law over the sizes it was fitted on.
    fit_x = params[upper]
    coef = np.polyfit(np.log(fit_x), np.log(times[upper]), 1)
    ax_t.loglog(
      fit_x,
      np.exp(np.polyval(coef, np.log(fit_x))),
      '-',
      color=line.get_color(),
      label=f'{label}: slope {slopes[key]:.2f}',
    )
  ax_t.set_xlabel('parameters |theta| (log scale)')
  ax_t.set_ylabel('CPU time per gradient (s, log scale)')
  ax_t.set_title('CPU time per gradient (lines: fits)')
  ax_t.legend(loc='upper left', fontsize=8)
  fig.suptitle(
    'Numerical differentiation: 2|theta| evaluations, O(|theta|^2) time; '
    'backprop: one pass'
  )
  return fig
