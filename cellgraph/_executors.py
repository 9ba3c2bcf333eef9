"""How a `RecurrentModel` call runs its step graph: the loop, or a fused kernel.

`run_loop` builds the call's loop plan and runs the step graph over time on
the executor the backend calls for (`cellgraph.backend.STEP_EXECUTOR`, with
input-only work hoisted before the loop where that pays); `native_run` hands
a step graph of one built-in LSTM or GRU cell to the backend's own kernel.
What is compiled from a step model (its lean graph, its sole cell) is cached
on the layer per step-model object and dtype policy.
"""

from __future__ import annotations

import keras
from keras import ops

from cellgraph import _checks, _lean, _loop, _options, backend
from cellgraph.step_graph import walk_layers


def run_loop(
    layer, xs, persistent, batch, ground_truth, consts, mask, training, teacher
):
    """Runs the step graph over time: `(output, final persistent states)`."""
    sampled = teacher and layer.teacher_force < 1.0
    executor, hoist = _lean_graph(layer), None
    if executor is not None and not layer.decode and backend.HOIST_STEP_INPUTS:
        hoist, executor = _lean_hoist(layer) or (None, executor)
    graph = layer._step_graph
    plan = _loop.LoopPlan.create(
        graph,
        layer.compute_dtype,
        input_dtypes=[x.dtype for x in xs],
        input_shapes=[tuple(x.shape[2:]) for x in xs],
        teacher=teacher,
        sampled=sampled,
        masked=mask is not None,
        decode=layer.decode,
        time=layer.output_length if layer.decode else None,
        zero_output_for_mask=layer.zero_output_for_mask,
        go_backwards=layer.go_backwards,
        hoisted=hoist.specs if hoist is not None else (),
        inputs_in_loop=hoist is None or hoist.inputs_in_loop,
    )
    sequences = [] if layer.decode else list(xs)
    if hoist is not None:
        hoisted = hoist.sequences(xs, training)
        sequences = (sequences if hoist.inputs_in_loop else []) + hoisted
    if teacher:
        readout_dtype = plan.parts[plan.index(_loop.GROUND_TRUTH)[0]].dtype
        truth = ops.cast(ground_truth, readout_dtype)
        first = ops.cast(persistent[layer.num_states], readout_dtype)[:, None]
        shifted = ops.concatenate([first, truth[:, :-1]], axis=1)
        if layer.go_backwards:  # the loop reverses it again
            shifted = ops.flip(shifted, axis=1)
        sequences.append(shifted)
        if sampled:
            sequences.append(
                keras.random.uniform(ops.shape(truth)[:2], seed=layer._seed_generator)
                < layer.teacher_force
            )
    if mask is not None:
        sequences.append(mask)
    sequence, side = plan.pack(sequences, batch)

    # Fresh tensors: a Keras mask attached to a constant (e.g. encoder
    # outputs) means nothing inside one step.
    step = _loop.PlanStep(
        plan,
        layer.step_model,
        graph.layout,
        constants=[ops.copy(c) for c in consts],
        captured_inputs=[ops.copy(x) for x in xs] if layer.decode else None,
        side=side,
        training=training,
        executor=None if executor is None else _lean.SequenceRun(executor, training),
    )
    step_layers = list(walk_layers(layer.step_model))
    if training and keras.backend.backend() == "jax":
        _checks.refuse_per_step_randomness(layer.name, step_layers)
    sequence_layers = [s for s in step_layers if hasattr(s, "begin_sequence")]
    for sequence_layer in sequence_layers:
        sequence_layer.begin_sequence(batch, training=bool(training))
    losses_before = len(layer.step_model.losses)
    try:
        output, inner = _loop.run(
            plan,
            step,
            sequence,
            plan.initial_states(persistent, batch),
            {
                "return_sequences": layer.return_sequences,
                "go_backwards": layer.go_backwards,
                "unroll": layer.unroll,
            },
        )
    finally:
        for sequence_layer in sequence_layers:
            sequence_layer.end_sequence()

    if len(layer.step_model.losses) > losses_before:
        _checks.refuse_losses_added_in_the_loop(layer.name, step_layers)
    final = [
        value for slot, value in zip(plan.slots, inner) if slot.role in _loop.PERSISTENT
    ]
    return output, final


def native_run(layer, xs, persistent, training):
    """The backend's fused kernel for a step graph of one LSTM/GRU cell.

    Returns `(output, final persistent states)`, or `None` where the
    graph, the options or the backend call for the loop.
    """
    if (
        not backend.native_kernels_available()
        or layer.decode
        or layer.unroll
        or len(xs) != 1
        or len(xs[0].shape) != 3
        or keras.backend.standardize_dtype(xs[0].dtype) != layer.compute_dtype
    ):
        return None
    cell = _sole_cell(layer)
    kernel = cell.native_kernel(training) if cell is not None else None
    if kernel is None:
        return None
    kind, weights, has_biases = kernel
    x = ops.flip(xs[0], axis=1) if layer.go_backwards else xs[0]
    states = [ops.cast(s, layer.compute_dtype) for s in persistent]
    outputs, final = backend.native_rnn(kind, x, states, weights, has_biases)
    return (outputs if layer.return_sequences else outputs[:, -1]), final


def _sole_cell(layer):
    """The cell, when the step graph is one built-in cell on `[x, *states]`."""

    def find():
        cell = _options.sole_cell(
            layer.step_model,
            {"config": layer.step_model.get_config()},
            layer._step_graph.layout,
        )
        return cell if hasattr(cell, "native_kernel") else None

    return _cached(layer, "_sole_cells", find)


def _lean_graph(layer):
    """The step graph's `LeanGraph`, or `None` for the model's own call.

    Compiled once per step model and dtype policy (a cache of what the
    graph is, not per-call configuration); `None` where the backend keeps
    the generic call (`cellgraph.backend.STEP_EXECUTOR`) or the graph
    must (`LeanGraph.reason`).
    """
    if not backend.lean_steps():
        return None
    return _cached(
        layer,
        "_lean_graphs",
        lambda: _lean.LeanGraph.compile(layer.step_model, layer.dtype_policy),
    )


def _cached(layer, name, make):
    """`make()`, remembered per step model (the object) and dtype policy."""
    cache = layer.__dict__.setdefault(name, {})
    key = (id(layer.step_model), layer.dtype_policy.name)
    entry = cache.get(key)
    if entry is None or entry[0] is not layer.step_model:
        entry = cache[key] = (layer.step_model, make())
    return entry[1]


def _lean_hoist(layer):
    """`(Hoist, loop LeanGraph)` for the step graph, or `None` (cached)."""
    graph = _lean_graph(layer)
    num_inputs = layer._step_graph.layout.num_inputs
    return _cached(layer, "_lean_hoists", lambda: graph.hoist(num_inputs))
