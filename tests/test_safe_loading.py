"""Safe loading: cellgraph models load with safe_mode=True; tampered files are refused.

Part one saves a set of small models that together hold every class cellgraph
registers (checked against the registry, so a new public class without a
safe-mode round trip fails here) and loads each back in safe mode,
bit-identical. Part two edits the `config.json` inside a saved `.keras` file
to point cellgraph's own config entries (step models, chain elements, Merger
branches, stack layers, Superloop cells and systems, initial-state
initializers) at arbitrary Python (`os.system`, `builtins.eval`), at
unregistered or unrelated classes, or at a Lambda, and checks that loading
refuses with an error that says what is wrong and that nothing ran.
"""

import json
import zipfile

import keras
import numpy as np
import pytest
from keras import layers

import cellgraph as cg
from cellgraph.feedback import (
    FeedbackChain,
    FeedbackTree,
    LocalResponseNormalization,
    Merger,
    Splitter,
)

S = cg.systems


# -- a model zoo holding every registered class ------------------------------------
def cells_in_one_step_graph():
    """All five built-in cells in one hand-written step graph."""
    x_t = keras.Input((3,))
    cells = [
        cg.cells.SimpleRNNCell(4),
        cg.cells.GRUCell(4, reset_after=False),
        cg.cells.LSTMCell(4),
        cg.cells.SGUCell(4),
        cg.cells.RHNCell(4, 2),
    ]
    states_tm1, states_t, outputs = [], [], []
    for cell in cells:
        inputs = [keras.Input((4,)) for _ in range(2 if cell is cells[2] else 1)]
        out, *new = cell([x_t, *inputs])
        states_tm1 += inputs
        states_t += new
        outputs.append(out)
    y_t = layers.Dense(2)(layers.Concatenate()(outputs))
    rnn = cg.RecurrentModel(
        input=x_t,
        output=y_t,
        initial_states=states_tm1,
        final_states=states_t,
        state_initializer="learned",
        return_sequences=True,
    )
    inputs = keras.Input((None, 3))
    return keras.Model(inputs, rnn(inputs)), [(2, 4, 3)]


def stack_with_nested_cells():
    """RecurrentSequential over RNNCell.from_model, a Dense and a GraphCell."""
    x, h = keras.Input((3,)), keras.Input((4,))
    h_new = layers.Dense(4, activation="tanh")(layers.Concatenate()([x, h]))
    model_cell = cg.RNNCell.from_model(keras.Model([x, h], [h_new, h_new]))
    inner = cg.cells.GRUCell(3, input_dim=2).get_layer()
    rnn = cg.RecurrentSequential(
        layers=[model_cell, layers.Dense(2), inner.get_cell()],
        readout="add",
        return_sequences=True,
    )
    inputs = keras.Input((None, 3))
    return keras.Model(inputs, rnn(inputs)), [(2, 4, 3)]


def superloop_stack_and_queue():
    superloop = cg.Superloop(
        cell="sgu",
        layers=2,
        units=4,
        systems=[S.Stack(width=2, capacity=3), S.Queue(width=2, capacity=3)],
        outputs=2,
    )
    inputs = keras.Input((4, 3))
    return keras.Model(inputs, superloop(inputs)), [(2, 4, 3)]


def fused_stack_of_lstm_cells():
    """A `FusedCellStack` (what `Superloop(fused=True)` runs) as a layer."""
    stack = cg.cells.FusedCellStack("lstm", layers=3, units=4, input_dim=3)
    inputs = keras.Input((4, 3))
    return keras.Model(inputs, stack.get_layer(return_sequences=True)(inputs)), [
        (2, 4, 3)
    ]


def memories_with_one_hot_initial_states():
    """Every memory system in one step graph, with the systems' initial states."""
    systems = [
        S.RegisterMemory(depth=3, width=2),
        S.AddressableMemory(slots=3, width=2),
        S.Attention(datapoints=4, width=2),
    ]
    x_t = keras.Input((2,))
    reads_tm1 = [keras.Input((s.read_size,)) for s in systems]
    h_t = layers.Dense(5, activation="tanh")(layers.Concatenate()([x_t, *reads_tm1]))
    states_tm1, states_t, reads_t, constants = [], [], [], []
    initializers = [None] * len(systems)  # the reads start at zero
    for system in systems:
        inputs, consts = system.initial_state_inputs(), system.constant_inputs()
        read, *new = system([h_t, *inputs, *consts])
        states_tm1 += inputs
        states_t += new
        reads_t.append(read)
        constants += consts
        initializers += system.state_initializers()
    rnn = cg.RecurrentModel(
        input=x_t,
        output=layers.Dense(2)(layers.Concatenate()([h_t, *reads_t])),
        initial_states=[*reads_tm1, *states_tm1],
        final_states=[*reads_t, *states_t],
        constants=constants,
        state_initializer=initializers,
        return_sequences=True,
    )
    inputs, data = keras.Input((None, 2)), keras.Input((4, 2))
    model = keras.Model([inputs, data], rnn(inputs, constants=[data]))
    return model, [(2, 4, 2), (2, 4, 2)]


