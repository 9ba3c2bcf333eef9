"""RecurrentSequential: a stack of cells and layers run as one recurrent layer."""

from __future__ import annotations

import keras
from keras import layers

from cellgraph import _deferred, _options
from cellgraph.cell import RNNCell
from cellgraph.recurrent_model import RecurrentModel
from cellgraph.step_graph import StepGraph

_READOUT_MERGES = {
    "add": layers.Add,
    "mul": layers.Multiply,
    "avg": layers.Average,
    "max": layers.Maximum,
}


@keras.saving.register_keras_serializable(package="cellgraph")
class RecurrentSequential(RecurrentModel):
    """A recurrent layer made of a stack of cells and plain layers.

    The recurrent analogue of `keras.Sequential`: `add()` cells
    (`cellgraph.cells.*`, any `RNNCell`, or another stack's `get_cell()`)
    and plain layers (`Dense`, `Activation`, `Dropout`, ...) in any order.
    At each step the step input flows through the stack; every cell reads
    and writes its own states. The step graph is built when the layer is
    first called (the step input shape is then known).

    State order (for `initial_state=` and `return_state=True`): the states of
    the cells in the order they were added, each cell's in its own order
    (`LSTMCell`: `[h, c]`). With `state_sync=True` there is a single set of
    states, the first cell's.

    Args:
        state_sync: if `True`, all cells share one set of states: each cell
            receives the states written by the cell before it in the same
            step, and the last cell's states carry over to the next step.
            All cells must then have the same `state_shapes`.
        readout: `False`, or how the stack's previous output is combined with
            the step input before the first layer: `"add"`, `"mul"`, `"avg"`
            or `"max"`. The output and the step input must have the same shape.
        readout_activation: activation applied to the fed-back output before
            it is combined with the step input, `merge(x_t, act(y_tm1))`
            (Recurrent Shop's order); under teacher forcing the ground truth
            takes the same path.
        teacher_force: as in `RecurrentModel` (needs a `readout`).
        decode: as in `RecurrentModel`.
        output_length: as in `RecurrentModel`.
        state_initializer: as in `RecurrentModel`, one entry per state.
        return_sequences: as in `RecurrentModel`.
        return_state: as in `RecurrentModel`.
        go_backwards: as in `RecurrentModel`.
        stateful: as in `RecurrentModel`.
        unroll: as in `RecurrentModel`.
        zero_output_for_mask: as in `RecurrentModel`.
        layers: optional list of layers to `add()` at once.
        **kwargs: base layer keyword arguments (`name`, `dtype`, ...).

    Call arguments:
        As `RecurrentModel`.

    Example:

    ```python
    rnn = cellgraph.RecurrentSequential(readout="add", return_sequences=True)
    rnn.add(cellgraph.cells.LSTMCell(10, input_dim=10))
    rnn.add(keras.layers.Dense(10))
    rnn.add(cellgraph.cells.GRUCell(10))
    y = rnn(np.zeros((2, 7, 10), "float32"))  # (2, 7, 10)
    ```
    """

    def __init__(
        self,
        state_sync: bool = False,
        readout: bool | str = False,
        readout_activation="linear",
        teacher_force: bool | float = False,
        decode: bool = False,
        output_length: int | None = None,
        state_initializer=None,
        return_sequences: bool | None = None,
        return_state: bool = False,
        go_backwards: bool = False,
        stateful: bool = False,
        unroll: bool = False,
        zero_output_for_mask: bool = False,
        layers=None,
        **kwargs,
    ):
        super().__init__(
            teacher_force=teacher_force,
            decode=decode,
            output_length=output_length,
            state_initializer=state_initializer,
            return_sequences=return_sequences,
            return_state=return_state,
            go_backwards=go_backwards,
            stateful=stateful,
            unroll=unroll,
            zero_output_for_mask=zero_output_for_mask,
            **kwargs,
        )
        if not isinstance(state_sync, bool):
            raise TypeError(
                "Argument `state_sync` must be True or False. Received: "
                f"state_sync={state_sync!r}. (Give the cells and layers with "
                "`layers=[...]` or `add()`.)"
            )
        if readout not in (False, None) and readout not in _READOUT_MERGES:
            raise ValueError(
                "Argument `readout` must be False or one of "
                f"{sorted(_READOUT_MERGES)}. Received: readout={readout!r}"
            )
        if self.teacher_force and not readout:
            raise ValueError(
                "Teacher forcing feeds the ground truth through the readout: "
                "set `readout` to 'add', 'mul', 'avg' or 'max'. Received: "
                f"teacher_force={teacher_force!r} and readout={readout!r}"
            )
        self.state_sync = bool(state_sync)
        self.readout = readout or False
        self.readout_activation = keras.activations.get(readout_activation)
        self.stack = []
        for layer in layers or []:
            self.add(layer)

    # -- building the stack ----------------------------------------------------
    def add(self, layer: keras.layers.Layer):
        """Adds a cell or a plain layer on top of the stack.

        Args:
            layer: an `RNNCell` or any Keras layer applied per step.
        """
        if self.step_model is not None:
            raise ValueError(
                f"{self.name} is already built; add() every layer before the "
                f"first call. Received: {layer!r}"
            )
        if isinstance(layer, RecurrentModel):
            raise TypeError(
                "RecurrentSequential.add() takes cells and per-step layers, not "
                "a sequence layer. Use `layer.get_cell()` to nest it. Received: "
                f"{type(layer).__name__} {layer.name!r}"
            )
        if not isinstance(layer, keras.layers.Layer):
            raise TypeError(
                "RecurrentSequential.add() expects a Keras layer or an RNNCell. "
                f"Received: {type(layer).__name__} {layer!r}"
            )
        if self.state_sync and isinstance(layer, RNNCell) and self.cells:
            first = self.cells[0]
            if list(layer.state_shapes) != list(first.state_shapes):
                raise ValueError(
                    "With `state_sync=True` all cells share one set of states, "
                    "so they must have the same state shapes. The first cell "
                    f"{first.name!r} has {first.state_shapes}; received "
                    f"{layer.name!r} with {layer.state_shapes}"
                )
        self.stack.append(layer)

    @property
    def cells(self) -> list[RNNCell]:
        """The cells of the stack, in order."""
        return [layer for layer in self.stack if isinstance(layer, RNNCell)]

    @property
    def num_states(self) -> int:
        return len(self.state_shapes)

    @property
    def state_shapes(self) -> list[tuple]:
        if self.step_graph is not None:
            return list(self.step_graph.state_shapes)
        if self.state_sync:
            return list(self.cells[0].state_shapes) if self.cells else []
        return [shape for cell in self.cells for shape in cell.state_shapes]

    @property
    def has_readout(self) -> bool:
        return bool(self.readout)

    def build_step_graph(self, input_shape) -> StepGraph:
        """Builds the step graph of the stack for the call's input shape."""
        step_shape = self._step_shape_from(input_shape)
        if not self.stack:
            raise ValueError(
                f"{self.name} has no layers: add() cells and layers first."
            )
        x_t = keras.Input(step_shape, name="x_t")
        readout_input = None
        h = x_t
        if self.readout:
            readout_input = keras.Input(step_shape, name="readout_tm1")
            fed_back = readout_input
            if self.readout_activation is not keras.activations.linear:
                fed_back = layers.Activation(self.readout_activation)(fed_back)
            h = _READOUT_MERGES[self.readout]()([x_t, fed_back])
        initial_states, final_states = [], []
        if self.state_sync and self.cells:
            initial_states = [
                keras.Input(shape, name=f"state{i}_tm1")
                for i, shape in enumerate(self.cells[0].state_shapes)
            ]
            current = list(initial_states)
        for layer in self.stack:
            if not isinstance(layer, RNNCell):
                h = layer(h)
                continue
            if self.state_sync:
                h, *current = layer([h, *current])
                continue
            own = [
                keras.Input(shape, name=f"state{len(initial_states) + i}_tm1")
                for i, shape in enumerate(layer.state_shapes)
            ]
            h, *new = layer([h, *own])
            initial_states += own
            final_states += new
        if self.state_sync and self.cells:
            final_states = current
        if self.readout and tuple(h.shape[1:]) != tuple(step_shape):
            raise ValueError(
                f"readout={self.readout!r} combines the stack's previous output "
                "with the step input, so they must have the same shape. "
                f"Received: output shape {tuple(h.shape[1:])} and step input "
                f"shape {tuple(step_shape)}"
            )
        return StepGraph(
            inputs=x_t,
            output=h,
            initial_states=initial_states,
            final_states=final_states,
            readout_input=readout_input,
        )

    def _step_shape_from(self, input_shape) -> tuple:
        shape = tuple(input_shape)
        if shape and isinstance(shape[0], (list, tuple)):
            if len(shape) != 1:
                raise ValueError(
                    f"{self.name} has one step input. Received {len(shape)} "
                    f"inputs with shapes {list(shape)}"
                )
            shape = tuple(shape[0])
        lead = 1 if self.decode else 2
        if len(shape) <= lead:
            raise ValueError(
                f"{self.name} expects inputs of shape (batch, "
                f"{'' if self.decode else 'time, '}*step_shape). Received: "
                f"shape={shape}"
            )
        return shape[lead:]

    def get_cell(self):
        if self.step_model is None:
            hint = (
                self.stack[0].input_shape_hint
                if self.cells and isinstance(self.stack[0], RNNCell)
                else None
            )
            if hint is None:
                raise ValueError(
                    f"{self.name}.get_cell() needs the step input shape: give "
                    "the first cell `input_dim=...` or call the layer once. "
                    f"Received a first layer {self.stack[0].name!r} without it."
                )
            lead = (None,) if self.decode else (None, None)
            self._ensure_step_graph((*lead, *hint))
        return super().get_cell()

    # -- serialization --------------------------------------------------------
    def _step_graph_config(self) -> dict:
        return {
            "layers": [_options.serialize_shared(layer) for layer in self.stack],
            "state_sync": self.state_sync,
            "readout": self.readout,
            "readout_activation": keras.activations.serialize(self.readout_activation),
        }

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        owner = config.get("name", cls.__name__)
        items = config["layers"]
        copies = None
        if _deferred.has_shared_ids(items):
            # A layer of the stack may be shared with the outer model: until
            # loading is over, the step graph is built from private copies
            # (made first: deserializing consumes parts of a config).
            copies = [
                _options.deserialize_part(
                    _deferred.unshared(item), owner, custom_objects
                )
                for item in items
            ]
        config["layers"] = [
            _options.deserialize_part(item, owner, custom_objects) for item in items
        ]
        config["readout_activation"] = keras.activations.deserialize(
            config["readout_activation"]
        )
        config["state_initializer"] = _options.deserialize_initializers(
            config["state_initializer"]
        )
        layer = cls(**config)
        if copies is not None:
            layer._defer_build({"stack": copies})
        return layer
