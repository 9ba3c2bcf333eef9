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


def loss_and_gradients(model, x, mask, weights, training=False):
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
            value = loss(model([xt, mask], training=training))
        grads = tape.gradient(value, [*variables, xt])
    elif backend == "jax":
        import jax

        non_trainable = [v.value for v in model.non_trainable_variables]

        def f(trainable, xj):
            outputs, _ = model.stateless_call(
                trainable, non_trainable, [xj, mask], training=training
            )
            return loss(outputs)

        # one jitted gradient: compiled whole, not op by op
        grad = jax.jit(jax.grad(f, argnums=(0, 1)))
        vg, xg = grad([v.value for v in variables], x)
        grads = [*vg, xg]
    elif backend == "torch":
        import torch

        xt = torch.tensor(x, requires_grad=True)
        value = loss(model([xt, mask], training=training))
        grads = torch.autograd.grad(value, [v.value for v in variables] + [xt])
    else:
        pytest.skip(f"no gradients for backend {backend}")
    return [np_(g) for g in grads]


def assert_same_gradients(
    unfused, fused, x, mask, outputs, rng, training=False, tolerance=1e-6
):
    """The gradients of both models, the unfused ones stacked, equal.

    Equal to `tolerance`, relative to each gradient's largest entry when
    that is above 1 (float32 rounding grows with the numbers).
    """
    dtype = keras.backend.standardize_dtype(outputs[0].dtype)
    weights = [rng.standard_normal(tuple(o.shape)).astype(dtype) for o in outputs]
    expected_grads = loss_and_gradients(unfused, x, mask, weights, training)
    grads = loss_and_gradients(fused, x, mask, weights, training)

    def assert_close(got, expected):
        scale = max(1.0, float(np.abs(expected).max()))
        np.testing.assert_allclose(
            got, expected, rtol=tolerance, atol=tolerance * scale
        )

    assert_close(grads[-1], expected_grads[-1])
    per_cell = len(expected_grads[:-1]) // LAYERS
    expected_fused = fuse_weights(
        [expected_grads[i * per_cell : (i + 1) * per_cell] for i in range(LAYERS)]
    )
    assert len(grads[:-1]) == len(expected_fused)
    for e, g in zip(expected_fused, grads[:-1], strict=True):
        assert e.shape == g.shape
        assert np.abs(e).max() > 1e-3  # the weights do matter
        assert_close(g, e)


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
    assert_same_gradients(unfused, fused, x, mask, got, rng)


# -- dropout: as the unfused cells --------------------------------------------

DROPOUT_KINDS = [
    ("sgu", {}),
    ("gru", {}),
    ("gru", {"reset_after": False}),
    ("lstm", {}),
    ("simple_rnn", {}),
]
RATES = [
    {"dropout": 0.3},
    {"recurrent_dropout": 0.4},
    {"dropout": 0.3, "recurrent_dropout": 0.4},
]
DROPOUT_CASES = [
    (kind, {**kw, **rates}) for kind, kw in DROPOUT_KINDS for rates in RATES
] + [
    # implementation=1 without recurrent dropout: one input mask per gate
    ("gru", {"dropout": 0.3, "implementation": 1}),
    ("lstm", {"dropout": 0.3, "implementation": 1}),
]


def inject_same_masks(monkeypatch, rng, stack, cells, batch):
    """Gives the stack and the unfused cells the same fixed dropout masks.

    The masks have the layout the cells draw (checked against what the
    stack draws itself); the stack gets them layer by layer.
    """
    own = stack._draw_all_masks(batch)
    rates = (stack.dropout, stack.recurrent_dropout)
    per_cell = []
    for cell in cells:
        drawn = cell._draw_all_masks(batch)
        fixed = []
        for masks, rate in zip(drawn, rates, strict=True):
            if masks is None:
                fixed.append(None)
                continue
            fixed.append(
                [
                    ((rng.random(tuple(m.shape)) >= rate) / (1 - rate)).astype(
                        "float32"
                    )
                    for m in masks
                ]
            )
        per_cell.append(fixed)
    stacked = []
    for part in (0, 1):
        if per_cell[0][part] is None:
            assert own[part] is None
            stacked.append(None)
            continue
        layers = [fixed[part] for fixed in per_cell]
        assert [[tuple(m.shape) for m in masks] for masks in own[part]] == [
            [m.shape for m in masks] for masks in layers
        ]
        stacked.append(layers)

    def as_tensors(masks):
        return tuple(
            None
            if part is None
            else [
                [keras.ops.convert_to_tensor(m, stack.compute_dtype) for m in masks]
                if isinstance(masks, list)
                else keras.ops.convert_to_tensor(masks, stack.compute_dtype)
                for masks in part
            ]
            for part in masks
        )

    for cell, fixed in zip(cells, per_cell, strict=True):
        monkeypatch.setattr(
            cell, "_draw_all_masks", lambda batch_size, m=fixed: as_tensors(m)
        )
    monkeypatch.setattr(
        stack, "_draw_all_masks", lambda batch_size: as_tensors(stacked)
    )


