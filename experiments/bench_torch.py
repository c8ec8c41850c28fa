"""The PyTorch side of `experiments.bench`, run in a process of its own.

PyTorch timed inside the JAX process ran 10-20% slower than alone (two
OpenMP runtimes in one process: a ResNet-18-CIFAR step took 1,949 ms there
against 1,556-1,794 ms alone), which is not how a user runs PyTorch. So
`experiments.bench` starts this module as a worker (`python -m
experiments.bench_torch`) and talks to it one line at a time on stdin and
stdout, each side idle while the other runs:

  setup MODEL DTYPE BATCH  ->  'ready'      builds and warms up one step
  step                     ->  SECONDS      times one step of that model
  profile                  ->  JSON         {kind: ms} of one step
  quit

The nets are written to match `nets.create(MODEL)`: ResNet-18 for CIFAR (3x3
stem, projection shortcuts), He et al.'s ResNet-20 (option-A shortcuts) and
LeNet-5 (tanh, average pooling), in channels_last; a step is SGD with
momentum on the cross-entropy, bfloat16 by autocast. PyTorch is never a
dependency of this project: without it the worker answers 'unavailable'.
"""

import json
import sys
import time

KINDS = ('conv', 'norm', 'copy/convert', 'optimizer', 'other')
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


def lenet5(torch):
  nn = torch.nn
  return nn.Sequential(
    nn.Conv2d(1, 6, 5, padding=2),
    nn.Tanh(),
    nn.AvgPool2d(2),
    nn.Conv2d(6, 16, 5),
    nn.Tanh(),
    nn.AvgPool2d(2),
    nn.Flatten(),
    nn.Linear(400, 120),
    nn.Tanh(),
    nn.Linear(120, 84),
    nn.Tanh(),
    nn.Linear(84, 10),
  )


def build(torch, name: str):
  """The PyTorch twin of registered model `name`."""
  if name == 'resnet18_cifar':
    return resnet(torch, (64, 128, 256, 512), 2, 64, option_a=False)
  if name == 'resnet20_cifar':
    return resnet(torch, (16, 32, 64), 3, 16, option_a=True)
  if name == 'lenet5':
    return lenet5(torch)
  raise ValueError(f'no PyTorch twin of {name!r}; known: {sorted(SHAPES)}')


def make_step(torch, name: str, dname: str, batch: int):
  """() -> one channels_last SGD step of `name`."""
  torch.manual_seed(0)
  model = build(torch, name).to(memory_format=torch.channels_last)
  opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
  channels, hw = SHAPES[name]
  x = torch.randn(batch, channels, hw, hw)
  x = x.to(memory_format=torch.channels_last)
  y = torch.randint(0, 10, (batch,))
  bf16 = dname == 'bfloat16'

  def step():
    opt.zero_grad(set_to_none=True)
    with torch.autocast('cpu', dtype=torch.bfloat16, enabled=bf16):
      loss = torch.nn.functional.cross_entropy(model(x), y)
    loss.backward()
    opt.step()

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
    elif cmd[0] == 'setup':
      step = make_step(torch, cmd[1], cmd[2], int(cmd[3]))
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


if __name__ == '__main__':
  serve(sys.stdin, sys.stdout)
