"""The `System` base class: the contract every superloop system follows."""

from __future__ import annotations

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="cellgraph")
class OneHotInitializer(keras.initializers.Initializer):
    """Zeros with a 1 at `index` of the last axis (e.g. a weighting on slot 0).

    Args:
        index: position on the last axis that holds the 1.
    """

    def __init__(self, index: int = 0):
        self.index = int(index)

    def __call__(self, shape, dtype=None):
        shape = tuple(shape)
        hot = ops.one_hot(self.index, shape[-1], dtype=dtype or "float32")
        # A copy, not a broadcast view: PyTorch cannot assign into a variable
        # whose elements share memory (as loading weights does).
        return ops.copy(ops.broadcast_to(hot, shape))

    def get_config(self):
        return {"index": self.index}


def check_positive(cls_name: str, **values) -> None:
    """Raises a `ValueError` for any argument that is not a positive int."""
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ValueError(
                f"{cls_name}: argument `{name}` must be a positive integer. "
                f"Received: {name}={value!r}"
            )


class System(keras.layers.Layer):
    """Base class of the external systems of a superloop.

    A system is a layer of a step graph. It is called on the controller's
    output of this step, the system's previous states and its constants, and
    returns what it reads plus its next states:

    `read_t, *states_t = system([controller_t, *states_tm1, *constants])`

    The read is a vector of size `read_size`; it is usually fed back to the
    controller at the next step as an explicit *readout state* of the step
    graph (`read_tm1` among `initial_states`, `read_t` among `final_states`).

    With `project=True` (the default) the system owns a `Dense` layer from
    the controller vector to its raw control vector and applies the system's
    own activations; each subclass documents its initialisation. With
    `project=False` the controller tensor *is* the raw control vector, laid
    out as the subclass documents (`control_layout`), of size
    `control_size`; use it for custom controllers and exact tests.

    Subclasses define `control_layout`, `state_shapes`, `read_size`,
    optionally `state_names`, `constant_shapes`, `state_initializers()`,
    `activate_projection()` and `projection_size`, and implement
    `transition()`.

    Args:
        project: whether to own a `Dense` projection from the controller.
        kernel_initializer: initializer of the projection's kernel (`None`:
            the subclass default).
        bias_initializer: initializer of the projection's bias (`None`: the
            subclass default).
        **kwargs: base layer keyword arguments (`name`, `dtype`, ...).

    Call arguments:
        inputs: the list `[controller_t, *states_tm1, *constants]`, with
            `controller_t` of shape `(batch, features)`.

    Output shape:
        A list `[read_t, *states_t]`: `(batch, read_size)` and
        `(batch, *state_shapes[i])`.

    Example (a register memory fed back through a readout state):

    ```python
    memory = cellgraph.systems.RegisterMemory(depth=4, width=3)
    x_t = keras.Input((2,))
    read_tm1 = keras.Input((memory.read_size,))
    states_tm1 = memory.initial_state_inputs()
    h_t = keras.layers.Dense(8, activation="tanh")(
        keras.layers.Concatenate()([x_t, read_tm1]))
    read_t, *states_t = memory([h_t, *states_tm1])
    rnn = cellgraph.RecurrentModel(
        input=x_t, output=h_t,
        initial_states=[read_tm1, *states_tm1],
        final_states=[read_t, *states_t])
    y = rnn(np.zeros((2, 5, 2), "float32"))  # (2, 8)
    ```
    """

    default_kernel_initializer = "glorot_uniform"
    default_bias_initializer = "zeros"

    def __init__(
        self,
        project: bool = True,
        kernel_initializer=None,
        bias_initializer=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.project = bool(project)
        self.kernel_initializer = keras.initializers.get(
            kernel_initializer or self.default_kernel_initializer
        )
        self.bias_initializer = keras.initializers.get(
            bias_initializer or self.default_bias_initializer
        )
        self.projection = None
        if self.project:
            self.projection = keras.layers.Dense(
                self.projection_size,
                kernel_initializer=self.kernel_initializer,
                bias_initializer=self.bias_initializer,
                dtype=self.dtype_policy,
                name="projection",
            )

    # -- the contract subclasses fill in -------------------------------------
    @property
    def control_layout(self) -> list[tuple[str, int]]:
        """The raw control vector as `(part, size)` pairs, in order."""
        raise NotImplementedError

    @property
    def control_size(self) -> int:
        """Size of the raw control vector (the controller with project=False)."""
        return sum(size for _, size in self.control_layout)

    @property
    def projection_size(self) -> int:
        """Output size of the `Dense` projection (project=True).

        `control_size` unless `activate_projection` maps a different number
        of features to the raw control (e.g. a softmax over actions).
        """
        return self.control_size

    @property
    def state_shapes(self) -> list[tuple]:
        """Shapes of the system's states, without the batch dimension."""
        raise NotImplementedError

    @property
    def state_names(self) -> list[str]:
        """One name per state: `["h"]` for one state, else `["state0", ...]`.

        The built-in systems name theirs (e.g. `["memory"]`); `Superloop`
        uses them in its `state_names`.
        """
        count = len(self.state_shapes)
        return ["h"] if count == 1 else [f"state{j}" for j in range(count)]

    @property
    def constant_shapes(self) -> list[tuple]:
        """Shapes of the system's constants, without the batch dimension."""
        return []

    @property
    def read_size(self) -> int:
        """Size of the read vector."""
        raise NotImplementedError

    def state_initializers(self) -> list:
        """One Keras initializer per state (`None`: zeros).

        Ready for `RecurrentModel(state_initializer=[...])`.
        """
        return [None] * len(self.state_shapes)

    def activate_projection(self, projected):
        """Maps the projection's output to the raw control (project=True)."""
        return projected

    def transition(self, control, states: list, constants: list):
        """One step on the raw control: returns `(read_t, states_t)`."""
        raise NotImplementedError

    # -- wiring helpers ------------------------------------------------------
    def initial_state_inputs(self) -> list:
        """Fresh `keras.Input`s for the previous states, to wire in a step graph."""
        return [
            keras.Input(shape, name=f"{self.name}_state{i}", dtype=self.compute_dtype)
            for i, shape in enumerate(self.state_shapes)
        ]

    def constant_inputs(self) -> list:
        """Fresh `keras.Input`s for the constants (may be an empty list)."""
        return [
            keras.Input(
                shape, name=f"{self.name}_constant{i}", dtype=self.compute_dtype
            )
            for i, shape in enumerate(self.constant_shapes)
        ]

    def initial_states(self, batch_size: int) -> list:
        """The initial values of the states for a batch (see `state_initializers`)."""
        values = []
        for init, shape in zip(self.state_initializers(), self.state_shapes):
            if init is None:
                values.append(ops.zeros((batch_size, *shape), self.compute_dtype))
            else:
                value = init(shape, dtype=self.compute_dtype)
                values.append(ops.broadcast_to(value[None], (batch_size, *shape)))
        return values

    # -- the layer -------------------------------------------------------------
    def _check_shapes(self, shapes) -> list[tuple]:
        cls = type(self).__name__
        if not isinstance(shapes, (list, tuple)) or not all(
            isinstance(s, (list, tuple)) for s in shapes
        ):
            shapes = [shapes]
        shapes = [tuple(s) for s in shapes]
        n_states, n_consts = len(self.state_shapes), len(self.constant_shapes)
        expected = 1 + n_states + n_consts
        if len(shapes) != expected:
            raise ValueError(
                f"{cls} '{self.name}' is called on a list [controller_t, "
                f"*states_tm1 ({n_states}), *constants ({n_consts})] of "
                f"{expected} tensors. Received {len(shapes)} tensors with "
                f"shapes {shapes}"
            )
        controller = shapes[0]
        if len(controller) != 2 or controller[-1] is None:
            raise ValueError(
                f"The controller of {cls} '{self.name}' must be a vector "
                f"(batch, features) with known features. Received: "
                f"shape={controller}"
            )
        if not self.project and controller[-1] != self.control_size:
            layout = ", ".join(f"{part} ({size})" for part, size in self.control_layout)
            raise ValueError(
                f"With project=False the controller of {cls} '{self.name}' is "
                f"the raw control vector of size control_size="
                f"{self.control_size}: [{layout}]. Received: shape={controller}"
            )
        expected_shapes = [("states", s) for s in self.state_shapes]
        expected_shapes += [("constants", s) for s in self.constant_shapes]
        counters = {"states": 0, "constants": 0}
        for (role, want), got in zip(expected_shapes, shapes[1:]):
            index = counters[role]
            counters[role] += 1
            if len(got) != len(want) + 1 or any(
                g is not None and g != w for g, w in zip(got[1:], want)
            ):
                raise ValueError(
                    f"`{role}[{index}]` of {cls} '{self.name}' must have shape "
                    f"{(None, *want)}. Received: shape={got}"
                )
        return shapes

    def build(self, input_shape):
        shapes = self._check_shapes(input_shape)
        if self.projection is not None:
            self.projection.build(shapes[0])
        self.built = True

    def call(self, inputs):
        inputs = list(inputs) if isinstance(inputs, (list, tuple)) else [inputs]
        self._check_shapes([tuple(t.shape) for t in inputs])
        n_states = len(self.state_shapes)
        controller = inputs[0]
        states = inputs[1 : 1 + n_states]
        constants = inputs[1 + n_states :]
        if self.projection is not None:
            control = self.activate_projection(self.projection(controller))
        else:
            control = controller
        read, new_states = self.transition(control, states, constants)
        return [read, *new_states]

    def compute_output_shape(self, input_shape):
        shapes = self._check_shapes(input_shape)
        batch = shapes[0][0]
        return [(batch, self.read_size), *[(batch, *s) for s in self.state_shapes]]

    def split_control(self, control) -> dict:
        """Splits a raw control `(batch, control_size)` by `control_layout`."""
        parts, start = {}, 0
        for name, size in self.control_layout:
            parts[name] = control[:, start : start + size]
            start += size
        return parts

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "project": self.project,
                "kernel_initializer": keras.initializers.serialize(
                    self.kernel_initializer
                ),
                "bias_initializer": keras.initializers.serialize(self.bias_initializer),
            }
        )
        return config
