"""The PyTorch side of `experiments.bench`, run in a process of its own.

PyTorch timed inside the JAX process ran 10-20% slower than alone (two
OpenMP runtimes in one process: a ResNet-18-CIFAR step took 1,949 ms there
against 1,556-1,794 ms alone), which is not how a user runs PyTorch. So
`experiments.bench` starts this module as a worker (`python -m
experiments.bench_torch`) and talks to it one line at a time on stdin and
stdout, each side idle while the other runs:

  setup MODEL DTYPE BATCH RECIPE  ->  'ready'   builds, warms up one step
  zoo DTYPE BATCH SPEC            ->  'ready'   the same for a zoo model
  step                            ->  SECONDS   times one step of that model
  profile                         ->  JSON      {kind: ms} of one step
  quit

(`TorchWorker` is the JAX side's end of the pipe.)

The nets are written to match `nets.create(MODEL)`: ResNet-18 for CIFAR (3x3
stem, projection shortcuts), He et al.'s ResNet-20 (option-A shortcuts) and
LeNet-5 (its `activation` and `pool` from the recipe), in channels_last.
RECIPE is the JSON (no spaces) of what the JAX side's config asks of a step
(`RECIPE_KEYS`, made by `experiments.bench.torch_recipe`), so that both
sides do the same work: the optimizer with its learning rate, momentum and
weight decay (not on biases and norm parameters unless `decay_all_params`;
SGD's is always coupled, PyTorch having no decoupled SGD), label smoothing,
and the padded random crop and horizontal flip of the batch. A step is
then forward, cross-entropy, backward and update, bfloat16 by autocast.

`zoo` (experiments/bench_zoo.py) builds SPEC's model, the JSON (no spaces)
of `ZOO_KEYS`: torchvision's or timm's model of that name and kwargs with
random weights, or one of the twins above ('twin'), and its step is
forward, cross-entropy and backward in train mode (BatchNorm on batch
statistics, dropout on), no optimizer, on a fixed standard normal batch of
SPEC's shape [C, H, W] in channels_last. torchvision is imported behind
experiments/torchvision_guard.py (its CUDA-built extension does not load
beside CPU torch). This process never imports jax. PyTorch is never a
dependency of this project: without it the worker answers 'unavailable'.
"""

import json
import os
import subprocess
import sys
import time

from experiments import torchvision_guard

KINDS = ('conv', 'norm', 'copy/convert', 'optimizer', 'other')
RECIPE_KEYS = (
  'model_kw',
  'optimizer',
  'lr',
  'momentum',
  'b1',
  'b2',
  'eps',
  'weight_decay',
  'weight_decay_mode',
  'decay_all_params',
  'label_smoothing',
  'crop_padding',
  'random_flip',
)
ZOO_KEYS = ('library', 'name', 'kwargs', 'shape', 'classes')
ZOO_LIBRARIES = ('torchvision', 'timm', 'twin')
SHAPES = {  # (channels, height): the JAX side's nets.default_input_shape
  'resnet18_cifar': (3, 32),
  'resnet20_cifar': (3, 32),
  'lenet5': (1, 28),
}


