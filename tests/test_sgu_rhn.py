"""Tests of SGUCell and RHNCell against NumPy recomputations of their formulas."""

import re

import keras
import numpy as np
import pytest

from cellgraph.cells.rhn import RHNCell
from cellgraph.cells.sgu import SGUCell

ATOL = 1e-5
BATCH, TIME, INPUT_DIM, UNITS = 3, 6, 4, 5


# -- NumPy references ----------------------------------------------------------------


def _np_sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def _np_hard_sigmoid(z):
    # Keras 3's hard_sigmoid: relu6(z + 3) / 6.
    return np.clip(z / 6.0 + 0.5, 0.0, 1.0)


NP_ACTIVATIONS = {
    "tanh": np.tanh,
    "relu": lambda z: np.maximum(z, 0.0),
    "linear": lambda z: z,
    "sigmoid": _np_sigmoid,
    "hard_sigmoid": _np_hard_sigmoid,
}


def _np_sgu_step(x, h, weights, activation="tanh", gate="hard_sigmoid", masks=None):
    """`out = f*h + (1-f)*act(x·W3 + b3)`, `f = gate(x·W2 + h·W1 + b_f)`."""
    kernel, recurrent_kernel, *bias = weights
    x_in, h_in = x, h
    if masks is not None:
        x_in = x * masks[0] if masks[0] is not None else x
        h_in = h * masks[1] if masks[1] is not None else h
    z = x_in @ kernel + (bias[0] if bias else 0.0)
    z_f, z_c = np.split(z, 2, axis=-1)
    f = NP_ACTIVATIONS[gate](z_f + h_in @ recurrent_kernel)
    return f * h + (1.0 - f) * NP_ACTIVATIONS[activation](z_c)


def _np_rhn_step(x, s, weights, activation="tanh", masks=None):
    """Zilly et al. 2017, coupled carry gate; input enters layer 1 only."""
    kernel, recurrent_kernel, *bias = weights
    x_mask, h_masks = masks if masks is not None else (None, None)
    x_proj = (x * x_mask if x_mask is not None else x) @ kernel
    for depth in range(recurrent_kernel.shape[0]):
        s_in = s * h_masks[depth] if h_masks is not None else s
        z = s_in @ recurrent_kernel[depth]
        if depth == 0:
            z = z + x_proj
        if bias:
            z = z + bias[0][depth]
        z_h, z_t = np.split(z, 2, axis=-1)
        h = NP_ACTIVATIONS[activation](z_h)
        t = _np_sigmoid(z_t)
        s = h * t + s * (1.0 - t)
    return s


def _np_loop(step, xs, state, weights, **kwargs):
    """Runs `step` over the time axis; returns `(batch, time, units)`."""
    outputs = []
    for t in range(xs.shape[1]):
        state = step(xs[:, t], state, weights, **kwargs)
        outputs.append(state)
    return np.stack(outputs, axis=1)


# -- helpers -------------------------------------------------------------------------


def _rng(seed=0):
    return np.random.default_rng(seed)


def _build(cell):
    cell([keras.Input((INPUT_DIM,)), keras.Input((UNITS,))])
    return cell


def _randomize(cell, seed=0, scale=0.7):
    """Sets every weight (biases included) to random values; returns them."""
    rng = _rng(seed)
    weights = [
        rng.normal(scale=scale, size=w.shape).astype("float32") for w in cell.weights
    ]
    cell.set_weights(weights)
    return weights


def _data(seed=1, scale=1.0):
    rng = _rng(seed)
    x = rng.normal(scale=scale, size=(BATCH, INPUT_DIM)).astype("float32")
    h = rng.normal(scale=scale, size=(BATCH, UNITS)).astype("float32")
    return x, h


def _sequence(seed=2):
    return _rng(seed).normal(size=(BATCH, TIME, INPUT_DIM)).astype("float32")


def _np(value):
    return keras.ops.convert_to_numpy(value)


def _step_layer(cell):
    # A built-in cell is one layer: it owns its weights and its dropout masks.
    assert cell.model is None and hasattr(cell, "begin_sequence")
    return cell


