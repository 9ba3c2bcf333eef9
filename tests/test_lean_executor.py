"""The lean step executor computes what Keras's full model call computes.

Each model runs twice from the same variables (seed states included), once
with `cellgraph.backend.STEP_EXECUTOR = "generic"` (the step model's own
Keras call) and once with `"lean"` (`cellgraph._lean.LeanGraph`); outputs,
gradients with respect to every trainable variable and the input, and the
losses must agree to 1e-6. Every model of the safe-loading zoo (all public
classes) and hypothesis-generated step graphs go through it, plus the cases
where a layer, or the whole graph, must keep the full call.
"""

import keras
import numpy as np
import pytest
from _autodiff import layer_gradients
from hypothesis import HealthCheck, given, settings
from keras import layers, ops
from test_properties import graph_arguments, random_case
from test_safe_loading import MODELS

import cellgraph as cg
from cellgraph._lean import LeanGraph
from cellgraph.step_graph import walk_layers

# PyTorch runs the lean executor by default, TensorFlow runs the whole suite;
# on JAX (generic by default) every model here would compile anew, for minutes.
pytestmark = [
    pytest.mark.portable,
    pytest.mark.skipif(
        keras.backend.backend() == "jax",
        reason="the lean executor is PyTorch's default; TF and PyTorch test it",
    ),
]


@pytest.fixture
def executor(monkeypatch):
    """Sets the executor; the generic one runs Keras's loop, unless `same_loop`.

    On PyTorch the lean path also runs cellgraph's own loop over time; Keras's
    loop calls the step once more before the loop, which draws one more set
    of random numbers: tests of random layers run both on cellgraph's loop.
    """

    def use(name, same_loop=False):
        monkeypatch.setattr(cg.backend, "STEP_EXECUTOR", name)
        own = name == "lean" or same_loop
        monkeypatch.setattr(cg.backend, "OWN_LOOP_ON_TORCH", own)

    return use


def recurrent_models(layer):
    """Every RecurrentModel in `layer`, nested step graphs included."""
    for inner in walk_layers(layer):
        if isinstance(inner, cg.RecurrentModel):
            yield inner
            if inner.step_model is not None:
                for child in inner.step_model.layers:
                    yield from recurrent_models(child)


def on_both_paths(executor, layer, x, same_loop=False, **kwargs):
    """`layer_gradients` on the generic and the lean path, from equal variables."""
    if not layer.built:
        layer(x, **kwargs)
    snapshot = [keras.ops.convert_to_numpy(v.value) for v in layer.variables]
    results = {}
    for name in ("generic", "lean"):
        for variable, value in zip(layer.variables, snapshot, strict=True):
            variable.assign(value)
        executor(name, same_loop)
        outputs, grads = layer_gradients(layer, x, **kwargs)
        losses = [keras.ops.convert_to_numpy(v) for v in layer.losses]
        results[name] = outputs, grads, losses
    return results


def assert_paths_agree(results):
    """Outputs, gradients and losses agree to 1e-6 (relative, or of their scale).

    The two paths create the same ops in a different order, so PyTorch's
    autograd may add a gradient's contributions in another order: float32
    rounding at the scale of the largest element.
    """
    for generic, lean in zip(results["generic"], results["lean"], strict=True):
        assert len(generic) == len(lean)
        for want, got in zip(generic, lean, strict=True):
            scale = max(1.0, float(np.abs(want).max(initial=0)))
            np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6 * scale)


@pytest.mark.parametrize("name", sorted(MODELS))
@pytest.mark.parametrize("training", [False, True])
def test_every_public_layer_agrees_on_the_lean_path(executor, name, training):
    model, shapes = MODELS[name]()
    rng = np.random.default_rng(0)
    data = [rng.normal(size=s).astype("float32") for s in shapes]
    results = on_both_paths(
        executor, model, data if len(data) > 1 else data[0], training=training
    )
    assert_paths_agree(results)
    assert any(np.abs(g).sum() > 0 for g in results["lean"][1])
    # The lean path really ran: every step graph of the model compiles.
    rnns = list(recurrent_models(model))
    assert rnns
    for rnn in rnns:
        graph = LeanGraph.compile(rnn.step_model, rnn.dtype_policy)
        assert graph is not None, LeanGraph.reason(rnn.step_model, rnn.dtype_policy)
        assert graph.lean_layers


