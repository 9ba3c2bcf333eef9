"""Checks of a RecurrentModel's call arguments against its step graph.

Each check raises a `ValueError` that names the argument, the expected shape
and the received one, before anything reaches the backend's loop.
"""

from __future__ import annotations

import keras
from keras import ops

from cellgraph.step_graph import call_step_model, shapes_compatible, walk_layers


def as_list(value) -> list:
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


def describe(obj) -> str:
    """A Keras object as its class and config, e.g. `L2(l2=0.01)`.

    For messages: `repr` of a Keras object gives its module path and memory
    address, which tell the user nothing.
    """
    try:
        config = obj.get_config()
    except (AttributeError, NotImplementedError, TypeError):
        config = None
    if not isinstance(config, dict):
        return type(obj).__name__
    items = ", ".join(f"{k}={v!r}" for k, v in config.items())
    return f"{type(obj).__name__}({items})"


def _shape(value) -> tuple:
    return tuple(value.shape)


def _same_batch(name: str, value, batch, layer_name: str):
    got = _shape(value)[0] if _shape(value) else None
    if batch is not None and got is not None and got != batch:
        raise ValueError(
            f"Argument `{name}` of {layer_name} must have the inputs' batch size "
            f"{batch}. Received: shape={_shape(value)} (batch size {got})"
        )


def _count(argument: str, where: str, values, shapes, what: str = ""):
    """Checks that `values` has one tensor per entry of `shapes`.

    The message gives the expected shapes and the received ones.
    """
    if len(values) != len(shapes):
        raise ValueError(
            f"Argument `{argument}`{where} must be a list of {len(shapes)} "
            f"tensors{what} with shapes {[(None, *s) for s in shapes]}. "
            f"Received {len(values)}: {[_shape(v) for v in values]}"
        )


def _each_shape(argument: str, where: str, values, shapes, batch=None, owner=""):
    """Checks `values[i]` against `(batch, *shapes[i])`, naming `argument[i]`.

    `where` is what follows the argument's name in the message (e.g.
    " of rnn"); `batch`, when known, is the inputs' batch size.
    """
    for i, (value, shape) in enumerate(zip(values, shapes)):
        if not shapes_compatible((None, *shape), _shape(value)):
            raise ValueError(
                f"Argument `{argument}[{i}]`{where} must have shape "
                f"{(None, *shape)}. Received: shape={_shape(value)}"
            )
        _same_batch(f"{argument}[{i}]", value, batch, owner)


def input_shapes(layer, input_shape) -> list[tuple]:
    """The call's input shapes as a list, checked against the step inputs."""
    shapes = input_shape
    if not (
        isinstance(shapes, (list, tuple))
        and shapes
        and isinstance(shapes[0], (list, tuple))
    ):
        shapes = [shapes]
    shapes = [tuple(s) for s in shapes]
    expected = layer.step_graph.input_shapes
    if len(shapes) != len(expected):
        raise ValueError(
            f"{layer.name} has {len(expected)} step inputs, so it "
            f"is called on a list of {len(expected)} "
            f"{'tensors' if layer.decode else 'sequences'}. Received "
            f"{len(shapes)} with shapes {shapes}"
        )
    lead = 1 if layer.decode else 2
    for i, (step, shape) in enumerate(zip(expected, shapes)):
        want = (None,) * lead + step
        if not shapes_compatible(want, shape):
            name = "inputs" if len(shapes) == 1 else f"inputs[{i}]"
            layout = (
                "(batch, *step_shape)" if layer.decode else "(batch, time, *step_shape)"
            )
            raise ValueError(
                f"Argument `{name}` of {layer.name} must have shape "
                f"{layout} = {want}. Received: shape={shape}"
            )
        if not layer.decode and shape[1] == 0:
            name = "inputs" if len(shapes) == 1 else f"inputs[{i}]"
            raise ValueError(
                f"Argument `{name}` of {layer.name} is a sequence of 0 steps; a "
                "recurrent layer needs at least one step. Received: "
                f"shape={shape}"
            )
    times = {s[1] for s in shapes if not layer.decode and s[1] is not None}
    if len(times) > 1:
        raise ValueError(
            f"The sequences given to {layer.name} must have the same number of "
            f"steps. Received shapes {shapes}"
        )
    return shapes


