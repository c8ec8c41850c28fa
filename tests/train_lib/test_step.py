"""Tests for train_lib/step.py, train_lib/augment.py and train_lib/state.py.

The models are defined here (flax.linen Dense/BatchNorm/Dropout) so the
tests do not depend on nets/; references are computed independently with
jax.grad and optax's own cross entropy.
"""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from experiments.configs import common
from ops import augmentation
from train_lib import augment
from train_lib import optim
from train_lib import step
from train_lib.state import create_train_state


class Tiny(nn.Module):
  """Flatten -> Dense -> [BatchNorm] -> ReLU -> [Dropout] -> Dense."""

  num_classes: int = 3
  use_bn: bool = False
  dropout_rate: float = 0.0
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool):
    x = x.reshape((x.shape[0], -1))
    x = nn.Dense(8, dtype=self.dtype, name='dense1')(x)
    if self.use_bn:
      x = nn.BatchNorm(use_running_average=not train, momentum=0.9)(x)
    x = nn.relu(x)
    x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
    return nn.Dense(self.num_classes, dtype=self.dtype, name='head')(x)


def _config(**kw):
  """The shared defaults with plain SGD, and `kw` wherever the key lives."""
  config = common.get_config()
  config.update(optimizer='sgd', lr=0.5, schedule='constant', total_steps=100)
  common.set_keys(config, **kw)
  return config


def _batch(shape=(8, 4, 4, 1), num_classes=3, seed=0):
  rng = np.random.default_rng(seed)
  return {
    'image': jnp.asarray(rng.normal(size=shape), jnp.float32),
    'label': jnp.asarray(rng.integers(0, num_classes, shape[0]), jnp.int32),
  }


def _setup(model, config, batch):
  tx, schedule = optim.create_optimizer(config)
  state = create_train_state(
    model=model,
    tx=tx,
    init_key=jax.random.key(0),
    example_input=batch['image'][:1],
    ema=config.ema_decay > 0,
  )
  fn = jax.jit(
    functools.partial(
      step.train_step,
      model=model,
      tx=tx,
      schedule=schedule,
      **step.step_options(config, model.num_classes),
    )
  )
  return state, fn


@pytest.mark.slow
def test_sgd_step_matches_jax_grad_reference():
  model, config, batch = Tiny(), _config(), _batch()
  state, fn = _setup(model, config, batch)
  assert state.batch_stats == {} and state.ema_params is None
  params0 = state.params

  def ref_loss(p):
    logits = model.apply({'params': p}, batch['image'], train=False)
    return optax.softmax_cross_entropy_with_integer_labels(
      logits, batch['label']
    ).mean()

  loss0, grads = jax.value_and_grad(ref_loss)(params0)
  new, metrics = fn(state, batch, jax.random.key(1))
  want = jax.tree.map(lambda p, g: p - 0.5 * g, params0, grads)
  jax.tree.map(
    lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6),
    new.params,
    want,
  )
  g_norm = np.sqrt(sum(np.sum(np.square(g)) for g in jax.tree.leaves(grads)))
  p_norm = np.sqrt(sum(np.sum(np.square(p)) for p in jax.tree.leaves(want)))
  logits = model.apply({'params': params0}, batch['image'], train=False)
  acc = np.mean(np.argmax(logits, -1) == np.asarray(batch['label']))
  np.testing.assert_allclose(metrics['loss'], loss0, rtol=1e-6)
  np.testing.assert_allclose(metrics['accuracy'], acc)
  np.testing.assert_allclose(metrics['lr'], 0.5)
  np.testing.assert_allclose(metrics['l2_grads'], g_norm, rtol=1e-5)
  np.testing.assert_allclose(metrics['l2_updates'], 0.5 * g_norm, rtol=1e-5)
  np.testing.assert_allclose(metrics['l2_params'], p_norm, rtol=1e-5)
  assert int(new.step) == 1 and 'top5_accuracy' not in metrics
  assert all(v.dtype == jnp.float32 and v.shape == () for v in metrics.values())


