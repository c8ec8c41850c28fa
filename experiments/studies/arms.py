"""The studies' training arms: a config, a trained run, its predictions.

An arm is one config trained once. `make_config` builds it from a data
set's config (experiments/configs/<data>.py) the way the studies do: the
net's keywords changed, then either `plain_sgd` (the recipe off, so arms
differ only in what the study varies) or the data set's own recipe with
evaluation and checkpoints during the run off. `train` runs
`train_lib.trainer.train_and_evaluate` on it in a temporary workdir (no
second training loop) and gives back a `TrainRun`: the `metrics.jsonl`
records and the final state; `predict` and `predict_images` apply such a
state to a whole split or to any images.

The studies reach these through `report` (`report.train`, ...), where the
tests replace them with fakes.
"""

from collections.abc import Mapping
import contextlib
import dataclasses
import io
import tempfile
from types import ModuleType
from typing import Any

import jax
import ml_collections
import numpy as np

from experiments.configs import common

# The momentum of `plain_sgd`, the optimizer of the studies' plain arms.
PLAIN_SGD_MOMENTUM = 0.9


@dataclasses.dataclass
class TrainRun:
  """One trained arm: the metrics.jsonl records and the final state.

  `checkpoints` maps each step the trainer checkpointed to the parameters
  saved there, when `train(..., keep_checkpoints=True)` asked for them.
  """

  records: list[dict[str, Any]]
  state: Any
  checkpoints: dict[int, Any] = dataclasses.field(default_factory=dict)

  def series(self, key: str, split: str = 'train') -> tuple[list, list]:
    """(steps, values) of `key` in the records of `split`."""
    pairs = [
      (r['step'], r[key])
      for r in self.records
      if r['split'] == split and key in r
    ]
    return [s for s, _ in pairs], [v for _, v in pairs]

  def final(self, key: str, split: str = 'eval') -> float:
    """The last logged value of `key` in `split`."""
    _, values = self.series(key, split)
    if not values:
      raise KeyError(f'no {split} record has {key!r}')
    return values[-1]


def plain_sgd(
  config: ml_collections.ConfigDict, **keys: Any
) -> ml_collections.ConfigDict:
  """`config` without its recipe: SGD + momentum 0.9 at a constant rate.

  No warmup, weight decay, label smoothing or pixel shifts, no evaluation
  before the end and no checkpoint but the trainer's last one, so that the
  arms of a study differ only in what the study varies. `keys` (any key of
  experiments/configs/common.py, e.g. `lr`, `seed`, `total_steps`) are set
  last, with `common.set_keys`.
  """
  common.set_keys(
    config,
    optimizer='momentum',
    momentum=PLAIN_SGD_MOMENTUM,
    schedule='constant',
    warmup_steps=0,
    weight_decay=0.0,
    label_smoothing=0.0,
    crop_padding=0,
    eval_every_steps=0,
    checkpoint_every_steps=0,
  )
  common.set_keys(config, **keys)
  return config


def make_config(
  data: ModuleType,
  variant: str,
  /,
  *,
  model_kw: Mapping[str, Any] | None = None,
  plain: bool = True,
  **keys: Any,
) -> ml_collections.ConfigDict:
  """One arm's config: a data set's config, its net and keys changed.

  Args:
    data: a config module of experiments/configs (`mnist1d`, `mnist`,
      `digits`, ...).
    variant: the argument of its `get_config` ('cnn', 'mlp', 'lenet5').
    model_kw: entries set on the net's keywords (`config.model_kw`), e.g.
      {'activation': 'tanh'}. A different net named by the key `model` in
      `keys` (a name of the nets registry) starts from no keywords.
    plain: True: `plain_sgd` (the recipe off); False: the data set's own
      recipe (optimizer, schedule, augmentation), with no evaluation or
      checkpoint before the end.
    **keys: any key of experiments/configs/common.py (`lr`, `seed`,
      `total_steps`, `model`, ...), set last with `common.set_keys`.

  Returns:
    The config, ready for `train`.
  """
  config = data.get_config(variant)
  if keys.get('model', config.model) != config.model:
    config.model_kw = ml_collections.ConfigDict()
  for key, value in (model_kw or {}).items():
    config.model_kw[key] = value
  if plain:
    return plain_sgd(config, **keys)
  common.set_keys(config, eval_every_steps=0, checkpoint_every_steps=0)
  common.set_keys(config, **keys)
  return config


