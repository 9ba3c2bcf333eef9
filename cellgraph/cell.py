"""RNNCell: a Keras layer that runs one timestep of a recurrent step graph."""

from __future__ import annotations

import keras

from cellgraph import step_graph


@keras.saving.register_keras_serializable(package="cellgraph")
class RNNCell(keras.layers.Layer):
    """Base class of cellgraph's cells: one timestep as a Keras layer.

    A cell is called inside a step graph on a list
    `[x_t, *states_tm1]` and returns the list `[output_t, *states_t]`:

    ```
    output, *new_states = cell([x_t, *states_tm1])
    ```

    A subclass does one of two things:

    - defines `build_model(input_shape)`, which returns a `keras.Model`
      mapping `[x, *states]` to `[output, *new_states]` (user cells; an
      existing one-step model is wrapped with `RNNCell.from_model(model)`);
    - or owns its weights (created in `build()`) and overrides
      `call(inputs, training=None)` directly, as the built-in cells of
      `cellgraph.cells` do; it then also defines `state_shapes` and
      `compute_output_spec`.

    `state_shapes` gives one shape per state (batch dimension left out) and
    `state_names` one name per state (`["h"]` for one state,
    `["state0", "state1", ...]` otherwise, unless the subclass names them).
    `cell.get_layer(**kwargs)` turns the cell into a `RecurrentModel` over
    sequences.

    Layers inside the step model, or the cell itself, may keep one random
    mask for a whole sequence (Keras's recurrent dropout) by defining
    `begin_sequence(batch_size, training)` and `end_sequence()`; the
    sequence layer calls them around its loop.

    Args:
        input_dim: optional size of the step input (vectors). Needed by
            `get_layer()` and by a first cell of a `RecurrentSequential`.
        **kwargs: base layer keyword arguments (`name`, `dtype`, ...).

    Call arguments:
        inputs: list `[x_t, *states_tm1]`.
        training: Python boolean, training or inference mode.

    Output shape:
        list `[output_t, *states_t]`, the states with the shapes of
        `state_shapes` (batch dimension first).

    Example:

    ```python
    x = keras.Input((4,))
    h = keras.Input((8,))
    h_new = keras.layers.Dense(8, activation="tanh")(
        keras.layers.Concatenate()([x, h]))
    cell = cellgraph.RNNCell.from_model(keras.Model([x, h], [h_new, h_new]))
    cell.state_shapes, cell.state_names  # [(8,)], ["h"]
    layer = cell.get_layer(return_sequences=True)
    y = layer(np.zeros((2, 5, 4), "float32"))  # (2, 5, 8)
    ```
    """

    def __init__(self, input_dim: int | None = None, **kwargs):
        super().__init__(**kwargs)
        if input_dim is not None and (not isinstance(input_dim, int) or input_dim <= 0):
            raise ValueError(
                "Argument `input_dim` must be a positive integer or None. "
                f"Received: input_dim={input_dim!r}"
            )
        self.input_dim = input_dim
        self.model = None

    # -- the contract a subclass fills in -------------------------------
    def build_model(self, input_shape) -> keras.Model:
        """Returns the one-step `keras.Model` `[x, *states] -> [out, *states]`.

        Args:
            input_shape: shape of the step input `x`, batch dimension first.
        """
        raise NotImplementedError(
            f"{type(self).__name__} must implement `build_model(input_shape)` "
            "or be created with `RNNCell.from_model(model)`."
        )

    @property
    def state_shapes(self) -> list[tuple]:
        """One shape per state, without the batch dimension."""
        if type(self).state_shape is not RNNCell.state_shape:
            # a subclass written against the old name
            return list(self.state_shape)
        if self.model is not None:
            return [tuple(t.shape[1:]) for t in self.model.inputs[1:]]
        raise NotImplementedError(
            f"{type(self).__name__} must define the `state_shapes` property."
        )

    @property
    def state_shape(self) -> list[tuple]:
        """Old name of `state_shapes`, kept as an alias."""
        return self.state_shapes

    @property
    def state_names(self) -> list[str]:
        """One name per state: `["h"]` for one state, else `["state0", ...]`."""
        count = len(self.state_shapes)
        return ["h"] if count == 1 else [f"state{i}" for i in range(count)]

    @property
    def num_states(self) -> int:
        """Number of state tensors the cell carries from step to step."""
        return len(self.state_shapes)

    @property
    def input_shape_hint(self) -> tuple | None:
        """Step input shape without batch dimension, when known."""
        if self.model is not None:
            return tuple(self.model.inputs[0].shape[1:])
        if self.input_dim is not None:
            return (self.input_dim,)
        return None

    # -- Layer API -------------------------------------------------------
    def build(self, input_shape):
        x_shape = _first_shape(input_shape)
        if self.model is None:
            model = self.build_model(tuple(x_shape))
            if not isinstance(model, keras.Model):
                raise TypeError(
                    f"{type(self).__name__}.build_model() must return a "
                    f"keras.Model. Received: {type(model).__name__}"
                )
            self.model = model
        self._check_call_shapes(input_shape)

    def _check_call_shapes(self, input_shape, expected=None):
        """Checks `[x_t, *states_tm1]` against `expected` step shapes.

        `expected` (shapes without batch, `x_t` first) defaults to the
        inputs of the step model.
        """
        if expected is None:
            expected = [tuple(t.shape[1:]) for t in self.model.inputs]
        owner = self._owner_for_messages()
        wanted = [(None, *want) for want in expected]
        if (
            not isinstance(input_shape, (list, tuple))
            or not input_shape
            or (not isinstance(input_shape[0], (list, tuple)))
        ):
            raise ValueError(
                f"Argument `inputs` of {owner} must be a list [x_t, "
                f"*states_tm1] of {len(expected)} tensors with shapes {wanted}. "
                f"Received: input_shape={input_shape}"
            )
        if len(input_shape) != len(expected):
            raise ValueError(
                f"Argument `inputs` of {owner}: expected a list of "
                f"{len(expected)} tensors [x_t, *states_tm1] (the cell has "
                f"{len(expected) - 1} states) with shapes {wanted}. Received "
                f"{len(input_shape)} tensors with shapes {list(input_shape)}"
            )
        for i, (want, got) in enumerate(zip(expected, input_shape)):
            what = "x_t" if i == 0 else f"state {i - 1}"
            if not step_graph.shapes_compatible(want, tuple(got)[1:]):
                raise ValueError(
                    f"Argument `inputs[{i}]` ({what}) of {owner} must have shape "
                    f"{(None,) + tuple(want)}. Received: inputs[{i}].shape="
                    f"{tuple(got)}"
                )

    def _owner_for_messages(self) -> str:
        """How messages name this cell: its class and name."""
        return f"{type(self).__name__} {self.name!r}"

    def call(self, inputs, training=None):
        return step_graph.call_step_model(self.model, inputs, training)

    def compute_output_spec(self, inputs, training=None):
        if self.model is None:
            self.build([tuple(t.shape) for t in inputs])
        return step_graph.call_step_model(self.model, inputs, spec=True)

    # -- conveniences ----------------------------------------------------
    def get_layer(self, **kwargs):
        """Returns a `RecurrentModel` running this cell over sequences.

        Args:
            **kwargs: `RecurrentModel` arguments (`return_sequences`,
                `unroll`, `stateful`, ...).
        """
        from cellgraph.recurrent_model import RecurrentModel

        x_shape = self.input_shape_hint
        if x_shape is None:
            raise ValueError(
                f"{type(self).__name__}.get_layer() needs the step input "
                "size: create the cell with `input_dim=...`. Received: "
                "input_dim=None"
            )
        dtype = self.compute_dtype
        x = keras.Input(x_shape, name="x_t", dtype=dtype)
        states = [
            keras.Input(shape, name=f"state{i}_tm1", dtype=dtype)
            for i, shape in enumerate(self.state_shapes)
        ]
        output, *new_states = self([x, *states])
        kwargs.setdefault("dtype", self.dtype_policy)
        return RecurrentModel(
            input=x,
            output=output,
            initial_states=states,
            final_states=new_states,
            **kwargs,
        )

    @classmethod
    def from_model(cls, model: keras.Model, **kwargs) -> RNNCell:
        """Wraps a one-step model `[x, *states] -> [output, *new_states]`."""
        return _ModelCell(model=model, **kwargs)

    def get_config(self):
        config = super().get_config()
        config["input_dim"] = self.input_dim
        return config


