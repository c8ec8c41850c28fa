"""train_lib."""