@settings(
    max_examples=10,
    deadline=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.function_scoped_fixture,  # it only sets the flag
    ],
)
@given(**graph_arguments(max_time=12))
def test_random_step_graphs_agree_on_the_lean_path(
    monkeypatch, features, units, shapes, time, backwards, seed
):
    rnn, x, mask = random_case(features, units, shapes, time, backwards, seed)
    results = {}
    for name in ("generic", "lean"):  # with Keras's loop, then cellgraph's
        monkeypatch.setattr(cg.backend, "STEP_EXECUTOR", name)
        monkeypatch.setattr(cg.backend, "OWN_LOOP_ON_TORCH", name == "lean")
        results[name] = layer_gradients(rnn, x, mask=mask)
    assert_paths_agree(results)
    graph = LeanGraph.compile(rnn.step_model, rnn.dtype_policy)
    assert graph is not None and not graph.full_call_layers


def step_graph_rnn(x_t, h_tm1, h_t, **options):
    return cg.RecurrentModel(
        input=x_t,
        initial_states=[h_tm1],
        output=h_t,
        final_states=[h_t],
        return_sequences=True,
        **options,
    )


def test_ops_shared_layers_and_nested_models_take_the_lean_path(executor, rng):
    x_t, h_tm1 = keras.Input((3,)), keras.Input((4,))
    shared = layers.Dense(4)
    inner_in = keras.Input((4,))
    inner = keras.Model(inner_in, layers.Dense(4, activation="tanh")(inner_in))
    a = shared(layers.Dense(4)(x_t))  # the shared layer's node 0 ...
    b = shared(h_tm1)  # ... and node 1
    h_t = inner(ops.tanh(a + b) * 0.5)
    h_t = layers.Concatenate()([h_t, ops.sin(h_t)])
    h_t = layers.Dense(4, kernel_regularizer="l2")(h_t)
    rnn = step_graph_rnn(x_t, h_tm1, h_t)
    x = rng.normal(size=(2, 6, 3)).astype("float32")
    results = on_both_paths(executor, rnn, x)
    assert_paths_agree(results)
    assert results["lean"][2], "the kernel regularizer's loss is there"
    graph = LeanGraph.compile(rnn.step_model, rnn.dtype_policy)
    assert not graph.full_call_layers
    assert inner.name in graph.lean_layers


def test_cell_dropout_and_per_step_dropout_agree_on_the_lean_path(executor, rng):
    if keras.backend.backend() == "jax":
        pytest.skip("JAX refuses per-step random layers in training")
    x_t = keras.Input((3,))
    h_tm1, c_tm1 = keras.Input((4,)), keras.Input((4,))
    cell = cg.cells.LSTMCell(4, dropout=0.3, recurrent_dropout=0.2, seed=1)
    h, _, c = cell([x_t, h_tm1, c_tm1])
    h = layers.Dropout(0.4, seed=2)(h)
    rnn = cg.RecurrentModel(
        input=x_t,
        initial_states=[h_tm1, c_tm1],
        output=h,
        final_states=[h, c],
        return_sequences=True,
    )
    x = rng.normal(size=(2, 5, 3)).astype("float32")
    results = on_both_paths(executor, rnn, x, same_loop=True, training=True)
    assert_paths_agree(results)
    outputs = results["lean"][0][0]
    assert (outputs == 0).any(), "dropout dropped something"
    graph = LeanGraph.compile(rnn.step_model, rnn.dtype_policy)
    assert not graph.full_call_layers


def test_layers_that_need_the_full_call_keep_it_and_agree(executor, rng):
    x_t, h_tm1 = keras.Input((3,)), keras.Input((4,))
    wide = layers.Dense(4, dtype="float64", name="wide")  # another dtype policy
    h = layers.Activation("tanh", name="cast_input")(wide(x_t))  # a float64 input
    noisy = layers.Dropout(0.5, seed=3, name="always_on")(h, training=True)
    h_t = layers.Add()([noisy, layers.Dense(4)(h_tm1)])
    rnn = step_graph_rnn(x_t, h_tm1, h_t)
    x = rng.normal(size=(2, 5, 3)).astype("float32")
    if keras.backend.backend() != "jax":  # JAX refuses per-step randomness
        assert_paths_agree(on_both_paths(executor, rnn, x, same_loop=True))
    graph = LeanGraph.compile(rnn.step_model, rnn.dtype_policy)
    assert set(graph.full_call_layers) == {"wide", "always_on"}
    assert "cast_input" in graph.lean_layers  # its float64 input is cast


