"""Validation and analysis of a one-timestep functional graph (a step graph)."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence

import keras


def shapes_compatible(expected: Sequence, received: Sequence) -> bool:
    """True when two shapes have the same rank and agree where both are known."""
    expected, received = tuple(expected), tuple(received)
    if len(expected) != len(received):
        return False
    return all(a is None or b is None or a == b for a, b in zip(expected, received))


def is_keras_tensor(value) -> bool:
    return isinstance(value, keras.KerasTensor)


def tensor_list(value, argument: str, allow_empty: bool = True) -> list:
    """Normalises `value` (a Keras tensor, a list of them, or None) to a list.

    Raises:
        TypeError: naming `argument` when an element is not a Keras tensor.
    """
    if value is None:
        items = []
    elif isinstance(value, (list, tuple)):
        items = list(value)
    else:
        items = [value]
    for i, item in enumerate(items):
        if not is_keras_tensor(item):
            where = (
                argument
                if not isinstance(value, (list, tuple))
                else (f"{argument}[{i}]")
            )
            raise TypeError(
                f"Argument `{where}` must be a symbolic Keras tensor (made with "
                f"`keras.Input(...)` or computed from one). Received: "
                f"{type(item).__name__} {_short(item)}"
            )
    if not items and not allow_empty:
        raise ValueError(
            f"Argument `{argument}` must not be empty. Received: {value!r}"
        )
    return items


def _is_input(tensor) -> bool:
    """Whether a Keras tensor is a `keras.Input` (not computed by a layer)."""
    try:
        keras.Model(tensor, tensor)
    except ValueError:
        return False
    return True


def _short(value) -> str:
    text = repr(value)
    return text if len(text) < 80 else text[:77] + "..."


def _step_shape(tensor) -> tuple:
    return tuple(tensor.shape[1:])


@dataclasses.dataclass(frozen=True)
class GraphLayout:
    """Where each role sits in the input list of a one-step model.

    A step model takes `[*inputs, *states, *constants, (readout)]`; this
    small type owns that order, so no caller counts positions by hand.

    Args:
        num_inputs: number of step inputs (at least 1).
        num_states: number of states.
        num_constants: number of constants.
        has_readout: whether the last input receives the previous output.
    """

    num_inputs: int
    num_states: int = 0
    num_constants: int = 0
    has_readout: bool = False

    @property
    def size(self) -> int:
        """Length of the step model's input list."""
        return (
            self.num_inputs
            + self.num_states
            + self.num_constants
            + int(self.has_readout)
        )

    @property
    def roles(self) -> list[str]:
        """The role of each position: "input", "state", "constant", "readout"."""
        return (
            ["input"] * self.num_inputs
            + ["state"] * self.num_states
            + ["constant"] * self.num_constants
            + ["readout"] * int(self.has_readout)
        )

    def split(self, items) -> tuple[list, list, list, object]:
        """Splits a list in this order into `(inputs, states, constants, readout)`.

        `readout` is `None` without a readout input.
        """
        items = list(items)
        if len(items) != self.size:
            raise ValueError(
                f"Expected {self.size} items for {self}. Received {len(items)}."
            )
        a = self.num_inputs
        b = a + self.num_states
        c = b + self.num_constants
        readout = items[c] if self.has_readout else None
        return items[:a], items[a:b], items[b:c], readout

    def join(self, inputs, states, constants, readout=None) -> list:
        """The inverse of `split`: one list in the step model's input order."""
        items = [*inputs, *states, *constants]
        if self.has_readout:
            items.append(readout)
        if len(items) != self.size:
            raise ValueError(
                f"Expected {self.size} items for {self}. Received {len(items)}."
            )
        return items

    def get_config(self) -> dict:
        return dataclasses.asdict(self)