def _make(kind, **kwargs):
    """`kind` is "sgu" or "rhn-<depth>"."""
    if kind == "sgu":
        return SGUCell(UNITS, input_dim=INPUT_DIM, **kwargs)
    depth = int(kind.split("-")[1])
    return RHNCell(UNITS, depth, input_dim=INPUT_DIM, **kwargs)


def _np_step_for(name):
    return _np_sgu_step if name == "sgu" else _np_rhn_step


CELL_NAMES = ["sgu", "rhn-1", "rhn-3"]

SGU_VARIANTS = [
    pytest.param({}, id="default"),
    pytest.param({"gate_activation": "sigmoid"}, id="sigmoid_gate"),
    pytest.param({"activation": "relu", "use_bias": False}, id="relu-nobias"),
]

RHN_VARIANTS = [
    pytest.param(1, {}, id="depth1"),
    pytest.param(3, {}, id="depth3"),
    pytest.param(3, {"activation": "relu", "use_bias": False}, id="depth3-relu-nobias"),
]


def _np_kwargs(kwargs, sgu=True):
    out = {"activation": kwargs.get("activation", "tanh")}
    if sgu:
        out["gate"] = kwargs.get("gate_activation", "hard_sigmoid")
    return out


# -- weights layout ------------------------------------------------------------------


def test_sgu_weights_layout():
    cell = _build(SGUCell(UNITS))
    assert [(w.name, tuple(w.shape)) for w in cell.weights] == [
        ("kernel", (INPUT_DIM, 2 * UNITS)),
        ("recurrent_kernel", (UNITS, UNITS)),
        ("bias", (2 * UNITS,)),
    ]
    assert cell.state_shapes == [(UNITS,)]
    assert cell.num_states == 1
    assert len(_build(SGUCell(UNITS, use_bias=False)).weights) == 2


@pytest.mark.parametrize("depth", [1, 3])
def test_rhn_weights_layout(depth):
    cell = _build(RHNCell(UNITS, depth))
    assert [(w.name, tuple(w.shape)) for w in cell.weights] == [
        ("kernel", (INPUT_DIM, 2 * UNITS)),
        ("recurrent_kernel", (depth, UNITS, 2 * UNITS)),
        ("bias", (depth, 2 * UNITS)),
    ]
    assert cell.state_shapes == [(UNITS,)]
    # Candidate biases start at zero, transform biases at -2.
    bias = cell.weights[2].numpy()
    np.testing.assert_array_equal(bias[:, :UNITS], 0.0)
    np.testing.assert_array_equal(bias[:, UNITS:], -2.0)


def test_rhn_transform_bias_initializer_accepts_a_number_or_an_initializer():
    cell = _build(RHNCell(UNITS, 2, transform_bias_initializer=-1))
    np.testing.assert_array_equal(cell.weights[2].numpy()[:, UNITS:], -1.0)
    cell = _build(RHNCell(UNITS, 2, transform_bias_initializer="ones"))
    np.testing.assert_array_equal(cell.weights[2].numpy()[:, UNITS:], 1.0)


@pytest.mark.parametrize(
    "initializer", ["orthogonal", keras.initializers.Orthogonal(seed=7)]
)
def test_rhn_recurrent_kernel_slices_are_distinct_and_orthogonal(initializer):
    cell = _build(RHNCell(UNITS, 3, recurrent_initializer=initializer))
    kernel = cell.weights[1].numpy()
    for depth in range(3):
        np.testing.assert_allclose(
            kernel[depth] @ kernel[depth].T, np.eye(UNITS), atol=1e-5
        )
    assert not np.allclose(kernel[0], kernel[1])
    assert not np.allclose(kernel[1], kernel[2])


# -- one step ------------------------------------------------------------------------


@pytest.mark.parametrize("kwargs", SGU_VARIANTS)
def test_sgu_step_matches_numpy(kwargs):
    cell = _build(SGUCell(UNITS, **kwargs))
    weights = _randomize(cell, scale=1.5)  # large enough to saturate some gates
    x, h = _data()
    output, new_state = cell([x, h])
    expected = _np_sgu_step(x, h, weights, **_np_kwargs(kwargs))
    np.testing.assert_allclose(_np(output), expected, atol=ATOL, rtol=ATOL)
    np.testing.assert_array_equal(_np(output), _np(new_state))