def _block(torch, cin, cout, stride, option_a):
  nn = torch.nn
  functional = torch.nn.functional

  class Block(nn.Module):
    def __init__(self):
      super().__init__()
      self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
      self.bn1 = nn.BatchNorm2d(cout)
      self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
      self.bn2 = nn.BatchNorm2d(cout)
      self.proj = None
      if (stride != 1 or cin != cout) and not option_a:
        self.proj = nn.Sequential(
          nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout)
        )

    def shortcut(self, x):
      if self.proj is not None:
        return self.proj(x)
      if stride == 1 and cin == cout:
        return x
      extra = cout - cin  # option A: subsample, zero-pad the channels
      x = x[:, :, ::stride, ::stride]
      return functional.pad(x, (0, 0, 0, 0, extra // 2, extra - extra // 2))

    def forward(self, x):
      y = torch.relu(self.bn1(self.conv1(x)))
      y = self.bn2(self.conv2(y))
      return torch.relu(y + self.shortcut(x))

  return Block()


def resnet(torch, widths, blocks, stem, option_a):
  """A CIFAR ResNet of basic blocks (3x3 stem, no max-pool)."""
  nn = torch.nn
  layers = [nn.Conv2d(3, stem, 3, 1, 1, bias=False), nn.BatchNorm2d(stem)]
  layers.append(nn.ReLU())
  cin = stem
  for i, cout in enumerate(widths):
    for j in range(blocks):
      stride = 2 if i > 0 and j == 0 else 1
      layers.append(_block(torch, cin, cout, stride, option_a))
      cin = cout
  layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(cin, 10)]
  return nn.Sequential(*layers)


def lenet5(torch, activation: str = 'tanh', pool: str = 'avg'):
  nn = torch.nn
  act = {'tanh': nn.Tanh, 'relu': nn.ReLU}[activation]
  pooling = {'avg': nn.AvgPool2d, 'max': nn.MaxPool2d}[pool]
  return nn.Sequential(
    nn.Conv2d(1, 6, 5, padding=2),
    act(),
    pooling(2),
    nn.Conv2d(6, 16, 5),
    act(),
    pooling(2),
    nn.Flatten(),
    nn.Linear(400, 120),
    act(),
    nn.Linear(120, 84),
    act(),
    nn.Linear(84, 10),
  )


def build(torch, name: str, **model_kw):
  """The PyTorch twin of registered model `name` (LeNet-5 takes kwargs)."""
  if name == 'lenet5':
    return lenet5(torch, **model_kw)
  if model_kw:
    raise ValueError(f'the PyTorch twin of {name!r} takes no {model_kw}')
  if name == 'resnet18_cifar':
    return resnet(torch, (64, 128, 256, 512), 2, 64, option_a=False)
  if name == 'resnet20_cifar':
    return resnet(torch, (16, 32, 64), 3, 16, option_a=True)
  raise ValueError(f'no PyTorch twin of {name!r}; known: {sorted(SHAPES)}')


def optimizer(torch, model, recipe: dict):
  """The recipe's optimizer over `model`'s parameters."""
  decay, plain = [], []
  for p in model.parameters():
    (decay if recipe['decay_all_params'] or p.ndim > 1 else plain).append(p)
  groups = [
    {'params': decay, 'weight_decay': recipe['weight_decay']},
    {'params': plain, 'weight_decay': 0.0},
  ]
  name, lr = recipe['optimizer'], recipe['lr']
  if name in ('sgd', 'momentum', 'nesterov'):
    momentum = 0.0 if name == 'sgd' else recipe['momentum']
    return torch.optim.SGD(
      groups, lr=lr, momentum=momentum, nesterov=name == 'nesterov'
    )
  if name in ('adam', 'adamw'):
    decoupled = name == 'adamw' or recipe['weight_decay_mode'] == 'decoupled'
    adam = torch.optim.AdamW if decoupled else torch.optim.Adam
    betas = (recipe['b1'], recipe['b2'])
    return adam(groups, lr=lr, betas=betas, eps=recipe['eps'])
  raise ValueError(f'unknown optimizer {name!r}')


def augment(torch, x, *, crop_padding: int, random_flip: bool):
  """Padded random crop and horizontal flip, an offset per example (NCHW)."""
  b, c, h, w = x.shape
  if crop_padding:
    padded = torch.nn.functional.pad(x, (crop_padding,) * 4)
    offsets = torch.randint(0, 2 * crop_padding + 1, (2, b))
    rows = offsets[0][:, None] + torch.arange(h)  # [B, H]
    cols = offsets[1][:, None] + torch.arange(w)  # [B, W]
    x = padded[
      torch.arange(b)[:, None, None, None],
      torch.arange(c)[None, :, None, None],
      rows[:, None, :, None],
      cols[:, None, None, :],
    ]
  if random_flip:
    flip = torch.rand(b) < 0.5
    x = torch.where(flip[:, None, None, None], x.flip(3), x)
  return x.contiguous(memory_format=torch.channels_last)


def make_step(torch, name: str, dname: str, batch: int, recipe: dict):
  """() -> one channels_last training step of `name` under `recipe`."""
  missing = set(RECIPE_KEYS) - set(recipe)
  if missing:
    raise ValueError(f'the recipe lacks {sorted(missing)}')
  torch.manual_seed(0)
  model = build(torch, name, **recipe['model_kw'])
  model = model.to(memory_format=torch.channels_last)
  opt = optimizer(torch, model, recipe)
  channels, hw = SHAPES[name]
  x = torch.randn(batch, channels, hw, hw)
  x = x.to(memory_format=torch.channels_last)
  y = torch.randint(0, 10, (batch,))
  bf16 = dname == 'bfloat16'
  crop, flip = recipe['crop_padding'], recipe['random_flip']

  def step():
    opt.zero_grad(set_to_none=True)
    images = augment(torch, x, crop_padding=crop, random_flip=flip)
    with torch.autocast('cpu', dtype=torch.bfloat16, enabled=bf16):
      loss = torch.nn.functional.cross_entropy(
        model(images), y, label_smoothing=recipe['label_smoothing']
      )
    loss.backward()
    opt.step()

  return step


def zoo_model(torch, spec: dict):
  """SPEC's model (`ZOO_KEYS`) with random weights, in train mode."""
  missing = set(ZOO_KEYS) - set(spec)
  if missing:
    raise ValueError(f'the zoo spec lacks {sorted(missing)}')
  library, name, kwargs = spec['library'], spec['name'], spec['kwargs']
  if library == 'twin':
    return build(torch, name, **kwargs).train()
  if library == 'torchvision':
    models = torchvision_guard.import_torchvision(torch).models
    model = models.get_model(
      name, weights=None, num_classes=spec['classes'], **kwargs
    )
  elif library == 'timm':
    torchvision_guard.define_missing_ops(torch)  # timm imports torchvision
    import timm  # noqa: PLC0415 (optional, never a dependency)

    try:
      model = timm.create_model(
        name, pretrained=False, num_classes=spec['classes'], **kwargs
      )
    except RuntimeError as e:  # timm's unknown model
      raise ValueError(str(e)) from e
  else:
    raise ValueError(f'unknown library {library!r}; known: {ZOO_LIBRARIES}')
  return model.train()


def make_zoo_step(torch, spec: dict, dname: str, batch: int):
  """() -> loss: a zoo model's forward and backward, no optimizer.

  channels_last, bfloat16 by autocast (the loss then in float32, as
  autocast runs cross-entropy); each call first drops the previous
  gradients, so none accumulate.
  """
  if dname not in ('float32', 'bfloat16'):
    raise ValueError(f'unknown dtype {dname!r}')
  torch.manual_seed(0)
  model = zoo_model(torch, spec).to(memory_format=torch.channels_last)
  x = torch.randn(batch, *spec['shape'])
  x = x.contiguous(memory_format=torch.channels_last)
  y = torch.randint(0, spec['classes'], (batch,))
  bf16 = dname == 'bfloat16'

  def step():
    model.zero_grad(set_to_none=True)
    with torch.autocast('cpu', dtype=torch.bfloat16, enabled=bf16):
      loss = torch.nn.functional.cross_entropy(model(x), y)
    loss.backward()
    return loss

  step.model = model
  return step


def kind(op: str) -> str:
  """The kind of work of a PyTorch operator name (KINDS)."""
  if 'conv' in op:
    return 'conv'
  if 'batch_norm' in op:
    return 'norm'
  if any(k in op for k in ('copy_', '::to', '_to_copy', 'contiguous')):
    return 'copy/convert'
  if 'Optimizer' in op or 'sgd' in op.lower() or '_foreach' in op:
    return 'optimizer'
  return 'other'


def kinds_line(side: str, kinds: dict[str, float] | None) -> str:
  """One side's {kind: ms} of a step as the bench prints it."""
  if kinds is None:
    return f'  {side:<7} (no profile)'
  parts = '  '.join(f'{k} {v:7.1f}' for k, v in kinds.items())
  return f'  {side:<7} ms/step by kind: {parts}  sum {sum(kinds.values()):.1f}'


def profile(torch, step) -> dict[str, float]:
  """{kind: ms} of one step, by operators' self CPU time.

  Self times (an operator's time minus its children's) add up to the step
  without counting a parent and its children twice. The first profiled
  step only warms the profiler up.
  """
  activities = [torch.profiler.ProfilerActivity.CPU]
  for _ in range(2):
    with torch.profiler.profile(activities=activities) as prof:
      step()
  totals = dict.fromkeys(KINDS, 0.0)
  for event in prof.key_averages():
    totals[kind(event.key)] += event.self_cpu_time_total / 1e3
  return totals


def _build(torch, cmd: list[str]):
  """The step a 'setup' or 'zoo' command asks for (see the docstring)."""
  if cmd[0] == 'zoo':
    return make_zoo_step(torch, json.loads(cmd[3]), cmd[1], int(cmd[2]))
  return make_step(torch, cmd[1], cmd[2], int(cmd[3]), json.loads(cmd[4]))


def serve(lines, out) -> None:
  """Answers the commands of the module docstring, one per line."""
  try:
    import torch  # noqa: PLC0415 (optional, never a dependency)
  except ImportError:
    torch = None
  step = None
  for line in lines:
    cmd = line.split()
    if not cmd or cmd[0] == 'quit':
      break
    if torch is None:
      reply = 'unavailable'
    elif cmd[0] in ('setup', 'zoo'):
      try:
        step = _build(torch, cmd)
      except (ImportError, IndexError, KeyError, TypeError, ValueError) as e:
        reply = f'error: {cmd[0]} {cmd[1:]}: {e}'
      else:
        step()
        step()
        reply = 'ready'
    elif cmd[0] == 'step':
      start = time.perf_counter()
      step()
      reply = repr(time.perf_counter() - start)
    elif cmd[0] == 'profile':
      reply = json.dumps(profile(torch, step))
    elif cmd[0] == 'version':
      reply = f'PyTorch {torch.__version__}, {torch.get_num_threads()} threads'
    else:
      reply = f'error: unknown command {cmd[0]!r}'
    print(reply, file=out, flush=True)


class TorchWorker:
  """This module in a process of its own, one command line at a time."""

  def __init__(self):
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    self._proc = subprocess.Popen(
      [sys.executable, '-m', 'experiments.bench_torch'],
      stdin=subprocess.PIPE,
      stdout=subprocess.PIPE,
      stderr=subprocess.DEVNULL,  # the profiler's start/stop lines
      text=True,
      cwd=root,
    )
    self.status = self.ask('version')

  @property
  def available(self) -> bool:
    return self.status != 'unavailable'

  def ask(self, command: str) -> str:
    """Sends one command; its reply, or RuntimeError on an error reply."""
    self._proc.stdin.write(command + '\n')
    self._proc.stdin.flush()
    reply = self._proc.stdout.readline().strip()
    if not reply or reply.startswith('error'):
      raise RuntimeError(f'PyTorch worker: {command!r} -> {reply!r}')
    return reply

  def close(self) -> None:
    self._proc.communicate('quit\n', timeout=60)


if __name__ == '__main__':
  serve(sys.stdin, sys.stdout)
