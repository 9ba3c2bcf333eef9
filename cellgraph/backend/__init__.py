"""Backend-specific helpers, for the few things Keras offers no public op for."""

from __future__ import annotations

import keras


def check_batch_size(tensor, expected: int, message: str):
    """Checks at run time that `tensor` has batch size `expected`.

    Static shapes are checked by the caller. Inside a TensorFlow graph the
    batch size can be unknown until run time (`model.predict` traces with
    `None`); there a graph assertion raises with `message`. JAX and PyTorch
    always see concrete shapes, so nothing is left to check.

    Returns:
        `tensor`, with the check attached where the backend needs one.
    """
    if keras.backend.backend() != "tensorflow":
        return tensor
    import tensorflow as tf

    if tf.executing_eagerly():
        return tensor
    check = tf.debugging.assert_equal(tf.shape(tensor)[0], expected, message=message)
    with tf.control_dependencies([check]):
        return tf.identity(tensor)