def feedback_chain_on_a_sequence():
    """Feature-map state; a concat Merger (shape pass on copies), LRN, a layer op."""
    chain = FeedbackChain(
        [
            layers.Conv2D(2, 3, padding="same"),
            Merger("map", layers.Conv2D(1, 1), op="concat"),
            layers.Conv2D(2, 3, padding="same", activation="relu"),
            LocalResponseNormalization(depth_radius=1),
            Merger("map", layers.Identity(), op=layers.Maximum()),
            Splitter("map"),
            layers.GlobalAveragePooling2D(),
            layers.Dense(2),
        ],
        input_shape=(5, 5, 1),
    )
    inputs = keras.Input((None, 5, 5, 1))
    rnn = chain.get_layer(return_sequences=True)
    return keras.Model(inputs, rnn(inputs)), [(2, 3, 5, 5, 1)]


def feedback_tree_on_an_image():
    tree = FeedbackTree(
        [
            layers.Dense(4),
            Merger("top", layers.Dense(4), op="mul"),
            layers.Activation("tanh"),
            Splitter("low"),
            layers.Dense(3, activation="tanh"),
            Splitter("top"),
            layers.Dense(2),
        ],
        input_shape=(3,),
    )
    inputs = keras.Input((3,))
    return keras.Model(inputs, tree.get_layer(timesteps=3)(inputs)), [(2, 3)]


MODELS = {
    "cells_in_one_step_graph": cells_in_one_step_graph,
    "stack_with_nested_cells": stack_with_nested_cells,
    "superloop_stack_and_queue": superloop_stack_and_queue,
    "fused_stack_of_lstm_cells": fused_stack_of_lstm_cells,
    "memories_with_one_hot_initial_states": memories_with_one_hot_initial_states,
    "feedback_chain_on_a_sequence": feedback_chain_on_a_sequence,
    "feedback_tree_on_an_image": feedback_tree_on_an_image,
}


def registered_names(config):
    """Every `registered_name` in a serialized config, recursively."""
    if isinstance(config, dict):
        found = {config["registered_name"]} if config.get("registered_name") else set()
        return found.union(*(registered_names(v) for v in config.values()))
    if isinstance(config, list):
        return set().union(*(registered_names(v) for v in config))
    return set()


def test_the_models_hold_every_registered_cellgraph_class():
    registry = {
        name
        for name in keras.saving.get_custom_objects()
        if name.startswith("cellgraph>")
    }
    # the base class itself is abstract; RNNCell.from_model gives _ModelCell
    registry.discard("cellgraph>RNNCell")
    # each built-in cell is one layer: no private step classes are registered
    assert not [name for name in registry if name.endswith("Step")]
    found = set()
    for build in MODELS.values():
        model, _ = build()
        found |= registered_names(keras.saving.serialize_keras_object(model))
    assert sorted(registry - found) == []


def test_cells_round_trip_their_config_in_safe_mode():
    # (Was: the cells' private inner step layers; each cell is now one layer.)
    model, _ = cells_in_one_step_graph()
    cells = [
        layer
        for layer in model.layers[1].step_model.layers
        if isinstance(layer, cg.RNNCell)
    ]
    assert len(cells) == 5
    for cell in cells:
        serialized = keras.saving.serialize_keras_object(cell)
        clone = keras.saving.deserialize_keras_object(serialized, safe_mode=True)
        assert type(clone) is type(cell)
        assert clone.get_config() == cell.get_config()