@pytest.mark.parametrize("depth, kwargs", RHN_VARIANTS)
def test_rhn_step_matches_numpy(depth, kwargs):
    cell = _build(RHNCell(UNITS, depth, **kwargs))
    weights = _randomize(cell)
    x, h = _data()
    output, new_state = cell([x, h])
    expected = _np_rhn_step(x, h, weights, **_np_kwargs(kwargs, sgu=False))
    np.testing.assert_allclose(_np(output), expected, atol=ATOL, rtol=ATOL)
    np.testing.assert_array_equal(_np(output), _np(new_state))


def test_rhn_depth_1_is_one_highway_layer():
    # Spelled out for L = 1: s = h*t + s_tm1*(1-t) with the input in both.
    cell = _build(RHNCell(UNITS, 1))
    kernel, recurrent_kernel, bias = _randomize(cell)
    x, s = _data()
    z = x @ kernel + s @ recurrent_kernel[0] + bias[0]
    h, t = np.tanh(z[:, :UNITS]), _np_sigmoid(z[:, UNITS:])
    expected = h * t + s * (1.0 - t)
    np.testing.assert_allclose(_np(cell([x, s])[0]), expected, atol=ATOL, rtol=ATOL)


# -- the SGU gate --------------------------------------------------------------------


@pytest.mark.parametrize("gate", ["hard_sigmoid", "sigmoid"])
@pytest.mark.parametrize("scale", [0.5, 3.0, 30.0])
def test_sgu_output_is_a_convex_combination_of_state_and_candidate(gate, scale):
    # f in [0, 1] <=> out lies between h and the candidate c, elementwise.
    cell = _build(SGUCell(UNITS, gate_activation=gate))
    kernel, _, bias = _randomize(cell, seed=5, scale=scale)
    x, h = _data(seed=6, scale=scale)
    out = _np(cell([x, h])[0])
    candidate = np.tanh(x @ kernel[:, UNITS:] + bias[UNITS:])
    low, high = np.minimum(h, candidate), np.maximum(h, candidate)
    tol = 1e-5 * (1.0 + np.abs(h) + np.abs(candidate))
    assert np.all(out >= low - tol)
    assert np.all(out <= high + tol)
    # The recovered gate value itself lies in [0, 1].
    apart = np.abs(h - candidate) > 1e-2
    f = (out - candidate)[apart] / (h - candidate)[apart]
    assert np.all((f >= -1e-3) & (f <= 1.0 + 1e-3))


def test_sgu_saturated_gate_keeps_the_state_or_takes_the_candidate():
    cell = _build(SGUCell(UNITS))
    kernel, recurrent_kernel, bias = _randomize(cell)
    x, h = _data()
    candidate = np.tanh(x @ kernel[:, UNITS:] + bias[UNITS:])
    for gate_bias, expected in [(100.0, h), (-100.0, candidate)]:
        bias = bias.copy()
        bias[:UNITS] = gate_bias
        cell.set_weights([kernel, recurrent_kernel, bias])
        np.testing.assert_allclose(_np(cell([x, h])[0]), expected, atol=1e-6)


# -- sequences: RecurrentModel vs. a NumPy loop ----------------------------------------


@pytest.mark.parametrize("kwargs", SGU_VARIANTS)
@pytest.mark.parametrize("unroll", [False, True])
def test_sgu_sequence_matches_numpy_loop(kwargs, unroll):
    cell = SGUCell(UNITS, input_dim=INPUT_DIM, **kwargs)
    rnn = cell.get_layer(return_sequences=True, unroll=unroll)
    weights = _randomize(cell)
    xs = _sequence()
    expected = _np_loop(
        _np_sgu_step,
        xs,
        np.zeros((BATCH, UNITS), "float32"),
        weights,
        **_np_kwargs(kwargs),
    )
    np.testing.assert_allclose(_np(rnn(xs)), expected, atol=ATOL, rtol=ATOL)


