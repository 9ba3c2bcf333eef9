"""RecurrentSequential: stacks, state sync, readout, nesting, saving."""

import keras
import numpy as np
import pytest
from keras import layers

import cellgraph as cg


def test_stack_equals_manual_steps(rng):
    first = cg.cells.SimpleRNNCell(6, input_dim=4)
    dense = layers.Dense(5)
    second = cg.cells.GRUCell(3)
    rnn = cg.RecurrentSequential(return_sequences=True, return_state=True)
    for layer in (first, dense, second):
        rnn.add(layer)
    x = rng.random((2, 5, 4)).astype("float32")
    y, h1, h2 = rnn(x)
    assert rnn.state_shapes == [(6,), (3,)]
    s1, s2 = np.zeros((2, 6), "float32"), np.zeros((2, 3), "float32")
    for t in range(5):
        out, s1 = first([x[:, t], s1])
        out, s2 = second([dense(out), s2])
        np.testing.assert_allclose(y[:, t], out, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(h1, s1, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(h2, s2, rtol=1e-5, atol=1e-6)


def test_state_sync_passes_states_along_the_stack(rng):
    first, second = cg.cells.LSTMCell(4, input_dim=3), cg.cells.LSTMCell(4)
    rnn = cg.RecurrentSequential(
        state_sync=True, return_state=True, layers=[first, second]
    )
    assert rnn.num_states == 2
    x = rng.random((2, 5, 3)).astype("float32")
    y, h, c = rnn(x)
    states = [np.zeros((2, 4), "float32")] * 2
    for t in range(5):
        out, *states = first([x[:, t], *states])
        out, *states = second([out, *states])
    np.testing.assert_allclose(y, out, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(c, states[1], rtol=1e-5, atol=1e-6)


def test_state_sync_needs_homogeneous_cells():
    rnn = cg.RecurrentSequential(state_sync=True)
    rnn.add(cg.cells.GRUCell(5))
    with pytest.raises(
        ValueError, match=r"same state shapes.*\[\(5,\)\].*\[\(5,\), \(5,\)\]"
    ):
        rnn.add(cg.cells.LSTMCell(5))
    with pytest.raises(ValueError, match="same state shapes"):
        rnn.add(cg.cells.GRUCell(6))


@pytest.mark.parametrize(
    "mode,op",
    [
        ("add", np.add),
        ("mul", np.multiply),
        ("avg", lambda a, b: (a + b) / 2),
        ("max", np.maximum),
    ],
)
def test_readout_modes(rng, mode, op):
    cell = cg.cells.SimpleRNNCell(3, input_dim=3)
    rnn = cg.RecurrentSequential(
        readout=mode, readout_activation="tanh", return_sequences=True, layers=[cell]
    )
    x = rng.random((2, 4, 3)).astype("float32")
    y = np.asarray(rnn(x))
    state = np.zeros((2, 3), "float32")
    previous = np.zeros((2, 3), "float32")
    for t in range(4):
        # Recurrent Shop's order: the activation acts on the fed-back output.
        combined = op(x[:, t], np.tanh(previous))
        previous, state = (np.asarray(v) for v in cell([combined, state]))
        np.testing.assert_allclose(y[:, t], previous, rtol=1e-5, atol=1e-6)


def test_readout_shape_mismatch_and_bad_arguments():
    rnn = cg.RecurrentSequential(readout="add", layers=[cg.cells.GRUCell(4)])
    with pytest.raises(ValueError, match=r"same shape.*\(4,\).*\(3,\)"):
        rnn(keras.Input((5, 3)))
    with pytest.raises(ValueError, match="readout"):
        cg.RecurrentSequential(readout="concat")
    with pytest.raises(ValueError, match="readout"):
        cg.RecurrentSequential(teacher_force=True)
    with pytest.raises(TypeError, match="get_cell"):
        cg.RecurrentSequential().add(cg.cells.GRUCell(2, input_dim=2).get_layer())
    with pytest.raises(TypeError, match="Keras layer"):
        cg.RecurrentSequential().add(np.tanh)
    built = cg.RecurrentSequential(layers=[cg.cells.GRUCell(2)])
    built(np.zeros((1, 2, 2), "float32"))
    with pytest.raises(ValueError, match="already built"):
        built.add(layers.Dense(2))
    with pytest.raises(ValueError, match="no layers"):
        cg.RecurrentSequential()(keras.Input((3, 2)))


def test_teacher_forcing_and_decode_in_a_stack(rng):
    cell = cg.cells.GRUCell(3, input_dim=3)
    tf_stack = cg.RecurrentSequential(
        readout="add", teacher_force=True, return_sequences=True, layers=[cell]
    )
    x = rng.random((2, 4, 3)).astype("float32")
    truth = rng.random((2, 4, 3)).astype("float32")
    y = np.asarray(tf_stack(x, ground_truth=truth, training=True))
    state = np.zeros((2, 3), "float32")
    for t in range(4):
        previous = truth[:, t - 1] if t else np.zeros((2, 3), "float32")
        out, state = cell([x[:, t] + previous, state])
        np.testing.assert_allclose(y[:, t], out, rtol=1e-5, atol=1e-6)

    decoder = cg.RecurrentSequential(
        readout="add",
        decode=True,
        output_length=4,
        return_sequences=True,
        layers=[cell],
    )
    seed = rng.random((2, 3)).astype("float32")
    free = cg.RecurrentSequential(readout="add", return_sequences=True, layers=[cell])
    np.testing.assert_allclose(
        decoder(seed), free(np.repeat(seed[:, None], 4, 1)), rtol=1e-6, atol=1e-6
    )


def test_nested_stack_as_cell(rng, tmp_path):
    inner = cg.RecurrentSequential(
        layers=[cg.cells.SimpleRNNCell(4, input_dim=3), cg.cells.LSTMCell(4)]
    )
    inner_cell = inner.get_cell()
    assert inner_cell.state_shapes == [(4,), (4,), (4,)]
    outer = cg.RecurrentSequential(
        return_sequences=True, layers=[inner_cell, layers.Dense(2)]
    )
    x = rng.random((2, 5, 3)).astype("float32")
    y = np.asarray(outer(x))
    states = [np.zeros((2, 4), "float32")] * 3
    dense = outer.stack[1]
    for t in range(5):
        out, *states = inner_cell([x[:, t], *states])
        np.testing.assert_allclose(y[:, t], dense(out), rtol=1e-5, atol=1e-6)
    model = keras.Model(i := keras.Input((None, 3)), outer(i))
    model.compile("adam", "mse")
    model.fit(x, np.zeros((2, 5, 2)), epochs=1, verbose=0)
    model.save(tmp_path / "nested.keras")
    loaded = keras.models.load_model(tmp_path / "nested.keras", safe_mode=True)
    np.testing.assert_array_equal(
        model.predict(x, verbose=0), loaded.predict(x, verbose=0)
    )


def test_stack_round_trip_with_every_option(rng, tmp_path):
    # A Dropout layer draws a mask at every step, which JAX's loop refuses
    # (test_per_step_dropout_is_refused_in_training_on_jax); the cell's own
    # dropout (one mask per sequence) works on every backend.
    per_step = keras.backend.backend() != "jax"
    rnn = cg.RecurrentSequential(
        readout="avg",
        readout_activation="tanh",
        teacher_force=True,
        state_initializer="learned",
        return_sequences=True,
        layers=[
            cg.cells.LSTMCell(3, dropout=0.1, recurrent_dropout=0.1),
            layers.Dropout(0.1 if per_step else 0.0),
            layers.Dense(3),
        ],
    )
    inputs, truth = keras.Input((None, 3)), keras.Input((None, 3))
    model = keras.Model([inputs, truth], rnn(inputs, ground_truth=truth))
    x = rng.random((4, 5, 3)).astype("float32")
    model.compile("adam", "mse")
    model.fit([x, x], x, epochs=1, verbose=0)
    model.save(tmp_path / "stack.keras")
    loaded = keras.models.load_model(tmp_path / "stack.keras", safe_mode=True)
    np.testing.assert_array_equal(
        model.predict([x, x], verbose=0), loaded.predict([x, x], verbose=0)
    )
    (layer,) = [lay for lay in loaded.layers if isinstance(lay, cg.RecurrentSequential)]
    assert layer.readout == "avg" and layer.teacher_force == 1.0
    assert [type(lay).__name__ for lay in layer.stack] == [
        "LSTMCell",
        "Dropout",
        "Dense",
    ]


@pytest.mark.skipif(keras.backend.backend() != "jax", reason="a JAX-only limit")
def test_per_step_dropout_is_refused_in_training_on_jax(rng):
    rnn = cg.RecurrentSequential(
        layers=[cg.cells.GRUCell(3), layers.Dropout(0.5, name="drop")],
        return_sequences=True,
    )
    x = rng.random((2, 4, 3)).astype("float32")
    rnn(x)  # inference draws nothing
    with pytest.raises(ValueError, match="Dropout 'drop'.*JAX backend"):
        rnn(x, training=True)


def test_stack_equals_keras_stacked_cells(rng):
    """Two LSTM cells in a stack equal keras.layers.RNN(StackedRNNCells)."""
    keras_rnn = layers.RNN(
        [layers.LSTMCell(4), layers.LSTMCell(3)], return_sequences=True
    )
    x = rng.random((2, 6, 5)).astype("float32")
    expected = keras_rnn(x)
    rnn = cg.RecurrentSequential(
        return_sequences=True, layers=[cg.cells.LSTMCell(4), cg.cells.LSTMCell(3)]
    )
    rnn.build((None, None, 5))
    rnn.set_weights(keras_rnn.get_weights())
    np.testing.assert_allclose(rnn(x), expected, atol=1e-5)
