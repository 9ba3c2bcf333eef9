"""Superloop: a stack of recurrent cells whose output drives external systems.

A superloop (Csirmaz, github.com/csirmaz/superloop) connects the output of an
RNN to its own input at the next timestep through external systems: memories,
an attention index over some data, a stack. `Superloop` builds that step graph
from a few arguments and runs it with the `RecurrentModel` engine; the reads of
the systems are explicit readout *states* of the step graph.
"""

from __future__ import annotations

import keras
from keras import ops

from cellgraph import _options, backend
from cellgraph._superloop_config import superloop_arguments
from cellgraph.cell import RNNCell
from cellgraph.cells import FusedCellStack, GRUCell, LSTMCell, SGUCell
from cellgraph.recurrent_model import RecurrentModel
from cellgraph.step_graph import StepGraph
from cellgraph.systems import System

CELLS = {"sgu": SGUCell, "lstm": LSTMCell, "gru": GRUCell}


@keras.saving.register_keras_serializable(package="cellgraph")
class Superloop(RecurrentModel):
    """A deep recurrent stack with a "superloop" through external systems.

    At every step the step input and what each system read at the previous
    step are concatenated and go through `layers` cells of `units` units;
    the last cell's output is the step output (through a `Dense(outputs)`
    head when `outputs > 0`) and drives every system, whose reads come back
    at the next step:

    ```
    h = concat(x_t, *reads_tm1)              # reads are zeros at step 0
    h, states_t = cell_i(h, states_tm1)      # for each of the `layers` cells
    output_t = Dense(outputs)(h)  or  h
    read_t, system_states_t = system(h, system_states_tm1, *constants)
    ```

    Each system owns its projection from `h` (`project=True`); the reads
    are explicit readout states of the step graph and the systems' constants
    (e.g. the data an `Attention` looks at) are the engine's constants.

    Calling conventions:

    - `timesteps=None` (default): the call input is a per-step sequence
      `(batch, time, features)`, and the systems' constants go in
      `constants=`: `superloop(x, constants=[data])`.
    - `timesteps=N`: there is no per-step input; the layer runs N steps from
      the systems alone and is called **on the systems' constants**:
      `superloop(data)`, or `superloop([c1, c2])` when the systems have
      several constants (in the order of `systems`, each system's in its
      own order). At least one system must have constants: they are what
      the run reads.

    States, in this order (for `initial_state=`, `return_state=True` and
    `trace`), named in `state_names`: the cells' states layer by layer
    (`"sgu_0/h"`, ..., `"lstm_3/c"`), then for each system its read and its
    own states (`"attention/read"`, `"attention/position"`). A system's
    part of the name is its layer `name`.

    The original project's model returned the attention position
    (`slmodel.superloop_models[0].position`): here it is the state
    `"attention/position"`, returned at the end of the run with
    `return_state=True` (index `state_names.index("attention/position") + 1`
    of the returned list), and recorded at every step by `trace()`.

    Args:
        cell: `"sgu"`, `"lstm"`, `"gru"` or an `RNNCell` subclass, built as
            `cell(units)` for each layer.
        layers: number of stacked cells (at least 1).
        units: units of each cell.
        systems: list of `cellgraph.systems.System` instances (each used by
            one superloop only), with `project=True` (the default) so that
            they own their control projection.
        outputs: size of a `Dense` output head on the last cell (linear);
            `0`: the output is the last cell's output.
        suppress_output: the number of leading timesteps whose outputs are
            left out of the returned sequence, as in the original project
            (where they were not part of the model's output, hence not of
            the loss): with `return_sequences=True` the output has
            `time - suppress_output` steps. The steps still run (they read
            and move the systems). No effect with `return_sequences=False`.
        timesteps: `None`, or the number of steps of a run without per-step
            input (see the calling conventions).
        return_sequences: return every (unsuppressed) step's output, or the
            last one.
        return_state: also return the final states, `[output, *states]`.
        state_initializer: `None` for the defaults (zeros for the cells and
            reads, each system's `state_initializers()` for its states), or
            as in `RecurrentModel` (one value, or a list with one entry per
            state in the order of `state_names`).
        go_backwards, stateful, unroll, zero_output_for_mask: as in
            `keras.layers.RNN`.
        fused: `False` (default): `layers` cell layers, one per layer.
            `True`: the `layers x cell` stack is one
            `cellgraph.cells.FusedCellStack` whose weights are stacked
            tensors (4 variables instead of 3 per layer), which builds and
            trains faster on TensorFlow (first step 0.45x, see
            docs/benchmarks.md; on JAX it is slower); the same numbers (to
            float rounding), the same `state_names` and state order. `cell` must
            then be `"sgu"`, `"lstm"` or `"gru"` (or their classes), and
            `self.cells` holds the one fused layer (its `to_cells()` gives
            the unfused cells with the same weights).
        **kwargs: base layer keyword arguments (`name`, `dtype`, ...).

    Call arguments:
        inputs: `(batch, time, features)`; with `timesteps`, the systems'
            constants (one tensor or a list).
        initial_state: optional list of initial state tensors, one per
            entry of `state_names`.
        constants: list of the systems' constants (`timesteps=None` only).
        mask: optional boolean mask `(batch, time)`.
        training: Python boolean.

    Output shape:
        `(batch, time - suppress_output, out)` with `return_sequences=True`,
        else `(batch, out)`, where `out` is `outputs` or `units` and `time`
        is the input's or `timesteps`; with `return_state=True` a list
        `[output, *final_states]`.

    Example:

    ```python
    attention = cellgraph.systems.Attention(datapoints=16, width=1)
    superloop = cellgraph.Superloop(
        layers=2, units=8, systems=[attention], timesteps=20, return_state=True)
    data = np.random.uniform(size=(4, 16, 1)).astype("float32")
    outputs, *states = superloop(data)      # outputs: (4, 20, 8)
    position = states[superloop.state_names.index("attention/position")]
    ```
    """

    def __init__(
        self,
        cell: str | type = "sgu",
        layers: int = 32,
        units: int = 16,
        systems=None,
        outputs: int = 0,
        suppress_output: int = 0,
        timesteps: int | None = None,
        return_sequences: bool = True,
        return_state: bool = False,
        state_initializer=None,
        go_backwards: bool = False,
        stateful: bool = False,
        unroll: bool = False,
        zero_output_for_mask: bool = False,
        fused: bool = False,
        **kwargs,
    ):
        if not isinstance(fused, bool):
            raise TypeError(
                f"Argument `fused` must be True or False. Received: fused={fused!r}"
            )
        unknown = sorted({"teacher_force", "decode", "output_length"} & set(kwargs))
        if unknown:
            raise TypeError(
                f"Superloop does not take {unknown}: it has no readout to "
                "teacher-force, and `timesteps` sets the number of steps of a "
                "Superloop without per-step input. Received: "
                f"{ {key: kwargs[key] for key in unknown} }"
            )
        _check_int("layers", layers, minimum=1)
        _check_int("units", units, minimum=1)
        _check_int("outputs", outputs, minimum=0)
        _check_int("suppress_output", suppress_output, minimum=0)
        if timesteps is not None:
            _check_int("timesteps", timesteps, minimum=1)
            if suppress_output >= timesteps:
                raise ValueError(
                    "Argument `suppress_output` must be smaller than "
                    "`timesteps` (some output must remain). Received: "
                    f"suppress_output={suppress_output}, timesteps={timesteps}"
                )
        super().__init__(
            decode=timesteps is not None,
            output_length=timesteps,
            state_initializer=state_initializer,
            return_sequences=return_sequences,
            return_state=return_state,
            go_backwards=go_backwards,
            stateful=stateful,
            unroll=unroll,
            zero_output_for_mask=zero_output_for_mask,
            **kwargs,
        )
        self.cell_class = _cell_class(cell)
        self.cell = cell.lower() if isinstance(cell, str) else self.cell_class
        self.num_layers = layers
        self.units = units
        self.outputs = outputs
        self.suppress_output = suppress_output
        self.timesteps = timesteps
        self.systems = _check_systems(systems)
        if timesteps is not None and not any(s.constant_shapes for s in self.systems):
            raise ValueError(
                "A Superloop with `timesteps` has no per-step input: it runs "
                "from its systems' constants (e.g. the data of an Attention) "
                "and is called on them. None of the systems has constants, "
                "so every example of a batch would get the same output. "
                f"Received: timesteps={timesteps}, systems="
                f"{[type(s).__name__ for s in self.systems]}. Give a system "
                "with constants, or use timesteps=None and a per-step input."
            )
        prefix = _cell_prefix(self.cell_class)
        self.fused = fused
        self.cells = []
        if fused:
            if self.cell_class not in CELLS.values():
                raise ValueError(
                    "Argument `fused=True` needs a built-in cell, one of "
                    f"{sorted(CELLS)}. Received: cell={cell!r}"
                )
            self.cells.append(
                FusedCellStack(self.cell_class, layers, units, name=f"{prefix}_fused")
            )
        for i in range(0 if fused else layers):
            cell_layer = self.cell_class(units, name=f"{prefix}_{i}")
            if not isinstance(cell_layer, RNNCell):
                raise TypeError(
                    "Argument `cell` must build RNNCell instances. Received: "
                    f"cell={cell!r}, which built a {type(cell_layer).__name__}"
                )
            self.cells.append(cell_layer)
        self.output_layer = (
            keras.layers.Dense(outputs, name="output") if outputs else None
        )

    # -- states ------------------------------------------------------------
    @property
    def state_names(self) -> list[str]:
        """The names of the states, in the order of `initial_state`."""
        names = []
        for cell in self.cells:
            if isinstance(cell, FusedCellStack):  # already "sgu_3/h"
                names += cell.state_names
                continue
            names += [f"{cell.name}/{part}" for part in cell.state_names]
        for system in self.systems:
            names.append(f"{system.name}/read")
            names += [f"{system.name}/{part}" for part in system.state_names]
        return names

    @property
    def state_shapes(self) -> list[tuple]:
        if self.step_graph is not None:
            return list(self.step_graph.state_shapes)
        shapes = [tuple(s) for cell in self.cells for s in cell.state_shapes]
        for system in self.systems:
            shapes.append((system.read_size,))
            shapes += [tuple(s) for s in system.state_shapes]
        return shapes

    @property
    def num_states(self) -> int:
        return len(self.state_shapes)

    @property
    def has_readout(self) -> bool:
        return False

    def _expand_state_initializer(self, num_states) -> list:
        if self.state_initializer is not None:
            return super()._expand_state_initializer(num_states)
        # By default the systems' own initial states (e.g. an addressable
        # memory's heads start on the first slot); the cells' start at zeros.
        initializers = [None] * sum(len(cell.state_shapes) for cell in self.cells)
        for system in self.systems:
            initializers += [None, *system.state_initializers()]
        return initializers

    # -- the step graph ----------------------------------------------------
    def build_step_graph(self, input_shape) -> StepGraph:
        """Builds `concat(x_t, reads_tm1) -> cells -> head ; systems`."""
        constants = [c for s in self.systems for c in s.constant_inputs()]
        system_constants, start = [], 0
        for system in self.systems:
            count = len(system.constant_shapes)
            system_constants.append(constants[start : start + count])
            start += count
        reads_tm1 = [
            keras.Input((s.read_size,), name=f"{s.name}_read_tm1") for s in self.systems
        ]
        if self.timesteps is None:
            x_t = keras.Input(self._step_shape_from(input_shape), name="x_t")
            features = [x_t, *reads_tm1]
            inputs, graph_constants = x_t, constants
        else:
            features = reads_tm1
            inputs = constants if len(constants) > 1 else constants[0]
            graph_constants = []
        h = (
            features[0]
            if len(features) == 1
            else keras.layers.Concatenate(name="superloop_input")(features)
        )
        initial_states, final_states = [], []
        for cell in self.cells:
            own = [
                keras.Input(shape, name=_state_input_name(cell, j))
                for j, shape in enumerate(cell.state_shapes)
            ]
            h, *new = cell([h, *own])
            initial_states += own
            final_states += new
        output = self.output_layer(h) if self.output_layer is not None else h
        for system, read_tm1, consts in zip(self.systems, reads_tm1, system_constants):
            states_tm1 = system.initial_state_inputs()
            read_t, *states_t = system([h, *states_tm1, *consts])
            initial_states += [read_tm1, *states_tm1]
            final_states += [read_t, *states_t]
        return StepGraph(
            inputs=inputs,
            output=output,
            initial_states=initial_states,
            final_states=final_states,
            constants=graph_constants,
        )

    def _step_shape_from(self, input_shape) -> tuple:
        shape = tuple(input_shape)
        if shape and isinstance(shape[0], (list, tuple)):
            if len(shape) != 1:
                raise ValueError(
                    f"{self.name} has one per-step input; the systems' "
                    "constants go in `constants=`. Received "
                    f"{len(shape)} inputs with shapes {list(shape)}"
                )
            shape = tuple(shape[0])
        if len(shape) != 3 or shape[-1] is None:
            raise ValueError(
                f"{self.name} expects a per-step input of shape (batch, time, "
                f"features) with known features. Received: shape={shape}"
            )
        return shape[2:]

    # -- the call ------------------------------------------------------------
    def call(
        self,
        inputs,
        initial_state=None,
        constants=None,
        mask=None,
        training=None,
    ):
        self._check_constants(constants)
        if self.suppress_output and self.timesteps is None:
            inputs = self._check_enough_steps(inputs)
        output = super().call(
            inputs,
            initial_state=initial_state,
            constants=constants,
            mask=mask,
            training=training,
        )
        if not (self.suppress_output and self.return_sequences):
            return output
        if self.return_state:
            return [output[0][:, self.suppress_output :], *output[1:]]
        return output[:, self.suppress_output :]

    def _check_enough_steps(self, inputs):
        """Refuses a sequence with no step left after `suppress_output`."""
        message = (
            f"{self.name} suppresses the first {self.suppress_output} outputs "
            f"(`suppress_output={self.suppress_output}`), so the sequence needs "
            f"more than {self.suppress_output} steps."
        )
        time = inputs.shape[1]
        if time is not None and time <= self.suppress_output:
            raise ValueError(f"{message} Received input shape {tuple(inputs.shape)}")
        return backend.check_more_steps_than(inputs, self.suppress_output, message)

    def _check_constants(self, constants):
        given = self._as_list(constants)
        if self.timesteps is not None:
            if given:
                raise ValueError(
                    f"{self.name} runs `timesteps` steps without per-step "
                    "input: call it on the systems' constants, "
                    "`superloop(data)`, not with `constants=`. Received "
                    f"{len(given)} constants."
                )
            return
        needed = [
            (s.name, tuple(shape)) for s in self.systems for shape in s.constant_shapes
        ]
        if len(given) != len(needed):
            raise ValueError(
                f"Argument `constants` of {self.name} must be a list of "
                f"{len(needed)} tensors, the systems' constants in order: "
                f"{[f'{name} {(None, *shape)}' for name, shape in needed]}. "
                f"Received {len(given)}."
            )

    def compute_output_shape(self, input_shape, initial_state_shape=None):
        shapes = super().compute_output_shape(input_shape, initial_state_shape)
        if not (self.suppress_output and self.return_sequences):
            return shapes
        output_shape = shapes[0] if self.return_state else shapes
        time = output_shape[1]
        if time is not None:
            if time <= self.suppress_output:
                raise ValueError(
                    f"{self.name} suppresses the first {self.suppress_output} "
                    f"outputs (`suppress_output={self.suppress_output}`), so the "
                    f"sequence needs more than {self.suppress_output} steps. "
                    f"Received input shape {tuple(input_shape)}"
                )
            time -= self.suppress_output
        output_shape = (output_shape[0], time, *output_shape[2:])
        if self.return_state:
            return (output_shape, *shapes[1:])
        return output_shape

    def compute_mask(self, inputs, mask=None):
        result = super().compute_mask(inputs, mask)
        if not self.suppress_output:
            return result
        output_mask = result[0] if self.return_state else result
        if output_mask is not None:
            output_mask = output_mask[:, self.suppress_output :]
        if self.return_state:
            return [output_mask, *result[1:]]
        return output_mask

    def get_cell(self):
        if self.step_model is None:
            raise ValueError(
                f"{self.name}.get_cell() needs the step graph, which is built "
                "at the first call (the input size is known then): call the "
                "layer once first."
            )
        return super().get_cell()

    # -- inspection ----------------------------------------------------------
    def trace(self, inputs, constants=None, initial_state=None) -> dict:
        """Runs step by step, eagerly, and records the output and every state.

        Meant for inspection and plots (e.g. where an attention index moves),
        not for training: it loops over the steps in Python with `step()`.

        Args:
            inputs, constants, initial_state: as in the call.

        Returns:
            A dict of NumPy arrays: `"output"` `(batch, time, out)` (every
            step, `suppress_output` does not apply) and one entry per name of
            `state_names`, `(batch, time, *shape)`: the state after each step.
        """
        xs = self._as_list(inputs)
        if not self.built:
            shapes = [tuple(ops.shape(x)) for x in xs]
            self.build(shapes if len(shapes) > 1 else shapes[0])
        self._check_constants(constants)
        states = self._as_list(initial_state) or None
        if self.timesteps is None:
            x = ops.convert_to_tensor(xs[0])
            steps = [x[:, t] for t in range(int(ops.shape(x)[1]))]
            if self.go_backwards:
                steps = steps[::-1]
        else:
            steps = [xs if len(xs) > 1 else xs[0]] * self.timesteps
        records = {name: [] for name in ["output", *self.state_names]}
        for step_input in steps:
            output, states = self.step(step_input, states, constants=constants)
            records["output"].append(ops.convert_to_numpy(output))
            for name, state in zip(self.state_names, states):
                records[name].append(ops.convert_to_numpy(state))
        return {
            name: ops.convert_to_numpy(ops.stack(values, axis=1))
            for name, values in records.items()
        }

    # -- serialization ---------------------------------------------------
    def _options_config(self) -> dict:
        config = super()._options_config()
        for key in ("teacher_force", "decode", "output_length"):
            del config[key]  # set by `timesteps`
        return config

    def _step_graph_config(self) -> dict:
        return {
            "cell": self.cell
            if isinstance(self.cell, str)
            else keras.saving.get_registered_name(self.cell_class),
            "layers": self.num_layers,
            "units": self.units,
            "systems": [_options.serialize_shared(system) for system in self.systems],
            "outputs": self.outputs,
            "suppress_output": self.suppress_output,
            "timesteps": self.timesteps,
            "fused": self.fused,
        }

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        cell = config["cell"]
        if cell not in CELLS:
            registered = keras.saving.get_registered_object(
                cell, custom_objects=custom_objects
            )
            if registered is None:
                raise ValueError(
                    f"Superloop: unknown cell class {cell!r} in the config; "
                    "register it with "
                    "`keras.saving.register_keras_serializable()`."
                )
            config["cell"] = registered
        config["systems"] = [
            keras.saving.deserialize_keras_object(item, custom_objects=custom_objects)
            for item in config["systems"]
        ]
        config["state_initializer"] = _options.deserialize_initializers(
            config["state_initializer"]
        )
        return cls(**config)

    # -- the original project's configuration ------------------------------
    @classmethod
    def from_superloop_config(cls, config: dict, **kwargs) -> Superloop:
        """Builds a `Superloop` from the original superloop project's CONFIG.

        Keys: `timesteps`, `suppress_output`, `model_inputs` (the size of
        the per-step input; `0`: none, the layer then runs `timesteps` steps
        and is called on the systems' constants), `model_outputs` (`outputs`),
        `recurrent_model` (`"SGU"`, `"LSTM"`, `"GRU"` in any case, or an
        `RNNCell` subclass), `recurrent_layers`, `recurrent_units`,
        `superloop_models` (names such as `"Attention"`, `"RegisterMemory"`,
        `"Stack"`, `"Queue"`, `"AddressableMemory"`, or `System` subclasses),
        and one dict per system name with its arguments. The original's
        argument names are translated (`Attention`: `outputs` -> `width`;
        `RegisterMemory`: `register_width` -> `width`). `model_name` and
        `printvalues` are accepted and ignored. With `model_inputs > 0`
        the caller gives a `(batch, timesteps, model_inputs)` sequence.

        Differences from the original: with `model_outputs=0` the output is
        the last cell's output (the original had none), and the systems run
        at the last step too (the original skipped them there), so the final
        attention position has taken `timesteps` moves, not `timesteps - 1`.

        Args:
            config: the CONFIG dict.
            **kwargs: further `Superloop` arguments (`return_state`, `name`).

        Returns:
            A `Superloop`.
        """
        return cls(**superloop_arguments(config), **kwargs)


