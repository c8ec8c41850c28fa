"""train_lib: the training machinery, driven by one flat config.

Modules (import them directly; this package imports nothing so that, e.g.,
`train_lib.sharding` stays cheap to import):
  schedules, optim  learning-rate schedules and optax chains from the config;
  state             `TrainState`, the arrays of a run;
  sharding          the ('data',) device mesh and batch/replicated shardings;
  step              jitted, sharded train and eval steps;
  data              `get_dataset(config.data)`: offline and tfds data sets;
  checkpoint        orbax checkpoints (the only orbax user);
  metrics           metrics.jsonl and the terminal progress line;
  trainer           `train_and_evaluate(config, workdir)`.
"""