@pytest.mark.slow
def test_grad_accumulation_equals_big_batch():
  model, batch = Tiny(), _batch(shape=(8, 6))
  results = []
  for k in (1, 4):
    config = _config(optimizer='momentum', lr=0.1, grad_accum_steps=k)
    state, fn = _setup(model, config, batch)
    for i in range(3):
      state, metrics = fn(state, batch, jax.random.key(i))
    results.append((state.params, metrics))
  (p1, m1), (p4, m4) = results
  jax.tree.map(
    lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6), p1, p4
  )
  for name in ('loss', 'accuracy', 'l2_grads', 'l2_updates'):
    np.testing.assert_allclose(m1[name], m4[name], rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_grad_accumulation_with_batchnorm_and_bad_split():
  model, batch = Tiny(use_bn=True, dropout_rate=0.5), _batch()
  state, fn = _setup(model, _config(grad_accum_steps=2), batch)
  new, metrics = fn(state, batch, jax.random.key(0))
  assert np.isfinite(float(metrics['loss']))
  mean = new.batch_stats['BatchNorm_0']['mean']
  assert np.max(np.abs(mean)) > 0  # running mean moved off its init
  tx, schedule = optim.create_optimizer(_config())
  with pytest.raises(ValueError, match='grad_accum_steps 3'):
    step.train_step(
      state,
      batch,
      jax.random.key(0),
      model=model,
      tx=tx,
      schedule=schedule,
      **step.step_options(_config(grad_accum_steps=3), 3),
    )


@pytest.mark.slow
def test_grad_accumulation_with_batchnorm_equals_hand_run_micro_batches():
  # k = 2 micro-batches (rows 0::2 and 1::2), each normalised with its own
  # BatchNorm statistics and with its own dropout key, computed here with
  # model.apply and optax directly, then one SGD update with the mean.
  model, batch, lr = Tiny(use_bn=True, dropout_rate=0.5), _batch(), 0.5
  state, fn = _setup(model, _config(grad_accum_steps=2), batch)
  loop_key = jax.random.key(7)
  dropout_key = step.step_keys(loop_key, 0)['dropout']

  def micro_loss(params, batch_stats, x, y, key):
    logits, updates = model.apply(
      {'params': params, 'batch_stats': batch_stats},
      x,
      train=True,
      rngs={'dropout': key},
      mutable=['batch_stats'],
    )
    loss = optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
    return loss, updates['batch_stats']

  grad_fn = jax.jit(jax.value_and_grad(micro_loss, has_aux=True))
  batch_stats, grads, losses = state.batch_stats, [], []
  for j in range(2):
    x, y = batch['image'][j::2], batch['label'][j::2]
    key = jax.random.fold_in(dropout_key, j)
    (loss, batch_stats), g = grad_fn(state.params, batch_stats, x, y, key)
    grads.append(g)
    losses.append(loss)
  mean_grad = jax.tree.map(lambda a, b: (a + b) / 2, *grads)
  want_params = jax.tree.map(lambda p, g: p - lr * g, state.params, mean_grad)

  new, metrics = fn(state, batch, loop_key)
  close = functools.partial(np.testing.assert_allclose, rtol=1e-5, atol=1e-6)
  jax.tree.map(close, new.params, want_params)
  jax.tree.map(close, new.batch_stats, batch_stats)
  close(metrics['loss'], np.mean(losses))
  # Not the big-batch update: BatchNorm saw two different micro-batches.
  big_state, big_fn = _setup(model, _config(), batch)
  big, _ = big_fn(big_state, batch, loop_key)
  diff = jax.tree.map(lambda a, b: np.abs(a - b).max(), big.params, new.params)
  assert max(jax.tree.leaves(diff)) > 1e-4


AUG = dict(
  crop_padding=1,
  random_flip=True,
  cutout_size=2,
  mixup_alpha=0.4,
  cutmix_alpha=1.0,
  label_smoothing=0.1,
)


@pytest.mark.slow
def test_same_seed_gives_bit_identical_runs():
  # Every augmentation, dropout, BatchNorm and EMA: all randomness in play.
  model, batch = Tiny(use_bn=True, dropout_rate=0.3), _batch()
  config = _config(optimizer='adam', lr=0.01, ema_decay=0.9, **AUG)
  state0, fn = _setup(model, config, batch)

  def run(seed):
    state, history = state0, []
    for _ in range(3):
      state, metrics = fn(state, batch, jax.random.key(seed))
      history.append(jax.device_get(metrics))
    return jax.device_get(state), history

  (s1, h1), (s2, h2), (s3, _) = run(3), run(3), run(4)
  assert h1 == h2
  leaves1, leaves2 = jax.tree.leaves(s1), jax.tree.leaves(s2)
  assert all(
    np.array_equal(a, b) for a, b in zip(leaves1, leaves2, strict=True)
  )
  diff = jax.tree.map(lambda a, b: np.max(np.abs(a - b)), s1.params, s3.params)
  assert max(jax.tree.leaves(diff)) > 0  # the loop key matters


def test_step_keys_are_distinct_and_depend_on_step():
  loop_key = jax.random.key(0)
  k0, k1 = step.step_keys(loop_key, 0), step.step_keys(loop_key, 1)
  data = [jax.random.key_data(k) for k in [*k0.values(), *k1.values()]]
  assert len({np.asarray(d).tobytes() for d in data}) == len(data)
  want = jax.random.fold_in(jax.random.fold_in(loop_key, 1), 1)
  np.testing.assert_array_equal(
    jax.random.key_data(k1['dropout']), jax.random.key_data(want)
  )


def _augment(keys, batch, **kw):
  """The config's augmentation under jit (eager beta sampling is slow)."""
  fn = augment.make_augment(_config(**kw), num_classes=3)
  return jax.jit(fn)(keys, batch['image'], batch['label'])


@pytest.mark.slow
def test_augment_follows_config_and_draws_each_stream_key():
  keys = step.step_keys(jax.random.key(5), 3)
  batch = _batch(shape=(8, 6, 6, 2))
  # All switches off: the batch is untouched and the targets are one-hot.
  plain, targets = _augment(keys, batch)
  np.testing.assert_array_equal(plain, batch['image'])
  np.testing.assert_array_equal(targets, np.eye(3)[np.asarray(batch['label'])])

  got, targets = _augment(
    keys,
    batch,
    crop_padding=2,
    random_flip=True,
    cutout_size=3,
    label_smoothing=0.3,
    mixup_alpha=0.4,
  )

  # The same pipeline by hand: each op with its own stream's key, in order.
  @jax.jit
  def by_hand(keys, images, smooth):
    x = augmentation.random_crop(keys['crop'], images, padding=2)
    x = augmentation.random_flip(keys['flip'], x)
    x = augmentation.cutout(keys['cutout'], x, size=3)
    _, _, lam, perm = augmentation.mixup_with_params(
      keys['mixup'], x, smooth, alpha=0.4
    )
    return x, lam, perm

  smooth = 0.7 * np.eye(3)[np.asarray(batch['label'])] + 0.3 / 3
  x, lam, perm = by_hand(keys, batch['image'], jnp.float32(smooth))
  x, lam, perm = np.asarray(x), float(lam), np.asarray(perm)
  assert 0 < lam < 1 and not np.array_equal(perm, np.arange(8))
  np.testing.assert_allclose(got, lam * x + (1 - lam) * x[perm], atol=1e-6)
  np.testing.assert_allclose(
    targets, lam * smooth + (1 - lam) * smooth[perm], atol=1e-6
  )
  assert not np.allclose(got, batch['image'])


@pytest.mark.slow
def test_mixup_and_cutmix_together_pick_one_per_batch():
  batch = _batch(shape=(8, 6, 6, 2))
  onehot = jnp.float32(np.eye(3)[np.asarray(batch['label'])])
  keys = step.step_keys(jax.random.key(0), 0)
  got, targets = _augment(keys, batch, mixup_alpha=0.4, cutmix_alpha=1.0)
  use_mixup = bool(jax.random.bernoulli(keys['mix_choice']))
  name, alpha = ('mixup', 0.4) if use_mixup else ('cutmix', 1.0)
  op = functools.partial(getattr(augmentation, name), alpha=alpha)
  want_x, want_t = jax.jit(op)(keys[name], batch['image'], onehot)
  np.testing.assert_allclose(got, want_x, atol=1e-6)
  np.testing.assert_allclose(targets, want_t, atol=1e-6)
  assert not np.allclose(targets, onehot)


def test_label_smoothing_uses_softmax_cross_entropy():
  model, batch = Tiny(), _batch()
  config = _config(label_smoothing=0.2)
  state, fn = _setup(model, config, batch)
  logits = model.apply({'params': state.params}, batch['image'], train=False)
  targets = optax.smooth_labels(jax.nn.one_hot(batch['label'], 3), 0.2)
  want = optax.softmax_cross_entropy(logits, targets).mean()
  _, metrics = fn(state, batch, jax.random.key(0))
  np.testing.assert_allclose(metrics['loss'], want, rtol=1e-6)


def test_non_image_inputs_skip_augmentation():
  model, batch = Tiny(), _batch(shape=(8, 6))
  config = _config(**AUG)
  state, fn = _setup(model, config, batch)
  logits = model.apply({'params': state.params}, batch['image'], train=False)
  targets = optax.smooth_labels(jax.nn.one_hot(batch['label'], 3), 0.1)
  want = optax.softmax_cross_entropy(logits, targets).mean()
  _, metrics = fn(state, batch, jax.random.key(0))
  np.testing.assert_allclose(metrics['loss'], want, rtol=1e-6)


@pytest.mark.slow
def test_bfloat16_model_gives_float32_metrics_and_top5():
  model = Tiny(num_classes=12, dtype=jnp.bfloat16)
  batch = _batch(num_classes=12)
  state, fn = _setup(model, _config(), batch)
  logits = model.apply({'params': state.params}, batch['image'], train=False)
  assert logits.dtype == jnp.bfloat16
  _, metrics = fn(state, batch, jax.random.key(0))
  assert all(v.dtype == jnp.float32 for v in metrics.values())
  top5 = jax.lax.top_k(logits.astype(jnp.float32), 5)[1]
  labels = np.asarray(batch['label'])
  want = np.mean([y in t for y, t in zip(labels, top5, strict=True)])
  np.testing.assert_allclose(metrics['top5_accuracy'], want)


@pytest.mark.slow
def test_ema_of_params_and_batch_stats():
  model, batch = Tiny(use_bn=True), _batch()
  state, fn = _setup(model, _config(ema_decay=0.75), batch)
  p0, bs0 = state.params, state.batch_stats
  p0, bs0 = jax.device_get(p0), jax.device_get(bs0)
  new, _ = fn(state, batch, jax.random.key(0))
  mix = lambda a, b: 0.75 * a + 0.25 * b
  jax.tree.map(
    lambda e, w: np.testing.assert_allclose(e, w, rtol=1e-6, atol=1e-7),
    (new.ema_params, new.ema_batch_stats),
    jax.tree.map(mix, (p0, bs0), (new.params, new.batch_stats)),
  )
  # Config asks for EMA, state has none: a clear error, not a silent no-op.
  no_ema_state, _ = _setup(model, _config(), batch)
  with pytest.raises(ValueError, match='ema'):
    fn(no_ema_state, batch, jax.random.key(0))
