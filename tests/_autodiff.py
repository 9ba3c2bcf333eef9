"""Gradients of a scalar function of NumPy arrays on whichever Keras backend runs."""

import keras
import numpy as np


def gradients(fn, arrays):
    """Returns `d fn(*tensors) / d tensor` for each array, as NumPy arrays.

    `fn` takes backend tensors made from `arrays` and returns a scalar tensor;
    it may call Keras layers and `keras.ops`.
    """
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        tensors = [tf.constant(a) for a in arrays]
        with tf.GradientTape() as tape:
            tape.watch(tensors)
            value = fn(*tensors)
        grads = tape.gradient(value, tensors)
    elif backend == "jax":
        import jax

        grads = jax.grad(fn, argnums=tuple(range(len(arrays))))(*arrays)
    elif backend == "torch":
        import torch

        tensors = [torch.tensor(a, requires_grad=True) for a in arrays]
        grads = torch.autograd.grad(fn(*tensors), tensors, allow_unused=True)
    else:
        raise NotImplementedError(f"no gradients for backend {backend!r}")
    return [
        np.zeros_like(a) if g is None else keras.ops.convert_to_numpy(g)
        for a, g in zip(arrays, grads)
    ]
