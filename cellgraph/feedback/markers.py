"""Splitter and Merger: the two markers that put feedback into a chain of layers.

A `Splitter("name")` marks where a `FeedbackChain`/`FeedbackTree` records a
state; a `Merger("name", branch, op)` marks where `branch(previous state)` is
combined with the forward stream. Both are plain serializable objects, not
layers: the chain reads them when it builds its one-step model.
"""

from __future__ import annotations

import keras

from cellgraph.step_graph import shapes_compatible

_OPS = ("add", "mul", "concat")


@keras.saving.register_keras_serializable(package="cellgraph")
class Splitter:
    """Marks a point of a feedback chain whose tensor becomes a state.

    In a `FeedbackChain`, the tensor flowing at the Splitter is recorded as
    the state `name` and the stream goes on unchanged. In a `FeedbackTree`,
    the stream then goes on from the *previous step's* value of that state.
    Mergers anywhere in the chain read the previous step's value.

    Args:
        name: the state's name, unique within its chain.
    """

    def __init__(self, name: str):
        if not isinstance(name, str) or not name:
            raise ValueError(
                f"Argument `name` of Splitter must be a non-empty string. "
                f"Received: name={name!r}"
            )
        self.name = name

    def get_config(self) -> dict:
        return {"name": self.name}

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __repr__(self):
        return f"Splitter({self.name!r})"


@keras.saving.register_keras_serializable(package="cellgraph")
class Merger:
    """Folds feedback from a Splitter's state into a feedback chain.

    At each step, `branch` is applied to the previous step's value of the
    state `name`, and the result is combined with the tensor flowing through
    the chain at the Merger.

    Args:
        name: the name of the `Splitter` whose state is read. Several
            Mergers may read the same state.
        branch: a Keras layer (or `keras.Sequential`/functional model)
            applied to the state, e.g. `Dense`, `Conv2D`, `Conv2DTranspose`,
            `UpSampling2D`.
        op: how the two are combined: `"add"` or `"mul"` (the feedback must
            have, or broadcast to, the shape of the forward tensor),
            `"concat"` (along the last axis), or a Keras layer called on the
            list `[forward, feedback]` (e.g. `keras.layers.Maximum()`).
    """

    def __init__(self, name: str, branch, op="add"):
        if not isinstance(name, str) or not name:
            raise ValueError(
                "Argument `name` of Merger (the Splitter it reads) must be a "
                f"non-empty string. Received: name={name!r}"
            )
        if isinstance(branch, dict):
            branch = keras.saving.deserialize_keras_object(branch)
        if not isinstance(branch, keras.layers.Layer):
            raise ValueError(
                f"Argument `branch` of Merger({name!r}) must be a Keras layer "
                "(or Sequential/functional model). Received: "
                f"branch={branch!r} of type {type(branch).__name__}"
            )
        if isinstance(op, dict):
            op = keras.saving.deserialize_keras_object(op)
        if isinstance(op, str):
            if op not in _OPS:
                raise ValueError(
                    f"Argument `op` of Merger({name!r}) must be one of "
                    f"{list(_OPS)} or a Keras layer taking a list. "
                    f"Received: op={op!r}"
                )
        elif not isinstance(op, keras.layers.Layer):
            raise ValueError(
                f"Argument `op` of Merger({name!r}) must be one of {list(_OPS)} "
                "or a Keras layer called on [forward, feedback]. Received: "
                f"op={op!r} of type {type(op).__name__}"
            )
        self.name = name
        self.branch = branch
        self.op = op

    @property
    def preserves_shape(self) -> bool:
        """True when the result always has the forward tensor's shape."""
        return self.op in ("add", "mul")

    def merge(self, forward, state):
        """Returns `op(forward, branch(state))` on symbolic tensors."""
        feedback = self.branch(state)
        f_shape = tuple(forward.shape[1:])
        b_shape = tuple(feedback.shape[1:])
        problem = None
        if self.preserves_shape:
            if not _broadcasts_to(b_shape, f_shape):
                problem = "needs the feedback to have (or broadcast to) its shape"
            layer = keras.layers.Add() if self.op == "add" else keras.layers.Multiply()
        elif self.op == "concat":
            if len(b_shape) != len(f_shape) or not shapes_compatible(
                f_shape[:-1], b_shape[:-1]
            ):
                problem = "needs the same rank and shape except the last axis"
            layer = keras.layers.Concatenate(axis=-1)
        else:
            layer = self.op
        if problem is None:
            try:
                return layer([forward, feedback])
            except (ValueError, TypeError) as error:
                problem = f"failed: {error}"
        op = self.op if isinstance(self.op, str) else type(self.op).__name__
        raise ValueError(
            f"Merger({self.name!r}, op={op!r}): the branch "
            f"{self.branch.name!r} maps state {self.name!r} of shape "
            f"{tuple(state.shape)} to feedback of shape {tuple(feedback.shape)}, "
            f"which cannot be combined with the forward tensor of shape "
            f"{tuple(forward.shape)}: op={op!r} {problem}."
        )

    def get_config(self) -> dict:
        return {
            "name": self.name,
            "branch": keras.saving.serialize_keras_object(self.branch),
            "op": self.op
            if isinstance(self.op, str)
            else keras.saving.serialize_keras_object(self.op),
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __repr__(self):
        op = self.op if isinstance(self.op, str) else type(self.op).__name__
        return f"Merger({self.name!r}, {self.branch.name!r}, op={op!r})"


def _broadcasts_to(shape, target) -> bool:
    if len(shape) > len(target):
        return False
    for a, b in zip(reversed(shape), reversed(target)):
        if a not in (1, None) and b is not None and a != b:
            return False
    return True
