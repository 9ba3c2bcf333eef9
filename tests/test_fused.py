"""Tests of `cellgraph.cells.FusedCellStack`: equal to the unfused cells, saving."""

import keras
import numpy as np
import pytest

import cellgraph as cg
from cellgraph.cells import FusedCellStack, fuse_weights, unfuse_weights
from cellgraph.cells.fused import KINDS

pytestmark = pytest.mark.portable

BATCH, TIME, UNITS, FEATURES, LAYERS = 3, 4, 4, 5, 3

# (kind, extra cell arguments)
VARIANTS = [
    ("sgu", {}),
    ("gru", {}),
    ("gru", {"reset_after": False}),
    ("lstm", {}),
    ("simple_rnn", {}),
    ("sgu", {"use_bias": False}),
    ("lstm", {"use_bias": False}),
]


def np_(x):
    return keras.ops.convert_to_numpy(x)


def make_cells(kind, layers=LAYERS, units=UNITS, features=FEATURES, seed=0, **kw):
    """Built unfused cells with random (nonzero) weights."""
    rng = np.random.default_rng(seed)
    cell_class = KINDS[kind][0]
    cells = []
    for i in range(layers):
        cell = cell_class(units, name=f"cell_{i}", **kw)
        dim = features if i == 0 else units
        parts = len(KINDS[kind][3])
        cell(
            [keras.KerasTensor((None, dim))]
            + [keras.KerasTensor((None, units))] * parts
        )
        cell.set_weights(
            [0.5 * rng.standard_normal(w.shape).astype("float32") for w in cell.weights]
        )
        cells.append(cell)
    return cells


def sequence_model(step_layers, features, units):
    """A Model `x -> [outputs, *final_states]` running the layers as one step."""
    x_t = keras.Input((features,))
    count = sum(len(layer.state_shapes) for layer in step_layers)
    states_tm1 = [keras.Input((units,)) for _ in range(count)]
    h, states_t, start = x_t, [], 0
    for layer in step_layers:
        own = states_tm1[start : start + len(layer.state_shapes)]
        start += len(own)
        h, *new = layer([h, *own])
        states_t += new
    rnn = cg.RecurrentModel(
        input=x_t,
        output=h,
        initial_states=states_tm1,
        final_states=states_t,
        return_sequences=True,
        return_state=True,
    )
    x = keras.Input((None, features))
    mask = keras.Input((None,), dtype="bool")
    return keras.Model([x, mask], rnn(x, mask=mask))


def pair(kind, layers=LAYERS, features=FEATURES, **kw):
    cells = make_cells(kind, layers=layers, features=features, **kw)
    stack = FusedCellStack.from_cells(cells)
    unfused = sequence_model(cells, features, UNITS)
    fused = sequence_model([stack], features, UNITS)
    return unfused, fused, stack


def data(rng, features=FEATURES):
    x = rng.standard_normal((BATCH, TIME, features)).astype("float32")
    mask = np.ones((BATCH, TIME), bool)
    mask[1, 2:] = False  # a padded sequence
    return x, mask


def loss_and_gradients(model, x, mask, weights):
    """Gradients of `sum(outputs * weights)` w.r.t. the variables and `x`."""
    backend = keras.backend.backend()
    variables = model.trainable_variables
    mask = keras.ops.convert_to_tensor(mask)

    def loss(outputs):
        total = 0.0
        for output, w in zip(outputs, weights, strict=True):
            total = total + keras.ops.sum(output * keras.ops.convert_to_tensor(w))
        return total

    if backend == "tensorflow":
        import tensorflow as tf

        xt = tf.constant(x)
        with tf.GradientTape() as tape:
            tape.watch(xt)
            value = loss(model([xt, mask]))
        grads = tape.gradient(value, [*variables, xt])
    elif backend == "jax":
        import jax

        non_trainable = [v.value for v in model.non_trainable_variables]

        def f(trainable, xj):
            outputs, _ = model.stateless_call(trainable, non_trainable, [xj, mask])
            return loss(outputs)

        # one jitted gradient: compiled whole, not op by op
        grad = jax.jit(jax.grad(f, argnums=(0, 1)))
        vg, xg = grad([v.value for v in variables], x)
        grads = [*vg, xg]
    elif backend == "torch":
        import torch

        xt = torch.tensor(x, requires_grad=True)
        value = loss(model([xt, mask]))
        grads = torch.autograd.grad(value, [v.value for v in variables] + [xt])
    else:
        pytest.skip(f"no gradients for backend {backend}")
    return [np_(g) for g in grads]


