"""Each built-in cell is one Keras layer: its weights, states and saved form."""

import json
import zipfile

import keras
import numpy as np
import pytest

import cellgraph
from cellgraph import RNNCell, step_graph
from cellgraph.cells import GRUCell, LSTMCell, RHNCell, SGUCell, SimpleRNNCell
from cellgraph.cells._common import KerasCell
from cellgraph.systems import (
    AddressableMemory,
    Attention,
    Queue,
    RegisterMemory,
    Stack,
    System,
)

# Every backend runs this module (`pytest -m portable`).
pytestmark = pytest.mark.portable

BATCH, TIME, INPUT_DIM, UNITS = 2, 5, 3, 4

# name -> (make a cell, state names, the weight shapes in Keras's order)
CELLS = {
    "simple_rnn": (
        lambda **kw: SimpleRNNCell(UNITS, input_dim=INPUT_DIM, **kw),
        ["h"],
        [(INPUT_DIM, UNITS), (UNITS, UNITS), (UNITS,)],
    ),
    "gru": (
        lambda **kw: GRUCell(UNITS, input_dim=INPUT_DIM, **kw),
        ["h"],
        [(INPUT_DIM, 3 * UNITS), (UNITS, 3 * UNITS), (2, 3 * UNITS)],
    ),
    "lstm": (
        lambda **kw: LSTMCell(UNITS, input_dim=INPUT_DIM, **kw),
        ["h", "c"],
        [(INPUT_DIM, 4 * UNITS), (UNITS, 4 * UNITS), (4 * UNITS,)],
    ),
    "sgu": (
        lambda **kw: SGUCell(UNITS, input_dim=INPUT_DIM, **kw),
        ["h"],
        [(INPUT_DIM, 2 * UNITS), (UNITS, UNITS), (2 * UNITS,)],
    ),
    "rhn": (
        lambda **kw: RHNCell(UNITS, 2, input_dim=INPUT_DIM, **kw),
        ["h"],
        [(INPUT_DIM, 2 * UNITS), (2, UNITS, 2 * UNITS), (2, 2 * UNITS)],
    ),
}
NAMES = sorted(CELLS)


def _built(name, **kwargs):
    cell = CELLS[name][0](**kwargs)
    cell.get_layer()  # builds the cell on symbolic inputs
    return cell


def _randomize(cell, seed=0):
    rng = np.random.default_rng(seed)
    cell.set_weights(
        [rng.normal(scale=0.5, size=w.shape).astype(w.dtype) for w in cell.weights]
    )


def _step_inputs(name, dtype="float32", seed=1):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(BATCH, INPUT_DIM)).astype(dtype)
    states = [rng.normal(size=(BATCH, UNITS)).astype(dtype) for _ in CELLS[name][1]]
    return [x, *states]


def _config_json(path) -> dict:
    with zipfile.ZipFile(path) as archive:
        return json.loads(archive.read("config.json"))


def _all_values(config, key):
    """Every value of `key` in a nested config, depth first."""
    if isinstance(config, dict):
        found = [config[key]] if key in config else []
        for value in config.values():
            found += _all_values(value, key)
        return found
    if isinstance(config, list):
        return [v for item in config for v in _all_values(item, key)]
    return []


def _find_class(config, class_name):
    if isinstance(config, dict):
        if config.get("class_name") == class_name:
            return config
        values = config.values()
    elif isinstance(config, list):
        values = config
    else:
        return None
    for value in values:
        found = _find_class(value, class_name)
        if found is not None:
            return found
    return None


# -- (c) one object: the cell owns exactly its weights ---------------------------


@pytest.mark.parametrize("name", NAMES)
def test_cell_owns_exactly_its_weights_in_keras_order(name):
    cell = _built(name)
    shapes = CELLS[name][2]
    assert cell.model is None  # no inner one-step model
    assert [w.name for w in cell.weights] == ["kernel", "recurrent_kernel", "bias"]
    assert [tuple(w.shape) for w in cell.weights] == shapes
    own = [cell.kernel, cell.recurrent_kernel, cell.bias]
    assert [id(w) for w in cell.trainable_weights] == [id(w) for w in own]
    assert [id(w) for w in cell.weights] == [id(w) for w in own]
    # the weights are the cell's own, not those of a nested layer
    assert [w.path for w in cell.weights] == [
        f"{cell.name}/kernel",
        f"{cell.name}/recurrent_kernel",
        f"{cell.name}/bias",
    ]


