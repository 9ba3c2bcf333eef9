"""The time loop: what crosses it for one call (`LoopPlan`) and the step it runs.

`RecurrentModel.call` builds one immutable `LoopPlan` per call from the step
graph and the call's arguments. The plan owns the two layouts that the loop
needs and nothing else knows about:

- the per-step *parts* (step inputs, ground truth, sampling coins, the mask),
  packed into the one sequence tensor that Keras's loop iterates over, and
  unpacked again inside the step;
- the *inner states* the loop carries: the user's states, then the readout
  (the previous output), a placeholder when there is neither, a step counter
  when some parts travel beside the sequence, and the previous output when a
  mask repeats it at padded steps.

Dtype rules: floating parts and states follow the layer's compute dtype;
integer and boolean parts and states keep theirs. Integer parts beside
floating ones cannot share the floating sequence tensor (an id above 2**24
does not survive float32, nor 257 bfloat16), so they travel beside it, whole,
and the step reads its time slice by the counter. Boolean parts (the mask,
the coins) ride in a floating sequence as exact 0/1 and come out boolean.

`PlanStep` is the step for one call: it closes over the plan, the call's
constants and captured inputs, and is handed to `keras.layers.RNN.inner_loop`
(Keras's own loop, per backend). Nothing shared between calls is changed.
"""

from __future__ import annotations

import dataclasses
import functools
import math

import keras
from keras import ops

from cellgraph import backend
from cellgraph.step_graph import GraphLayout, call_step_model

INPUT = "input"
HOISTED = "hoisted"
GROUND_TRUTH = "ground_truth"
COIN = "coin"
MASK = "mask"

STATE = "state"
READOUT = "readout"
PLACEHOLDER = "placeholder"
COUNTER = "counter"
PREVIOUS_OUTPUT = "previous_output"

#: Inner states that live across calls (a stateful layer keeps them).
PERSISTENT = (STATE, READOUT, PLACEHOLDER)


_DTYPE_NAMES: dict = {}


def dtype_name(dtype) -> str:
    """`keras.backend.standardize_dtype`, remembered per backend dtype object.

    Inside the loop this is asked at every step for every state; on the
    PyTorch backend, which runs each step eagerly, the string parsing of
    `standardize_dtype` was a noticeable part of a step.
    """
    try:
        return _DTYPE_NAMES[dtype]
    except (KeyError, TypeError):
        name = keras.backend.standardize_dtype(dtype)
        try:
            _DTYPE_NAMES[dtype] = name
        except TypeError:  # not hashable
            pass
        return name


def cast(x, dtype):
    """`ops.cast(x, dtype)`, skipped when `x` already has that dtype."""
    if dtype_name(x.dtype) == dtype:
        return x
    return ops.cast(x, dtype)


def is_float(dtype) -> bool:
    return "float" in keras.backend.standardize_dtype(dtype)


def loop_dtype(dtype, compute_dtype) -> str:
    """The dtype a part or state has inside the loop.

    Floating dtypes follow the layer's compute dtype; integer and boolean
    dtypes are kept.
    """
    dtype = keras.backend.standardize_dtype(dtype)
    return keras.backend.standardize_dtype(compute_dtype) if is_float(dtype) else dtype


def combine_masks(mask):
    """One `(batch, time)` mask from a mask or a list of them (logical AND).

    Keras's merge layers combine the masks of several inputs this way: a
    step counts only where every input is valid. `None` entries are skipped.
    """
    if not isinstance(mask, (list, tuple)):
        return mask
    masks = [m for m in mask if m is not None]
    if not masks:
        return None
    combined = ops.cast(masks[0], "bool")
    for m in masks[1:]:
        combined = ops.logical_and(combined, ops.cast(m, "bool"))
    return combined


@dataclasses.dataclass(frozen=True)
class Part:
    """One per-step sequence that crosses the loop.

    Args:
        role: `"input"`, `"ground_truth"`, `"coin"` or `"mask"`.
        shape: the per-step shape, without batch and time.
        dtype: the dtype inside the step.
    """

    role: str
    shape: tuple
    dtype: str

    @property
    def size(self) -> int:
        return math.prod(self.shape)


@dataclasses.dataclass(frozen=True)
class Slot:
    """One inner state of the loop.

    Args:
        role: `"state"`, `"readout"`, `"placeholder"`, `"counter"` or
            `"previous_output"`.
        shape: the shape without batch (`()` for the counter, which has no
            batch dimension).
        dtype: its dtype.
    """

    role: str
    shape: tuple
    dtype: str