@keras.saving.register_keras_serializable(package="cellgraph")
class _ModelCell(RNNCell):
    """An `RNNCell` made from an existing one-step `keras.Model`."""

    def __init__(self, model, **kwargs):
        if isinstance(model, dict):
            model = keras.saving.deserialize_keras_object(model)
        if not isinstance(model, keras.Model):
            raise TypeError(
                "RNNCell.from_model() expects a keras.Model. Received: "
                f"model={type(model).__name__}"
            )
        if len(model.inputs) < 1 or len(model.outputs) != len(model.inputs):
            raise ValueError(
                "RNNCell.from_model(): the model must map [x, *states] to "
                "[output, *new_states] (as many outputs as inputs). Received "
                f"a model with {len(model.inputs)} inputs and "
                f"{len(model.outputs)} outputs."
            )
        for i, (s_in, s_out) in enumerate(zip(model.inputs[1:], model.outputs[1:])):
            if tuple(s_in.shape[1:]) != tuple(s_out.shape[1:]):
                raise ValueError(
                    f"RNNCell.from_model(): new state {i} has shape "
                    f"{tuple(s_out.shape)} but state {i} has shape "
                    f"{tuple(s_in.shape)}"
                )
        kwargs.setdefault("input_dim", None)
        if kwargs.get("name") is None:
            # Keras would name the class `_ModelCell` "__model_cell"; name the
            # cell after the user's model instead.
            kwargs["name"] = _unique_name(f"{model.name}_cell")
        super().__init__(**kwargs)
        self.model = model

    def _owner_for_messages(self) -> str:
        return f"the cell {self.name!r} of RNNCell.from_model({self.model.name!r})"

    def get_config(self):
        config = super().get_config()
        config["model"] = keras.saving.serialize_keras_object(self.model)
        return config


def _first_shape(input_shape):
    if (
        isinstance(input_shape, (list, tuple))
        and input_shape
        and isinstance(input_shape[0], (list, tuple))
    ):
        return input_shape[0]
    return input_shape


def _unique_name(prefix: str) -> str:
    """`prefix`, then `prefix_1`, `prefix_2`, ... as Keras names layers."""
    uid = keras.backend.get_uid(prefix)
    return prefix if uid == 1 else f"{prefix}_{uid - 1}"