@pytest.mark.parametrize("name", sorted(MODELS))
def test_model_loads_in_safe_mode_bit_identical(name, tmp_path):
    model, shapes = MODELS[name]()
    rng = np.random.default_rng(0)
    data = [rng.normal(size=s).astype("float32") for s in shapes]
    data = data if len(data) > 1 else data[0]
    path = tmp_path / "m.keras"
    model.save(path)
    loaded = keras.models.load_model(path, safe_mode=True)
    assert len(loaded.weights) == len(model.weights)
    for a, b in zip(loaded.get_weights(), model.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(
        loaded.predict(data, verbose=0), model.predict(data, verbose=0)
    )


def test_chain_whose_state_grows_through_a_concat_merger_loads(tmp_path):
    """The state is downstream of a Merger that changes its shape."""
    chain = FeedbackChain(
        [
            layers.Dense(3),
            Merger("h", layers.Dense(1), op="concat"),
            layers.Activation("tanh"),
            Splitter("h"),
            layers.Dense(2),
        ],
        input_shape=(2,),
    )
    rnn = chain.get_layer()
    assert rnn.state_shapes == [(4,)]
    inputs = keras.Input((4, 2))
    model = keras.Model(inputs, rnn(inputs))
    path = tmp_path / "m.keras"
    model.save(path)
    loaded = keras.models.load_model(path, safe_mode=True)
    x = np.random.default_rng(0).normal(size=(2, 4, 2)).astype("float32")
    np.testing.assert_array_equal(
        loaded.predict(x, verbose=0), model.predict(x, verbose=0)
    )


# -- tampered files ---------------------------------------------------------------
OS_SYSTEM = {
    "module": "os",
    "class_name": "system",
    "config": {"command": "touch SENTINEL"},
    "registered_name": None,
}
BUILTINS_EVAL = {
    "module": "builtins",
    "class_name": "eval",
    "config": {"source": "open('SENTINEL', 'w')"},
    "registered_name": None,
}
UNREGISTERED = {
    "module": "cellgraph.cells.lstm",
    "class_name": "NoSuchCell",
    "config": {"units": 2},
    "registered_name": "cellgraph>NoSuchCell",
}
DENSE = {
    "module": "keras.layers",
    "class_name": "Dense",
    "config": {"units": 2},
    "registered_name": None,
}
ONE_HOT = {  # registered by cellgraph, but an initializer, not a layer
    "module": "cellgraph.systems.base",
    "class_name": "OneHotInitializer",
    "config": {"index": 0},
    "registered_name": "cellgraph>OneHotInitializer",
}
UNSAFE_SWITCH = {
    "module": "keras.config",
    "class_name": "enable_unsafe_deserialization",
    "config": {},
    "registered_name": None,
}
EXEC = {
    "module": "builtins",
    "class_name": "function",
    "config": "exec",
    "registered_name": "function",
}


def small_models():
    """The models whose config entries the tampering cases edit."""
    x, h = keras.Input((2,)), keras.Input((3,))
    h_new = layers.Dense(3, activation="tanh")(layers.Concatenate()([x, h]))
    from_model = cg.RNNCell.from_model(keras.Model([x, h], [h_new, h_new]))
    x_t, s_tm1 = keras.Input((2,)), keras.Input((3,))
    out, s_t = from_model.get_layer().get_cell()([x_t, s_tm1])
    graph_cell = cg.RecurrentModel(
        input=x_t, output=out, initial_states=[s_tm1], final_states=[s_t]
    )
    chain = FeedbackChain(
        [
            layers.Dense(3),
            Merger("h", layers.Dense(3)),
            layers.Activation("tanh"),
            Splitter("h"),
            layers.Dense(2),
        ],
        input_shape=(2,),
    )
    stack = cg.RecurrentSequential(
        layers=[cg.cells.GRUCell(3, input_dim=2), layers.Dense(2)],
        state_initializer="zeros",
    )
    superloop = cg.Superloop(
        cell="gru", layers=1, units=3, systems=[S.Stack(width=2, capacity=3)]
    )
    sequence_layers = {
        "from_model": from_model.get_layer(),
        "graph_cell": graph_cell,
        "chain": chain.get_layer(),
        "stack": stack,
        "superloop": superloop,
    }
    models = {}
    for name, layer in sequence_layers.items():
        inputs = keras.Input((4, 2))
        models[name] = keras.Model(inputs, layer(inputs))
    return models


def entry(config, registered_name):
    """The first config dict with this registered name (depth first)."""
    if isinstance(config, dict):
        if config.get("registered_name") == registered_name:
            return config
        children = config.values()
    elif isinstance(config, list):
        children = config
    else:
        return None
    for child in children:
        found = entry(child, registered_name)
        if found is not None:
            return found
    return None


def tampered(source, target, registered_name, edit):
    """Copies the .keras zip `source` to `target` with one config entry edited."""
    with zipfile.ZipFile(source) as zin, zipfile.ZipFile(target, "w") as zout:
        for item in zin.infolist():
            data = zin.read(item.filename)
            if item.filename == "config.json":
                config = json.loads(data)
                found = entry(config, registered_name)
                assert found is not None, f"no {registered_name} in the config"
                edit(found["config"])
                data = json.dumps(config)
            zout.writestr(item, data)


def put(key, value, index=None):
    """An edit that sets `config[key]` (or `config[key][index]`) to `value`."""

    def edit(config):
        if index is None:
            config[key] = value
        else:
            config[key][index] = value

    return edit


RM = "cellgraph>RecurrentModel"
GRAPH_CELL = "cellgraph>GraphCell"
CHAIN = "cellgraph>FeedbackChain"
MERGER = "cellgraph>Merger"
STACK = "cellgraph>RecurrentSequential"
SUPERLOOP = "cellgraph>Superloop"
# name: (model, entry edited, edit, error type, what the message must say)
CASES = {
    "step_model_os_system": (
        "graph_cell",
        RM,
        put("step_model", OS_SYSTEM),
        TypeError,
        r"Could not locate class 'system'",
    ),
    "cell_os_system": (
        "from_model",
        RM,
        put("cell", OS_SYSTEM),
        TypeError,
        r"Could not locate class 'system'",
    ),
    "graph_cell_step_model_eval": (
        "graph_cell",
        GRAPH_CELL,
        put("step_model", BUILTINS_EVAL),
        TypeError,
        r"Could not locate class 'eval'",
    ),
    "step_model_enables_unsafe_deserialization": (
        "from_model",
        RM,
        put("step_model", UNSAFE_SWITCH),
        ValueError,
        r"enable_unsafe_deserialization` because it is not a modeling function",
    ),
    "model_cell_unregistered_class": (
        "from_model",
        "cellgraph>_ModelCell",
        put("model", UNREGISTERED),
        TypeError,
        r"Could not locate class 'NoSuchCell'",
    ),
    "model_cell_model_is_a_dense": (
        "from_model",
        "cellgraph>_ModelCell",
        put("model", DENSE),
        TypeError,
        r"expects a keras.Model. Received: model=Dense",
    ),
    "chain_element_os_system": (
        "chain",
        CHAIN,
        put("layers", OS_SYSTEM, index=0),
        TypeError,
        r"Could not locate class 'system'",
    ),
    "chain_element_not_a_layer": (
        "chain",
        CHAIN,
        put("layers", ONE_HOT, index=0),
        TypeError,
        r"element 0 of `layers` must be a Keras layer.*OneHotInitializer",
    ),
    "merger_branch_not_a_layer": (
        "chain",
        MERGER,
        put("branch", ONE_HOT),
        TypeError,
        r"`branch` of Merger\('h'\) must be a Keras layer.*OneHotInitializer",
    ),
    "merger_op_names_a_builtin": (
        "chain",
        MERGER,
        put("op", "__import__"),
        TypeError,
        r"`op` of Merger\('h'\) must be one of .*Received: op='__import__'",
    ),
    "stack_layer_eval": (
        "stack",
        STACK,
        put("layers", BUILTINS_EVAL, index=1),
        TypeError,
        r"Could not locate class 'eval'",
    ),
    "stack_layer_not_a_layer": (
        "stack",
        STACK,
        put("layers", ONE_HOT, index=1),
        TypeError,
        r"expects a Keras layer or an RNNCell.*OneHotInitializer",
    ),
    "stack_readout_activation_exec": (
        "stack",
        STACK,
        put("readout_activation", EXEC),
        ValueError,
        r"Could not interpret activation function identifier: exec",
    ),
    "state_initializer_os_system": (
        "stack",
        STACK,
        put("state_initializer", [OS_SYSTEM]),
        ValueError,
        r"`state_initializer` must be None, 'learned', a Keras initializer",
    ),
    "superloop_cell_os_system": (
        "superloop",
        SUPERLOOP,
        put("cell", "os>system"),
        ValueError,
        r"unknown cell class 'os>system'",
    ),
    "superloop_cell_keras_class": (
        "superloop",
        SUPERLOOP,
        put("cell", "keras.layers.GRUCell"),
        ValueError,
        r"unknown cell class 'keras.layers.GRUCell'",
    ),
    "superloop_cell_not_a_cell": (
        "superloop",
        SUPERLOOP,
        put("cell", "cellgraph>LocalResponseNormalization"),
        TypeError,
        r"`cell` must be one of .* or an RNNCell subclass.*LocalResponseNorm",
    ),
    "superloop_system_is_a_dense": (
        "superloop",
        SUPERLOOP,
        put("systems", DENSE, index=0),
        TypeError,
        r"`systems\[0\]` must be a cellgraph.systems.System instance.*Dense",
    ),
    "superloop_system_os_system": (
        "superloop",
        SUPERLOOP,
        put("systems", OS_SYSTEM, index=0),
        TypeError,
        r"Could not locate class 'system'",
    ),
}
# A loadable Keras layer where the one-step model belongs: refused, but with
# "'Dense' object has no attribute 'inputs'" from deep inside.
UNCLEAR = {
    "step_model_is_a_dense": ("from_model", RM, put("step_model", DENSE)),
    "graph_cell_step_model_is_a_dense": (
        "graph_cell",
        GRAPH_CELL,
        put("step_model", DENSE),
    ),
}


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    folder = tmp_path_factory.mktemp("saved")
    paths = {}
    for name, model in small_models().items():
        paths[name] = folder / f"{name}.keras"
        model.save(paths[name])
        # the untouched files load: the refusals below come from the edits
        keras.models.load_model(paths[name], safe_mode=True)
    return paths


def sentinel_edit(edit, sentinel):
    """`edit`, then every "SENTINEL" in the edited config replaced by a path."""

    def replace(value):
        if isinstance(value, dict):
            return {k: replace(v) for k, v in value.items()}
        if isinstance(value, list):
            return [replace(v) for v in value]
        if isinstance(value, str):
            return value.replace("SENTINEL", str(sentinel))
        return value

    def run(config):
        edit(config)
        config.update(replace(config))

    return run


@pytest.mark.parametrize("case", sorted(CASES))
def test_tampered_config_is_refused_with_a_clear_error(case, saved, tmp_path):
    model, registered_name, edit, error, message = CASES[case]
    sentinel = tmp_path / "ran"
    target = tmp_path / "tampered.keras"
    tampered(saved[model], target, registered_name, sentinel_edit(edit, sentinel))
    with pytest.raises(error, match=message):
        keras.models.load_model(target, safe_mode=True)
    assert not sentinel.exists()


@pytest.mark.parametrize("case", sorted(UNCLEAR))
def test_step_model_that_is_not_a_model_is_refused_naming_it(case, saved, tmp_path):
    model, registered_name, edit = UNCLEAR[case]
    target = tmp_path / "tampered.keras"
    tampered(saved[model], target, registered_name, edit)
    with pytest.raises((TypeError, ValueError, AttributeError)) as info:
        keras.models.load_model(target, safe_mode=True)
    # Keras wraps the error with the whole config (which names `step_model`
    # anyway); the cause is what comes after its last "Exception encountered:"
    cause = str(info.value).split("Exception encountered: ")[-1]
    assert "step_model" in cause and "Dense" in cause


# -- lambdas ----------------------------------------------------------------------
def lambda_layers():
    """A Lambda in each place where cellgraph deserializes layers itself."""
    chain = FeedbackChain(
        [
            layers.Dense(3),
            Merger("h", layers.Dense(3)),
            layers.Lambda(lambda t: 2.0 * t),
            Splitter("h"),
            layers.Dense(2),
        ],
        input_shape=(2,),
    )
    branch = FeedbackChain(
        [layers.Dense(3), Merger("h", layers.Lambda(lambda t: -t)), Splitter("h")],
        input_shape=(2,),
    )
    stack = cg.RecurrentSequential(
        layers=[cg.cells.GRUCell(3, input_dim=2), layers.Lambda(lambda t: t * t)]
    )
    return {
        "chain_element": chain.get_layer(),
        "merger_branch": branch.get_layer(),
        "stack_layer": stack,
    }


@pytest.mark.parametrize("place", ["chain_element", "merger_branch", "stack_layer"])
def test_lambda_in_a_cellgraph_layer_is_refused_in_safe_mode(place, tmp_path):
    layer = lambda_layers()[place]
    inputs = keras.Input((4, 2))
    model = keras.Model(inputs, layer(inputs))
    path = tmp_path / "lambda.keras"
    model.save(path)
    # Keras's own refusal, wrapped in a TypeError by Keras when it comes from
    # inside a cellgraph layer's config
    with pytest.raises((ValueError, TypeError)) as info:
        keras.models.load_model(path, safe_mode=True)
    cause = str(info.value).split("Exception encountered: ")[-1]
    assert cause.startswith("Requested the deserialization of a `Lambda` layer")
    assert "safe_mode=False" in cause
    # it is safe mode that refuses: trusted, the same file loads
    loaded = keras.models.load_model(path, safe_mode=False)
    x = np.random.default_rng(0).normal(size=(2, 4, 2)).astype("float32")
    np.testing.assert_array_equal(
        loaded.predict(x, verbose=0), model.predict(x, verbose=0)
    )
