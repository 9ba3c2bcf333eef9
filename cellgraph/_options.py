"""Parsing, checking and serializing RecurrentModel options shared by subclasses."""

from __future__ import annotations

import keras

from cellgraph.cell import RNNCell

LEARNED = "learned"


def check_bool(name: str, value) -> bool:
    """`value` as a bool; a `TypeError` naming `name` for anything else."""
    if isinstance(value, bool) or type(value).__name__ == "bool_":
        return bool(value)
    raise TypeError(
        f"Argument `{name}` must be True or False. Received: {name}={value!r}"
    )


def parse_teacher_force(value):
    """`False`, or the probability in (0, 1] of feeding the ground truth."""
    if value is False or value is None or (type(value) in (int, float) and value == 0):
        return False
    if value is True:
        return 1.0
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not 0.0 < float(value) <= 1.0
    ):
        raise ValueError(
            "Argument `teacher_force` must be True/False or a probability in "
            f"(0, 1]. Received: teacher_force={value!r}"
        )
    return float(value)


def parse_decode(decode, output_length):
    """Checks `decode` and `output_length` together; returns both."""
    decode = check_bool("decode", decode)
    if decode:
        if (
            isinstance(output_length, bool)
            or not isinstance(output_length, int)
            or output_length < 1
        ):
            raise ValueError(
                "Argument `output_length` must be a positive integer when "
                f"`decode=True`. Received: output_length={output_length!r}"
            )
    elif output_length is not None:
        raise ValueError(
            "Argument `output_length` is the number of steps of a decoder and "
            "needs `decode=True` (without it, the number of steps is the "
            "input's time length). Received: output_length="
            f"{output_length!r} and decode=False"
        )
    return decode, output_length


def parse_return_sequences(value, decode: bool) -> bool:
    """`None` means: every step's output when decoding, else the last one."""
    if value is None:
        return decode
    return check_bool("return_sequences", value)


def check_teacher_force(value, graph):
    """Checks a parsed `teacher_force` against the step graph."""
    if not value:
        return False
    if graph.readout_input is None:
        raise ValueError(
            "Teacher forcing feeds the ground truth through the readout: give "
            "the step graph a `readout_input`. Received: teacher_force="
            f"{value!r} and readout_input=None"
        )
    return float(value)


def parse_state_initializer(value, num_states=None):
    """Parses a `state_initializer`; `num_states=None` skips the length check."""
    if isinstance(value, (list, tuple)):
        if num_states is not None and len(value) != num_states:
            raise ValueError(
                "Argument `state_initializer` as a list needs one entry per "
                f"state ({num_states}). Received {len(value)}: {value!r}"
            )
        items = list(value)
    else:
        items = [value] * (1 if num_states is None else num_states)
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
    if num_states is None and not isinstance(value, (list, tuple)):
        return parsed[0]
    return parsed


def expand_state_initializer(value, num_states):
    """A parsed `state_initializer` as one entry per state (length checked)."""
    if isinstance(value, (list, tuple)):
        return parse_state_initializer(list(value), num_states)
    return [value] * num_states


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


def _lambda_names(config) -> list[str]:
    """Names of the Lambda layers in a serialized config (any depth)."""
    found = []
    if isinstance(config, dict):
        if config.get("class_name") == "Lambda":
            found.append(str(config.get("config", {}).get("name", "?")))
        for value in config.values():
            found += _lambda_names(value)
    elif isinstance(config, (list, tuple)):
        for value in config:
            found += _lambda_names(value)
    return found


def deserialize_part(config, owner: str, custom_objects=None):
    """Deserializes a step model (or layer) from a cellgraph layer's config.

    Keras refuses a `Lambda` layer in safe mode. Its message is kept (it is
    the security check) and completed: `keras.layers.Bidirectional` copies a
    layer through its config, so a step graph holding a `Lambda` meets this
    refusal there too, far from any file.
    """
    names = _lambda_names(config)  # before: deserializing consumes the config
    try:
        return keras.saving.deserialize_keras_object(
            config, custom_objects=custom_objects
        )
    except ValueError as error:
        if not names or "Lambda" not in str(error):
            raise
        raise ValueError(
            f"{error}\n\ncellgraph: the step graph of {owner!r} holds the Lambda "
            f"layer(s) {names}. Loading a file, use safe_mode=False only if you "
            "trust it. keras.layers.Bidirectional copies its layer (forward and "
            "backward) through the config, which meets the same refusal: write "
            "the Lambda as a small keras.layers.Layer subclass with get_config "
            "(it then also loads in safe mode), or, for code you trust, call "
            "keras.config.enable_unsafe_deserialization() first."
        ) from error


def serialize_shared(obj) -> dict:
    """`keras.saving.serialize_keras_object(obj)`, marked for weight sharing.

    Keras shares an object that appears twice in one saved model through a
    `shared_object_id`, but it writes the id only into the config dicts it
    still holds, and the configs nested in a layer's `get_config` are copied
    before the second appearance. A layer used both inside a step graph and
    elsewhere (the outer model, a second step graph, a `get_cell()`) then
    loads as two layers, one of them without weights. Marking `obj` and every
    layer of its model with its id up front makes every appearance refer to
    one object when loading.
    """
    config = keras.saving.serialize_keras_object(obj)
    _mark(config, obj)
    return config


def _mark(config, obj):
    if not isinstance(config, dict) or "config" not in config:
        return
    config["shared_object_id"] = int(id(obj))
    inner = config.get("config")
    if isinstance(obj, keras.Model) and isinstance(inner, dict):
        by_name = {layer.name: layer for layer in obj.layers}
        for entry in inner.get("layers", []) or []:
            name = entry.get("name") or entry.get("config", {}).get("name")
            if name in by_name:
                _mark(entry, by_name[name])


def sole_cell(step_model, config, layout):
    """The cell, when the step graph is one `RNNCell` called on `[x, *states]`.

    That is the graph of `cell.get_layer()`. Read from the step model's
    config: its only layer besides the Inputs is the cell, called once on the
    inputs in order, and the outputs are the cell's, in order.
    """
    if layout.num_inputs != 1 or layout.num_constants or layout.has_readout:
        return None
    inner = config.get("config", {})
    entries = [
        e for e in inner.get("layers", []) if e.get("class_name") != "InputLayer"
    ]
    cells = [layer for layer in step_model.layers if isinstance(layer, RNNCell)]
    if len(entries) != 1 or len(cells) != 1 or entries[0].get("name") != cells[0].name:
        return None
    nodes = entries[0].get("inbound_nodes") or []
    if len(nodes) != 1 or nodes[0].get("kwargs"):
        return None
    args = nodes[0].get("args") or [[]]
    try:
        history = [arg["config"]["keras_history"] for arg in args[0]]
    except (KeyError, TypeError):
        return None
    inputs = [list(item) for item in inner.get("input_layers", [])]
    outputs = [list(item) for item in inner.get("output_layers", [])]
    name = cells[0].name
    expected_outputs = [[name, 0, i] for i in range(1 + layout.num_states)]
    if [list(h) for h in history] != inputs or outputs != expected_outputs:
        return None
    return cells[0]
