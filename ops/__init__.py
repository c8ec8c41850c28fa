"""Pure jax.numpy / jax.lax functions for the lecture notes' primitives.

Activations, losses, initializers, convolutions (`convolution`, the ops the
networks run; `conv_reference`, the notes' other formulations of the same
convolution and the conv-layer backprop by hand, tested against it),
pooling, normalization, regularization, augmentation, the dense-layer
backprop by hand (`backprop`) and cost accounting, one module each; no Flax,
no state, and random ops take the key first.
"""
