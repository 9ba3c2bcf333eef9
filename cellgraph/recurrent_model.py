"""RecurrentModel: turns a one-timestep functional graph into a sequence layer."""

from __future__ import annotations

import keras
from keras import ops

from cellgraph import _checks, _deferred, _executors, _loop, _options, backend
from cellgraph.cell import RNNCell
from cellgraph.step_graph import (
    GraphLayout,
    StepGraph,
    call_step_model,
    shapes_compatible,
    walk_layers,
)


@keras.saving.register_keras_serializable(package="cellgraph")
class RecurrentModel(keras.layers.Layer):
    """A recurrent layer whose timestep is a Keras functional graph.

    Write one timestep with ordinary Keras layers — step input(s) and
    previous states in, step output and next states out — and
    `RecurrentModel` runs it over sequences with Keras's own recurrent loop.
    It trains with `fit`, saves with `model.save`, works inside
    `keras.layers.Bidirectional` and nests in other step graphs.

    Args:
        input: the step input, a `keras.Input` without time axis, or a list
            of them (the layer is then called on a list of sequences).
        output: the step output tensor.
        initial_states: list of `keras.Input`s for the previous states. A
            state may have any rank; only the batch dimension is unknown.
        final_states: list of the next states, in the order of
            `initial_states` and with the same shapes.
        readout_input: optional `keras.Input` that receives the layer's own
            output of the previous step (zeros, or `initial_readout`, at the
            first step).
        teacher_force: `True`, or a float p in (0, 1] for scheduled
            sampling. In training, step t reads `ground_truth[:, t-1]`
            (with probability p) instead of its previous output. Needs
            `readout_input`.
        decode: if `True`, the call input has no time axis; it is fed to the
            step input at each of `output_length` steps.
        output_length: number of steps when `decode=True` (an error
            without it).
        constants: list of `keras.Input`s that receive the same tensor at
            every step (`rnn(x, constants=[data])`).
        state_initializer: initial values of the states: `None` (zeros), a
            Keras initializer (name or object, sampled once and kept as a
            non-trainable weight), `"learned"` (trainable initial states),
            or a list with one of those per state.
        return_sequences: return every step's output, not only the last.
            Default `None`: `True` when decoding, `False` otherwise.
        return_state: also return the final states: `[output, *states]`.
        go_backwards: process the sequence backwards (outputs come in
            processing order, as in Keras).
        stateful: keep the last states of a batch for the next batch.
        unroll: unroll the loop in Python (needs a known time length).
        zero_output_for_mask: output zeros at masked steps instead of the
            previous output.
        **kwargs: base layer keyword arguments (`name`, `dtype`, ...).

    Call arguments:
        inputs: a sequence `(batch, time, *step_shape)` (or a list of them),
            or with `decode=True` a tensor `(batch, *step_shape)`.
        initial_state: optional list of initial state tensors.
        initial_readout: optional first readout `(batch, *output_shape)`.
        ground_truth: targets `(batch, time, *output_shape)`, aligned with
            the outputs, for teacher forcing in training.
        constants: list of tensors for the `constants` inputs.
        mask: optional boolean mask `(batch, time)`.
        training: Python boolean, training or inference mode.

    Output shape:
        `(batch, time, *output_shape)` with `return_sequences=True`, else
        `(batch, *output_shape)`; with `return_state=True` a list
        `[output, *final_states]`.

    Dtypes: floating parts (step inputs, states, the output) follow the
    layer's compute dtype (`mixed_float16` included); integer and boolean
    step inputs and states keep their dtype, so token ids and counters are
    never rounded. With several masked inputs, a step counts only where
    every input is valid (the masks are combined with logical AND).

    Subclasses that build their step graph themselves (`RecurrentSequential`,
    `Superloop`) call this constructor without `input`/`output` and override
    `build_step_graph(input_shape)`, which the layer calls once, when it is
    first built. `RecurrentModel.from_step_graph(graph, **options)` takes a
    ready `StepGraph`.

    Example:

    ```python
    x_t = keras.Input((5,))
    h_tm1 = keras.Input((10,))
    h_t = keras.layers.Activation("tanh")(keras.layers.Add()([
        keras.layers.Dense(10)(x_t),
        keras.layers.Dense(10, use_bias=False)(h_tm1)]))
    rnn = cellgraph.RecurrentModel(
        input=x_t, initial_states=[h_tm1], output=h_t, final_states=[h_t])
    y = rnn(np.zeros((2, 7, 5), "float32"))  # (2, 10)
    ```
    """

    _cellgraph_sequence_layer = True

    def __init__(
        self,
        input=None,
        output=None,
        initial_states=None,
        final_states=None,
        readout_input=None,
        teacher_force: bool | float = False,
        decode: bool = False,
        output_length: int | None = None,
        constants=None,
        state_initializer=None,
        return_sequences: bool | None = None,
        return_state: bool = False,
        go_backwards: bool = False,
        stateful: bool = False,
        unroll: bool = False,
        zero_output_for_mask: bool = False,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.teacher_force = _options.parse_teacher_force(teacher_force)
        self.decode, self.output_length = _options.parse_decode(decode, output_length)
        self.state_initializer = _options.parse_state_initializer(state_initializer)
        self.return_sequences = _options.parse_return_sequences(
            return_sequences, self.decode
        )
        self.return_state = _options.check_bool("return_state", return_state)
        self.go_backwards = _options.check_bool("go_backwards", go_backwards)
        self.stateful = _options.check_bool("stateful", stateful)
        self.unroll = _options.check_bool("unroll", unroll)
        self.zero_output_for_mask = _options.check_bool(
            "zero_output_for_mask", zero_output_for_mask
        )
        self.supports_masking = True
        self._initial_weights = []
        self._state_variables = []
        sampled = self.teacher_force not in (False, 1.0)
        self._seed_generator = keras.random.SeedGenerator() if sampled else None
        self._step_graph = None
        self.step_model = None
        # A step model read from a config: its layers are tracked now (the
        # weights), its graph is replayed once loading is over (_deferred).
        self._deferred = self.__dict__.pop("_given_pending", None)
        if self._deferred is not None:
            self._step_layers = list(self._deferred.layers)
        graph = self.__dict__.pop("_given_step_graph", None)
        if graph is None and (input is not None or output is not None):
            graph = StepGraph(
                inputs=input,
                output=output,
                initial_states=initial_states,
                final_states=final_states,
                constants=constants,
                readout_input=readout_input,
            )
        elif graph is None and not self._builds_own_graph():
            raise ValueError(
                "RecurrentModel needs the step graph: pass `input` and `output` "
                "(step Inputs and the step output), or use "
                "`RecurrentModel.from_step_graph(graph, **options)`. Received: "
                f"input={input!r}, output={output!r}"
            )
        if graph is not None:
            self._take_step_graph(graph)

    @classmethod
    def from_step_graph(cls, graph: StepGraph, **options) -> RecurrentModel:
        """Makes the sequence layer of a ready `StepGraph`.

        Args:
            graph: a `cellgraph.StepGraph`.
            **options: the constructor's other arguments (`return_sequences`,
                `teacher_force`, `name`, ...).

        Example:

        ```python
        x_t, h_tm1 = keras.Input((3,)), keras.Input((4,))
        h_t = keras.layers.Dense(4, activation="tanh")(
            keras.layers.Concatenate()([x_t, h_tm1]))
        graph = cellgraph.StepGraph(
            inputs=x_t, output=h_t, initial_states=[h_tm1], final_states=[h_t])
        rnn = cellgraph.RecurrentModel.from_step_graph(graph, return_sequences=True)
        y = rnn(np.zeros((2, 5, 3), "float32"))  # (2, 5, 4)
        ```
        """
        if not isinstance(graph, StepGraph):
            raise TypeError(
                "Argument `graph` of RecurrentModel.from_step_graph() must be a "
                f"cellgraph.StepGraph. Received: {type(graph).__name__}"
            )
        roles = (
            "input",
            "output",
            "initial_states",
            "final_states",
            "constants",
            "readout_input",
        )
        given = [name for name in roles if options.get(name) is not None]
        if given:
            raise TypeError(
                "RecurrentModel.from_step_graph() takes the roles from the "
                f"graph. Received also: {given}"
            )
        return cls._construct(graph, options)

    @classmethod
    def _construct(cls, graph, options, pending=None):
        layer = cls.__new__(cls, **options)
        layer.__dict__["_given_step_graph"] = graph
        layer.__dict__["_given_pending"] = pending
        layer.__init__(**options)
        return layer

    # -- the one builder hook ----------------------------------------------
    def _builds_own_graph(self) -> bool:
        return type(self).build_step_graph is not RecurrentModel.build_step_graph

    def build_step_graph(self, input_shape) -> StepGraph:
        """Returns the `StepGraph` this layer runs.

        Called once, when the layer is first built (or asked for its output
        shape), with the shape of the call's input. `RecurrentModel` returns
        the graph it was constructed with; builders such as
        `RecurrentSequential` and `Superloop` override this to build theirs.

        Args:
            input_shape: shape of the call input, `(batch, time, *step)`
                (`(batch, *step)` when decoding), or a list of shapes.
        """
        raise ValueError(f"{type(self).__name__} {self.name!r} has no step graph.")

    def _ensure_step_graph(self, input_shape):
        if self._step_graph is None:
            if isinstance(self._deferred, _deferred.PendingBuild):
                graph = self._deferred.preview_graph(self, input_shape)
            else:
                graph = self.build_step_graph(input_shape)
            self._take_step_graph(graph)

    def _defer_build(self, parts: dict):
        """For a builder read from a config: build from copies until loaded.

        `parts` maps attribute names (e.g. `"stack"`) to private copies of
        those parts; see `cellgraph._deferred.PendingBuild`.
        """
        self._deferred = _deferred.PendingBuild(parts)

    def _take_step_graph(self, graph: StepGraph):
        """Checks the step graph against the options and keeps it."""
        if not isinstance(graph, StepGraph):
            raise TypeError(
                f"{type(self).__name__}.build_step_graph() must return a "
                f"cellgraph.StepGraph. Received: {type(graph).__name__}"
            )
        for layer in walk_layers(graph.model):
            if getattr(layer, "activity_regularizer", None) is not None:
                raise ValueError(
                    f"{self.name}: layer {layer.name!r} ({type(layer).__name__}) "
                    "in the step graph has an activity regularizer. A loss "
                    "added inside the loop cannot reach the training loss. "
                    "Regularize the sequence layer's output instead, e.g. "
                    "`keras.layers.ActivityRegularization` after the "
                    "RecurrentModel. Received: activity_regularizer="
                    f"{_checks.describe(layer.activity_regularizer)}"
                )
        if keras.backend.backend() == "jax":
            _checks.probe_losses(self.name, graph)
        _options.check_teacher_force(self.teacher_force, graph)
        self._state_initializers = self._expand_state_initializer(
            len(graph.initial_states)
        )
        self._step_graph = graph
        self._keep_step_model(graph.model)

    def _keep_step_model(self, model):
        if self._deferred is None:
            self.step_model = model
        else:
            # Not tracked: the tracked `_step_layers` hold the weights, and
            # the replayed model comes after `build()` has locked tracking.
            object.__setattr__(self, "step_model", model)

    def _finish_loading(self):
        """Replays a step graph read from a config (see `cellgraph._deferred`)."""
        pending = self._deferred
        if pending is None:
            return
        graph = self._step_graph
        if isinstance(pending, _deferred.PendingBuild):
            if graph is None:  # not built yet: it will build from its own parts
                self._deferred = None
                return
            graph = self.build_step_graph(pending.input_shape)
        else:
            model = pending.resolve()
            graph = StepGraph.from_model(model, graph.layout, graph.multi_input)
        self._step_graph = graph
        self._keep_step_model(graph.model)
        self._deferred = None

    def _expand_state_initializer(self, num_states) -> list:
        """One `state_initializer` entry per state (`None`: zeros)."""
        return _options.expand_state_initializer(self.state_initializer, num_states)

    # -- properties ------------------------------------------------------------
    @property
    def step_graph(self) -> StepGraph | None:
        """The `StepGraph` this layer runs (`None` until a builder is built)."""
        return self._step_graph

    @property
    def num_states(self) -> int:
        """Number of states (`initial_states`) of the step graph."""
        return len(self.state_shapes)

    @property
    def has_readout(self) -> bool:
        return self._step_graph.readout_input is not None

    @property
    def state_shapes(self) -> list[tuple]:
        """State shapes without the batch dimension."""
        return list(self._step_graph.state_shapes)

    @property
    def states(self):
        """The state variables of a stateful layer (`None` otherwise)."""
        if not self.stateful or not self._state_variables:
            return None
        return list(self._state_variables[: self.num_states])

    def _slots(self):
        return _loop.persistent_slots(self._step_graph, self.compute_dtype)

    # -- building ---------------------------------------------------------------
    def build(self, input_shape):
        self._ensure_step_graph(input_shape)
        shapes = self._check_input_shapes(input_shape)
        time = self.output_length if self.decode else shapes[0][1]
        if self.unroll and time is None:
            raise ValueError(
                "Cannot unroll a RecurrentModel over a sequence of unknown "
                "length (`unroll=True` needs a known time dimension). "
                f"Received input shape {shapes[0]}. Give the time dimension in "
                "`keras.Input(shape=(T, ...))` or set `unroll=False`."
            )
        for i, (spec, shape) in enumerate(
            zip(self._state_initializers, self.state_shapes)
        ):
            if spec is None:
                self._initial_weights.append(None)
                continue
            self._initial_weights.append(
                self.add_weight(
                    shape=shape,
                    initializer="zeros" if spec == _options.LEARNED else spec,
                    trainable=spec == _options.LEARNED,
                    name=f"initial_state_{i}",
                )
            )
        if self.stateful:
            batch = shapes[0][0]
            if batch is None:
                raise ValueError(
                    "A stateful RecurrentModel needs a fixed batch size: give "
                    "it with `keras.Input(batch_shape=(batch_size, ...))`. "
                    f"Received input shape {shapes[0]} (unknown batch size)."
                )
            self._state_variables = [
                self.add_weight(
                    shape=(batch, *slot.shape),
                    initializer="zeros",
                    dtype=slot.dtype if not _loop.is_float(slot.dtype) else None,
                    trainable=False,
                    name=f"state_{i}",
                )
                for i, slot in enumerate(self._slots())
            ]
            self.reset_states()
        self.built = True

    def _check_input_shapes(self, input_shape):
        return _checks.input_shapes(self, input_shape)

    # -- states -------------------------------------------------------------
    def get_initial_state(self, batch_size) -> list:
        """The initial values of the states for a batch of `batch_size`."""
        values = []
        weights = self._initial_weights or [None] * self.num_states
        for weight, slot in zip(weights, self._slots()):
            if weight is None:
                values.append(ops.zeros((batch_size, *slot.shape), dtype=slot.dtype))
            else:
                values.append(
                    ops.broadcast_to(
                        ops.cast(weight, slot.dtype)[None], (batch_size, *slot.shape)
                    )
                )
        return values

    def _persistent_initial(self, batch_size, states, readout) -> list:
        """Values of the persistent inner states: states, readout, placeholder."""
        values = []
        slots = self._slots()
        states = list(states)
        for slot in slots:
            if slot.role == _loop.STATE:
                value = states.pop(0)
            elif slot.role == _loop.READOUT and readout is not None:
                value = readout
            else:
                value = ops.zeros((batch_size, *slot.shape), dtype=slot.dtype)
            values.append(ops.cast(value, slot.dtype))
        return values

    def reset_states(self, states=None):
        """Resets the states of a stateful layer.

        Args:
            states: `None` to restore the initial values (the
                `state_initializer`'s, not blindly zeros), or a list of
                arrays, one per state, of shape `(batch_size, *shape)` (the state's
                shape in `state_shapes`).
        """
        if not self.stateful:
            raise ValueError(
                "reset_states() applies to a stateful layer. Received a "
                f"RecurrentModel with stateful={self.stateful}."
            )
        if not self._state_variables:
            return
        batch = self._state_variables[0].shape[0]
        if states is None:
            values = self._persistent_initial(
                batch, self.get_initial_state(batch), None
            )
        else:
            states = list(states) if isinstance(states, (list, tuple)) else [states]
            if len(states) != self.num_states:
                raise ValueError(
                    f"reset_states() expects {self.num_states} states. "
                    f"Received {len(states)}."
                )
            for i, (value, shape) in enumerate(zip(states, self.state_shapes)):
                if tuple(ops.shape(value)) != (batch, *shape):
                    raise ValueError(
                        f"reset_states(): state {i} must have shape "
                        f"{(batch, *shape)} (batch size {batch}). Received: "
                        f"shape={tuple(ops.shape(value))}"
                    )
            values = self._persistent_initial(batch, states, None)
        for variable, value in zip(self._state_variables, values):
            variable.assign(ops.cast(value, variable.dtype))

    reset_state = reset_states

    # -- the call ------------------------------------------------------------------
    def _as_list(self, value):
        return _checks.as_list(value)

    def _checked_arguments(self, inputs, *arguments):
        """The step graph for the call's shape, then every argument checked."""
        self._ensure_step_graph(_call_shape(inputs))
        names = (
            "initial_state",
            "initial_readout",
            "ground_truth",
            "constants",
            "mask",
            "training",
        )
        return _checks.call_arguments(self, inputs, **dict(zip(names, arguments)))

    def call(
        self,
        inputs,
        initial_state=None,
        initial_readout=None,
        ground_truth=None,
        constants=None,
        mask=None,
        training=None,
    ):
        self._finish_loading()
        arguments = (
            inputs,
            initial_state,
            initial_readout,
            ground_truth,
            constants,
            mask,
            training,
        )
        first = inputs[0] if isinstance(inputs, (list, tuple)) else inputs
        if backend.is_shape_probe(first):  # PyTorch infers shapes on meta tensors
            return backend.shape_probes(self.compute_output_spec(*arguments))
        xs, states, consts = self._checked_arguments(*arguments)
        if self.stateful and self._state_variables and xs[0].shape[0] is None:
            expected = self._state_variables[0].shape[0]
            xs[0] = backend.check_batch_size(
                xs[0],
                expected,
                f"A stateful RecurrentModel keeps states for a batch size of "
                f"{expected}; the inputs have another batch size.",
            )
        batch = ops.shape(xs[0])[0]
        if self.stateful and initial_state is None:
            persistent = [v.value for v in self._state_variables]
            if initial_readout is not None and self.has_readout:
                persistent[self.num_states] = initial_readout
        else:
            if not states:
                states = self.get_initial_state(batch)
            persistent = self._persistent_initial(batch, states, initial_readout)

        teacher = bool(self.teacher_force) and bool(training)
        mask = None if self.decode else _loop.combine_masks(mask)
        native = None
        if not teacher and mask is None:
            native = _executors.native_run(self, xs, persistent, training)
        if native is not None:
            output, final = native
        else:
            output, final = _executors.run_loop(
                self,
                xs,
                persistent,
                batch,
                ground_truth,
                consts,
                mask,
                training,
                teacher,
            )
        if self.stateful:
            for variable, value in zip(self._state_variables, final):
                variable.assign(ops.cast(value, variable.dtype))
        if self.return_state:
            return [output, *final[: self.num_states]]
        return output

    # -- shapes and masks --------------------------------------------------
    def compute_output_shape(self, input_shape, initial_state_shape=None):
        self._ensure_step_graph(input_shape)
        shapes = self._check_input_shapes(input_shape)
        batch = shapes[0][0]
        time = self.output_length if self.decode else shapes[0][1]
        output_shape = self._step_graph.output_shape
        if self.return_sequences:
            output_shape = (batch, time, *output_shape)
        else:
            output_shape = (batch, *output_shape)
        if self.return_state:
            return (output_shape, *[(batch, *s) for s in self.state_shapes])
        return output_shape

    def compute_output_spec(
        self,
        inputs,
        initial_state=None,
        initial_readout=None,
        ground_truth=None,
        constants=None,
        mask=None,
        training=None,
    ):
        xs, _, _ = self._checked_arguments(
            inputs,
            initial_state,
            initial_readout,
            ground_truth,
            constants,
            mask,
            training,
        )
        shapes = self.compute_output_shape(
            [tuple(x.shape) for x in xs] if len(xs) > 1 else tuple(xs[0].shape)
        )
        graph = self._step_graph
        output_dtype = _loop.loop_dtype(graph.output_dtype, self.compute_dtype)
        if self.return_state:
            dtypes = [output_dtype] + [slot.dtype for slot in self._slots()]
            return [keras.KerasTensor(s, dtype=d) for s, d in zip(shapes, dtypes)]
        return keras.KerasTensor(shapes, dtype=output_dtype)

    def compute_mask(self, inputs, mask=None):
        mask = _loop.combine_masks(mask)
        output_mask = mask if self.return_sequences and not self.decode else None
        if self.return_state:
            return [output_mask] + [None] * self.num_states
        return output_mask

    # -- one step, eagerly -----------------------------------------------
    def step(self, inputs, states=None, constants=None, readout=None, training=False):
        """Runs one step eagerly, for streaming inference.

        Args:
            inputs: the step input `(batch, *step_shape)` (or a list).
            states: list of the previous states; `None` for the initial ones.
            constants: list of constant tensors, if the graph has some.
            readout: the previous output, if the graph has a readout input
                (`None`: zeros).
            training: Python boolean.

        Returns:
            `(output, new_states)`.
        """
        self._finish_loading()
        xs = [ops.convert_to_tensor(x) for x in self._as_list(inputs)]
        batch = ops.shape(xs[0])[0]
        if not self.built:
            lead = (None,) if self.decode else (None, None)
            shapes = [(*lead, *tuple(x.shape[1:])) for x in xs]
            self.build(shapes if len(shapes) > 1 else shapes[0])
        slots = self._slots()
        states = [ops.convert_to_tensor(s) for s in self._as_list(states)]
        consts = [ops.convert_to_tensor(c) for c in self._as_list(constants)]
        _checks.step_arguments(self, xs, states, consts)
        states = [
            ops.cast(s, slot.dtype)
            for s, slot in zip(states or self.get_initial_state(batch), slots)
        ]
        if self.has_readout:
            slot = slots[self.num_states]
            if readout is None:
                readout = ops.zeros((batch, *slot.shape), slot.dtype)
            readout = ops.cast(ops.convert_to_tensor(readout), slot.dtype)
        layout = self._step_graph.layout
        outputs = call_step_model(
            self.step_model, layout.join(xs, states, consts, readout), training
        )
        return outputs[0], list(outputs[1:])

    def summary(self, **kwargs):
        """Prints the step graph's layers (`step_model.summary(**kwargs)`).

        `model.summary()` of a model holding this layer shows it as one
        layer; this shows what runs inside one step.
        """
        self._finish_loading()
        if self.step_model is None:
            raise ValueError(
                f"{self.name} has no step graph yet: call it (or build it) once."
            )
        return self.step_model.summary(**kwargs)

    def get_cell(self) -> GraphCell:
        """Returns an `RNNCell` running one step of this graph (shared weights).

        The cell is called on `[*inputs, *states, *constants]`; with a
        readout, the previous output is an extra last state.
        """
        self._finish_loading()
        if self._step_graph is None:
            raise ValueError(
                f"{self.name}.get_cell() needs the step graph, which is built "
                "at the first call (the input shape is known then): call the "
                "layer once first."
            )
        return GraphCell(self.step_model, self._step_graph.layout)

    # -- serialization -----------------------------------------------------
    _SEED_KEY = "sampling_seed_state"

    def save_own_variables(self, store):
        """Saves the variables, and the scheduled-sampling seed's state.

        Keras does not save a `SeedGenerator`'s state with the layer's own
        variables; without it, training resumed from a file would draw other
        coins than the uninterrupted run.
        """
        super().save_own_variables(store)
        if self._seed_generator is not None:
            store[self._SEED_KEY] = ops.convert_to_numpy(self._seed_generator.state)

    def load_own_variables(self, store):
        # The outer graphs are rebuilt by now: the step graph can be replayed
        # before Keras loads the step model's weights.
        self._finish_loading()
        if self._SEED_KEY in store.keys():
            seed_state = store[self._SEED_KEY]
            if self._seed_generator is not None:
                self._seed_generator.state.assign(seed_state)
            store = {k: store[k] for k in store.keys() if k != self._SEED_KEY}
        super().load_own_variables(store)

    def _options_config(self) -> dict:
        """Config entries of the options every step-graph layer takes."""
        return {
            "teacher_force": self.teacher_force,
            "decode": self.decode,
            "output_length": self.output_length,
            "state_initializer": _options.serialize_initializers(
                self.state_initializer
            ),
            "return_sequences": self.return_sequences,
            "return_state": self.return_state,
            "go_backwards": self.go_backwards,
            "stateful": self.stateful,
            "unroll": self.unroll,
            "zero_output_for_mask": self.zero_output_for_mask,
        }

    def _step_graph_config(self) -> dict:
        """Config entries that describe the step graph (builders: their parts)."""
        graph = self._step_graph
        config = _options.serialize_shared(self.step_model)
        cell = _options.sole_cell(self.step_model, config, graph.layout)
        if cell is not None:
            # Rebuilt by calling the cell when loading, not by replaying the
            # graph: one cell in two such layers (tied weights) then loads.
            return {
                "cell": _options.serialize_shared(cell),
                "step_inputs": [
                    {"shape": list(t.shape[1:]), "dtype": t.dtype, "name": n[0]}
                    for t, n in zip(
                        self.step_model.inputs, config["config"]["input_layers"]
                    )
                ],
                **graph.layout.get_config(),
                "multi_input": graph.multi_input,
            }
        return {
            "step_model": config,
            **graph.layout.get_config(),
            "multi_input": graph.multi_input,
        }

    def get_config(self):
        self._finish_loading()
        config = super().get_config()
        config.update(self._options_config())
        config.update(self._step_graph_config())
        return config

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        layout = GraphLayout(
            **{
                key: config.pop(key)
                for key in ("num_inputs", "num_states", "num_constants", "has_readout")
            }
        )
        owner = config.get("name", cls.__name__)
        cell, specs = config.pop("cell", None), config.pop("step_inputs", None)
        pending = None
        if "step_model" in config or cell is None:
            model = _deferred.load_step_model(
                config.pop("step_model", None), owner, custom_objects
            )
            pending, model = _deferred.split(model)
        else:
            cell = _options.deserialize_part(cell, owner, custom_objects)
            inputs = [
                keras.Input(
                    tuple(spec["shape"]), dtype=spec["dtype"], name=spec["name"]
                )
                for spec in specs
            ]
            model = keras.Model(inputs, list(cell(inputs)))
        graph = StepGraph.from_model(model, layout, config.pop("multi_input"))
        config["state_initializer"] = _options.deserialize_initializers(
            config["state_initializer"]
        )
        return cls._construct(graph, config, pending)


def _call_shape(inputs):
    """The input shape of a call (a list of shapes for several inputs)."""
    xs = _checks.as_list(inputs)
    if len(xs) == 1:
        return tuple(xs[0].shape)
    return [tuple(x.shape) for x in xs]


@keras.saving.register_keras_serializable(package="cellgraph")
class GraphCell(RNNCell):
    """An `RNNCell` running one step of a `RecurrentModel`'s step graph.

    Made by `RecurrentModel.get_cell()`; it shares the step graph's layers
    (and so its weights). It is called on `[*inputs, *states, *constants]`
    and returns `[output, *new_states]`; with a readout, the previous output
    is an extra last state.

    Args:
        step_model: the one-step model, inputs ordered as `layout` says.
        layout: a `GraphLayout` (or its config dict).
        **kwargs: `RNNCell` keyword arguments (`name`, `dtype`, ...).

    Example:

    ```python
    x_t, h_tm1 = keras.Input((3,)), keras.Input((4,))
    h_t = keras.layers.Dense(4, activation="tanh")(
        keras.layers.Concatenate()([x_t, h_tm1]))
    rnn = cellgraph.RecurrentModel(
        input=x_t, output=h_t, initial_states=[h_tm1], final_states=[h_t])
    cell = rnn.get_cell()
    out, h = cell([np.zeros((2, 3), "float32"), np.zeros((2, 4), "float32")])
    ```
    """

    def __init__(self, step_model, layout=None, **kwargs):
        if isinstance(step_model, dict):
            owner = kwargs.get("name", type(self).__name__)
            step_model = _deferred.load_step_model(step_model, owner)
        pending, step_model = _deferred.split(step_model)
        counts = {
            key: kwargs.pop(key)
            for key in ("num_inputs", "num_states", "num_constants", "has_readout")
            if key in kwargs
        }
        if layout is None:
            layout = GraphLayout(**counts)
        elif isinstance(layout, dict):
            layout = GraphLayout(**layout)
        graph = StepGraph.from_model(step_model, layout)
        kwargs.setdefault("input_dim", None)
        super().__init__(**kwargs)
        self._deferred = pending
        if pending is None:
            self.model = step_model
        else:  # as in RecurrentModel: weights tracked, graph replayed later
            self._step_layers = list(pending.layers)
            object.__setattr__(self, "model", step_model)
        self.layout = layout
        self._input_shapes = graph.input_shapes
        shapes = graph.state_shapes
        if layout.has_readout:
            shapes = shapes + [graph.output_shape]
        self._cell_state_shapes = shapes
        self._constant_shapes = graph.constant_shapes

    @property
    def state_shapes(self):
        return list(self._cell_state_shapes)

    @property
    def input_shape_hint(self):
        return self._input_shapes[0] if len(self._input_shapes) == 1 else None

    def build(self, input_shape):
        expected = [
            *self._input_shapes,
            *self._cell_state_shapes,
            *self._constant_shapes,
        ]
        shapes = list(input_shape) if isinstance(input_shape, (list, tuple)) else []
        if len(shapes) != len(expected) or not all(
            shapes_compatible((None, *want), tuple(got))
            for want, got in zip(expected, shapes)
        ):
            raise ValueError(
                f"Argument `inputs` of GraphCell {self.name!r} (one step of a "
                "RecurrentModel) must be a list [*inputs, *states, *constants] "
                f"with shapes {[(None, *s) for s in expected]}. Received: "
                f"input_shape={shapes}"
            )
        self.built = True

    def _model_inputs(self, inputs):
        """Cell order `[*inputs, *states, (readout), *constants]` to the model's."""
        inputs = list(inputs)
        layout = self.layout
        a = layout.num_inputs
        b = a + layout.num_states + int(layout.has_readout)
        states = inputs[a:b]
        readout = states.pop() if layout.has_readout else None
        return layout.join(inputs[:a], states, inputs[b:], readout)

    def _finish_loading(self):
        if self._deferred is not None:
            object.__setattr__(self, "model", self._deferred.resolve())
            self._deferred = None

    def load_own_variables(self, store):
        self._finish_loading()
        super().load_own_variables(store)

    def call(self, inputs, training=None):
        self._finish_loading()
        outputs = call_step_model(self.model, self._model_inputs(inputs), training)
        if self.layout.has_readout:
            outputs.append(outputs[0])
        return outputs

    def compute_output_spec(self, inputs, training=None):
        outputs = call_step_model(self.model, self._model_inputs(inputs), spec=True)
        if self.layout.has_readout:
            outputs.append(outputs[0])
        return outputs

    def get_config(self):
        self._finish_loading()
        config = super().get_config()
        config["step_model"] = _options.serialize_shared(self.model)
        config.update(self.layout.get_config())
        return config