# float64 (exact to ~1e-12) for the cases that use every kind of mask.
FLOATX_CASES = [("float32", kind, kw) for kind, kw in DROPOUT_CASES] + [
    ("float64", kind, kw)
    for kind, kw in DROPOUT_CASES
    if {"dropout", "recurrent_dropout"} <= set(kw) or "implementation" in kw
]


@pytest.fixture
def floatx(request):
    """Runs a test with `keras.config.floatx()` set to `request.param`."""
    backend = keras.backend.backend()
    if request.param == "float64" and backend == "jax":
        import jax

        if not jax.config.jax_enable_x64:
            pytest.skip("JAX computes in float32 unless jax_enable_x64 is set")
    if request.param == "float64" and backend == "torch":
        # Keras 3.15's torch backend: result_type("float64", "float64") is
        # "float32", so `ops.matmul` of float64 tensors rounds to float32.
        pytest.skip("Keras's torch backend computes float64 matmuls in float32")
    previous = keras.config.floatx()
    keras.config.set_floatx(request.param)
    try:
        yield request.param
    finally:
        keras.config.set_floatx(previous)


@pytest.mark.parametrize("floatx, kind, kw", FLOATX_CASES, indirect=["floatx"])
def test_dropout_equals_unfused_with_the_same_masks(rng, monkeypatch, floatx, kind, kw):
    # float32: to 1e-6 (relative to the largest gradient entry); float64
    # shows that what is left in float32 is rounding.
    if keras.backend.backend() == "jax" and (
        floatx == "float64" or (set(RATES[-1]) - set(kw) and "implementation" not in kw)
    ):
        # JAX compiles each case's gradient anew (10-20 s each): there the
        # float32 cases with every kind of mask; TensorFlow runs them all.
        pytest.skip("TensorFlow and PyTorch run this case; JAX the mask-complete ones")
    tolerance = 1e-6 if floatx == "float32" else 1e-12
    cells = make_cells(kind, **kw)
    stack = FusedCellStack.from_cells(cells)
    assert (stack.dropout, stack.recurrent_dropout) == (
        cells[0].dropout,
        cells[0].recurrent_dropout,
    )
    assert stack.mask_count == cells[0].mask_count
    assert stack.mask_count == (
        KINDS[kind][1] if cells[0].mask_count > 1 else 1
    )  # per gate where the cell has one mask per gate
    unfused = sequence_model(cells, FEATURES, UNITS)
    fused = sequence_model([stack], FEATURES, UNITS)
    assert stack.compute_dtype == floatx
    x, mask = data(rng)
    x = x.astype(floatx)
    inject_same_masks(monkeypatch, rng, stack, cells, BATCH)
    expected = unfused([x, mask], training=True)
    got = fused([x, mask], training=True)
    for e, g in zip(expected, got, strict=True):
        assert keras.backend.standardize_dtype(g.dtype) == floatx
        np.testing.assert_allclose(np_(g), np_(e), rtol=tolerance, atol=tolerance)
    # the masks did change the numbers
    assert not np.allclose(np_(got[0]), np_(fused([x, mask])[0]), atol=1e-3)
    assert_same_gradients(
        unfused, fused, x, mask, got, rng, training=True, tolerance=tolerance
    )


