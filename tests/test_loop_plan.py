"""Tests of the per-call loop plan: packing, unpacking and inner-state layout."""

import itertools

import keras
import numpy as np
import pytest
from keras import ops

from cellgraph import _loop
from cellgraph.step_graph import GraphLayout, StepGraph

pytestmark = pytest.mark.portable

BATCH, TIME = 3, 4
BIG = 2**24 + 3  # not representable in float32


def _sequence(rng, shape, dtype):
    full = (BATCH, TIME, *shape)
    if dtype == "bool":
        return rng.random(full) < 0.5
    if dtype.startswith("int"):
        return rng.integers(BIG, BIG + 1000, size=full).astype(dtype)
    return rng.standard_normal(full).astype(dtype)


def _graph(input_specs, num_states=1, readout=False, state_dtype="float32"):
    """A step graph whose inputs have the given (shape, dtype) specs.

    Only its roles, shapes and dtypes matter here: the output reads the
    first state (the inputs are unused).
    """
    inputs = [keras.Input(shape, dtype=dtype) for shape, dtype in input_specs]
    states = [keras.Input((2,), dtype=state_dtype) for _ in range(num_states)]
    readout_input = keras.Input((2,)) if readout else None
    out = keras.layers.Dense(2)(ops.cast(states[0], "float32"))
    return StepGraph(
        inputs=inputs,
        output=out,
        initial_states=states,
        final_states=list(states),
        readout_input=readout_input,
    )


SHAPES = [(), (2,), (2, 3), (2, 1, 2)]
DTYPES = ["float32", "int32", "int64", "bool"]


@pytest.mark.parametrize(
    "specs",
    [[(s, d)] for s, d in itertools.product(SHAPES, DTYPES)]
    + [
        [((2,), "float32"), ((), "int32")],
        [((), "int64"), ((2, 3), "float32"), ((2,), "bool")],
        [((2, 1, 2), "int32"), ((), "int64")],
    ],
    ids=str,
)
@pytest.mark.parametrize("masked", [False, True])
def test_pack_unpack_round_trip(rng, specs, masked):
    """Every part comes back at every step, exactly and in its own dtype."""
    sequences = [_sequence(rng, shape, dtype) for shape, dtype in specs]
    graph = _graph([(s if s else (), d) for s, d in specs])
    plan = _loop.LoopPlan.create(
        graph,
        "float32",
        input_dtypes=[d for _, d in specs],
        input_shapes=[s for s, _ in specs],
        masked=masked,
    )
    if masked:
        sequences.append(rng.random((BATCH, TIME)) < 0.5)
    tensors = [ops.convert_to_tensor(s) for s in sequences]
    sequence, side = plan.pack(tensors)
    assert (side is not None) == bool(plan.side_parts)
    for t in range(TIME):
        counter = ops.convert_to_tensor(t, "int32")
        parts = plan.unpack(sequence[:, t], side, counter)
        for part, value, original in zip(plan.parts, parts, sequences):
            assert keras.backend.standardize_dtype(value.dtype) == part.dtype
            np.testing.assert_array_equal(ops.convert_to_numpy(value), original[:, t])


def test_integers_beside_floats_travel_beside_the_sequence():
    graph = _graph([((2,), "float32"), ((), "int64")])
    plan = _loop.LoopPlan.create(graph, "bfloat16", input_dtypes=["float32", "int64"])
    assert plan.carrier_dtype == "bfloat16"
    assert [plan.parts[i].dtype for i in plan.side_parts] == ["int64"]
    assert [s.role for s in plan.slots] == ["state", "counter"]


@pytest.mark.parametrize("sampled", [False, True])
@pytest.mark.parametrize("go_backwards", [False, True])
def test_teacher_forcing_parts_round_trip(rng, sampled, go_backwards):
    graph = _graph([((2,), "float32")], readout=True)
    plan = _loop.LoopPlan.create(
        graph,
        "float32",
        input_dtypes=["float32"],
        teacher=True,
        sampled=sampled,
        masked=True,
        go_backwards=go_backwards,
    )
    roles = [p.role for p in plan.parts]
    assert roles == ["input", "ground_truth", *(["coin"] if sampled else []), "mask"]
    sequences = [_sequence(rng, (2,), "float32"), _sequence(rng, (2,), "float32")]
    if sampled:
        sequences.append(rng.random((BATCH, TIME)) < 0.5)
    sequences.append(rng.random((BATCH, TIME)) < 0.5)
    sequence, side = plan.pack([ops.convert_to_tensor(s) for s in sequences])
    assert side is None
    for t in range(TIME):
        parts = plan.unpack(sequence[:, t])
        for value, original in zip(parts, sequences):
            np.testing.assert_array_equal(ops.convert_to_numpy(value), original[:, t])