def _check_int(name: str, value, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        what = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
        raise ValueError(
            f"Argument `{name}` must be {what}. Received: {name}={value!r}"
        )


def _cell_class(cell) -> type:
    if isinstance(cell, str):
        if cell.lower() not in CELLS:
            raise ValueError(
                f"Argument `cell` must be one of {sorted(CELLS)} or an RNNCell "
                f"subclass. Received: cell={cell!r}"
            )
        return CELLS[cell.lower()]
    if isinstance(cell, type) and issubclass(cell, RNNCell):
        return cell
    raise TypeError(
        f"Argument `cell` must be one of {sorted(CELLS)} or an RNNCell "
        f"subclass (a class, built as cell(units)). Received: cell={cell!r}"
    )


def _state_input_name(cell, j: int) -> str:
    """`"sgu_3_state0_tm1"`: the step Input of state `j` of a cell layer."""
    if isinstance(cell, FusedCellStack):
        layer, part = divmod(j, len(cell.state_names) // cell.num_layers)
        return f"{cell.layer_names[layer]}_state{part}_tm1"
    return f"{cell.name}_state{j}_tm1"


def _cell_prefix(cell_class: type) -> str:
    name = cell_class.__name__
    if name.endswith("Cell") and len(name) > 4:
        name = name[:-4]
    return name.lower()


def _check_systems(systems) -> list:
    if systems is None:
        return []
    if not isinstance(systems, (list, tuple)):
        raise TypeError(
            "Argument `systems` must be a list of cellgraph.systems.System "
            f"instances. Received: systems={systems!r}"
        )
    seen = set()
    for i, system in enumerate(systems):
        if not isinstance(system, System):
            raise TypeError(
                f"Argument `systems[{i}]` must be a cellgraph.systems.System "
                f"instance (e.g. Attention(datapoints=16, width=1)). Received: "
                f"{type(system).__name__} {system!r}"
            )
        if not system.project:
            raise ValueError(
                f"Argument `systems[{i}]` ({system.name!r}) has project=False; "
                "a Superloop drives its systems from the last cell's output, "
                "so each system needs its own projection (project=True)."
            )
        if id(system) in seen:
            raise ValueError(
                f"Argument `systems[{i}]` ({system.name!r}) appears twice; give "
                "each system once (create two instances for two systems)."
            )
        seen.add(id(system))
    return list(systems)