def test_nested_sequence_layer_keeps_its_full_call(executor, rng):
    x_t, h_tm1 = keras.Input((2, 3)), keras.Input((4,))
    inner = cg.cells.GRUCell(4, input_dim=3).get_layer(name="inner_rnn")
    h_t = layers.Add()([inner(x_t), layers.Dense(4)(h_tm1)])
    rnn = step_graph_rnn(x_t, h_tm1, h_t)
    x = rng.normal(size=(2, 5, 2, 3)).astype("float32")
    assert_paths_agree(on_both_paths(executor, rnn, x))
    graph = LeanGraph.compile(rnn.step_model, rnn.dtype_policy)
    assert graph.full_call_layers == ["inner_rnn"]


def test_graph_that_makes_a_keras_mask_keeps_the_generic_path(executor, rng):
    # Each step reads a window of 4 token ids; padding (0) is masked in the
    # pooling, which only Keras's full call passes on.
    ids_t, h_tm1 = keras.Input((4,), dtype="int32"), keras.Input((5,))
    embedded = layers.Embedding(7, 5, mask_zero=True)(ids_t)
    pooled = layers.GlobalAveragePooling1D()(embedded)
    h_t = layers.Add()([pooled, layers.Dense(5)(h_tm1)])
    rnn = step_graph_rnn(ids_t, h_tm1, h_t)
    assert "mask" in LeanGraph.reason(rnn.step_model, rnn.dtype_policy)
    assert LeanGraph.compile(rnn.step_model, rnn.dtype_policy) is None
    ids = rng.integers(0, 7, size=(2, 3, 4)).astype("int32")
    ids[:, :, -1] = 0
    outputs = {}
    for name in ("generic", "lean"):
        executor(name)
        outputs[name] = keras.ops.convert_to_numpy(rnn(ids))
    np.testing.assert_allclose(outputs["lean"], outputs["generic"], rtol=1e-6)


def test_mixed_precision_agrees_on_the_lean_path(executor, rng):
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_float16")
    try:
        x_t, h_tm1 = keras.Input((3,)), keras.Input((4,))
        h_t = layers.Dense(4, activation="tanh")(layers.Concatenate()([x_t, h_tm1]))
        rnn = step_graph_rnn(x_t, h_tm1, h_t)
        x = rng.normal(size=(2, 5, 3)).astype("float32")
        results = on_both_paths(executor, rnn, x)
        graph = LeanGraph.compile(rnn.step_model, rnn.dtype_policy)
    finally:
        keras.config.set_dtype_policy(previous)
    assert_paths_agree(results)
    assert not graph.full_call_layers
    assert results["lean"][0][0].dtype == np.float16


def test_step_executor_flag_is_checked(monkeypatch):
    monkeypatch.setattr(cg.backend, "STEP_EXECUTOR", "fast")
    layer = cg.cells.SimpleRNNCell(2, input_dim=1).get_layer()
    with pytest.raises(ValueError, match=r"STEP_EXECUTOR must be one of .*'fast'"):
        layer(np.zeros((1, 2, 1), "float32"))


def hoistable_rnn(kind, **options):
    """Step graphs whose input-only part (a projection) can leave the loop."""
    h_tm1 = keras.Input((4,))
    if kind == "ids":  # token ids: the Embedding runs before the loop
        x_t = keras.Input((), dtype="int32")
        z = layers.Dense(4)(layers.Embedding(9, 3)(x_t))
    else:
        x_t = keras.Input((3,))
        z = layers.Dense(4, activation="relu")(layers.Dense(5)(x_t))
    h_t = layers.Activation("tanh")(layers.Add()([z, layers.Dense(4)(h_tm1)]))
    if kind == "input_in_loop":  # the step input is still read in the loop
        h_t = layers.Dense(4)(layers.Concatenate()([h_t, x_t]))
    return step_graph_rnn(x_t, h_tm1, h_t, **options), x_t


