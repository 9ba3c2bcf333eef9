"""Parsing, checking and serializing RecurrentModel options shared by subclasses."""

from __future__ import annotations

import keras

LEARNED = "learned"


def check_teacher_force(value, graph):
    if value is False or value is None or value == 0:
        return False
    if value is True:
        value = 1.0
    if not isinstance(value, (int, float)) or not 0.0 < float(value) <= 1.0:
        raise ValueError(
            "Argument `teacher_force` must be True/False or a probability in "
            f"(0, 1]. Received: teacher_force={value!r}"
        )
    if graph.readout_input is None:
        raise ValueError(
            "Teacher forcing feeds the ground truth through the readout: give "
            "the step graph a `readout_input`. Received: teacher_force="
            f"{value!r} and readout_input=None"
        )
    return float(value)


def parse_state_initializer(value, num_states):
    if isinstance(value, (list, tuple)):
        if len(value) != num_states:
            raise ValueError(
                "Argument `state_initializer` as a list needs one entry per "
                f"state ({num_states}). Received {len(value)}: {value!r}"
            )
        items = list(value)
    else:
        items = [value] * num_states
    parsed = []
    for item in items:
        if item is None or item == LEARNED:
            parsed.append(item)
        else:
            try:
                parsed.append(keras.initializers.get(item))
            except (ValueError, TypeError) as error:
                raise ValueError(
                    "Argument `state_initializer` must be None, 'learned', a "
                    "Keras initializer (name or object), or a list of those. "
                    f"Received: {item!r}"
                ) from error
    return parsed


def serialize_initializers(value):
    """Config form of a `state_initializer` (None, 'learned', initializers, lists)."""
    if isinstance(value, (list, tuple)):
        return [serialize_initializers(item) for item in value]
    if value is None or isinstance(value, str):
        return value
    return keras.initializers.serialize(value)


def deserialize_initializers(value):
    """Inverse of `serialize_initializers`."""
    if isinstance(value, list):
        return [deserialize_initializers(item) for item in value]
    if isinstance(value, dict):
        return keras.initializers.deserialize(value)
    return value