def test_integer_ground_truth_is_read_in_processing_order(rng):
    """Integer parts beside floats follow `go_backwards` through the counter."""
    x = keras.Input((2,))
    y_tm1 = keras.Input((), dtype="int32")
    out = ops.cast(ops.sum(x, axis=-1), "int32") + y_tm1
    graph = StepGraph(inputs=x, output=out, readout_input=y_tm1)
    plan = _loop.LoopPlan.create(
        graph, "float32", input_dtypes=["float32"], teacher=True, go_backwards=True
    )
    truth = rng.integers(BIG, BIG + 10, size=(BATCH, TIME)).astype("int32")
    xs = _sequence(rng, (2,), "float32")
    sequence, side = plan.pack(
        [ops.convert_to_tensor(xs), ops.convert_to_tensor(truth)]
    )
    for k in range(TIME):  # processing step k reads sequence[T-1-k]
        counter = ops.convert_to_tensor(k, "int32")
        _, got = plan.unpack(sequence[:, TIME - 1 - k], side, counter)
        np.testing.assert_array_equal(ops.convert_to_numpy(got), truth[:, TIME - 1 - k])


def test_inner_state_layout():
    graph = _graph([((2,), "float32"), ((), "int32")], num_states=2, readout=True)
    plan = _loop.LoopPlan.create(
        graph, "float16", input_dtypes=["float32", "int32"], masked=True
    )
    assert [s.role for s in plan.slots] == [
        "state",
        "state",
        "readout",
        "counter",
        "previous_output",
    ]
    assert [s.dtype for s in plan.slots] == [
        "float16",
        "float16",
        "float16",
        "int32",
        "float16",
    ]
    persistent = [np.full((BATCH, 2), i, "float32") for i in range(3)]
    inner = plan.initial_states(persistent, BATCH)
    by_role = plan.split_states(inner)
    assert len(by_role["state"]) == 2 and len(by_role["readout"]) == 1
    np.testing.assert_array_equal(ops.convert_to_numpy(by_role["readout"][0]), 2)
    assert int(ops.convert_to_numpy(by_role["counter"][0])) == 0
    joined = plan.join_states(by_role)
    for a, b in zip(joined, inner):
        np.testing.assert_array_equal(ops.convert_to_numpy(a), ops.convert_to_numpy(b))


def test_placeholder_when_no_state():
    x = keras.Input((2,))
    graph = StepGraph(inputs=x, output=keras.layers.Dense(3)(x))
    plan = _loop.LoopPlan.create(graph, "float32", input_dtypes=["float32"])
    assert [s.role for s in plan.slots] == ["placeholder"]


def test_integer_states_keep_their_dtype_under_mixed_precision():
    graph = _graph([((2,), "float32")], state_dtype="int32")
    plan = _loop.LoopPlan.create(graph, "bfloat16", input_dtypes=["float32"])
    assert [s.dtype for s in plan.slots] == ["int32"]


def test_combine_masks_is_logical_and():
    a = np.array([[1, 1, 0]], bool)
    b = np.array([[1, 0, 0]], bool)
    got = _loop.combine_masks([a, None, b])
    np.testing.assert_array_equal(ops.convert_to_numpy(got), [[True, False, False]])
    assert _loop.combine_masks([None, None]) is None


def test_graph_layout_split_and_join():
    layout = GraphLayout(num_inputs=2, num_states=1, num_constants=2, has_readout=True)
    items = list("abcdef")
    inputs, states, constants, readout = layout.split(items)
    assert (inputs, states, constants, readout) == (["a", "b"], ["c"], ["d", "e"], "f")
    assert layout.join(inputs, states, constants, readout) == items
    assert layout.roles == [
        "input",
        "input",
        "state",
        "constant",
        "constant",
        "readout",
    ]
    with pytest.raises(ValueError, match="Expected 6 items"):
        layout.split(items[:5])
