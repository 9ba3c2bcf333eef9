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


# Which executor runs a step graph inside the loop: "auto" (the lean executor
# on PyTorch, where each layer's full Keras call costs more than a step's
# arithmetic; Keras's model call elsewhere, where the graph is traced once),
# "lean" or "generic" on every backend (tests compare the two).
STEP_EXECUTOR = "auto"
EXECUTORS = ("auto", "lean", "generic")


# With the lean executor, the part of a step graph that reads only the step
# inputs (an input projection, say) runs once for all timesteps before the
# loop, as Keras's own PyTorch LSTM does. On TensorFlow that was measured
# slower (docs/benchmarks.md), so it comes only with the lean executor.
HOIST_STEP_INPUTS = True


def lean_steps() -> bool:
    """Whether step graphs run on the lean executor (`STEP_EXECUTOR`)."""
    if STEP_EXECUTOR not in EXECUTORS:
        raise ValueError(
            f"cellgraph.backend.STEP_EXECUTOR must be one of {EXECUTORS}. "
            f"Received: {STEP_EXECUTOR!r}"
        )
    if STEP_EXECUTOR == "auto":
        return keras.backend.backend() == "torch"
    return STEP_EXECUTOR == "lean"


# A step graph that is one built-in LSTMCell or GRUCell (Keras's default
# activations, no dropout in training, no mask) runs PyTorch's own fused kernel
# (`torch.lstm` / `torch.gru`) on the PyTorch backend. Set to False to run it
# as any other step graph (tests compare both).
NATIVE_KERNELS_ON_TORCH = True


def native_kernels_available() -> bool:
    """Whether `native_rnn` runs here (PyTorch, `NATIVE_KERNELS_ON_TORCH`)."""
    return keras.backend.backend() == "torch" and NATIVE_KERNELS_ON_TORCH


def native_rnn(kind: str, x, states, weights, has_biases: bool):
    """Runs the backend's own fused recurrent kernel (`native_kernels_available`).

    Args:
        kind: `"lstm"` or `"gru"`.
        x: the sequence, `(batch, time, features)`, in processing order.
        states: the initial states, `[h, c]` or `[h]`.
        weights: in the kernel's layout (see `backend.torch_kernels.run`).
        has_biases: whether `weights` holds the biases.

    Returns:
        `(outputs, final_states)`: every step's output and the final states.
    """
    from cellgraph.backend import torch_kernels

    return torch_kernels.run(kind, x, states, weights, has_biases)


# On PyTorch, Keras's loop over time is a Python loop that also flattens and
# packs every step's values with `keras.tree` (and runs the step once more
# before the loop, for the output's structure); cellgraph runs its own plain
# loop there (`torch_kernels.loop`). False: Keras's loop (tests compare both).
OWN_LOOP_ON_TORCH = True


def is_shape_probe(x) -> bool:
    """Whether `x` is a tensor without values that Keras runs a call on to learn shapes.

    Keras's PyTorch backend infers output shapes (e.g. when `fit` first
    builds a model) by running the call on "meta" tensors; every op of every
    step then goes through PyTorch's reference decompositions (2-3 s for an
    LSTM over 100 steps). The layer can answer from its output spec instead.
    """
    return keras.backend.backend() == "torch" and bool(getattr(x, "is_meta", False))


def shape_probes(specs):
    """Meta tensors (no values) of the shapes and dtypes of `specs`."""
    import torch

    def make(spec):
        return torch.empty(
            tuple(spec.shape), dtype=getattr(torch, spec.dtype), device="meta"
        )

    return [make(s) for s in specs] if isinstance(specs, list) else make(specs)


def own_loop() -> bool:
    """Whether the loop over time is cellgraph's (`torch_kernels.loop`)."""
    return keras.backend.backend() == "torch" and OWN_LOOP_ON_TORCH


def run_loop(step, sequence, initial_states, return_sequences, go_backwards):
    """Runs `torch_kernels.loop` (where `own_loop()`)."""
    from cellgraph.backend import torch_kernels

    return torch_kernels.loop(
        step, sequence, initial_states, return_sequences, go_backwards
    )


def fast_call(op, input_shapes):
    """A backend-native version of `op.call` for the lean executor, or `None`.

    Only on PyTorch (`backend.torch_layers`), where each `keras.ops` call
    costs many times the op itself at the size of one step.
    """
    if keras.backend.backend() != "torch":
        return None
    from cellgraph.backend import torch_layers

    return torch_layers.fast_call(op, input_shapes)


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