class StepGraph:
    """A validated one-timestep graph with its roles.

    The graph maps `[*inputs, *initial_states, *constants, (readout_input)]`
    to `[output, *final_states]`. `StepGraph` checks the roles (types,
    counts, shapes, connectivity) and builds `model`, the one-step
    `keras.Model` with that input and output order.

    Args:
        inputs: list of step inputs (Keras tensors without time axis).
        output: the step output tensor.
        initial_states: list of previous-state inputs.
        final_states: list of next-state tensors (same shapes, same order).
        constants: list of inputs that get the same tensor at every step.
        readout_input: optional input that receives the previous output.
        model: an already-built one-step model with this layout (used when
            loading); the tensors above are then taken from it.
    """

    def __init__(
        self,
        inputs,
        output,
        initial_states=None,
        final_states=None,
        constants=None,
        readout_input=None,
        model: keras.Model | None = None,
    ):
        self.inputs = tensor_list(inputs, "input", allow_empty=False)
        self.multi_input = isinstance(inputs, (list, tuple))
        outputs = tensor_list(output, "output", allow_empty=False)
        if len(outputs) != 1:
            raise ValueError(
                "Argument `output` must be one tensor (the step output). "
                f"Received a list of {len(outputs)} tensors."
            )
        self.output = outputs[0]
        self.initial_states = tensor_list(initial_states, "initial_states")
        self.final_states = tensor_list(final_states, "final_states")
        self.constants = tensor_list(constants, "constants")
        readout = tensor_list(readout_input, "readout_input")
        if len(readout) > 1:
            raise ValueError(
                "Argument `readout_input` must be one tensor. Received a list "
                f"of {len(readout)} tensors."
            )
        self.readout_input = readout[0] if readout else None
        self._check_states()
        self._check_shapes()
        self.model = model if model is not None else self._build_model()

    # -- checks ------------------------------------------------------------
    def _check_states(self):
        if self.final_states and not self.initial_states:
            raise ValueError(
                "Argument `final_states` was given without `initial_states`: "
                "each final state is the next value of an initial state. "
                f"Received: initial_states=[] and {len(self.final_states)} "
                "final_states"
            )
        if len(self.initial_states) != len(self.final_states):
            raise ValueError(
                "Arguments `initial_states` and `final_states` must have the "
                "same length (state i at step t+1 is final_states[i] of step "
                f"t). Received: {len(self.initial_states)} initial_states and "
                f"{len(self.final_states)} final_states"
            )
        roles = self.role_inputs
        seen = {}
        for name, tensor in roles:
            if not _is_input(tensor):
                raise ValueError(
                    f"Argument `{name}` must be a `keras.Input` (a step graph "
                    "reads its inputs, states, constants and readout from "
                    "Inputs), not a tensor computed by a layer. Received: "
                    f"{name}={tensor}. Create it with `keras.Input(shape=...)` "
                    "and compute from it."
                )
            if id(tensor) in seen:
                raise ValueError(
                    f"The same tensor is used as `{seen[id(tensor)]}` and as "
                    f"`{name}`; each step input plays one role. Received: "
                    f"{tensor}"
                )
            seen[id(tensor)] = name

    def _check_shapes(self):
        for i, (init, final) in enumerate(zip(self.initial_states, self.final_states)):
            shape = _step_shape(init)
            if any(d is None for d in shape):
                raise ValueError(
                    f"`initial_states[{i}]` must have a fully known shape "
                    "(only the batch dimension may be unknown). Received: "
                    f"shape={tuple(init.shape)}"
                )
            if not shapes_compatible(shape, _step_shape(final)):
                raise ValueError(
                    f"`final_states[{i}]` must have the shape of "
                    f"`initial_states[{i}]`. Received: final_states[{i}].shape="
                    f"{tuple(final.shape)} and initial_states[{i}].shape="
                    f"{tuple(init.shape)}"
                )
        if self.readout_input is not None:
            shape = _step_shape(self.readout_input)
            if any(d is None for d in shape):
                raise ValueError(
                    "`readout_input` must have a fully known shape. Received: "
                    f"shape={tuple(self.readout_input.shape)}"
                )
            if not shapes_compatible(shape, _step_shape(self.output)):
                raise ValueError(
                    "`readout_input` receives the previous `output`, so their "
                    "shapes must match. Received: readout_input.shape="
                    f"{tuple(self.readout_input.shape)} and output.shape="
                    f"{tuple(self.output.shape)}"
                )

    @property
    def role_inputs(self) -> list[tuple[str, keras.KerasTensor]]:
        named = [
            (f"input[{i}]" if len(self.inputs) > 1 else "input", t)
            for i, t in enumerate(self.inputs)
        ]
        named += [
            (f"initial_states[{i}]", t) for i, t in enumerate(self.initial_states)
        ]
        named += [(f"constants[{i}]", t) for i, t in enumerate(self.constants)]
        if self.readout_input is not None:
            named.append(("readout_input", self.readout_input))
        return named

    def _build_model(self) -> keras.Model:
        inputs = [t for _, t in self.role_inputs]
        outputs = [self.output, *self.final_states]
        try:
            return keras.Model(inputs, outputs)
        except ValueError as error:
            names = ["output"] + [
                f"final_states[{i}]" for i in range(len(self.final_states))
            ]
            for name, tensor in zip(names, outputs):
                try:
                    keras.Model(inputs, tensor)
                except ValueError:
                    raise ValueError(
                        f"`{name}` is not computed from the step graph's inputs "
                        "(input, initial_states, constants, readout_input), or "
                        "one of those is not a `keras.Input`. Every tensor of "
                        "the step graph must be reachable from them. Received: "
                        f"{name}={tensor}"
                    ) from None
            raise ValueError(f"Invalid step graph: {error}") from error

    # -- layout --------------------------------------------------------------
    @property
    def input_shapes(self) -> list[tuple]:
        return [_step_shape(t) for t in self.inputs]

    @property
    def state_shapes(self) -> list[tuple]:
        return [_step_shape(t) for t in self.initial_states]

    @property
    def constant_shapes(self) -> list[tuple]:
        return [_step_shape(t) for t in self.constants]

    @property
    def output_shape(self) -> tuple:
        return _step_shape(self.output)

    @property
    def output_dtype(self) -> str:
        return self.output.dtype

    @property
    def state_dtypes(self) -> list[str]:
        return [t.dtype for t in self.initial_states]

    @property
    def layout(self) -> GraphLayout:
        """Where each role sits in `model`'s input list."""
        return GraphLayout(
            num_inputs=len(self.inputs),
            num_states=len(self.initial_states),
            num_constants=len(self.constants),
            has_readout=self.readout_input is not None,
        )

    @classmethod
    def from_model(
        cls,
        model: keras.Model,
        layout: GraphLayout,
        multi_input: bool | None = None,
    ) -> StepGraph:
        """Rebuilds the roles of a one-step model from its `layout`.

        Args:
            model: a functional `keras.Model` whose inputs follow `layout`
                and whose outputs are `[output, *final_states]`.
            layout: a `GraphLayout`.
            multi_input: whether the sequence layer takes a list of inputs;
                default: when there are several step inputs.
        """
        if not isinstance(model, keras.Model):
            raise TypeError(
                "Argument `step_model` must be a functional keras.Model (the "
                f"one-step graph). Received: {type(model).__name__} {model!r}"
            )
        ins, outs = list(model.inputs), list(model.outputs)
        if len(ins) != layout.size or len(outs) != 1 + layout.num_states:
            raise ValueError(
                f"The step model has {len(ins)} inputs and {len(outs)} outputs; "
                f"expected {layout.size} inputs and {1 + layout.num_states} "
                f"outputs for {layout}"
            )
        inputs, states, constants, readout = layout.split(ins)
        if multi_input is None:
            multi_input = len(inputs) > 1
        return cls(
            inputs=inputs if multi_input else inputs[0],
            output=outs[0],
            initial_states=states,
            final_states=outs[1:],
            constants=constants,
            readout_input=readout,
            model=model,
        )


def walk_layers(layer) -> Iterator[keras.layers.Layer]:
    """Yields `layer` and the layers it runs in one step, depth first.

    Descends into functional/sequential models and into `RNNCell.model`; does
    not descend into a nested sequence layer, which manages its own loop.
    """
    yield layer
    if getattr(layer, "_cellgraph_sequence_layer", False):
        return
    inner = getattr(layer, "model", None)
    if isinstance(layer, keras.Model):
        children = list(layer.layers)
    elif hasattr(layer, "build_model") and isinstance(inner, keras.Model):
        children = [inner]
    else:
        children = []
    for child in children:
        yield from walk_layers(child)


def call_step_model(model: keras.Model, inputs, training=None, spec=False) -> list:
    """Calls a one-step model on a list of tensors and returns a list.

    Keras unwraps one-element input/output lists of a functional model; this
    keeps the list convention of step graphs either way.
    """
    inputs = list(inputs)
    args = inputs[0] if len(inputs) == 1 else inputs
    if spec:
        outputs = model.compute_output_spec(args)
    else:
        outputs = model(args, training=training)
    if isinstance(outputs, (list, tuple)):
        return list(outputs)
    return [outputs]