@pytest.mark.parametrize("name", NAMES)
def test_cell_without_bias_owns_two_weights(name):
    cell = _built(name, use_bias=False)
    assert cell.bias is None
    assert [w.name for w in cell.trainable_weights] == ["kernel", "recurrent_kernel"]


@pytest.mark.parametrize("name", NAMES)
def test_sequence_layer_trains_the_cells_own_weights_and_finds_the_cell(name):
    cell = CELLS[name][0](dropout=0.2, recurrent_dropout=0.2, seed=1)
    rnn = cell.get_layer()
    assert [id(w) for w in rnn.trainable_weights] == [
        id(w) for w in cell.trainable_weights
    ]
    # the engine calls begin_sequence/end_sequence on the layers walk_layers finds
    found = [
        layer
        for layer in step_graph.walk_layers(rnn.step_model)
        if hasattr(layer, "begin_sequence")
    ]
    assert found == [cell]


# -- (b) state names and shapes --------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_cell_state_names_and_shapes(name):
    cell = CELLS[name][0]()
    names = CELLS[name][1]
    assert cell.state_names == names
    assert cell.state_shapes == [(UNITS,)] * len(names)
    assert cell.state_shape == cell.state_shapes  # the old name, an alias
    assert cell.num_states == len(names)
    outputs = cell(_step_inputs(name))
    assert [tuple(o.shape) for o in outputs] == [(BATCH, UNITS)] * (1 + len(names))


def test_state_names_of_user_cells_default_to_h_or_numbered():
    x, h, c = keras.Input((3,)), keras.Input((4,)), keras.Input((2,))
    one = cellgraph.RNNCell.from_model(keras.Model([x, h], [h, h]))
    two = cellgraph.RNNCell.from_model(keras.Model([x, h, c], [h, h, c]))
    assert one.state_names == ["h"]
    assert two.state_names == ["state0", "state1"]
    assert two.state_shapes == two.state_shape == [(4,), (2,)]


def test_state_shape_defined_under_the_old_name_still_works():
    class OldStyle(cellgraph.RNNCell):
        @property
        def state_shape(self):
            return [(5,), (6,)]

    cell = OldStyle()
    assert cell.state_shapes == [(5,), (6,)]
    assert cell.num_states == 2
    assert cell.state_names == ["state0", "state1"]


@pytest.mark.parametrize(
    "system, names, shapes",
    [
        (Attention(datapoints=6, width=3), ["position"], [(1,)]),
        (RegisterMemory(depth=4, width=3), ["memory"], [(4, 3)]),
        (Stack(width=3, capacity=5), ["values", "strengths"], [(5, 3), (5,)]),
        (Queue(width=3, capacity=5), ["values", "strengths"], [(5, 3), (5,)]),
        (
            AddressableMemory(slots=5, width=3, read_heads=2, write_heads=1),
            ["memory", "read_weights", "write_weights"],
            [(5, 3), (2, 5), (1, 5)],
        ),
    ],
    ids=["attention", "register_memory", "stack", "queue", "addressable_memory"],
)
def test_system_state_names_and_shapes(system, names, shapes):
    assert system.state_names == names
    assert system.state_shapes == shapes


def test_system_state_names_default_for_user_systems():
    class Two(System):
        state_shapes = [(2,), (3,)]

    class One(System):
        state_shapes = [(2,)]

    assert Two(project=False).state_names == ["state0", "state1"]
    assert One(project=False).state_names == ["h"]


def test_superloop_state_names_come_from_the_cells_and_systems():
    superloop = cellgraph.Superloop(
        units=4,
        layers=2,
        cell="lstm",
        systems=[RegisterMemory(depth=3, width=2, name="memory")],
    )
    cells = [c.name for c in superloop.cells]
    assert superloop.state_names == [
        f"{cells[0]}/h",
        f"{cells[0]}/c",
        f"{cells[1]}/h",
        f"{cells[1]}/c",
        "memory/read",
        "memory/memory",
    ]


# -- (a) the saved form ------------------------------------------------------------


