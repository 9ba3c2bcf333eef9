"""Saving: every public layer round-trips through .keras files in safe mode."""

import keras
import numpy as np
import pytest
from keras import layers

import cellgraph as cg


def round_trip(model, inputs, tmp_path):
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.models.load_model(path, safe_mode=True)
    before = model.predict(inputs, verbose=0)
    after = loaded.predict(inputs, verbose=0)
    for a, b in zip(keras.tree.flatten(before), keras.tree.flatten(after)):
        np.testing.assert_array_equal(a, b)
    return loaded


def trained(model, inputs, targets):
    """One fit step, so saved weights differ from any fresh initialisation."""
    model.compile(keras.optimizers.Adam(0.05), "mse")
    model.fit(inputs, targets, epochs=1, verbose=0)
    return model


@pytest.mark.parametrize("cell_class", ["SimpleRNNCell", "GRUCell", "LSTMCell"])
def test_builtin_cell_layers_round_trip(rng, tmp_path, cell_class):
    cell = getattr(cg.cells, cell_class)(6, input_dim=3)
    rnn = cell.get_layer(return_sequences=True)
    inputs = keras.Input((None, 3))
    model = keras.Model(inputs, rnn(inputs))
    x = rng.random((4, 5, 3)).astype("float32")
    trained(model, x, np.zeros((4, 5, 6)))
    loaded = round_trip(model, x, tmp_path)
    assert isinstance(loaded.layers[1], cg.RecurrentModel)


def test_cells_in_functional_step_graph_with_matrix_state(rng, tmp_path):
    x_t = keras.Input((3,))
    h1, c1, h2 = keras.Input((5,)), keras.Input((5,)), keras.Input((5,))
    memory = keras.Input((2, 5))
    lstm_out, h1_t, c1_t = cg.cells.LSTMCell(5)([x_t, h1, c1])
    gru_out, h2_t = cg.cells.GRUCell(5)([x_t, h2])
    mixed = layers.Activation("tanh")(layers.Add()([lstm_out, gru_out]))
    memory_t = layers.Add()([memory, layers.Reshape((1, 5))(mixed)])
    rnn = cg.RecurrentModel(
        input=x_t,
        output=mixed,
        initial_states=[h1, c1, h2, memory],
        final_states=[h1_t, c1_t, h2_t, memory_t],
        return_sequences=True,
        return_state=True,
    )
    inputs = keras.Input((None, 3))
    outputs = rnn(inputs)
    model = keras.Model(inputs, outputs)
    x = rng.random((4, 6, 3)).astype("float32")
    round_trip(model, x, tmp_path)


def test_several_inputs_constants_readout_teacher_forcing(rng, tmp_path):
    a_t, b_t = keras.Input((2,)), keras.Input((3,))
    h_tm1, readout = keras.Input((4,)), keras.Input((2,))
    data = keras.Input((5, 4))
    attended = layers.Dot(axes=(2, 1))([data, h_tm1])
    h_t = layers.Dense(4, activation="tanh")(
        layers.Concatenate()([a_t, b_t, h_tm1, readout, attended])
    )
    y_t = layers.Dense(2)(h_t)
    rnn = cg.RecurrentModel(
        input=[a_t, b_t],
        output=y_t,
        initial_states=[h_tm1],
        final_states=[h_t],
        readout_input=readout,
        constants=[data],
        teacher_force=0.5,
        state_initializer="learned",
        return_sequences=True,
    )
    xa, xb = keras.Input((None, 2)), keras.Input((None, 3))
    truth, given = keras.Input((None, 2)), keras.Input((5, 4))
    model = keras.Model(
        [xa, xb, truth, given], rnn([xa, xb], ground_truth=truth, constants=[given])
    )
    arrays = [
        rng.random((4, 6, 2)).astype("float32"),
        rng.random((4, 6, 3)).astype("float32"),
        rng.random((4, 6, 2)).astype("float32"),
        rng.random((4, 5, 4)).astype("float32"),
    ]
    trained(model, arrays, arrays[2])
    round_trip(model, arrays, tmp_path)


def test_stateful_decode_and_options_round_trip(rng, tmp_path):
    x_t, h_tm1 = keras.Input((3,)), keras.Input((4,))
    h_t = layers.Dense(4, activation="tanh")(layers.Concatenate()([x_t, h_tm1]))
    decoder = cg.RecurrentModel(
        input=x_t,
        output=h_t,
        initial_states=[h_tm1],
        final_states=[h_t],
        decode=True,
        output_length=5,
        return_sequences=True,
        state_initializer=keras.initializers.RandomNormal(seed=3),
    )
    inputs = keras.Input((3,))
    model = keras.Model(inputs, decoder(inputs))
    loaded = round_trip(model, rng.random((2, 3)).astype("float32"), tmp_path)
    config = loaded.layers[1].get_config()
    assert config["decode"] and config["output_length"] == 5

    stateful = cg.RecurrentModel(
        input=x_t,
        output=h_t,
        initial_states=[h_tm1],
        final_states=[h_t],
        stateful=True,
        go_backwards=True,
        unroll=True,
    )
    inputs = keras.Input(batch_shape=(2, 4, 3))
    model = keras.Model(inputs, stateful(inputs))
    x = rng.random((2, 4, 3)).astype("float32")
    model.predict(x, verbose=0)
    stateful.reset_states()
    path = tmp_path / "stateful.keras"
    model.save(path)
    loaded = keras.models.load_model(path, safe_mode=True)
    np.testing.assert_array_equal(
        model.predict(x, verbose=0), loaded.predict(x, verbose=0)
    )