def persistent_slots(graph, compute_dtype) -> tuple[Slot, ...]:
    """The inner states that outlive a call: user states, readout, placeholder.

    `keras.layers.RNN` needs at least one state, so a graph with neither
    states nor readout gets a placeholder.
    """
    slots = [
        Slot(STATE, tuple(shape), loop_dtype(dtype, compute_dtype))
        for shape, dtype in zip(graph.state_shapes, graph.state_dtypes)
    ]
    if graph.readout_input is not None:
        slots.append(
            Slot(
                READOUT,
                tuple(graph.output_shape),
                loop_dtype(graph.output_dtype, compute_dtype),
            )
        )
    if not slots:
        slots.append(
            Slot(PLACEHOLDER, (1,), keras.backend.standardize_dtype(compute_dtype))
        )
    return tuple(slots)


@dataclasses.dataclass(frozen=True)
class LoopPlan:
    """What crosses the loop for one call, in which order and dtype.

    Built per call by `LoopPlan.create`; immutable. `pack`/`unpack` and
    `initial_states`/`split_states`/`join_states` are the only code that
    knows the order of the packed parts and of the inner states.

    Args:
        parts: the per-step sequences, in packing order.
        slots: the inner states, in loop order.
        carrier_dtype: dtype of the sequence tensor the loop iterates over.
        output_shape: per-step shape of the step output.
        output_dtype: dtype of the step output inside the loop.
        time: number of steps when known (needed for a dummy sequence).
        zero_output_for_mask: masked steps output zeros instead of the
            previous output.
        go_backwards: the loop runs from the last step to the first.
    """

    parts: tuple[Part, ...]
    slots: tuple[Slot, ...]
    carrier_dtype: str
    output_shape: tuple
    output_dtype: str
    time: int | None = None
    zero_output_for_mask: bool = False
    go_backwards: bool = False

    # -- construction -------------------------------------------------------
    @classmethod
    def create(
        cls,
        graph,
        compute_dtype,
        input_dtypes=(),
        input_shapes=None,
        teacher: bool = False,
        sampled: bool = False,
        masked: bool = False,
        decode: bool = False,
        time: int | None = None,
        zero_output_for_mask: bool = False,
        go_backwards: bool = False,
        hoisted=(),
        inputs_in_loop: bool = True,
    ) -> LoopPlan:
        """The plan of one call.

        Args:
            graph: the `StepGraph`.
            compute_dtype: the layer's compute dtype.
            input_dtypes: dtypes of the call's sequences (one per step
                input); a step input declared integer or boolean in the
                graph takes its declared dtype.
            input_shapes: per-step shapes of the sequences (default: the
                graph's).
            teacher: the ground truth replaces the readout (training).
            sampled: scheduled sampling: a coin per step picks ground truth
                or own output.
            masked: a `(batch, time)` mask crosses the loop.
            decode: the step inputs are captured, not sequences.
            time: the number of steps, when known.
            zero_output_for_mask: as in `RecurrentModel`.
            go_backwards: as in `RecurrentModel`.
            hoisted: `(shape, dtype)` of each value computed for every step
                before the loop (`_lean.Hoist`), parts after the inputs.
            inputs_in_loop: `False` when only hoisted work reads the step
                inputs: they do not cross the loop (the step sees `None`).
        """
        compute_dtype = keras.backend.standardize_dtype(compute_dtype)
        output_dtype = loop_dtype(graph.output_dtype, compute_dtype)
        parts = []
        if not decode and inputs_in_loop:
            shapes = input_shapes or graph.input_shapes
            for declared, given, shape in zip(
                graph.inputs, input_dtypes, shapes, strict=True
            ):
                dtype = declared.dtype if not is_float(declared.dtype) else given
                parts.append(
                    Part(INPUT, tuple(shape), loop_dtype(dtype, compute_dtype))
                )
        if not decode:
            for shape, dtype in hoisted:
                parts.append(
                    Part(HOISTED, tuple(shape), loop_dtype(dtype, compute_dtype))
                )
        if teacher:
            parts.append(Part(GROUND_TRUTH, tuple(graph.output_shape), output_dtype))
            if sampled:
                parts.append(Part(COIN, (), "bool"))
        if masked and not decode:
            parts.append(Part(MASK, (), "bool"))
        floats = [p for p in parts if is_float(p.dtype)]
        if floats or not parts:
            carrier = compute_dtype
        else:
            wide = any(p.dtype in ("int64", "uint32", "uint64") for p in parts)
            carrier = "int64" if wide else "int32"
        slots = list(persistent_slots(graph, compute_dtype))
        plan = cls(
            parts=tuple(parts),
            slots=(),
            carrier_dtype=carrier,
            output_shape=tuple(graph.output_shape),
            output_dtype=output_dtype,
            time=time,
            zero_output_for_mask=zero_output_for_mask,
            go_backwards=go_backwards,
        )
        if plan.side_parts:
            slots.append(Slot(COUNTER, (), "int32"))
        if masked and not decode and not zero_output_for_mask:
            slots.append(Slot(PREVIOUS_OUTPUT, plan.output_shape, output_dtype))
        return dataclasses.replace(plan, slots=tuple(slots))

    # -- parts ------------------------------------------------------------
    def _in_carrier(self, part: Part) -> bool:
        if is_float(self.carrier_dtype):
            return is_float(part.dtype) or part.dtype == "bool"
        return True

    # The layouts below are asked at every step (the plan is immutable, so
    # each is worked out once).
    @functools.cached_property
    def carried_parts(self) -> list[int]:
        """Indices of the parts packed into the loop's sequence tensor."""
        return [i for i, p in enumerate(self.parts) if self._in_carrier(p)]

    @functools.cached_property
    def side_parts(self) -> list[int]:
        """Indices of the integer parts that travel beside a float sequence."""
        return [i for i, p in enumerate(self.parts) if not self._in_carrier(p)]

    @property
    def side_dtype(self) -> str:
        wide = any(
            self.parts[i].dtype in ("int64", "uint32", "uint64")
            for i in self.side_parts
        )
        return "int64" if wide else "int32"

    def _flat(self, indices) -> bool:
        """Whether these parts are flattened and concatenated per step."""
        if len(indices) != 1:
            return True
        return len(self.parts[indices[0]].shape) == 0

    def index(self, role: str) -> list[int]:
        """Indices of the parts with `role`."""
        return self._part_indices.get(role, [])

    @functools.cached_property
    def _part_indices(self) -> dict:
        indices = {}
        for i, part in enumerate(self.parts):
            indices.setdefault(part.role, []).append(i)
        return indices

    def pack(self, sequences, batch=None):
        """Packs the parts for the loop.

        Args:
            sequences: one `(batch, time, *part.shape)` tensor per part.
            batch: the batch size; needed only when there are no parts
                (a dummy sequence of `time` steps is then made).

        Returns:
            `(sequence, side)`: the tensor the loop iterates over, and the
            integer parts that travel beside it, `(batch, time, size)`
            (`None` when there are none).
        """
        sequences = list(sequences)
        if len(sequences) != len(self.parts):
            raise ValueError(
                f"Expected {len(self.parts)} sequences for the plan's parts "
                f"{[p.role for p in self.parts]}. Received {len(sequences)}."
            )
        if not self.parts:
            if self.time is None or batch is None:
                raise ValueError(
                    "A plan without parts needs `time` and `batch` for its "
                    "dummy sequence."
                )
            return ops.zeros((batch, self.time, 1), self.carrier_dtype), None
        sequence = self._pack(sequences, self.carried_parts, self.carrier_dtype)
        side = None
        if self.side_parts:
            side = self._pack(sequences, self.side_parts, self.side_dtype, flat=True)
        return sequence, side

    def _pack(self, sequences, indices, dtype, flat=None):
        if flat is None:
            flat = self._flat(indices)
        if not flat:
            return ops.cast(sequences[indices[0]], dtype)
        for i in indices:
            if any(d is None for d in self.parts[i].shape):
                raise ValueError(
                    "With several step inputs (or teacher forcing, or a mask "
                    "beside a step input of rank 0) every step shape must be "
                    "fully known. Received step shapes "
                    f"{[self.parts[j].shape for j in indices]}"
                )
        first = sequences[indices[0]]
        batch, time = ops.shape(first)[0], ops.shape(first)[1]
        flat_parts = [
            ops.reshape(
                ops.cast(sequences[i], dtype), (batch, time, self.parts[i].size)
            )
            for i in indices
        ]
        return (
            flat_parts[0] if len(flat_parts) == 1 else ops.concatenate(flat_parts, -1)
        )

    def unpack(self, step, side=None, counter=None) -> list:
        """One step's parts, in plan order, each `(batch, *shape)` in its dtype.

        Args:
            step: the loop's sequence at this step, `(batch, ...)`.
            side: the whole side tensor from `pack`, when there is one.
            counter: the step counter (processing order), with `side`.
        """
        parts = [None] * len(self.parts)
        self._unpack(step, self.carried_parts, parts)
        if self.side_parts:
            time = ops.shape(side)[1]
            index = time - 1 - counter if self.go_backwards else counter
            self._unpack(ops.take(side, index, axis=1), self.side_parts, parts, True)
        return parts

    def _unpack(self, packed, indices, out, flat=None):
        if flat is None:
            flat = self._flat(indices)
        if not flat:
            part = self.parts[indices[0]]
            out[indices[0]] = cast(packed, part.dtype)
            return
        start = 0
        for i in indices:
            part = self.parts[i]
            piece = packed[:, start : start + part.size]
            out[i] = cast(ops.reshape(piece, (-1, *part.shape)), part.dtype)
            start += part.size

    # -- inner states -----------------------------------------------------
    @property
    def state_size(self) -> list:
        """Per-slot shapes, in the form `keras.layers.RNN` accepts."""
        return [list(s.shape) or [1] for s in self.slots]

    def slot_index(self, role: str) -> list[int]:
        return [i for i, s in enumerate(self.slots) if s.role == role]

    def initial_states(self, persistent, batch) -> list:
        """The loop's initial inner states.

        Args:
            persistent: the values of the persistent slots (user states,
                readout, placeholder), in slot order.
            batch: the batch size.
        """
        persistent = list(persistent)
        values = []
        for slot in self.slots:
            if slot.role in PERSISTENT:
                value = persistent.pop(0)
                values.append(ops.cast(value, slot.dtype))
            elif slot.role == COUNTER:
                values.append(ops.zeros((), "int32"))
            else:  # the previous output starts at zeros
                values.append(ops.zeros((batch, *slot.shape), slot.dtype))
        if persistent:
            raise ValueError(
                f"Too many persistent states: {len(persistent)} left over."
            )
        return values

    def split_states(self, inner) -> dict:
        """Inner states by role: `{role: [tensors]}` (empty lists included)."""
        result = {
            role: [] for role in (STATE, READOUT, PLACEHOLDER, COUNTER, PREVIOUS_OUTPUT)
        }
        for slot, value in zip(self.slots, inner, strict=True):
            result[slot.role].append(value)
        return result

    def join_states(self, by_role: dict) -> list:
        """The inverse of `split_states`, each value cast to its slot's dtype."""
        queues = {role: list(values) for role, values in by_role.items()}
        return [cast(queues[slot.role].pop(0), slot.dtype) for slot in self.slots]


