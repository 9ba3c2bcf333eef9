"""FeedbackChain and FeedbackTree: a whole network with feedback as one RNNCell.

A feedback network is a chain of ordinary layers in which later layers feed
earlier ones at the next timestep. Two markers in the chain say where:

- `Splitter("name")` records the tensor flowing at that point as the state
  `"name"`;
- `Merger("name", branch, op)` combines the tensor flowing at that point with
  `branch(state "name" of the previous step)`.

`FeedbackChain` and `FeedbackTree` turn such a list into the one-step model
`[x, *states] -> [output, *new_states]` of an `RNNCell`, so the whole network
runs with `RecurrentModel` like any other cell. This follows the
`FeedbackChain`/`FeedbackTree` of FeedbackNets.jl (Flux), with Keras layers.
"""

from __future__ import annotations

import re

import keras

from cellgraph.cell import RNNCell
from cellgraph.feedback.markers import Merger, Splitter
from cellgraph.step_graph import shapes_compatible


class _Hidden:
    """Holds a value out of Keras's attribute tracking."""

    def __init__(self, value):
        self.value = value


@keras.saving.register_keras_serializable(package="cellgraph")
class FeedbackChain(RNNCell):
    """A chain of layers with feedback between its parts, as one `RNNCell`.

    At each timestep the step input flows through the elements in order, as
    in `keras.Sequential`. A `Splitter("name")` records the tensor at its
    place as the state `"name"`; a `Merger("name", branch, op)` combines the
    tensor at its place with `branch(state "name" of the previous step)`.
    Later layers can thus feed earlier ones at the next step (top-down
    feedback), and a layer can feed itself (lateral recurrence). States may
    be vectors or feature maps `(H, W, C)`; states start at zero (or at the
    `RecurrentModel`'s `state_initializer`).

    The states are ordered like the Splitters, and their shapes are found
    by a shape pass over the chain for the given input shape. A chain
    without Splitters has no recurrence: it computes the same thing at
    every step.

    `chain.get_layer(timesteps=T)` gives a `RecurrentModel` that runs the
    network T steps on one static input (an image); `chain.get_layer()` one
    that runs it on a sequence, one frame per step. The chain is also an
    `RNNCell` called on `[x_t, *states_tm1]` inside other step graphs.

    Args:
        layers: list of Keras layers (or models), `Splitter`s and `Merger`s.
            Splitter names must be unique; every Merger must name a Splitter
            of the chain (before or after it).
        input_shape: shape of the step input without batch dimension, e.g.
            `(28, 28, 1)`. Needed by `get_layer()` and `state_shapes` before
            the cell is called.
        **kwargs: `RNNCell` keyword arguments (`name`, `dtype`, ...).

    Call arguments:
        inputs: list `[x_t, *states_tm1]`.
        training: Python boolean, training or inference mode.

    Output shape:
        list `[output_t, *states_t]`; the output has the shape of the last
        element's output, each state the shape recorded by its Splitter.

    Example:

    ```python
    from cellgraph.feedback import FeedbackChain, Merger, Splitter

    chain = FeedbackChain(
        [
            keras.layers.Dense(16),
            Merger("top", keras.layers.Dense(16, use_bias=False)),
            keras.layers.Activation("relu"),
            keras.layers.Dense(8, activation="relu"),
            Splitter("top"),
            keras.layers.Dense(3),
        ],
        input_shape=(5,),
    )
    rnn = chain.get_layer(timesteps=4, return_sequences=True)
    y = rnn(np.zeros((2, 5), "float32"))  # (2, 4, 3)
    ```
    """

    #: In a tree, the stream goes on from the state's previous value.
    _switches_stream = False

    def __init__(self, layers, input_shape=None, **kwargs):
        cls = type(self).__name__
        input_dim = kwargs.pop("input_dim", None)
        super().__init__(input_dim=input_dim, **kwargs)
        if input_shape is None and input_dim is not None:
            input_shape = (input_dim,)
        self._elements = _Hidden(tuple(_parse_elements(layers, cls)))
        self._step_input_shape = _parse_input_shape(input_shape, cls)

    # -- structure --------------------------------------------------------
    @property
    def elements(self) -> tuple:
        """The chain's layers, Splitters and Mergers, in order."""
        return self._elements.value

    @property
    def state_names(self) -> list[str]:
        """The Splitter names, in state order."""
        return [e.name for e in self.elements if isinstance(e, Splitter)]

    @property
    def input_shape_hint(self):
        if self.model is not None:
            return tuple(self.model.inputs[0].shape[1:])
        return self._step_input_shape

    @property
    def state_shapes(self) -> list[tuple]:
        """One shape per Splitter (without batch), found by a shape pass."""
        if self.model is None:
            if self._step_input_shape is None:
                raise ValueError(
                    f"{type(self).__name__} {self.name!r}: the state shapes "
                    "follow from the step input shape, which is not known yet. "
                    "Create the cell with `input_shape=(...)` (the step input "
                    "shape without batch dimension) or call it on "
                    "[x_t, *states_tm1] first. Received: input_shape=None"
                )
            self.model = self.build_model((None, *self._step_input_shape))
        return [tuple(t.shape[1:]) for t in self.model.inputs[1:]]

    # -- the step model ---------------------------------------------------
    def build_model(self, input_shape) -> keras.Model:
        cls = type(self).__name__
        shape = tuple(input_shape[1:])
        if self._step_input_shape is not None and not shapes_compatible(
            self._step_input_shape, shape
        ):
            raise ValueError(
                f"{cls} {self.name!r} was created with input_shape="
                f"{self._step_input_shape} but is called on step inputs of "
                f"shape {(None, *shape)}."
            )
        names = self.state_names
        shapes = self._state_shapes(shape)
        dtype = self.compute_dtype
        x = keras.Input(shape, name="x_t", dtype=dtype)
        states = {
            name: keras.Input(s, name=f"{_safe(name)}_tm1", dtype=dtype)
            for name, s in zip(names, shapes)
        }
        output, recorded = _trace(
            self.elements, x, states, switch=self._switches_stream, owner=cls
        )
        for name, s in zip(names, shapes):
            got = tuple(recorded[name].shape[1:])
            if got != s:
                raise ValueError(
                    f"{cls} {self.name!r}: Splitter({name!r}) records a tensor "
                    f"of shape {(None, *got)}, but the shape pass found "
                    f"{(None, *s)}; the state must keep one shape from step to "
                    "step. Check the Mergers upstream of it."
                )
        return keras.Model(
            [x, *states.values()],
            [output, *(recorded[name] for name in names)],
            name=f"{self.name}_step",
        )

    def _state_shapes(self, shape) -> list[tuple]:
        """The shape pass: each Splitter's tensor shape for step input `shape`."""
        names = self.state_names
        if not names:
            return []
        mergers = [e for e in self.elements if isinstance(e, Merger)]
        owner = type(self).__name__
        if all(m.preserves_shape for m in mergers):
            # Mergers and tree switches keep the stream's shape: one pass with
            # the feedback left out gives the states (and builds the layers
            # with the shapes they will see).
            x = keras.Input(shape, dtype=self.compute_dtype)
            _, recorded = _trace(self.elements, x, None, False, owner)
            return [tuple(recorded[n].shape[1:]) for n in names]
        # A Merger may change the stream's shape, which may change the states
        # it depends on: iterate on throwaway copies to a fixed point.
        found = None
        for _ in range(len(names) + 2):
            copies = [_clone(e, owner) for e in self.elements]
            states = None
            if found is not None:
                states = {
                    n: keras.Input(s, dtype=self.compute_dtype)
                    for n, s in zip(names, found)
                }
            x = keras.Input(shape, dtype=self.compute_dtype)
            _, recorded = _trace(copies, x, states, self._switches_stream, owner)
            shapes = [tuple(recorded[n].shape[1:]) for n in names]
            if shapes == found:
                return shapes
            found = shapes
        raise ValueError(
            f"{owner} {self.name!r}: the state shapes do not settle. Each pass "
            "feeds them back through the Mergers and gets new ones (last: "
            f"{dict(zip(names, found))}). A state that is concatenated back "
            "into itself grows at every step; give the Merger's branch a fixed "
            "output size (e.g. a Dense or Conv layer)."
        )

    # -- conveniences -----------------------------------------------------
    def get_layer(self, timesteps: int | None = None, **kwargs):
        """Returns a `RecurrentModel` running this network.

        Args:
            timesteps: with an integer T, the layer is called on one static
                input `(batch, *input_shape)` and runs T steps on it
                (`decode=True, output_length=T`; every step's output unless
                `return_sequences=False`). With `None`, it is called on a
                sequence `(batch, time, *input_shape)`, one frame per step.
            **kwargs: `RecurrentModel` arguments (`return_sequences`,
                `return_state`, `stateful`, `state_initializer`, ...).
        """
        cls = type(self).__name__
        if timesteps is not None:
            if (
                isinstance(timesteps, bool)
                or not isinstance(timesteps, int)
                or timesteps < 1
            ):
                raise ValueError(
                    f"Argument `timesteps` of {cls}.get_layer() must be a "
                    f"positive integer or None. Received: timesteps={timesteps!r}"
                )
            if kwargs.get("decode") is False:
                raise ValueError(
                    f"{cls}.get_layer(timesteps=...) runs on a static input "
                    "(decode mode). Received: decode=False"
                )
            kwargs["decode"] = True
            kwargs["output_length"] = timesteps
        if self.input_shape_hint is None:
            raise ValueError(
                f"{cls}.get_layer() needs the step input shape: create the cell "
                "with `input_shape=(...)` (without batch dimension). Received: "
                "input_shape=None"
            )
        return super().get_layer(**kwargs)

    def get_config(self):
        config = super().get_config()
        config["layers"] = [
            keras.saving.serialize_keras_object(e) for e in self.elements
        ]
        shape = self._step_input_shape
        config["input_shape"] = None if shape is None else list(shape)
        return config