def test_dropout_one_layer_stack_draws_the_cells_masks_with_the_same_seed(rng):
    kwargs = {"dropout": 0.3, "recurrent_dropout": 0.4, "seed": 5}
    cell = cg.cells.GRUCell(UNITS, input_dim=FEATURES, **kwargs)
    stack = FusedCellStack("gru", 1, UNITS, input_dim=FEATURES, **kwargs)
    layers = [c.get_layer(return_sequences=True) for c in (cell, stack)]
    x = rng.standard_normal((BATCH, TIME, FEATURES)).astype("float32")
    for layer in layers:
        layer(x)
    stack.set_weights(fuse_weights([cell.get_weights()]))
    for _ in range(2):  # a new sequence: new masks, the same for both
        expected, got = (np_(layer(x, training=True)) for layer in layers)
        np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-6)


def linear_simple_rnn_stack(input_dim, **kwargs):
    """2 linear SimpleRNN layers of 8 units as a sequence layer with states."""
    stack = FusedCellStack(
        "simple_rnn", 2, 8, activation="linear", input_dim=input_dim, **kwargs
    )
    return stack.get_layer(return_sequences=True, return_state=True)


def test_input_dropout_masks_are_per_layer_and_the_same_at_every_step():
    # Linear SimpleRNN with identity kernels and no recurrence: with x = 1,
    # layer 0 outputs its input mask m0 and layer 1 outputs m0 * m1.
    rnn = linear_simple_rnn_stack(
        8, dropout=0.5, kernel_initializer="identity", recurrent_initializer="zeros"
    )
    x = np.ones((16, 6, 8), "float32")
    y, h0, h1 = (np_(t) for t in rnn(x, training=True))
    assert set(np.unique(y)) == {0.0, 4.0}  # m0 * m1, each 0 or 2
    np.testing.assert_array_equal(y, np.broadcast_to(y[:, :1], y.shape))
    assert set(np.unique(h0)) == {0.0, 2.0}
    assert not np.array_equal(h0, h1)  # layer 1's own mask
    y2 = np_(rnn(x, training=True)[0])
    assert not np.array_equal(y, y2)  # a new sequence, new masks
    np.testing.assert_array_equal(np_(rnn(x)[0]), 1.0)  # inference: none


def test_recurrent_dropout_masks_are_per_layer_and_the_same_at_every_step():
    # x = 0, h_0 = 1, identity recurrent kernels: h_t = mask ** t per layer.
    rnn = linear_simple_rnn_stack(
        3,
        recurrent_dropout=0.5,
        kernel_initializer="zeros",
        recurrent_initializer="identity",
    )
    x = np.zeros((16, 6, 3), "float32")
    ones = np.ones((16, 8), "float32")
    y, h0, h1 = (np_(t) for t in rnn(x, initial_state=[ones, ones], training=True))
    alive0, alive1 = h0 != 0, y[:, 0] != 0
    assert 0 < alive1.sum() < alive1.size
    powers = 2.0 ** np.arange(1, 7, dtype="float32")
    np.testing.assert_array_equal(y, alive1[:, None, :] * powers[None, :, None])
    np.testing.assert_array_equal(h0, alive0 * 2.0**6)
    np.testing.assert_array_equal(h1, y[:, -1])
    assert not np.array_equal(alive0, alive1)  # one mask set per layer


def test_dropout_mask_layout_and_kept_fraction():
    stack = FusedCellStack(
        "gru", 2, 16, dropout=0.25, recurrent_dropout=0.4, input_dim=5, seed=2
    )
    stack.get_layer()(np.zeros((1, 2, 5), "float32"))
    batch = 20000
    x = np.zeros((batch, 5), "float32")
    stack.begin_sequence(batch, training=True)
    try:
        x_masks, h_masks = stack.dropout_masks(x, training=True)
        again = stack.dropout_masks(x, training=True)
    finally:
        stack.end_sequence()
    assert again[0][1][2] is x_masks[1][2]  # the sequence's masks, kept
    assert [[tuple(m.shape) for m in layer] for layer in x_masks] == [
        [(batch, 5)] * 3,
        [(batch, 16)] * 3,
    ]
    assert [[tuple(m.shape) for m in layer] for layer in h_masks] == [
        [(batch, 16)] * 3
    ] * 2
    for masks, rate in ((x_masks, 0.25), (h_masks, 0.4)):
        arrays = [np_(m) for layer in masks for m in layer]
        for a in arrays:
            np.testing.assert_allclose(np.unique(a), [0.0, 1 / (1 - rate)], rtol=1e-6)
            # >= 100000 draws: the standard deviation of the fraction is
            # below 0.0016, so 0.02 is more than 12 of them
            assert abs((a != 0).mean() - (1 - rate)) < 0.02
        # independent masks per gate and per layer
        assert not np.array_equal(arrays[0][:, :5], arrays[1][:, :5])
        assert not np.array_equal(arrays[0][:, :5], arrays[3][:, :5])
    assert stack.dropout_masks(x, training=False) == (None, None)