@pytest.mark.parametrize("depth, kwargs", RHN_VARIANTS)
@pytest.mark.parametrize("unroll", [False, True])
def test_rhn_sequence_matches_numpy_loop(depth, kwargs, unroll):
    cell = RHNCell(UNITS, depth, input_dim=INPUT_DIM, **kwargs)
    rnn = cell.get_layer(return_sequences=True, unroll=unroll)
    weights = _randomize(cell)
    xs = _sequence()
    expected = _np_loop(
        _np_rhn_step,
        xs,
        np.zeros((BATCH, UNITS), "float32"),
        weights,
        **_np_kwargs(kwargs, sgu=False),
    )
    np.testing.assert_allclose(_np(rnn(xs)), expected, atol=ATOL, rtol=ATOL)


@pytest.mark.parametrize("name", CELL_NAMES)
def test_sequence_from_initial_state_matches_numpy_loop(name):
    cell = _make(name)
    rnn = cell.get_layer(return_sequences=True, return_state=True)
    weights = _randomize(cell)
    xs = _sequence()
    h0 = _rng(3).normal(size=(BATCH, UNITS)).astype("float32")
    expected = _np_loop(_np_step_for(name), xs, h0, weights)
    outputs, final_state = rnn(xs, initial_state=[h0])
    np.testing.assert_allclose(_np(outputs), expected, atol=ATOL, rtol=ATOL)
    np.testing.assert_allclose(_np(final_state), expected[:, -1], atol=ATOL)


# -- dropout -------------------------------------------------------------------------


@pytest.mark.parametrize("name", CELL_NAMES)
def test_dropout_step_uses_the_sequence_masks(name):
    cell = _build(_make(name, dropout=0.4, recurrent_dropout=0.3, seed=2))
    weights = _randomize(cell)
    x, h = _data()
    step = _step_layer(cell)
    step.begin_sequence(BATCH, training=True)
    try:
        sequence_masks = step.dropout_masks(x, training=True)
        x_masks, h_masks = ([_np(m) for m in masks] for masks in sequence_masks)
        first = _np(cell([x, h], training=True)[0])
        second = _np(cell([x, h], training=True)[0])
    finally:
        step.end_sequence()
    np.testing.assert_array_equal(first, second)
    assert len(x_masks) == 1
    if name == "sgu":
        assert len(h_masks) == 1
        expected = _np_sgu_step(x, h, weights, masks=(x_masks[0], h_masks[0]))
    else:
        depth = int(name.split("-")[1])
        assert len(h_masks) == depth  # one recurrent mask per highway layer
        if depth > 1:
            assert not np.array_equal(h_masks[0], h_masks[1])
        expected = _np_rhn_step(x, h, weights, masks=(x_masks[0], h_masks))
    np.testing.assert_allclose(first, expected, atol=ATOL, rtol=ATOL)


@pytest.mark.parametrize("name", CELL_NAMES)
def test_dropout_is_inactive_in_inference(name):
    cell = _make(name, dropout=0.5, recurrent_dropout=0.5, seed=1)
    rnn = cell.get_layer(return_sequences=True)
    weights = _randomize(cell)
    xs = _sequence()
    expected = _np_loop(
        _np_step_for(name), xs, np.zeros((BATCH, UNITS), "float32"), weights
    )
    np.testing.assert_allclose(_np(rnn(xs)), expected, atol=ATOL, rtol=ATOL)
    assert not np.allclose(_np(rnn(xs, training=True)), expected, atol=1e-3)


# -- training ------------------------------------------------------------------------


def _regression_task(n=256, time=8, seed=0):
    """Target: the running sum of the first feature, read at the last step."""
    rng = _rng(seed)
    x = rng.uniform(-1.0, 1.0, size=(n, time, INPUT_DIM)).astype("float32")
    y = x[:, :, :1].sum(axis=1) / np.sqrt(time)
    return x, y.astype("float32")


def _sequence_model(cell, time=8):
    inputs = keras.Input((time, INPUT_DIM))
    features = cell.get_layer()(inputs)
    outputs = keras.layers.Dense(1)(features)
    return keras.Model(inputs, outputs)