@keras.saving.register_keras_serializable(package="cellgraph")
class FeedbackTree(FeedbackChain):
    """A feedback chain in which information takes one step per Splitter.

    Like `FeedbackChain`, but at a `Splitter("name")` the current tensor is
    recorded as the new state *and the stream goes on from that state's
    value of the previous step*. Each segment between Splitters thus works
    on what the segment below produced one step earlier: a change of the
    input reaches the output after as many steps as there are Splitters on
    the way, the same delay that feedback needs to travel back down.
    (FeedbackNets.jl calls this "symmetric passing"; it is its
    `FeedbackTree`.) Mergers behave as in a chain. At the first step, the
    segments above a Splitter see its initial state (zeros by default).

    With the chain `[Merger("a", branch), f, Splitter("a"), g]`, step t
    computes `a_t = f(x_t + branch(a_tm1))` and the output `g(a_tm1)`.

    Args:
        layers: list of Keras layers, `Splitter`s and `Merger`s.
        input_shape: step input shape without batch dimension.
        **kwargs: `RNNCell` keyword arguments.

    Example:

    ```python
    from cellgraph.feedback import FeedbackTree, Splitter

    tree = FeedbackTree(
        [keras.layers.Dense(8, activation="tanh"), Splitter("h"),
         keras.layers.Dense(2)],
        input_shape=(3,),
    )
    y = tree.get_layer(timesteps=3, return_sequences=True)(np.ones((1, 3)))
    # y[:, 0] comes from the zero initial state, y[:, 1:] from the input
    ```
    """

    _switches_stream = True