def test_dropout_outside_a_sequence_draws_fresh_masks_per_call(rng):
    stack = FusedCellStack("sgu", 2, UNITS, dropout=0.5, recurrent_dropout=0.5)
    x = rng.standard_normal((BATCH, FEATURES)).astype("float32")
    states = [rng.standard_normal((BATCH, UNITS)).astype("float32")] * 2
    plain = np_(stack([x, *states])[0])
    first = np_(stack([x, *states], training=True)[0])
    second = np_(stack([x, *states], training=True)[0])
    assert not np.allclose(first, second)
    stack.begin_sequence(BATCH, training=True)
    try:
        kept = [np_(stack([x, *states], training=True)[0]) for _ in range(2)]
    finally:
        stack.end_sequence()
    np.testing.assert_array_equal(kept[0], kept[1])
    np.testing.assert_array_equal(np_(stack([x, *states])[0]), plain)


@pytest.mark.parametrize("kind, kw", DROPOUT_KINDS)
def test_dropout_inference_equals_the_model_without_dropout(rng, kind, kw):
    rates = {"dropout": 0.3, "recurrent_dropout": 0.4}
    with_dropout = FusedCellStack(
        kind, LAYERS, UNITS, input_dim=FEATURES, **kw, **rates
    )
    without = FusedCellStack(kind, LAYERS, UNITS, input_dim=FEATURES, **kw)
    layers = [s.get_layer(return_sequences=True) for s in (with_dropout, without)]
    x = rng.standard_normal((BATCH, TIME, FEATURES)).astype("float32")
    for layer in layers:
        layer(x)
    without.set_weights(with_dropout.get_weights())
    expected = np_(layers[1](x))
    np.testing.assert_array_equal(np_(layers[0](x)), expected)
    np.testing.assert_array_equal(np_(layers[0](x, training=False)), expected)
    assert not np.allclose(np_(layers[0](x, training=True)), expected, atol=1e-3)


def test_dropout_config_round_trip_and_cells_keep_the_rates():
    stack = FusedCellStack(
        "gru", 2, UNITS, dropout=0.2, recurrent_dropout=0.3, seed=4, reset_after=False
    )
    config = stack.get_config()
    assert (config["dropout"], config["recurrent_dropout"], config["seed"]) == (
        0.2,
        0.3,
        4,
    )
    assert config["implementation"] == 1  # forced by recurrent_dropout
    again = FusedCellStack.from_config(config)
    assert again.get_config() == config and again.mask_count == 3
    stack(
        [keras.KerasTensor((None, FEATURES))] + [keras.KerasTensor((None, UNITS))] * 2
    )
    for cell in stack.to_cells():
        assert (cell.dropout, cell.recurrent_dropout, cell.seed) == (0.2, 0.3, 4)
        assert cell.implementation == 1 and cell.mask_count == 3
    # GRU/LSTM implementation=1 with input dropout only: one mask per gate
    cells = make_cells("lstm", dropout=0.2, implementation=1)
    fused = FusedCellStack.from_cells(cells)
    assert fused.implementation == 1 and fused.mask_count == 4
    sgu = FusedCellStack("sgu", 2, UNITS, dropout=0.1)
    assert sgu.get_config()["implementation"] is None
    assert "implementation" not in sgu.cell_config()


