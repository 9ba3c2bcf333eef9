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


def check_more_steps_than(sequence, minimum: int, message: str):
    """Checks at run time that `sequence` has more than `minimum` steps (axis 1).

    Like `check_batch_size`: the caller checks a known length; only a
    TensorFlow graph with an unknown length needs a graph assertion.

    Returns:
        `sequence`, with the check attached where the backend needs one.
    """
    if keras.backend.backend() != "tensorflow":
        return sequence
    import tensorflow as tf

    if tf.executing_eagerly():
        return sequence
    check = tf.debugging.assert_greater(tf.shape(sequence)[1], minimum, message=message)
    with tf.control_dependencies([check]):
        return tf.identity(sequence)


# JAX differentiates `lax.scan` by saving every step's intermediate values and
# reading them back in the backward pass; recomputing each step instead trains
# faster on the CPU (benchmarks/backends.py) and keeps less memory. Set to False
# to turn it off (tests compare both paths).
REMAT_STEP_ON_JAX = True


def loop_step(step):
    """`step` as the loop should call it: rematerialised on JAX, as is elsewhere."""
    if keras.backend.backend() != "jax" or not REMAT_STEP_ON_JAX:
        return step
    import jax

    return jax.checkpoint(step)