def _parse_elements(layers, owner) -> list:
    if isinstance(layers, (keras.layers.Layer, Splitter, Merger)) or not isinstance(
        layers, (list, tuple)
    ):
        raise ValueError(
            f"Argument `layers` of {owner} must be a list of Keras layers, "
            f"Splitters and Mergers. Received: layers={layers!r}"
        )
    elements = []
    for i, item in enumerate(layers):
        if isinstance(item, dict):
            item = keras.saving.deserialize_keras_object(item)
        if not isinstance(item, (keras.layers.Layer, Splitter, Merger)):
            raise ValueError(
                f"{owner}: element {i} of `layers` must be a Keras layer, a "
                "Splitter or a Merger (wrap plain functions in a Layer "
                f"subclass). Received: {item!r} of type {type(item).__name__}"
            )
        elements.append(item)
    names = [e.name for e in elements if isinstance(e, Splitter)]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(
            f"{owner}: Splitter names must be unique (each names one state). "
            f"Received duplicates {duplicates} in Splitters {names}"
        )
    for i, item in enumerate(elements):
        if isinstance(item, Merger) and item.name not in names:
            raise ValueError(
                f"{owner}: element {i}, Merger({item.name!r}), reads the state "
                f"of Splitter {item.name!r}, which is not in the chain. "
                f"Splitters in the chain: {names}"
            )
    return elements