@pytest.mark.parametrize("kind", ["projection", "ids", "input_in_loop"])
@pytest.mark.parametrize(
    "options", [dict(), dict(go_backwards=True), dict(stateful=False, unroll=True)]
)
def test_input_only_work_runs_before_the_loop_and_agrees(
    monkeypatch, rng, kind, options
):
    rnn, x_t = hoistable_rnn(kind, **options)
    if kind == "ids":
        x = rng.integers(0, 9, size=(2, 6)).astype("int32")
    else:
        x = rng.normal(size=(2, 6, 3)).astype("float32")
    mask = rng.random((2, 6)) > 0.3
    rnn(x, mask=mask)
    results = {}
    for name, lean in (("generic", False), ("lean", True)):
        monkeypatch.setattr(cg.backend, "STEP_EXECUTOR", name)
        monkeypatch.setattr(cg.backend, "HOIST_STEP_INPUTS", lean)
        monkeypatch.setattr(cg.backend, "OWN_LOOP_ON_TORCH", lean)
        if kind == "ids":  # no gradient with respect to integer ids
            results[name] = ([keras.ops.convert_to_numpy(rnn(x, mask=mask))],)
        else:
            results[name] = layer_gradients(rnn, x, mask=mask)
    assert_paths_agree(results)
    hoist, _ = LeanGraph.compile(rnn.step_model, rnn.dtype_policy).hoist(1)
    expected = {"projection": 2, "ids": 2, "input_in_loop": 2}[kind]
    assert len(hoist.layers) == expected
    assert hoist.inputs_in_loop == (kind == "input_in_loop")


def test_state_dependent_or_random_work_stays_in_the_loop():
    x_t, h_tm1 = keras.Input((3,)), keras.Input((4,))
    noisy = layers.Dense(4)(layers.GaussianNoise(0.1)(x_t))  # random per step
    h_t = layers.Add()([noisy, layers.Dense(4)(h_tm1)])
    rnn = step_graph_rnn(x_t, h_tm1, h_t)
    assert LeanGraph.compile(rnn.step_model, rnn.dtype_policy).hoist(1) is None
    normed = layers.BatchNormalization()(x_t)  # statistics over the batch
    h_t = layers.Add()([layers.Dense(4)(normed), layers.Dense(4)(h_tm1)])
    rnn = step_graph_rnn(x_t, h_tm1, h_t)
    assert LeanGraph.compile(rnn.step_model, rnn.dtype_policy).hoist(1) is None


def test_common_layers_and_cells_run_torch_native_calls_and_agree(executor, rng):
    x_t, h_tm1, c_tm1 = (keras.Input((s,)) for s in (3, 4, 4))
    g_tm1, s_tm1, r_tm1 = (keras.Input((4,)) for _ in range(3))
    h, _, c = cg.cells.LSTMCell(4, name="lstm")([x_t, h_tm1, c_tm1])
    g, _ = cg.cells.GRUCell(4, name="gru")([h, g_tm1])
    s, _ = cg.cells.SGUCell(4, name="sgu")([g, s_tm1])
    r, _ = cg.cells.SimpleRNNCell(4, name="simple")([s, r_tm1])
    mixed = layers.Concatenate(name="concat")([r, ops.tanh(h) * ops.sigmoid(g)])
    mixed = layers.Dense(4, activation="relu", name="dense")(mixed)
    mixed = layers.Subtract(name="sub")([mixed, layers.Activation("tanh")(s)])
    out = layers.Multiply(name="mul")([layers.Add(name="add")([mixed, r]), -c])
    rnn = cg.RecurrentModel(
        input=x_t,
        initial_states=[h_tm1, c_tm1, g_tm1, s_tm1, r_tm1],
        output=out,
        final_states=[h, c, g, s, r],
        return_sequences=True,
    )
    x = rng.normal(size=(2, 5, 3)).astype("float32")
    assert_paths_agree(on_both_paths(executor, rnn, x, training=True))
    graph = LeanGraph.compile(rnn.step_model, rnn.dtype_policy)
    assert not graph.full_call_layers
    if keras.backend.backend() == "torch":
        names = {"lstm", "gru", "sgu", "simple", "concat", "dense", "sub", "mul"}
        assert names | {"add"} <= set(graph.fast_layers)
        assert {"tanh", "sigmoid", "multiply", "negative"} <= set(graph.fast_layers)
    else:
        assert graph.fast_layers == []