def call_arguments(
    layer,
    inputs,
    initial_state=None,
    initial_readout=None,
    ground_truth=None,
    constants=None,
    mask=None,
    training=None,
):
    """Checks every call argument; returns `(inputs, states, constants)` as lists."""
    name = layer.name
    graph = layer.step_graph
    xs = as_list(inputs)
    shapes = input_shapes(layer, [_shape(x) for x in xs])
    batch = shapes[0][0]
    time = None if layer.decode else shapes[0][1]

    states = as_list(initial_state)
    if initial_state is not None and len(states) != layer.num_states:
        raise ValueError(
            f"Argument `initial_state` of {name} must be a list of "
            f"{layer.num_states} tensors (one per state). Received "
            f"{len(states)}: {[_shape(s) for s in states]}"
        )
    _each_shape("initial_state", "", states, layer.state_shapes, batch, name)

    consts = as_list(constants)
    _count("constants", f" of {name}", consts, graph.constant_shapes)
    _each_shape("constants", f" of {name}", consts, graph.constant_shapes, batch, name)

    output_shape = tuple(graph.output_shape)
    if initial_readout is not None:
        if graph.readout_input is None:
            raise ValueError(
                f"Argument `initial_readout` of {name} is the first readout, "
                "but the step graph has no `readout_input`. Received: "
                f"initial_readout with shape {_shape(initial_readout)}"
            )
        if not shapes_compatible((None, *output_shape), _shape(initial_readout)):
            raise ValueError(
                f"Argument `initial_readout` of {name} must have the output's "
                f"shape {(None, *output_shape)}. Received: "
                f"shape={_shape(initial_readout)}"
            )
        _same_batch("initial_readout", initial_readout, batch, name)

    if layer.teacher_force and training and ground_truth is None:
        raise ValueError(
            f"{name} uses teacher forcing: in training, pass "
            "`ground_truth=` (the targets, aligned with the outputs). "
            "Received: ground_truth=None"
        )
    if ground_truth is not None and layer.teacher_force:
        steps = layer.output_length if layer.decode else time
        want = (batch, steps, *output_shape)
        if not shapes_compatible(want, _shape(ground_truth)):
            raise ValueError(
                f"Argument `ground_truth` of {name} holds the targets aligned "
                f"with the outputs: shape (batch, time, *output_shape) = {want}. "
                f"Received: shape={_shape(ground_truth)}"
            )

    mask = mask if not isinstance(mask, (list, tuple)) else None
    if mask is not None and not layer.decode and hasattr(mask, "shape"):
        if not shapes_compatible((batch, time), _shape(mask)):
            raise ValueError(
                f"Argument `mask` of {name} must have shape (batch, time) = "
                f"{(batch, time)}. Received: shape={_shape(mask)}"
            )

    if layer.stateful and layer._state_variables:
        expected = layer._state_variables[0].shape[0]
        if batch is not None and batch != expected:
            raise ValueError(
                f"A stateful RecurrentModel keeps states for a batch size "
                f"of {expected}. Received inputs with batch size {batch}. Use "
                "a fixed batch size (and `drop_remainder`) or rebuild the "
                "layer."
            )
    return xs, states, consts


def step_arguments(layer, xs, states, constants):
    """Checks the arguments of `RecurrentModel.step`."""
    graph = layer.step_graph
    name = f"{layer.name}.step()"
    if len(xs) != len(graph.inputs):
        raise ValueError(
            f"Argument `inputs` of {name} must be {len(graph.inputs)} step "
            f"tensors. Received {len(xs)}."
        )
    for i, (x, shape) in enumerate(zip(xs, graph.input_shapes)):
        if not shapes_compatible((None, *shape), _shape(x)):
            label = "inputs" if len(xs) == 1 else f"inputs[{i}]"
            raise ValueError(
                f"Argument `{label}` of {name} is one step, shape "
                f"{(None, *shape)}. Received: shape={_shape(x)}"
            )
    if states:
        _count("states", f" of {name}", states, layer.state_shapes, " (one per state)")
    _each_shape("states", f" of {name}", states, layer.state_shapes)
    _count(
        "constants",
        f" of {name}",
        constants,
        graph.constant_shapes,
        " (the step graph's constants)",
    )
    _each_shape("constants", f" of {name}", constants, graph.constant_shapes)


def probe_losses(name, graph):
    """On JAX, runs one step on zeros to find `add_loss()` calls in the graph.

    JAX's loop runs in a stateless scope that drops losses without a word,
    so the check after the loop sees nothing there; one step outside the
    loop, in a scope that collects losses, does.
    """
    shapes = [tuple(t.shape[1:]) for t in graph.model.inputs]
    if any(d is None for shape in shapes for d in shape):
        return  # cannot make a probe input; the graph's shapes are not fixed
    values = [
        ops.zeros((1, *shape), dtype=t.dtype)
        for shape, t in zip(shapes, graph.model.inputs)
    ]
    # The variables keep their values in the scope (regularizers read them).
    mapping = [(v, v.value) for v in graph.model.weights]
    with keras.StatelessScope(state_mapping=mapping, collect_losses=True) as scope:
        call_step_model(graph.model, values, training=True)
        if scope.losses:
            refuse_losses_added_in_the_loop(name, list(walk_layers(graph.model)))


def refuse_losses_added_in_the_loop(name, step_layers):
    """A layer called `add_loss()` inside the step: its loss cannot leave the loop."""
    culprits = []
    for layer in step_layers:
        if isinstance(layer, keras.Model):
            continue
        regularized = sum(
            getattr(v, "regularizer", None) is not None for v in layer.weights
        )
        if len(layer.losses) > regularized:
            culprits.append(f"{layer.name!r} ({type(layer).__name__})")
    raise ValueError(
        f"{name}: layer {', '.join(culprits) or '(unknown)'} in the step graph "
        "calls `add_loss()` at every step. A loss added inside the loop cannot "
        "reach the training loss (in `fit` it fails deep in the backend). "
        "Return the quantity as a state or output and add the loss outside "
        "the RecurrentModel (e.g. `model.add_loss(...)` on the output), or use "
        "weight regularizers, which work inside step graphs."
    )


def refuse_per_step_randomness(name, step_layers):
    """JAX's loop cannot advance a layer's seed at every step: say so early."""
    for layer in step_layers:
        if hasattr(layer, "begin_sequence") or getattr(layer, "rate", None) == 0:
            continue  # cellgraph's cells draw their masks once, before the loop
        if getattr(layer, "seed_generator", None) is not None:
            raise ValueError(
                f"{name}: the step graph holds {type(layer).__name__} "
                f"{layer.name!r}, which draws new random numbers at every step. "
                "On the JAX backend a layer cannot advance its seed inside the "
                "loop in training. Use the cells' `dropout`/`recurrent_dropout` "
                "arguments (one mask per sequence, as Keras), apply the layer "
                "outside the RecurrentModel, or use the TensorFlow or PyTorch "
                "backend."
            )