def test_dropout_saves_and_loads_in_safe_mode(rng, tmp_path):
    stack = FusedCellStack(
        "lstm", LAYERS, UNITS, dropout=0.25, recurrent_dropout=0.35, seed=9
    )
    x_t = keras.Input((FEATURES,))
    states = [keras.Input((UNITS,)) for _ in range(2 * LAYERS)]
    h, *new = stack([x_t, *states])
    rnn = cg.RecurrentModel(
        input=x_t, output=h, initial_states=states, final_states=new
    )
    inputs = keras.Input((TIME, FEATURES))
    model = keras.Model(inputs, rnn(inputs))
    x = rng.standard_normal((BATCH, TIME, FEATURES)).astype("float32")
    expected = np_(model(x))
    path = tmp_path / "fused_dropout.keras"
    model.save(path)
    loaded = keras.models.load_model(path, safe_mode=True)
    (fused,) = [
        layer
        for layer in loaded.layers[1].step_model.layers
        if isinstance(layer, FusedCellStack)
    ]
    assert fused.get_config() == stack.get_config()
    assert (fused.dropout, fused.recurrent_dropout, fused.mask_count) == (0.25, 0.35, 4)
    np.testing.assert_array_equal(np_(loaded(x)), expected)
    assert not np.allclose(np_(loaded(x, training=True)), expected, atol=1e-3)


@pytest.mark.parametrize("kind", ["sgu", "gru"])
def test_fit_with_dropout(rng, kind):
    stack = FusedCellStack(
        kind, 2, UNITS, dropout=0.2, recurrent_dropout=0.2, input_dim=FEATURES, seed=1
    )
    model = keras.Sequential(
        [keras.Input((TIME, FEATURES)), stack.get_layer(), keras.layers.Dense(1)]
    )
    model.compile("adam", "mse")
    before = stack.get_weights()
    x = rng.standard_normal((8, TIME, FEATURES)).astype("float32")
    history = model.fit(x, np.ones((8, 1)), epochs=2, batch_size=4, verbose=0)
    assert np.all(np.isfinite(history.history["loss"]))
    for b, w in zip(before, stack.get_weights(), strict=True):
        assert not np.array_equal(b, w)


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
    with pytest.raises(
        ValueError,
        match=r"FusedCellStack: argument `dropout` must be a float in \[0, 1\]\. "
        r"Received: dropout=1\.5",
    ):
        FusedCellStack("sgu", 2, 4, dropout=1.5)
    with pytest.raises(
        ValueError,
        match=r"argument `recurrent_dropout` must be a float in \[0, 1\]\. "
        r"Received: recurrent_dropout=-0\.1",
    ):
        FusedCellStack("gru", 2, 4, recurrent_dropout=-0.1)
    with pytest.raises(ValueError, match="argument `dropout`.*Received: dropout='0.2'"):
        FusedCellStack("lstm", 2, 4, dropout="0.2")
    with pytest.raises(
        ValueError, match="argument `implementation` must be 1 or 2.*implementation=3"
    ):
        FusedCellStack("gru", 2, 4, implementation=3)
    with pytest.raises(
        ValueError,
        match="argument `implementation` is for cell='gru' or 'lstm'.*"
        "cell='sgu', implementation=1",
    ):
        FusedCellStack("sgu", 2, 4, implementation=1)
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
    # with dropout, GRU/LSTM cells of different `implementation` draw
    # different masks: not one stack
    mixed = make_cells("gru", layers=1, dropout=0.2, implementation=1)
    mixed += make_cells("gru", layers=2, dropout=0.2)[1:]
    with pytest.raises(ValueError, match=r"argument `cells`.*cells\[1\]"):
        FusedCellStack.from_cells(mixed)
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
        # dropout masks in the compute dtype, per-gate recurrent ones included
        dropped = FusedCellStack(
            "lstm", 2, UNITS, dropout=0.2, recurrent_dropout=0.3, input_dim=FEATURES
        )
        outputs = dropped.get_layer(return_state=True)(x, training=True)
    finally:
        keras.config.set_dtype_policy(previous)
    compute = policy.split("_")[1]
    for output in outputs:
        assert keras.backend.standardize_dtype(output.dtype) == compute
        assert np.all(np.isfinite(np_(output).astype("float32")))
    assert stack.kernels_rest.dtype == "float32"
    for e, g in zip(expected, got, strict=True):
        assert keras.backend.standardize_dtype(g.dtype) == compute
        tolerance = 1e-2 if compute == "float16" else 5e-2
        np.testing.assert_allclose(
            np_(g).astype("float32"), np_(e).astype("float32"), atol=tolerance
        )
