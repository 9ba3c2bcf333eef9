"""The time loop: one step graph run by Keras's own recurrent machinery."""

from __future__ import annotations

import math

import keras
from keras import ops

from cellgraph import backend
from cellgraph.step_graph import call_step_model


class PackLayout:
    """How several per-step tensors share one packed sequence tensor.

    `keras.layers.RNN` loops over a single sequence tensor. Several step
    inputs (and the ground truth for teacher forcing) are flattened per step
    and concatenated on the last axis; the step unpacks them again.
    """

    def __init__(self, shapes, dtypes):
        self.shapes = [tuple(s) for s in shapes]
        self.dtypes = list(dtypes)
        self.sizes = [math.prod(s) for s in self.shapes]

    def pack(self, sequences, dtype):
        """Packs `(batch, time, *shape_i)` tensors to `(batch, time, sum)`."""
        batch = ops.shape(sequences[0])[0]
        time = ops.shape(sequences[0])[1]
        flat = [
            ops.reshape(ops.cast(s, dtype), (batch, time, size))
            for s, size in zip(sequences, self.sizes)
        ]
        return flat[0] if len(flat) == 1 else ops.concatenate(flat, axis=-1)

    def unpack(self, packed):
        """Splits a packed step `(batch, sum)` into `(batch, *shape_i)` tensors."""
        parts, start = [], 0
        for shape, size, dtype in zip(self.shapes, self.sizes, self.dtypes):
            part = packed[:, start : start + size]
            parts.append(ops.cast(ops.reshape(part, (-1, *shape)), dtype))
            start += size
        return parts


class StepCell(keras.layers.Layer):
    """Adapts a one-step model to the `keras.layers.RNN` cell protocol.

    The sequence layer configures it before each loop (`configure`): which
    parts of the packed step are step inputs, ground truth and sampling
    coins, and which tensors are captured for the whole loop (constants and,
    when decoding, the repeated input). Captured tensors are closed over by
    the step function, as Keras does with its dropout masks.
    """

    def __init__(self, step_model, counts, state_shapes, **kwargs):
        super().__init__(**kwargs)
        self.step_model = step_model
        self.counts = dict(counts)
        self.state_size = [tuple(s) for s in state_shapes]
        self.configure()

    def configure(
        self,
        layout: PackLayout | None = None,
        captured_inputs=None,
        constants=None,
        teacher: bool = False,
        sampled: bool = False,
        masked: bool = False,
        zero_output_for_mask: bool = False,
    ):
        self._layout = layout
        self._captured_inputs = list(captured_inputs or [])
        self._constants = list(constants or [])
        self._teacher = teacher
        self._sampled = sampled
        self._masked = masked
        self._zero_output_for_mask = zero_output_for_mask

    def build(self, input_shape):
        self.built = True

    def call(self, inputs, states, training=None):
        num_inputs = self.counts["num_inputs"]
        num_states = self.counts["num_states"]
        has_readout = self.counts["has_readout"]
        states = list(states)
        # After the step graph's states (and readout, or placeholder), a masked
        # loop carries the previous output.
        inner, carried = states[: len(self.state_size)], states[len(self.state_size) :]
        parts = self._layout.unpack(inputs) if self._layout is not None else [inputs]
        if self._masked:
            parts, keep = parts[:-1], parts[-1]
        if self._captured_inputs:
            step_inputs = list(self._captured_inputs)
            extra = parts  # ground truth / coins; a dummy sequence otherwise
        else:
            step_inputs, extra = parts[:num_inputs], parts[num_inputs:]
        model_inputs = [*step_inputs, *inner[:num_states], *self._constants]
        if has_readout:
            readout = inner[num_states]
            if self._teacher:
                truth = extra[0]
                if self._sampled:
                    coin = ops.cast(extra[1], truth.dtype)
                    coin = ops.reshape(coin, (-1,) + (1,) * (len(truth.shape) - 1))
                    readout = coin * truth + (1 - coin) * ops.cast(readout, truth.dtype)
                else:
                    readout = truth
            model_inputs.append(readout)
        outputs = backend.loop_step(
            lambda *tensors: call_step_model(self.step_model, list(tensors), training)
        )(*model_inputs)
        output, new_states = outputs[0], list(outputs[1:])
        if has_readout:
            new_states.append(output)
        if len(new_states) < len(inner):  # the placeholder state
            new_states.append(inner[-1])
        if not self._masked:
            return output, new_states
        # Masked steps keep the states and repeat the previous output (or
        # output zeros), as Keras's TensorFlow loop does; done here so that
        # every backend follows the same rule for states of any rank.
        previous = ops.zeros_like(output) if self._zero_output_for_mask else carried[0]
        output = _where(keep, output, previous)
        new_states = [_where(keep, new, old) for new, old in zip(new_states, inner)]
        if not self._zero_output_for_mask:
            new_states.append(output)
        return output, new_states


def _where(keep, new, old):
    """`new` where the per-example flag `keep` (batch,) is set, else `old`."""
    keep = ops.reshape(ops.cast(keep, "bool"), (-1,) + (1,) * (len(new.shape) - 1))
    return ops.where(keep, new, ops.cast(old, new.dtype))