def test_nested_cells_and_graph_cell_round_trip(rng, tmp_path):
    x, h = keras.Input((3,)), keras.Input((4,))
    h_new = layers.Dense(4, activation="tanh")(layers.Concatenate()([x, h]))
    from_model = cg.RNNCell.from_model(keras.Model([x, h], [h_new, h_new]))
    inner = from_model.get_layer()
    graph_cell = inner.get_cell()
    x_t, s_tm1 = keras.Input((3,)), keras.Input((4,))
    out, s_t = graph_cell([x_t, s_tm1])
    outer = cg.RecurrentModel(
        input=x_t,
        output=out,
        initial_states=[s_tm1],
        final_states=[s_t],
        return_sequences=True,
    )
    inputs = keras.Input((None, 3))
    model = keras.Model(inputs, outer(inputs))
    round_trip(model, rng.random((2, 5, 3)).astype("float32"), tmp_path)


def test_bidirectional_equals_keras_lstm(rng, tmp_path):
    x = rng.random((3, 6, 4)).astype("float32")
    reference = layers.Bidirectional(layers.LSTM(5, return_sequences=True))
    ref_model = keras.Model(i := keras.Input((None, 4)), reference(i))
    ours = layers.Bidirectional(
        cg.cells.LSTMCell(5, input_dim=4).get_layer(return_sequences=True)
    )
    model = keras.Model(j := keras.Input((None, 4)), ours(j))
    weights = ref_model.get_weights()
    assert [w.shape for w in model.get_weights()] == [w.shape for w in weights]
    model.set_weights(weights)
    np.testing.assert_allclose(
        model.predict(x, verbose=0), ref_model.predict(x, verbose=0), atol=1e-5
    )
    round_trip(model, x, tmp_path)


def test_bidirectional_with_state_and_mask(rng):
    x = rng.random((2, 5, 4)).astype("float32")
    x[0, 3:] = 0.0
    reference = layers.Bidirectional(layers.LSTM(3, return_state=True))
    ours = layers.Bidirectional(
        cg.cells.LSTMCell(3, input_dim=4).get_layer(return_state=True)
    )
    i = keras.Input((None, 4))
    ref_model = keras.Model(i, reference(layers.Masking()(i)))
    model = keras.Model(i, ours(layers.Masking()(i)))
    model.set_weights(ref_model.get_weights())
    for a, b in zip(model.predict(x, verbose=0), ref_model.predict(x, verbose=0)):
        np.testing.assert_allclose(a, b, atol=1e-5)


def test_unregistered_lambda_is_refused(rng, tmp_path):
    x_t, h_tm1 = keras.Input((3,)), keras.Input((3,))
    h_t = layers.Lambda(lambda t: t[0] + t[1])([x_t, h_tm1])
    rnn = cg.RecurrentModel(
        input=x_t, output=h_t, initial_states=[h_tm1], final_states=[h_t]
    )
    model = keras.Model(i := keras.Input((None, 3)), rnn(i))
    path = tmp_path / "lambda.keras"
    model.save(path)
    with pytest.raises(ValueError, match="(?i)lambda"):
        keras.models.load_model(path, safe_mode=True)


TF_ONLY = pytest.mark.skipif(
    keras.backend.backend() != "tensorflow",
    reason="SavedModel export and XLA jit_compile are TensorFlow features",
)


@TF_ONLY
def test_export_saved_model_serves_identical_outputs(rng, tmp_path):
    import tensorflow as tf

    rnn = cg.cells.LSTMCell(6, input_dim=3).get_layer(return_sequences=True)
    inputs = keras.Input((None, 3))
    model = keras.Model(inputs, layers.Dense(2)(rnn(inputs)))
    x = rng.random((2, 5, 3)).astype("float32")
    model.export(str(tmp_path / "served"), verbose=False)
    served = tf.saved_model.load(str(tmp_path / "served"))
    np.testing.assert_allclose(
        served.serve(x).numpy(), model.predict(x, verbose=0), atol=1e-6
    )
    longer = rng.random((3, 9, 3)).astype("float32")  # other batch and length
    np.testing.assert_allclose(
        served.serve(longer).numpy(), model.predict(longer, verbose=0), atol=1e-6
    )


@TF_ONLY
def test_xla_compiled_training_matches_plain(rng):
    x = rng.random((4, 5, 3)).astype("float32")
    y = rng.random((4, 2)).astype("float32")
    results = []
    for jit in (False, True):
        keras.utils.set_random_seed(3)
        rnn = cg.cells.GRUCell(4, input_dim=3).get_layer()
        model = keras.Model(i := keras.Input((5, 3)), layers.Dense(2)(rnn(i)))
        model.compile(keras.optimizers.SGD(0.1), "mse", jit_compile=jit)
        model.fit(x, y, epochs=2, batch_size=4, verbose=0)
        results.append(model.predict(x, verbose=0))
    np.testing.assert_allclose(results[0], results[1], atol=1e-5)
