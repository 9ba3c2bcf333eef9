"""RecurrentModel: turns a one-timestep functional graph into a sequence layer."""

from __future__ import annotations

import keras
from keras import ops

from cellgraph import _loop, _options, backend
from cellgraph.step_graph import (
    StepGraph,
    call_step_model,
    shapes_compatible,
    walk_layers,
)


class _Untracked:
    """Holds an object out of Keras's attribute tracking (no weights inside)."""

    def __init__(self, value):
        self.value = value


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
        output_length: number of steps when `decode=True`.
        constants: list of `keras.Input`s that receive the same tensor at
            every step (`rnn(x, constants=[data])`).
        state_initializer: initial values of the states: `None` (zeros), a
            Keras initializer (name or object, sampled once and kept as a
            non-trainable weight), `"learned"` (trainable initial states),
            or a list with one of those per state.
        return_sequences: return every step's output, not only the last.
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
        input,
        output,
        initial_states=None,
        final_states=None,
        readout_input=None,
        teacher_force: bool | float = False,
        decode: bool = False,
        output_length: int | None = None,
        constants=None,
        state_initializer=None,
        return_sequences: bool = False,
        return_state: bool = False,
        go_backwards: bool = False,
        stateful: bool = False,
        unroll: bool = False,
        zero_output_for_mask: bool = False,
        **kwargs,
    ):
        graph = kwargs.pop("_graph", None)
        super().__init__(**kwargs)
        self._set_options(
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
        )
        if graph is None:
            graph = StepGraph(
                inputs=input,
                output=output,
                initial_states=initial_states,
                final_states=final_states,
                constants=constants,
                readout_input=readout_input,
            )
        self._set_graph(graph, multi_input=isinstance(input, (list, tuple)))

    def _set_options(
        self,
        teacher_force,
        decode,
        output_length,
        state_initializer,
        return_sequences,
        return_state,
        go_backwards,
        stateful,
        unroll,
        zero_output_for_mask,
    ):
        """Stores the options that do not depend on the step graph."""
        self.teacher_force = teacher_force
        self.decode = bool(decode)
        if self.decode and (not isinstance(output_length, int) or output_length < 1):
            raise ValueError(
                "Argument `output_length` must be a positive integer when "
                f"`decode=True`. Received: output_length={output_length!r}"
            )
        self.output_length = output_length
        self.state_initializer = state_initializer
        self.return_sequences = return_sequences
        self.return_state = return_state
        self.go_backwards = go_backwards
        self.stateful = stateful
        self.unroll = unroll
        self.zero_output_for_mask = zero_output_for_mask
        self.supports_masking = True
        self._initial_weights = []
        self._state_variables = []

    def _set_graph(self, graph: StepGraph, multi_input: bool):
        """Takes the step graph: its model, roles, shapes, and the loop."""
        for layer in walk_layers(graph.model):
            if getattr(layer, "activity_regularizer", None) is not None:
                raise ValueError(
                    f"{self.name}: layer {layer.name!r} ({type(layer).__name__}) "
                    "in the step graph has an activity regularizer. A loss "
                    "added inside the loop cannot reach the training loss. "
                    "Regularize the sequence layer's output instead, e.g. "
                    "`keras.layers.ActivityRegularization` after the "
                    "RecurrentModel. Received: activity_regularizer="
                    f"{layer.activity_regularizer!r}"
                )
        self._graph_counts = graph.counts
        self.step_model = graph.model
        self._input_shapes = graph.input_shapes
        self._state_shapes = graph.state_shapes
        self._output_shape = graph.output_shape
        self._multi_input = multi_input
        self.teacher_force = _options.check_teacher_force(self.teacher_force, graph)
        self.state_initializer = _options.parse_state_initializer(
            self.state_initializer, len(self._state_shapes)
        )
        inner_shapes = list(self._state_shapes)
        if self.has_readout:
            inner_shapes.append(self._output_shape)
        if not inner_shapes:  # keras.layers.RNN needs at least one state
            inner_shapes.append((1,))
        self._inner_shapes = inner_shapes
        cell = _loop.StepCell(
            self.step_model, self._graph_counts, inner_shapes, dtype=self.dtype_policy
        )
        self._loop = _Untracked(
            keras.layers.RNN(
                cell,
                dtype=self.dtype_policy,
                return_sequences=self.return_sequences,
                return_state=True,
                go_backwards=self.go_backwards,
                unroll=self.unroll,
                zero_output_for_mask=self.zero_output_for_mask,
            )
        )
        sampled = self.teacher_force not in (False, 1.0)
        self._seed_generator = keras.random.SeedGenerator() if sampled else None

    # -- properties ------------------------------------------------------------
    @property
    def num_states(self) -> int:
        """Number of states (`initial_states`) of the step graph."""
        return len(self._state_shapes)

    @property
    def has_readout(self) -> bool:
        return self._graph_counts["has_readout"]

    @property
    def state_shapes(self) -> list[tuple]:
        """State shapes without the batch dimension."""
        return list(self._state_shapes)

    @property
    def states(self):
        """The state variables of a stateful layer (`None` otherwise)."""
        if not self.stateful or not self._state_variables:
            return None
        return list(self._state_variables[: self.num_states])

    # -- building ---------------------------------------------------------------
    def build(self, input_shape):
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
            zip(self.state_initializer, self._state_shapes)
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
                    shape=(batch, *shape),
                    initializer="zeros",
                    trainable=False,
                    name=f"state_{i}",
                )
                for i, shape in enumerate(self._inner_shapes)
            ]
            self.reset_states()
        self.built = True

    def _check_input_shapes(self, input_shape):
        shapes = input_shape
        if not (
            isinstance(shapes, (list, tuple))
            and shapes
            and isinstance(shapes[0], (list, tuple))
        ):
            shapes = [shapes]
        shapes = [tuple(s) for s in shapes]
        if len(shapes) != len(self._input_shapes):
            raise ValueError(
                f"{self.name} has {len(self._input_shapes)} step inputs, so it "
                f"is called on a list of {len(self._input_shapes)} "
                f"{'tensors' if self.decode else 'sequences'}. Received "
                f"{len(shapes)} with shapes {shapes}"
            )
        lead = 1 if self.decode else 2
        for i, (step, shape) in enumerate(zip(self._input_shapes, shapes)):
            want = (None,) * lead + step
            if not shapes_compatible(want, shape):
                name = "inputs" if len(shapes) == 1 else f"inputs[{i}]"
                layout = (
                    "(batch, *step_shape)"
                    if self.decode
                    else ("(batch, time, *step_shape)")
                )
                raise ValueError(
                    f"Argument `{name}` of {self.name} must have shape "
                    f"{layout} = {want}. Received: shape={shape}"
                )
        return shapes

    # -- states -------------------------------------------------------------
    def get_initial_state(self, batch_size) -> list:
        """The initial values of the states for a batch of `batch_size`."""
        values = []
        for weight, shape in zip(
            self._initial_weights or [None] * self.num_states, self._state_shapes
        ):
            if weight is None:
                values.append(ops.zeros((batch_size, *shape), dtype=self.compute_dtype))
            else:
                values.append(
                    ops.broadcast_to(
                        ops.cast(weight, self.compute_dtype)[None],
                        (batch_size, *shape),
                    )
                )
        return values

    def _inner_initial_states(self, batch_size, states, readout):
        inner = list(states)
        if self.has_readout:
            if readout is None:
                readout = ops.zeros(
                    (batch_size, *self._output_shape), dtype=self.compute_dtype
                )
            inner.append(readout)
        if len(inner) < len(self._inner_shapes):
            inner.append(ops.zeros((batch_size, 1), dtype=self.compute_dtype))
        return inner

    def reset_states(self, states=None):
        """Resets the states of a stateful layer.

        Args:
            states: `None` to restore the initial values (the
                `state_initializer`'s, not blindly zeros), or a list of
                arrays, one per state, of shape `(batch_size, *state_shape)`.
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
            values = self._inner_initial_states(
                batch, self.get_initial_state(batch), None
            )
        else:
            states = list(states) if isinstance(states, (list, tuple)) else [states]
            if len(states) != self.num_states:
                raise ValueError(
                    f"reset_states() expects {self.num_states} states. "
                    f"Received {len(states)}."
                )
            for i, (value, shape) in enumerate(zip(states, self._state_shapes)):
                if tuple(ops.shape(value)) != (batch, *shape):
                    raise ValueError(
                        f"reset_states(): state {i} must have shape "
                        f"{(batch, *shape)} (batch size {batch}). Received: "
                        f"shape={tuple(ops.shape(value))}"
                    )
            values = self._inner_initial_states(batch, states, None)
        for variable, value in zip(self._state_variables, values):
            variable.assign(ops.cast(value, variable.dtype))

    reset_state = reset_states

    # -- the call ------------------------------------------------------------------
    def _as_list(self, value):
        if value is None:
            return []
        return list(value) if isinstance(value, (list, tuple)) else [value]

    def _check_call(self, inputs, initial_state, constants, ground_truth, training):
        xs = self._as_list(inputs)
        self._check_input_shapes([tuple(x.shape) for x in xs])
        states = self._as_list(initial_state)
        if initial_state is not None and len(states) != self.num_states:
            raise ValueError(
                f"Argument `initial_state` of {self.name} must be a list of "
                f"{self.num_states} tensors (one per state). Received "
                f"{len(states)}: {[tuple(s.shape) for s in states]}"
            )
        for i, (state, shape) in enumerate(zip(states, self._state_shapes)):
            if not shapes_compatible((None, *shape), tuple(state.shape)):
                raise ValueError(
                    f"Argument `initial_state[{i}]` must have shape "
                    f"{(None, *shape)}. Received: shape={tuple(state.shape)}"
                )
        consts = self._as_list(constants)
        num_constants = self._graph_counts["num_constants"]
        if len(consts) != num_constants:
            raise ValueError(
                f"Argument `constants` of {self.name} must be a list of "
                f"{num_constants} tensors. Received {len(consts)}."
            )
        if self.stateful and self._state_variables:
            batch = self._state_variables[0].shape[0]
            got = xs[0].shape[0]
            if got is not None and got != batch:
                raise ValueError(
                    f"A stateful RecurrentModel keeps states for a batch size "
                    f"of {batch}. Received inputs with batch size {got}. Use "
                    "a fixed batch size (and `drop_remainder`) or rebuild the "
                    "layer."
                )
        if self.teacher_force and training and ground_truth is None:
            raise ValueError(
                f"{self.name} uses teacher forcing: in training, pass "
                "`ground_truth=` (the targets, aligned with the outputs). "
                "Received: ground_truth=None"
            )
        return xs, states, consts

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
        xs, states, consts = self._check_call(
            inputs, initial_state, constants, ground_truth, training
        )
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
            inner_states = [v.value for v in self._state_variables]
            if initial_readout is not None and self.has_readout:
                inner_states[self.num_states] = initial_readout
        else:
            if not states:
                states = self.get_initial_state(batch)
            inner_states = self._inner_initial_states(batch, states, initial_readout)

        teacher = bool(self.teacher_force) and bool(training)
        parts = [] if self.decode else list(xs)
        if teacher:
            truth = ops.cast(ground_truth, self.compute_dtype)
            first = inner_states[self.num_states][:, None]
            shifted = ops.concatenate([first, truth[:, :-1]], axis=1)
            if self.go_backwards:  # the loop reverses it again
                shifted = ops.flip(shifted, axis=1)
            parts.append(shifted)
            if self.teacher_force < 1.0:
                coins = (
                    keras.random.uniform(
                        ops.shape(truth)[:2], seed=self._seed_generator
                    )
                    < self.teacher_force
                )
                parts.append(ops.cast(coins, self.compute_dtype))
        if isinstance(mask, (list, tuple)):
            mask = next((m for m in mask if m is not None), None)
        masked = mask is not None and not self.decode
        if masked:  # the step applies the mask (the last packed part)
            parts.append(ops.cast(mask, self.compute_dtype))
            if not self.zero_output_for_mask:
                previous = ops.zeros((batch, *self._output_shape), self.compute_dtype)
                inner_states = [*inner_states, previous]
        sequence, layout = self._pack(parts, batch)

        rnn = self._loop.value
        # Fresh tensors: a Keras mask attached to a constant (e.g. encoder
        # outputs) means nothing inside one step.
        rnn.cell.configure(
            layout=layout,
            captured_inputs=[ops.copy(x) for x in xs] if self.decode else None,
            constants=[ops.copy(c) for c in consts],
            teacher=teacher,
            sampled=teacher and self.teacher_force < 1.0,
            masked=masked,
            zero_output_for_mask=self.zero_output_for_mask,
        )
        step_layers = list(walk_layers(self.step_model))
        if training and keras.backend.backend() == "jax":
            _refuse_per_step_randomness(self.name, step_layers)
        sequence_layers = [
            layer for layer in step_layers if hasattr(layer, "begin_sequence")
        ]
        for layer in sequence_layers:
            layer.begin_sequence(batch, training=bool(training))
        try:
            output, *new_states = rnn(
                sequence, initial_state=inner_states, training=training
            )
        finally:
            for layer in sequence_layers:
                layer.end_sequence()
            rnn.cell.configure()

        if self.stateful:
            for variable, value in zip(self._state_variables, new_states):
                variable.assign(ops.cast(value, variable.dtype))
        if self.return_state:
            return [output, *new_states[: self.num_states]]
        return output

    def _pack(self, parts, batch):
        """Returns the loop's sequence tensor and how to unpack it."""
        if not parts:  # decoding with nothing per step: a dummy sequence
            return ops.zeros((batch, self.output_length, 1), self.compute_dtype), None
        single = len(parts) == 1 and len(parts[0].shape) >= 3
        if single:
            return parts[0], None
        shapes = [tuple(p.shape[2:]) for p in parts]
        unknown = [i for i, s in enumerate(shapes) if any(d is None for d in s)]
        if unknown:
            raise ValueError(
                "With several step inputs (or teacher forcing) every step "
                "shape must be fully known. Received step shapes "
                f"{shapes}"
            )
        dtypes = [p.dtype for p in parts]
        layout = _loop.PackLayout(shapes, dtypes)
        return layout.pack(parts, self.compute_dtype), layout

    # -- shapes and masks --------------------------------------------------
    def compute_output_shape(self, input_shape, initial_state_shape=None):
        shapes = self._check_input_shapes(input_shape)
        batch = shapes[0][0]
        time = self.output_length if self.decode else shapes[0][1]
        if self.return_sequences:
            output_shape = (batch, time, *self._output_shape)
        else:
            output_shape = (batch, *self._output_shape)
        if self.return_state:
            return (output_shape, *[(batch, *s) for s in self._state_shapes])
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
        xs, _, _ = self._check_call(
            inputs, initial_state, constants, ground_truth, training
        )
        shapes = self.compute_output_shape([tuple(x.shape) for x in xs])
        if self.return_state:
            return [keras.KerasTensor(s, dtype=self.compute_dtype) for s in shapes]
        return keras.KerasTensor(shapes, dtype=self.compute_dtype)

    def compute_mask(self, inputs, mask=None):
        if isinstance(mask, (list, tuple)):
            mask = next((m for m in mask if m is not None), None)
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
        xs = [ops.convert_to_tensor(x) for x in self._as_list(inputs)]
        batch = ops.shape(xs[0])[0]
        if not self.built:
            lead = (None,) if self.decode else (None, None)
            shapes = [(*lead, *tuple(x.shape[1:])) for x in xs]
            self.build(shapes if len(shapes) > 1 else shapes[0])
        states = self._as_list(states) or self.get_initial_state(batch)
        states = [ops.convert_to_tensor(s, self.compute_dtype) for s in states]
        consts = [ops.convert_to_tensor(c) for c in self._as_list(constants)]
        model_inputs = [*xs, *states, *consts]
        if self.has_readout:
            if readout is None:
                readout = ops.zeros((batch, *self._output_shape), self.compute_dtype)
            model_inputs.append(ops.convert_to_tensor(readout, self.compute_dtype))
        outputs = call_step_model(self.step_model, model_inputs, training)
        return outputs[0], list(outputs[1:])

    def summary(self, **kwargs):
        """Prints the step graph's layers (`step_model.summary(**kwargs)`).

        `model.summary()` of a model holding this layer shows it as one
        layer; this shows what runs inside one step.
        """
        if self.step_model is None:
            raise ValueError(
                f"{self.name} has no step graph yet: call it (or build it) once."
            )
        return self.step_model.summary(**kwargs)

    def get_cell(self):
        """Returns an `RNNCell` running one step of this graph (shared weights).

        The cell is called on `[*inputs, *states, *constants]`; with a
        readout, the previous output is an extra last state.
        """
        from cellgraph.cell import GraphCell

        return GraphCell(self.step_model, **self._graph_counts)

    # -- serialization -----------------------------------------------------
    def _loop_config(self) -> dict:
        """The Keras RNN arguments' config entries (shared by subclasses)."""
        return {
            "return_sequences": self.return_sequences,
            "return_state": self.return_state,
            "go_backwards": self.go_backwards,
            "stateful": self.stateful,
            "unroll": self.unroll,
            "zero_output_for_mask": self.zero_output_for_mask,
        }

    def _options_config(self) -> dict:
        """Config entries of the options every step-graph layer takes."""
        return {
            "teacher_force": self.teacher_force,
            "decode": self.decode,
            "output_length": self.output_length,
            "state_initializer": _options.serialize_initializers(
                self.state_initializer
            ),
            **self._loop_config(),
        }

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "step_model": keras.saving.serialize_keras_object(self.step_model),
                **self._graph_counts,
                "multi_input": self._multi_input,
                **self._options_config(),
            }
        )
        return config

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        model = keras.saving.deserialize_keras_object(
            config.pop("step_model"), custom_objects=custom_objects
        )
        counts = {
            key: config.pop(key)
            for key in ("num_inputs", "num_states", "num_constants", "has_readout")
        }
        multi_input = config.pop("multi_input")
        graph = StepGraph.from_model(model, **counts)
        config["state_initializer"] = _options.deserialize_initializers(
            config["state_initializer"]
        )
        return cls(
            input=graph.inputs if multi_input else graph.inputs[0],
            output=graph.output,
            _graph=graph,
            **config,
        )


def _refuse_per_step_randomness(name, step_layers):
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