def _parse_input_shape(shape, owner):
    if shape is None:
        return None
    if isinstance(shape, int):
        shape = (shape,)
    if not isinstance(shape, (list, tuple)) or not all(
        d is None or (isinstance(d, int) and d > 0) for d in shape
    ):
        raise ValueError(
            f"Argument `input_shape` of {owner} must be a tuple of positive "
            "integers (the step input shape without batch dimension). "
            f"Received: input_shape={shape!r}"
        )
    return tuple(shape)


def _trace(elements, x, states, switch, owner):
    """Runs the chain on symbolic tensors; returns `(output, recorded)`.

    With `states=None` (the first shape pass) Mergers are skipped and the
    stream never switches to a state.
    """
    recorded = {}
    for i, element in enumerate(elements):
        if isinstance(element, Splitter):
            recorded[element.name] = x
            if switch and states is not None:
                x = states[element.name]
        elif isinstance(element, Merger):
            if states is not None:
                x = element.merge(x, states[element.name])
        else:
            try:
                x = element(x)
            except (ValueError, TypeError) as error:
                raise ValueError(
                    f"{owner}: element {i} ({type(element).__name__} "
                    f"{element.name!r}) cannot be applied to the stream of "
                    f"shape {tuple(x.shape)}: {error}"
                ) from error
    return x, recorded


def _clone(element, owner):
    """A fresh copy of a chain element (for the shape pass)."""
    if isinstance(element, Splitter):
        return Splitter(element.name)
    try:
        config = _unbuilt(keras.saving.serialize_keras_object(element))
        return keras.saving.deserialize_keras_object(config, safe_mode=False)
    except Exception as error:  # any failure of a user layer's config
        raise ValueError(
            f"{owner}: a Merger changes the stream's shape, so the state "
            "shapes are found on copies of the layers, and layer "
            f"{element.name!r} ({type(element).__name__}) cannot be copied "
            f"from its config: {error}. Give it a complete `get_config()`."
        ) from error


def _unbuilt(config):
    """A serialized layer without its build shapes, so its copy starts unbuilt.

    Also without `shared_object_id`: inside `load_model` Keras tags a layer
    serialized twice as shared, and the shape pass needs distinct copies.
    """
    if isinstance(config, dict):
        return {
            k: _unbuilt(v)
            for k, v in config.items()
            if k not in ("build_config", "shared_object_id")
        }
    if isinstance(config, list):
        return [_unbuilt(v) for v in config]
    return config


def _safe(name: str) -> str:
    return re.sub(r"[^0-9A-Za-z_.-]", "_", name)