def _model(name, **kwargs):
    cell = CELLS[name][0](name=f"my_{name}", **kwargs)
    sequence = keras.Input((TIME, INPUT_DIM))
    model = keras.Model(sequence, cell.get_layer(return_sequences=True)(sequence))
    _randomize(cell)
    return model, cell


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("dropout", [0.0, 0.3], ids=["plain", "dropout"])
def test_saved_cell_is_one_public_class_and_loads_bit_identical(
    name, dropout, tmp_path
):
    model, cell = _model(name, dropout=dropout, recurrent_dropout=dropout, seed=5)
    path = tmp_path / "cell.keras"
    model.save(path)
    config = _config_json(path)

    # ("__keras_tensor__" is Keras's own marker of a tensor argument)
    class_names = [
        c for c in _all_values(config, "class_name") if c != "__keras_tensor__"
    ]
    registered = [r for r in _all_values(config, "registered_name") if r]
    assert not [c for c in class_names if c.startswith("_")]
    assert not [r for r in registered if r.split(">")[-1].startswith("_")]
    cell_config = _find_class(config, type(cell).__name__)
    assert cell_config is not None
    # the cell is one layer: no one-step Functional model of its own
    assert "Functional" not in _all_values(cell_config, "class_name")
    # only the outer model: a layer whose step graph is one cell is saved as
    # that cell (and rebuilt by calling it)
    assert class_names.count("Functional") == 1

    loaded = keras.models.load_model(path, safe_mode=True)
    data = np.random.default_rng(7).normal(size=(BATCH, TIME, INPUT_DIM))
    data = data.astype("float32")
    np.testing.assert_array_equal(
        loaded.predict(data, verbose=0), model.predict(data, verbose=0)
    )
    (loaded_cell,) = [
        layer
        for layer in step_graph.walk_layers(loaded.layers[1].step_model)
        if isinstance(layer, type(cell))
    ]
    assert loaded_cell.get_config() == cell.get_config()
    assert loaded_cell.mask_count == cell.mask_count
    for a, b in zip(loaded_cell.weights, cell.weights, strict=True):
        assert a.path == b.path
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_no_private_cellgraph_cell_classes_are_registered():
    registered = [
        name
        for name in keras.saving.get_custom_objects()
        if name.startswith("cellgraph>")
    ]
    assert not [n for n in registered if n.endswith("Step")]


# -- dtypes --------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_cell_under_mixed_precision_matches_float32(name, policy):
    reference = _built(name)
    _randomize(reference)
    cell = _built(name, dtype=policy)
    assert [w.dtype for w in cell.weights] == ["float32"] * 3
    cell.set_weights(reference.get_weights())
    inputs = _step_inputs(name)
    expected = [keras.ops.convert_to_numpy(t) for t in reference(inputs)]
    outputs = cell(inputs)
    compute = policy.split("_")[1]
    assert [keras.backend.standardize_dtype(o.dtype) for o in outputs] == [
        compute
    ] * len(outputs)
    for got, want in zip(outputs, expected, strict=True):
        got = keras.ops.convert_to_numpy(keras.ops.cast(got, "float32"))
        np.testing.assert_allclose(got, want, atol=0.05, rtol=0.05)


@pytest.mark.skipif(
    keras.backend.backend() == "jax",
    reason="on Keras's JAX backend a float64 cell returns float32 (as before)",
)
@pytest.mark.parametrize("name", NAMES)
def test_float64_cell_keeps_float64(name):
    cell = _built(name, dtype="float64")
    assert [w.dtype for w in cell.weights] == ["float64"] * 3
    outputs = cell(_step_inputs(name, dtype="float64"))
    assert [keras.backend.standardize_dtype(o.dtype) for o in outputs] == [
        "float64"
    ] * len(outputs)


# -- the class docstrings' examples run ------------------------------------------


@pytest.mark.parametrize(
    "cls",
    [SimpleRNNCell, GRUCell, LSTMCell, SGUCell, RHNCell, KerasCell, RNNCell],
    ids=lambda cls: cls.__name__,
)
def test_docstring_example_runs(cls):
    example = cls.__doc__.split("Example:", 1)[1]
    code = example.split("```python\n", 1)[1].split("```", 1)[0]
    lines = [line[4:] if line.startswith("    ") else line for line in code.split("\n")]
    exec("\n".join(lines), {"cellgraph": cellgraph, "keras": keras, "np": np})