class PlanStep:
    """One step of one call, in the cell protocol of `keras.layers.RNN`.

    Made per call; it closes over everything the call gives the loop (the
    plan, constants, captured decode inputs, the side tensor), so that no
    object shared between calls is changed.

    Args:
        plan: the call's `LoopPlan`.
        step_model: the one-step `keras.Model`.
        layout: the step model's `GraphLayout`.
        constants: tensors fed to the constant inputs at every step.
        captured_inputs: with `decode=True`, the step inputs of every step.
        side: the integer parts beside the sequence (`LoopPlan.pack`).
        training: the training flag of the call.
        executor: runs the step model, `executor(inputs, training) -> list`;
            `None`: the model's own call (`call_step_model`).
    """

    def __init__(
        self,
        plan: LoopPlan,
        step_model,
        layout: GraphLayout,
        constants=(),
        captured_inputs=None,
        side=None,
        training=None,
        executor=None,
    ):
        self.plan = plan
        self.step_model = step_model
        self.layout = layout
        self.constants = list(constants)
        self.captured_inputs = captured_inputs
        self.side = side
        self.training = training
        self.executor = executor or (
            lambda inputs, training: call_step_model(step_model, inputs, training)
        )
        self.state_size = plan.state_size
        # The common case (step inputs and states only: no readout, mask,
        # teacher forcing or side parts) takes a short path: on PyTorch the
        # step's bookkeeping is paid at every step.
        self._plain = (
            captured_inputs is None
            and not layout.has_readout
            and all(p.role in (INPUT, HOISTED) for p in plan.parts)
            and all(s.role == STATE for s in plan.slots)
        )
        self._num_hoisted = len(plan.index(HOISTED))
        self._run_model = backend.loop_step(self._call_executor)
        self._state_dtypes = [slot.dtype for slot in plan.slots]

    def _call_executor(self, *tensors):
        return self.executor(list(tensors), self.training)

    def _plain_call(self, inputs, states):
        plan = self.plan
        parts = plan.unpack(inputs)
        hoisted = parts[len(parts) - self._num_hoisted :] if self._num_hoisted else []
        step_inputs = parts[: len(parts) - self._num_hoisted] or [None] * (
            self.layout.num_inputs
        )
        outputs = self._run_model(*step_inputs, *states, *self.constants, *hoisted)
        output = cast(outputs[0], plan.output_dtype)
        return output, [
            cast(value, dtype)
            for value, dtype in zip(outputs[1:], self._state_dtypes, strict=True)
        ]

    def call(self, inputs, states):
        if self._plain:
            return self._plain_call(inputs, states)
        plan = self.plan
        inner = plan.split_states(list(states))
        counter = inner[COUNTER][0] if inner[COUNTER] else None
        parts = plan.unpack(inputs, self.side, counter)
        by_role = {
            role: [parts[i] for i in plan.index(role)]
            for role in (INPUT, HOISTED, GROUND_TRUTH, COIN, MASK)
        }
        if self.captured_inputs is not None:
            step_inputs = list(self.captured_inputs)
        elif by_role[INPUT] or not by_role[HOISTED]:
            step_inputs = by_role[INPUT]
        else:  # only work hoisted out of the loop reads them
            step_inputs = [None] * self.layout.num_inputs
        readout = None
        if self.layout.has_readout:
            readout = inner[READOUT][0]
            if by_role[GROUND_TRUTH]:
                truth = by_role[GROUND_TRUTH][0]
                if by_role[COIN]:
                    coin = by_role[COIN][0]
                    coin = ops.reshape(coin, (-1,) + (1,) * (len(truth.shape) - 1))
                    readout = ops.where(coin, truth, readout)
                else:
                    readout = truth
        model_inputs = self.layout.join(
            step_inputs, inner[STATE], self.constants, readout
        )
        # Values hoisted out of the loop follow the model's inputs.
        outputs = self._run_model(*model_inputs, *by_role[HOISTED])
        output = cast(outputs[0], plan.output_dtype)
        new = {
            STATE: list(outputs[1:]),
            READOUT: [output] if self.layout.has_readout else [],
            PLACEHOLDER: inner[PLACEHOLDER],
            COUNTER: [counter + 1] if counter is not None else [],
            PREVIOUS_OUTPUT: [],
        }
        if by_role[MASK]:
            # Masked steps keep the states and repeat the previous output (or
            # output zeros), as Keras's TensorFlow loop does; done here so that
            # every backend follows the same rule for states of any rank.
            keep = by_role[MASK][0]
            if plan.zero_output_for_mask:
                previous = ops.zeros_like(output)
            else:
                previous = inner[PREVIOUS_OUTPUT][0]
            output = _where(keep, output, previous)
            for role in PERSISTENT:
                new[role] = [
                    _where(keep, ops.cast(n, o.dtype), o)
                    for n, o in zip(new[role], inner[role])
                ]
            if not plan.zero_output_for_mask:
                new[PREVIOUS_OUTPUT] = [output]
        return output, plan.join_states(new)

    __call__ = call