@pytest.mark.parametrize(
    "name, kwargs",
    [
        pytest.param("sgu", {}, id="sgu"),
        pytest.param("rhn-1", {}, id="rhn-1"),
        pytest.param("rhn-3", {}, id="rhn-3"),
        pytest.param("sgu", {"dropout": 0.1, "recurrent_dropout": 0.1}, id="sgu-drop"),
        pytest.param(
            "rhn-3", {"dropout": 0.1, "recurrent_dropout": 0.1}, id="rhn-3-drop"
        ),
    ],
)
def test_training_reduces_the_loss(name, kwargs):
    x, y = _regression_task()
    model = _sequence_model(_make(name, **kwargs))
    model.compile(optimizer=keras.optimizers.Adam(0.02), loss="mse")
    before = model.evaluate(x, y, batch_size=256, verbose=0)
    history = model.fit(x, y, epochs=8, batch_size=32, verbose=0)
    after = model.evaluate(x, y, batch_size=256, verbose=0)
    assert np.all(np.isfinite(history.history["loss"]))
    assert after < 0.5 * before, (before, after)


@pytest.mark.parametrize("name", CELL_NAMES)
def test_regularizers_add_losses(name):
    cell = _build(
        _make(
            name,
            kernel_regularizer="l2",
            recurrent_regularizer="l2",
            bias_regularizer="l1",
        )
    )
    x, h = _data()
    cell([x, h])
    assert len(cell.losses) == 3


# -- configuration and saving --------------------------------------------------------


@pytest.mark.parametrize("name", CELL_NAMES)
def test_config_round_trip(name):
    extra = {"gate_activation": "sigmoid"} if name == "sgu" else {}
    cell = _make(
        name,
        activation="relu",
        kernel_regularizer="l2",
        recurrent_constraint="non_neg",
        dropout=0.1,
        seed=4,
        name="my_cell",
        **extra,
    )
    config = cell.get_config()
    clone = type(cell).from_config(config)
    assert clone.get_config() == config
    serialized = keras.saving.serialize_keras_object(cell)
    assert serialized["registered_name"] == f"cellgraph>{type(cell).__name__}"
    step = _step_layer(_build(cell))
    step_config = step.get_config()
    assert type(step).from_config(step_config).get_config() == step_config
    if name == "sgu":
        assert config["gate_activation"] == "sigmoid"
    else:
        assert config["recurrence_depth"] == int(name.split("-")[1])
        assert step_config["recurrence_depth"] == config["recurrence_depth"]


@pytest.mark.parametrize("name", CELL_NAMES)
def test_save_load_round_trip_is_bit_identical(name, tmp_path):
    cell = _make(name, dropout=0.1, recurrent_dropout=0.1, seed=3)
    model = _sequence_model(cell, time=TIME)
    _randomize(cell, seed=9)
    xs = _sequence()
    expected = model.predict(xs, verbose=0)

    path = tmp_path / "m.keras"
    model.save(path)
    loaded = keras.models.load_model(path, safe_mode=True)
    np.testing.assert_array_equal(loaded.predict(xs, verbose=0), expected)
    for a, b in zip(loaded.get_weights(), model.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)


# -- bad arguments -------------------------------------------------------------------


@pytest.mark.parametrize("units", [0, -3, 2.5, True])
def test_bad_units_raise(units):
    with pytest.raises(ValueError, match=re.escape(f"units={units!r}")) as info:
        SGUCell(units)
    assert "`units`" in str(info.value)
    with pytest.raises(ValueError, match=re.escape(f"units={units!r}")):
        RHNCell(units, 2)


@pytest.mark.parametrize("depth", [0, -1, 1.5, True, "2"])
def test_bad_recurrence_depth_raises(depth):
    with pytest.raises(ValueError, match=re.escape(f"recurrence_depth={depth!r}")):
        RHNCell(4, depth)
    with pytest.raises(ValueError, match="`recurrence_depth` must be a positive"):
        RHNCell(4, depth)


@pytest.mark.parametrize("name", CELL_NAMES)
def test_bad_dropout_and_input_shape_raise(name):
    with pytest.raises(ValueError, match="dropout=1.5"):
        _make(name, dropout=1.5)
    cell = _make(name)
    with pytest.raises(ValueError, match="features"):
        cell([keras.Input((3, 2)), keras.Input((UNITS,))])