def test_a_bound_graph_equals_the_node_by_node_run(rng):
    # Multi-output cells, a shared layer, a nested model, ops with constants
    # and keyword arguments: the generated straight-line code of `bind()`
    # computes what `__call__` computes, node by node.
    x_t, h_tm1 = keras.Input((3,)), keras.Input((4,))
    inner_in = keras.Input((4,))
    inner = keras.Model(inner_in, layers.Dense(4, activation="tanh")(inner_in))
    h, h_state = cg.cells.GRUCell(4)([x_t, h_tm1])
    shared = layers.Dense(4)
    mixed = inner(shared(h) + shared(h_state) * 0.5)
    out = ops.clip(ops.sum(ops.reshape(mixed, (-1, 2, 2)), axis=1), -0.5, 0.5)
    model = keras.Model([x_t, h_tm1], [out, mixed])
    graph = LeanGraph.compile(model)
    data = [rng.normal(size=(2, 3)), rng.normal(size=(2, 4))]
    tensors = [ops.convert_to_tensor(d.astype("float32")) for d in data]
    want = [ops.convert_to_numpy(t) for t in model(tensors)]
    for training in (None, False, True):
        run = graph.bind(training)
        for got, expected in zip(run(list(tensors)), want, strict=True):
            np.testing.assert_allclose(ops.convert_to_numpy(got), expected, rtol=1e-6)
        node_by_node = graph(list(tensors), training)
        for got, expected in zip(node_by_node, want, strict=True):
            np.testing.assert_allclose(ops.convert_to_numpy(got), expected, rtol=1e-6)


def test_each_call_reads_the_variables_anew(executor, rng):
    # The fast calls read their variables once per sequence: weights changed
    # between calls (an optimizer step, `set_weights`) are the next call's.
    x_t, h_tm1 = keras.Input((3,)), keras.Input((4,))
    h, _ = cg.cells.SimpleRNNCell(4)([x_t, h_tm1])
    h_t = layers.Dense(4, activation="tanh")(h)
    rnn = step_graph_rnn(x_t, h_tm1, h_t)
    x = rng.normal(size=(2, 5, 3)).astype("float32")
    executor("lean")
    first = ops.convert_to_numpy(rnn(x))
    for variable in rnn.trainable_variables:
        variable.assign(variable.value * 0.5 + 0.1)
    second = ops.convert_to_numpy(rnn(x))
    executor("generic")
    generic = ops.convert_to_numpy(rnn(x))
    np.testing.assert_allclose(second, generic, rtol=1e-6, atol=1e-6)
    assert np.abs(second - first).max() > 1e-3


def test_a_cell_knows_whether_its_call_uses_dropout_masks():
    cell = cg.cells.LSTMCell(4, dropout=0.5)
    cell.build([(None, 3), (None, 4), (None, 4)])
    plain = cg.cells.LSTMCell(4)
    assert not cell.uses_dropout_masks(False) and not cell.uses_dropout_masks(None)
    assert cell.uses_dropout_masks(True) and not plain.uses_dropout_masks(True)
    cell.begin_sequence(2, training=True)
    try:  # the sequence's masks apply unless told `training=False`
        assert cell.uses_dropout_masks(None) and not cell.uses_dropout_masks(False)
    finally:
        cell.end_sequence()
    assert not cell.uses_dropout_masks(None)


def test_split_and_python_numbers_run_torch_native_calls_and_agree(executor, rng):
    # A GRU-like step written with keras.ops: equal sections of `ops.split`,
    # Python numbers on either side of a binary op (Keras converts them at
    # each call; the fast calls once per sequence, the same way).
    x_t, h_tm1 = keras.Input((3,)), keras.Input((4,))
    gx = layers.Dense(12)(x_t)
    gh = layers.Dense(12)(h_tm1)
    rx, zx, nx = ops.split(gx, 3, axis=-1)
    rh, zh, nh = ops.split(gh, 3, axis=-1)
    r, z = ops.sigmoid(rx + rh), ops.sigmoid(zx + zh)
    n = ops.tanh(nx + r * nh)
    h_t = (1.0 - z) * n + z * h_tm1 + 2 * (h_tm1 - 0.25) * 0.1
    rnn = step_graph_rnn(x_t, h_tm1, h_t)
    x = rng.normal(size=(2, 5, 3)).astype("float32")
    assert_paths_agree(on_both_paths(executor, rnn, x, training=True))
    graph = LeanGraph.compile(rnn.step_model, rnn.dtype_policy)
    if keras.backend.backend() == "torch":
        fast = set(graph.fast_layers)
        assert {"split", "split_1", "subtract", "multiply"} <= fast, fast