def train(
  config: ml_collections.ConfigDict,
  *,
  verbose: bool = False,
  keep_checkpoints: bool = False,
):
  """Trains `config` with the project's trainer in a throw-away workdir.

  Checkpoints go to the temporary workdir too (the trainer always saves the
  last step); the printed progress is dropped unless `verbose`. With
  `keep_checkpoints`, the parameters of every checkpoint the config asked
  for (`checkpoint_every_steps`; `keep_checkpoints` in the config must be
  large enough to keep them all) are read back before the workdir goes:
  the states of the one run along its training, for studies that probe
  them.

  Returns:
    A `TrainRun`.
  """
  from train_lib import metrics as metrics_lib  # noqa: PLC0415
  from train_lib import trainer  # noqa: PLC0415

  with tempfile.TemporaryDirectory(prefix='study-') as workdir:
    sink = (
      contextlib.nullcontext()
      if verbose
      else contextlib.redirect_stdout(io.StringIO())
    )
    with sink:
      state = trainer.train_and_evaluate(config, workdir)
    records = metrics_lib.read_metrics(workdir)
    checkpoints = read_checkpoints(workdir, state) if keep_checkpoints else {}
  return TrainRun(records=records, state=state, checkpoints=checkpoints)


def read_checkpoints(workdir: str, state: Any) -> dict[int, Any]:
  """{step: params} of every checkpoint in `workdir`, on the host.

  Read-only (`train_lib.checkpoint.read`): nothing in `workdir` changes.
  """
  from train_lib import checkpoint as checkpoint_lib  # noqa: PLC0415

  sharding = jax.tree.leaves(state)[0].sharding
  abstract = checkpoint_lib.abstract_like(state, sharding)
  return {
    step: jax.device_get(checkpoint_lib.read(workdir, step, abstract).params)
    for step in checkpoint_lib.steps(workdir)
  }


def predict(
  config: ml_collections.ConfigDict, state: Any, split: str
) -> tuple[np.ndarray, np.ndarray]:
  """Softmax probabilities [N, K] of a trained state on a whole split.

  Rebuilds the run's data set and model from its config (as the trainer
  does) and applies the final parameters in evaluation mode (no dropout,
  BatchNorm running statistics) to every image of `split`.

  Args:
    config: the config the state was trained with.
    state: the final `TrainState` of `train(config)`.
    split: 'train' or 'test' (the held-out split the evaluations measure:
      the validation split when `config.data.validation_fraction` > 0).

  Returns:
    (probabilities [N, K] float64, labels [N] int).
  """
  from train_lib import data as data_lib  # noqa: PLC0415 (slow import)

  dataset = data_lib.get_dataset(config.data, seed=config.seed)
  images, labels = dataset.host_arrays(split)
  probs = predict_images(config, state, images, dataset.num_classes)
  return probs, np.asarray(labels)


def predict_images(
  config: ml_collections.ConfigDict,
  state: Any,
  images: np.ndarray,
  num_classes: int = 10,
) -> np.ndarray:
  """Softmax probabilities [N, K] of a trained state on any `images`.

  As `predict`, on inputs the caller provides (already scaled as the
  run's data set scales its own), e.g. fresh signals from a generator.
  """
  from train_lib import step as step_lib  # noqa: PLC0415
  from train_lib import trainer  # noqa: PLC0415

  model = trainer.create_model(config, num_classes)
  variables = step_lib.variables(state.params, state.batch_stats)
  logits = jax.jit(model.apply)(variables, images)
  return np.asarray(jax.nn.softmax(np.asarray(logits, np.float64), axis=-1))