def run(plan: LoopPlan, step: PlanStep, sequence, initial_states, options):
    """Runs the loop with Keras's own recurrent machinery (or, on PyTorch,
    `backend.run_loop`: the same loop without Keras's per-step bookkeeping).

    Args:
        plan: the call's `LoopPlan`.
        step: the call's `PlanStep`.
        sequence: the packed sequence (`LoopPlan.pack`).
        initial_states: the inner initial states (`LoopPlan.initial_states`).
        options: dict with `return_sequences`, `go_backwards`, `unroll`.

    Returns:
        `(output, final_inner_states)`: every step's output or the last one.
    """
    if backend.own_loop() and not options["unroll"]:
        last, outputs, states = backend.run_loop(
            step,
            sequence,
            list(initial_states),
            options["return_sequences"],
            options["go_backwards"],
        )
        return (outputs if options["return_sequences"] else last), states
    loop = keras.layers.RNN(
        step,
        return_sequences=options["return_sequences"],
        go_backwards=options["go_backwards"],
        unroll=options["unroll"],
    )
    last, outputs, states = loop.inner_loop(
        sequences=sequence,
        initial_state=list(initial_states),
        mask=None,
        training=step.training,
    )
    output = outputs if options["return_sequences"] else last
    return output, list(states)


def _where(keep, new, old):
    """`new` where the per-example flag `keep` (batch,) is set, else `old`."""
    keep = ops.reshape(ops.cast(keep, "bool"), (-1,) + (1,) * (len(new.shape) - 1))
    return ops.where(keep, new, ops.cast(old, new.dtype))
