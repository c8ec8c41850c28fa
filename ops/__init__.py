"""Pure jax.numpy / jax.lax functions for the lecture notes' primitives.

Activations, losses, initializers, convolutions, pooling, normalization,
regularization, augmentation, hand-written backprop and cost accounting, one
module each; no Flax, no state, and random ops take the key first.
"""
