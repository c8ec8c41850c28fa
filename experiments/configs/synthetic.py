"""Random images of any shape: throughput benchmarks and smoke runs.

Argument: `model=MODEL,shape=HxWxC,num_classes=K,smoke=BOOL` (each
optional, the first three also by position), e.g. `synthetic.py:cnn_small,8x8x1`
or `synthetic.py:resnet50,224x224x3,1000`. Images are Gaussian noise around a
random per-pixel mean per class: a linear classifier on the pixels separates
the classes (tests/train_lib/test_data.py), but a CNN that pools globally,
like `cnn_small`, barely learns them in a short run, so the accuracy means
little. This config measures speed and checks that a model trains end to
end. Read `images_per_sec` from the log or from metrics.jsonl.

Command (the default: cnn_small on 32x32x3, 24.5M MACs per image, batch
64, 200 steps; its eval accuracy stays near chance, 10%):

  python -m experiments.main --config experiments/configs/synthetic.py \
    --workdir runs/synthetic
"""

import ml_collections

from experiments.configs import common


def _parse_shape(text: str) -> tuple[int, ...]:
  try:
    shape = tuple(int(d) for d in text.lower().split('x'))
  except ValueError:
    shape = ()
  if not shape or any(d <= 0 for d in shape):
    raise ValueError(f'synthetic shape must look like 32x32x3, got {text!r}')
  return shape


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """Returns the synthetic config for `arg` = 'MODEL[,HxWxC[,K]][,smoke=B]'."""
  fields = common.parse_arg(
    arg, model='cnn_small', shape='32x32x3', num_classes=10, smoke=False
  )
  config = common.get_config()
  config.model = fields.model
  if config.model == 'mlp':
    # Defined here so that --config.model_kw.hidden_sizes=... can override.
    config.model_kw.hidden_sizes = (256, 256)
  config.data.name = 'synthetic'
  config.data.synthetic_shape = _parse_shape(fields.shape)
  if fields.num_classes < 2:
    raise ValueError(f'num_classes must be >= 2, got {fields.num_classes}')
  config.data.synthetic_num_classes = fields.num_classes
  config.batch_size = 64
  config.total_steps = 200
  config.eval_every_steps = 200
  config.log_every_steps = 20
  config.checkpoint_every_steps = 200
  config.optimizer = 'momentum'
  config.lr = 0.01
  config.schedule = 'constant'
  if fields.smoke:
    common.apply_smoke(config)
  return config
