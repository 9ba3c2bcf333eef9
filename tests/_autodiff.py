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


def probe(shape):
    """A fixed array of `shape`, not constant: `sum(output * probe)` is a loss."""
    size = int(np.prod(shape))
    return np.cos(np.arange(size, dtype="float32") * 0.7).reshape(shape)


def layer_gradients(layer, x, **kwargs):
    """The outputs of `layer(x, **kwargs)` and the gradients of a loss on them.

    The loss is `sum(output * probe(output.shape))` over every output; the
    gradients are taken with respect to each trainable variable of `layer`
    and to `x` (an array, or a list of them: each one). Returns
    `(outputs, gradients)`, both lists of NumPy arrays.
    """
    backend = keras.backend.backend()
    trainable = layer.trainable_variables
    arrays = list(x) if isinstance(x, (list, tuple)) else [x]

    def call(inputs, **call_kwargs):
        inputs = list(inputs) if isinstance(x, (list, tuple)) else inputs[0]
        return keras.tree.flatten(layer(inputs, **call_kwargs))

    def loss_of(outputs):
        total = 0.0
        for output in outputs:
            weights = keras.ops.convert_to_tensor(probe(tuple(output.shape)))
            total = total + keras.ops.sum(keras.ops.cast(output, "float32") * weights)
        return total

    if backend == "tensorflow":
        import tensorflow as tf

        xt = [tf.constant(a) for a in arrays]
        with tf.GradientTape() as tape:
            tape.watch(xt)
            outputs = call(xt, **kwargs)
            value = loss_of(outputs)
        grads = tape.gradient(value, [*trainable, *xt])
    elif backend == "jax":
        import jax

        if not layer.built:
            layer(x, **kwargs)
        trainable = layer.trainable_variables
        non_trainable = [v.value for v in layer.non_trainable_variables]

        def f(values, xj):
            inputs = list(xj) if isinstance(x, (list, tuple)) else xj[0]
            outputs, _ = layer.stateless_call(values, non_trainable, inputs, **kwargs)
            outputs = keras.tree.flatten(outputs)
            return loss_of(outputs), outputs

        (_, outputs), (vg, xg) = jax.value_and_grad(f, argnums=(0, 1), has_aux=True)(
            [v.value for v in trainable], arrays
        )
        grads = [*vg, *xg]
    elif backend == "torch":
        import torch

        xt = [torch.tensor(a, requires_grad=a.dtype.kind == "f") for a in arrays]
        outputs = call(xt, **kwargs)
        wrt = [v.value for v in trainable] + [t for t in xt if t.requires_grad]
        grads = list(torch.autograd.grad(loss_of(outputs), wrt, allow_unused=True))
        grads += [None] * (len(trainable) + len(xt) - len(grads))
    else:
        raise NotImplementedError(f"no gradients for backend {backend!r}")
    arrays = [
        np.zeros(v.shape, "float32") if g is None else keras.ops.convert_to_numpy(g)
        for v, g in zip([*trainable, *arrays], grads)
    ]
    return [keras.ops.convert_to_numpy(o) for o in outputs], arrays
