"""Model summaries (parameters, MACs, activations per layer) and probes.

``summarize(model, input_shape)`` traces ``model.init`` and ``model.apply``
with ``jax.eval_shape`` (nothing is compiled or run on data) while
``nn.intercept_methods`` records the input and output shape of every module
call. Each leaf layer becomes a row of a paper-style table, like the notes'
VGG-16 table (seed 002, "VGGNet": output shape, parameters, memory).

Counting rules, as in the papers' complexity tables:
  * MACs (multiply-accumulates) for ONE input, counted for convolutions
    (standard, grouped, depthwise) and dense layers only, with the formulas of
    ``ops.cost``; norms, activations, pooling and additions are not counted.
    torchvision's "GFLOPS" column and MobileNet's "mult-adds" mean MACs.
  * ``params``: every entry of the ``'params'`` collection (running BatchNorm
    statistics are not parameters).
  * activations: the values a forward pass produces per input, counted as the
    notes' VGG table does: the input plus the output of every convolution,
    dense and pooling layer (norms, activations and dropout can run in place).

``capture_intermediates`` returns named activations of a real forward pass
without changing model code (flax's ``capture_intermediates``).
"""

from collections.abc import Callable, Sequence
import dataclasses
import math
import re

import flax.linen as nn
import jax
import jax.numpy as jnp

from ops import cost

_CONV_KINDS = ('Conv', 'DepthwiseConv')
_FEATURE_MAP_KINDS = ('Conv', 'DepthwiseConv', 'Dense', 'MaxPool', 'AvgPool')


@dataclasses.dataclass(frozen=True)
class Row:
  """One layer of a summary (shapes exclude the batch axis)."""

  name: str
  kind: str
  output_shape: tuple[int, ...]
  params: int
  macs: int
  activations: int


@dataclasses.dataclass(frozen=True)
class Summary:
  """Totals and per-layer rows for one input of ``input_shape``."""

  model: str
  input_shape: tuple[int, ...]
  output_shape: tuple[int, ...]
  params: int
  macs: int
  activations: int
  rows: tuple[Row, ...]

  def table(self) -> str:
    """The per-layer table with totals, like the papers' tables."""
    head = ('layer', 'type', 'output', 'params', 'MACs', 'activations')
    n_input = f'{math.prod(self.input_shape):,}'
    lines = [('input', '', _fmt_shape(self.input_shape), '0', '0', n_input)]
    for r in self.rows:
      lines.append(
        (
          r.name,
          r.kind,
          _fmt_shape(r.output_shape),
          f'{r.params:,}',
          f'{r.macs:,}',
          f'{r.activations:,}',
        )
      )
    widths = [
      max(len(h), *(len(x[i]) for x in lines)) for i, h in enumerate(head)
    ]
    fmt = lambda cells: '  '.join(
      c.ljust(w) if i < 3 else c.rjust(w)
      for i, (c, w) in enumerate(zip(cells, widths, strict=True))
    )
    rule = '-' * len(fmt(head))
    out = [f'{self.model} on {_fmt_shape(self.input_shape)}', rule, fmt(head)]
    out += [rule, *(fmt(x) for x in lines), rule]
    out += [
      f'total params: {self.params:,} ({self.params / 1e6:.2f} M, '
      f'{4 * self.params / 2**20:.1f} MiB in float32)',
      f'total MACs: {self.macs:,} ({self.macs / 1e9:.3f} G)',
      f'activations: {self.activations:,} values '
      f'({4 * self.activations / 2**20:.1f} MiB in float32 per input)',
    ]
    return '\n'.join(out)

  def __str__(self) -> str:
    return self.table()


def _fmt_shape(shape: Sequence[int]) -> str:
  return 'x'.join(str(d) for d in shape) if shape else 'scalar'


def _layer_macs(
  module: nn.Module, kernel: tuple[int, ...], out: tuple[int, ...]
) -> int:
  """MACs of one conv or dense call from its kernel and output shapes."""
  kind = type(module).__name__
  if kind in _CONV_KINDS:
    kh, kw, c_in_per_group, c_out = kernel
    if kind == 'DepthwiseConv':
      groups = c_out // module.multiplier  # one group per input channel
    else:
      groups = module.groups
    return cost.conv_macs(
      kh, kw, c_in_per_group * groups, c_out, out[0], out[1], groups=groups
    )
  if kind == 'Dense':
    positions = math.prod(out[:-1])  # 1 for [features]; T for [T, features]
    return positions * cost.dense_macs(kernel[0], kernel[1])
  return 0


def _count(tree) -> int:
  return sum(math.prod(x.shape) for x in jax.tree.leaves(tree))