@pytest.mark.parametrize("kind, kw", VARIANTS)
def test_fused_equals_unfused_outputs_states_and_gradients(rng, kind, kw):
    unfused, fused, stack = pair(kind, **kw)
    x, mask = data(rng)
    expected = unfused([x, mask])
    got = fused([x, mask])
    assert len(got) == len(expected) == 1 + LAYERS * len(KINDS[kind][3])
    for e, g in zip(expected, got, strict=True):
        np.testing.assert_allclose(np_(g), np_(e), rtol=1e-6, atol=1e-6)
    # the padded sequence ends in the state of its unpadded part
    assert not np.allclose(np_(got[1])[1], np_(got[1])[0])

    weights = [rng.standard_normal(tuple(o.shape)).astype("float32") for o in got]
    expected_grads = loss_and_gradients(unfused, x, mask, weights)
    grads = loss_and_gradients(fused, x, mask, weights)
    np.testing.assert_allclose(grads[-1], expected_grads[-1], rtol=1e-6, atol=1e-6)
    per_cell = len(expected_grads[:-1]) // LAYERS
    expected_fused = fuse_weights(
        [expected_grads[i * per_cell : (i + 1) * per_cell] for i in range(LAYERS)]
    )
    assert len(grads[:-1]) == len(expected_fused)
    for e, g in zip(expected_fused, grads[:-1], strict=True):
        assert e.shape == g.shape
        assert np.abs(e).max() > 1e-3  # the weights do matter
        np.testing.assert_allclose(g, e, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("kind", ["sgu", "lstm"])
def test_first_layer_input_size_equal_or_different(rng, kind):
    for features in (UNITS, 7):
        unfused, fused, stack = pair(kind, features=features)
        assert tuple(stack.kernel.shape) == (features, KINDS[kind][1] * UNITS)
        assert tuple(stack.kernels_rest.shape) == (
            LAYERS - 1,
            UNITS,
            KINDS[kind][1] * UNITS,
        )
        x, mask = data(rng, features)
        for e, g in zip(unfused([x, mask]), fused([x, mask]), strict=True):
            np.testing.assert_allclose(np_(g), np_(e), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("kind", ["gru", "simple_rnn"])
def test_one_layer_stack_equals_its_cell(rng, kind):
    unfused, fused, stack = pair(kind, layers=1)
    assert stack.kernels_rest is None
    x, mask = data(rng)
    for e, g in zip(unfused([x, mask]), fused([x, mask]), strict=True):
        np.testing.assert_allclose(np_(g), np_(e), rtol=1e-6, atol=1e-6)
    assert [c.name for c in stack.to_cells()] == [f"{kind.replace('_', '')}_0"]


def test_weight_conversion_round_trip():
    cells = make_cells("gru", reset_after=True)
    stack = FusedCellStack.from_cells(cells)
    assert [w.name for w in stack.weights] == [
        "kernel",
        "kernels_rest",
        "recurrent_kernels",
        "biases",
    ]
    assert tuple(stack.biases.shape) == (LAYERS, 2, 3 * UNITS)
    back = stack.to_cells()
    assert [c.name for c in back] == ["gru_0", "gru_1", "gru_2"]
    for original, copy in zip(cells, back, strict=True):
        assert type(copy) is type(original)
        assert copy.reset_after and copy.units == UNITS
        for a, b in zip(original.get_weights(), copy.get_weights(), strict=True):
            np.testing.assert_array_equal(a, b)
    arrays = unfuse_weights(stack.get_weights(), LAYERS)
    again = fuse_weights(arrays)
    for a, b in zip(stack.get_weights(), again, strict=True):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(arrays[2][1], np_(stack.recurrent_kernels)[2])


def test_state_names_and_shapes_follow_the_unfused_layers():
    stack = FusedCellStack("lstm", layers=2, units=3)
    assert stack.state_names == ["lstm_0/h", "lstm_0/c", "lstm_1/h", "lstm_1/c"]
    assert stack.state_shapes == [(3,)] * 4
    assert FusedCellStack("simple_rnn", 2, 3).layer_names == [
        "simplernn_0",
        "simplernn_1",
    ]


def test_saves_and_loads_bit_identical_in_safe_mode(rng, tmp_path):
    stack = FusedCellStack("lstm", layers=3, units=UNITS, unit_forget_bias=True)
    x_t = keras.Input((FEATURES,))
    states = [keras.Input((UNITS,)) for _ in range(6)]
    h, *new = stack([x_t, *states])
    rnn = cg.RecurrentModel(
        input=x_t, output=h, initial_states=states, final_states=new
    )
    inputs = keras.Input((TIME, FEATURES))
    model = keras.Model(inputs, keras.layers.Dense(2)(rnn(inputs)))
    # unit_forget_bias: each layer's forget block starts at ones
    np.testing.assert_array_equal(np_(stack.biases)[:, UNITS : 2 * UNITS], 1.0)
    x = rng.standard_normal((BATCH, TIME, FEATURES)).astype("float32")
    expected = np_(model(x))
    path = tmp_path / "fused.keras"
    model.save(path)
    loaded = keras.models.load_model(path, safe_mode=True)
    np.testing.assert_array_equal(np_(loaded(x)), expected)
    for a, b in zip(model.get_weights(), loaded.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    fused = [
        layer
        for layer in loaded.layers[1].step_model.layers
        if isinstance(layer, FusedCellStack)
    ]
    assert len(fused) == 1 and fused[0].get_config() == stack.get_config()


def test_regularizers_apply_per_layer_as_for_the_unfused_cells():
    cells = make_cells("sgu", kernel_regularizer="l2", recurrent_regularizer="l1")
    stack = FusedCellStack.from_cells(cells)
    expected = sum(float(np_(loss)) for cell in cells for loss in cell.losses)
    got = sum(float(np_(loss)) for loss in stack.losses)
    assert expected > 0
    np.testing.assert_allclose(got, expected, rtol=1e-5)


def test_misuse_raises_naming_the_argument():
    with pytest.raises(ValueError, match="argument `dropout` must be 0.*dropout=0.2"):
        FusedCellStack("sgu", 2, 4, dropout=0.2)
    with pytest.raises(ValueError, match="`recurrent_dropout` must be 0"):
        FusedCellStack("gru", 2, 4, recurrent_dropout=0.5)
    with pytest.raises(ValueError, match="argument `cell` must be one of.*'rhn'"):
        FusedCellStack("rhn", 2, 4)
    with pytest.raises(ValueError, match="argument `layers` must be a positive.*0"):
        FusedCellStack("sgu", 0, 4)
    with pytest.raises(ValueError, match="`gate_activation` is for cell='sgu'"):
        FusedCellStack("lstm", 2, 4, gate_activation="sigmoid")
    cells = make_cells("sgu", layers=2)
    other = make_cells("sgu", layers=1, activation="relu")
    with pytest.raises(ValueError, match=r"argument `cells`.*cells\[1\]"):
        FusedCellStack.from_cells([cells[0], other[0]])
    with pytest.raises(TypeError, match="argument `cells` must hold"):
        FusedCellStack.from_cells([cg.cells.RHNCell(4, recurrence_depth=2)])
    with pytest.raises(ValueError, match="argument `layers`"):
        unfuse_weights([], 0)


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_mixed_precision_computes_in_the_policy_dtype_as_the_unfused_cells(rng, policy):
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(policy)
    try:
        unfused, fused, stack = pair("gru")
        x, mask = data(rng)
        expected, got = unfused([x, mask]), fused([x, mask])
    finally:
        keras.config.set_dtype_policy(previous)
    compute = policy.split("_")[1]
    assert stack.kernels_rest.dtype == "float32"
    for e, g in zip(expected, got, strict=True):
        assert keras.backend.standardize_dtype(g.dtype) == compute
        tolerance = 1e-2 if compute == "float16" else 5e-2
        np.testing.assert_allclose(
            np_(g).astype("float32"), np_(e).astype("float32"), atol=tolerance
        )