def summarize(
  model: nn.Module,
  input_shape: Sequence[int],
  *,
  dtype=jnp.float32,
  **call_kwargs,
) -> Summary:
  """Per-layer parameters, MACs and activations of ``model`` for one input.

  Args:
    model: an unbound flax module taking ``(x, train=...)``.
    input_shape: shape of ONE input, without the batch axis, e.g.
      ``(224, 224, 3)``.
    dtype: input dtype used for tracing.
    **call_kwargs: extra ``__call__`` arguments (default ``train=False``).

  Returns:
    A :class:`Summary`; ``str(summary)`` is the table.
  """
  input_shape = tuple(int(d) for d in input_shape)
  if not input_shape or min(input_shape) < 1:
    raise ValueError(f'input_shape must be positive dims, got {input_shape}')
  call_kwargs.setdefault('train', False)
  calls = []  # (path, module, output shape)

  def interceptor(next_fun, args, kwargs, context):
    out = next_fun(*args, **kwargs)
    if context.method_name == '__call__':
      shape = tuple(getattr(out, 'shape', ()))
      calls.append((context.module.path, context.module, shape))
    return out

  def init(x):
    rngs = {'params': jax.random.key(0), 'dropout': jax.random.key(1)}
    return model.init(rngs, x, **call_kwargs)

  def apply(variables, x):
    # Shapes are recorded while tracing apply (not init), so layers that run
    # only at initialisation or in training (auxiliary heads) are not counted.
    with nn.intercept_methods(interceptor):
      return model.apply(variables, x, **call_kwargs)

  x = jax.ShapeDtypeStruct((1, *input_shape), dtype)
  variables = jax.eval_shape(init, x)
  output = jax.eval_shape(apply, variables, x)
  params = variables.get('params', {})
  rows = _rows(calls, params)
  activations = math.prod(input_shape) + sum(
    r.activations for r in rows if r.kind in _FEATURE_MAP_KINDS
  )
  out_shape = tuple(getattr(output, 'shape', (1,)))[1:]
  return Summary(
    model=type(model).__name__,
    input_shape=input_shape,
    output_shape=out_shape,
    params=_count(params),
    macs=sum(r.macs for r in rows),
    activations=activations,
    rows=tuple(rows),
  )


def _rows(calls, params) -> list[Row]:
  """Leaf-module calls (no recorded call below them) as table rows."""
  paths = [c[0] for c in calls]
  parents = {p[:i] for p in paths for i in range(len(p))}
  rows, seen = [], set()
  for path, module, shape in calls:
    if path in parents or not path:
      continue
    sub = params
    for name in path:
      sub = sub.get(name, {}) if isinstance(sub, dict) else {}
    kind = type(module).__name__
    kernel = sub.get('kernel') if isinstance(sub, dict) else None
    macs = 0
    if kernel is not None and len(shape) > 1:
      macs = _layer_macs(module, tuple(kernel.shape), shape[1:])
    first = path not in seen  # shared layers: count params once
    seen.add(path)
    rows.append(
      Row(
        name='/'.join(path),
        kind=kind,
        output_shape=shape[1:],
        params=_count(sub) if first else 0,
        macs=macs,
        activations=cost.activation_count(shape[1:]) if len(shape) > 1 else 0,
      )
    )
  return rows


def capture_intermediates(
  model: nn.Module,
  variables,
  x: jax.Array,
  names_filter: Sequence[str] | str | Callable[[str], bool] | None = None,
  **call_kwargs,
) -> tuple[jax.Array, dict[str, jax.Array]]:
  """Runs ``model`` and returns its output and chosen layer outputs by name.

  Uses flax's ``capture_intermediates`` (under ``jax.jit``): the model code is
  unchanged. Names
  are module paths joined by '/', e.g. ``'features/conv1'``; an empty path
  (the model itself) is not captured.

  Args:
    model: the flax module.
    variables: its variables (``params`` and, if any, ``batch_stats``).
    x: a batch of inputs.
    names_filter: None (every module), a list of exact names, a regular
      expression string (matched with ``re.fullmatch``) or a predicate.
    **call_kwargs: ``__call__`` arguments (default ``train=False``).

  Returns:
    ``(output, {name: activation})``.
  """
  if names_filter is None:
    keep = lambda name: True
  elif isinstance(names_filter, str):
    pattern = re.compile(names_filter)
    keep = lambda name: pattern.fullmatch(name) is not None
  elif callable(names_filter):
    keep = names_filter
  else:
    wanted = set(names_filter)
    keep = lambda name: name in wanted

  def capture(module: nn.Module, method_name: str) -> bool:
    name = '/'.join(module.path)
    return method_name == '__call__' and bool(name) and keep(name)

  call_kwargs.setdefault('train', False)
  apply = jax.jit(
    lambda v, x: model.apply(
      v,
      x,
      capture_intermediates=capture,
      mutable=['intermediates'],
      **call_kwargs,
    )
  )
  out, state = apply(variables, x)
  found = {}
  flat = jax.tree_util.tree_flatten_with_path(
    state['intermediates'], is_leaf=lambda v: isinstance(v, tuple)
  )[0]
  for key_path, values in flat:
    names = [k.key for k in key_path]
    if names and names[-1] == '__call__':
      found['/'.join(names[:-1])] = values[0]
  return out, found
