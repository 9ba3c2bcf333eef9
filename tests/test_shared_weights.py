"""Models whose layers share weights save and load back exactly, or refuse to save."""

import keras
import numpy as np
from keras import layers

import cellgraph as cg

X = np.random.default_rng(0).normal(size=(2, 5, 3)).astype("float32")


def graph_with(dense):
    x_t, h_tm1 = keras.Input((3,)), keras.Input((3,))
    h_t = dense(layers.Add()([x_t, h_tm1]))
    return cg.RecurrentModel(
        input=x_t,
        output=h_t,
        initial_states=[h_tm1],
        final_states=[h_t],
        return_sequences=True,
    )


def round_trip(model, tmp_path):
    path = tmp_path / "shared.keras"
    model.save(path)
    loaded = keras.models.load_model(path, safe_mode=True)
    np.testing.assert_array_equal(
        loaded.predict(X, verbose=0), model.predict(X, verbose=0)
    )
    assert len(loaded.weights) == len(model.weights)
    return loaded


def test_recurrent_model_and_its_own_cell_share_weights_after_loading(tmp_path):
    rnn = graph_with(layers.Dense(3))
    stack = cg.RecurrentSequential(layers=[rnn.get_cell()], return_sequences=True)
    x = keras.Input((5, 3))
    loaded = round_trip(keras.Model(x, stack(rnn(x))), tmp_path)
    first, second = loaded.layers[1], loaded.layers[2]
    assert second.cells[0].model is first.step_model  # still one set of weights


def test_one_system_in_two_superloops_shares_weights_after_loading(tmp_path):
    memory = cg.systems.RegisterMemory(2, 3)
    a = cg.Superloop(layers=1, units=3, systems=[memory])
    b = cg.Superloop(layers=1, units=3, systems=[memory])
    x = keras.Input((5, 3))
    loaded = round_trip(keras.Model(x, b(a(x))), tmp_path)
    assert loaded.layers[1].systems[0] is loaded.layers[2].systems[0]


def test_one_recurrent_model_called_twice_ties_weights(tmp_path):
    rnn = cg.cells.GRUCell(3, input_dim=3).get_layer(return_sequences=True)
    x = keras.Input((5, 3))
    round_trip(keras.Model(x, rnn(rnn(x))), tmp_path)


def test_layer_in_the_step_graph_and_the_outer_model_loads(tmp_path):
    dense = layers.Dense(3, name="tied")
    rnn = graph_with(dense)
    x = keras.Input((5, 3))
    model = keras.Model(x, dense(rnn(x)))
    loaded = round_trip(model, tmp_path)
    outer = loaded.get_layer("tied")
    inner = loaded.layers[1].step_model.get_layer("tied")
    assert outer is inner  # one layer, one set of weights
    assert len(loaded.weights) == 2  # kernel and bias, once
    for got, want in zip(loaded.get_weights(), model.get_weights()):
        np.testing.assert_array_equal(got, want)
    # Saved again, the loaded model loads back with the same numbers.
    round_trip(loaded, tmp_path)


def test_layer_shared_with_the_outer_model_before_the_step_graph_loads(tmp_path):
    dense = layers.Dense(3, name="tied")
    rnn = graph_with(dense)
    x = keras.Input((5, 3))
    model = keras.Model(x, rnn(dense(x)))  # the outer call comes first
    loaded = round_trip(model, tmp_path)
    assert loaded.get_layer("tied") is loaded.layers[2].step_model.get_layer("tied")


def test_layer_shared_by_two_step_graphs_and_the_outer_model_loads(tmp_path):
    dense = layers.Dense(3, name="tied")
    a, b = graph_with(dense), graph_with(dense)
    x = keras.Input((5, 3))
    loaded = round_trip(keras.Model(x, dense(b(a(x)))), tmp_path)
    first, second = loaded.layers[1], loaded.layers[2]
    tied = loaded.get_layer("tied")
    assert first.step_model.get_layer("tied") is tied
    assert second.step_model.get_layer("tied") is tied
    assert len(loaded.weights) == 2


def test_layer_in_a_nested_step_graph_and_the_outer_model_loads(tmp_path):
    dense = layers.Dense(3, name="tied")
    inner = graph_with(dense)  # runs over the 4 items of each outer step
    x_t, h_tm1 = keras.Input((4, 3)), keras.Input((4, 3))
    h_t = layers.Add()([inner(x_t), h_tm1])
    outer = cg.RecurrentModel(
        input=x_t, output=h_t, initial_states=[h_tm1], final_states=[h_t]
    )
    x = keras.Input((2, 4, 3))
    model = keras.Model(x, dense(outer(x)))
    path = tmp_path / "nested.keras"
    model.save(path)
    loaded = keras.models.load_model(path, safe_mode=True)
    data = np.random.default_rng(1).normal(size=(2, 2, 4, 3)).astype("float32")
    np.testing.assert_array_equal(
        loaded.predict(data, verbose=0), model.predict(data, verbose=0)
    )
    nested = loaded.layers[1].step_model.layers[1]
    assert nested.step_model.get_layer("tied") is loaded.get_layer("tied")
    assert len(loaded.weights) == 2


def test_layer_in_a_recurrent_sequential_and_the_outer_model_loads(tmp_path):
    dense = layers.Dense(3, name="tied")
    stack = cg.RecurrentSequential(
        layers=[cg.cells.GRUCell(3, input_dim=3), dense], return_sequences=True
    )
    x = keras.Input((5, 3))
    model = keras.Model(x, dense(stack(x)))
    loaded = round_trip(model, tmp_path)
    tied = loaded.get_layer("tied")
    assert loaded.layers[1].stack[1] is tied
    assert loaded.layers[1].step_model.get_layer("tied") is tied
    round_trip(loaded, tmp_path)  # and again


def test_cell_in_a_recurrent_sequential_and_a_cell_layer_loads(tmp_path):
    cell = cg.cells.GRUCell(3, input_dim=3, name="shared_gru")
    stack = cg.RecurrentSequential(layers=[cell], return_sequences=True)
    x = keras.Input((5, 3))
    model = keras.Model(x, stack(cell.get_layer(return_sequences=True)(x)))
    loaded = round_trip(model, tmp_path)
    first, second = loaded.layers[1], loaded.layers[2]
    assert second.cells[0] is first.step_model.get_layer("shared_gru")


def test_layer_in_a_keras_sub_model_of_the_step_graph_and_the_outer_model_loads(
    tmp_path,
):
    dense = layers.Dense(3, name="tied")
    a = keras.Input((3,))
    inner = keras.Model(a, dense(a), name="inner")
    rnn = graph_with(inner)
    x = keras.Input((5, 3))
    loaded = round_trip(keras.Model(x, dense(rnn(x))), tmp_path)
    inner = loaded.layers[1].step_model.get_layer("inner")
    assert inner.get_layer("tied") is loaded.get_layer("tied")
    assert len(loaded.weights) == 2


def test_keras_sub_model_in_the_step_graph_and_the_outer_model_ties_weights(
    tmp_path,
):
    a = keras.Input((3,))
    inner = keras.Model(a, layers.Dense(3, name="tied")(a), name="inner")
    rnn = graph_with(inner)
    x, x_0 = keras.Input((5, 3)), keras.Input((3,))
    model = keras.Model([x, x_0], [rnn(x), inner(x_0)])
    model.save(tmp_path / "sub.keras")
    loaded = keras.models.load_model(tmp_path / "sub.keras", safe_mode=True)
    data = [X, X[:, 0]]
    for got, want in zip(
        loaded.predict(data, verbose=0), model.predict(data, verbose=0)
    ):
        np.testing.assert_array_equal(got, want)
    outer = loaded.get_layer("inner")
    (sequence_layer,) = [la for la in loaded.layers if hasattr(la, "step_model")]
    in_step = sequence_layer.step_model.get_layer("inner")
    assert outer.get_layer("tied") is in_step.get_layer("tied")  # one Dense
    assert len(loaded.weights) == 2


def test_step_graph_calling_a_functional_model_twice_loads(tmp_path):
    # Keras numbers a nested functional model's calls from 1 in a config's
    # outputs and from 0 in the calls' arguments; the replay follows both.
    a = keras.Input((3,))
    inner = keras.Model(a, layers.Dense(3)(a), name="inner")
    x_t, h_tm1 = keras.Input((3,)), keras.Input((3,))
    h_t = inner(inner(layers.Add()([x_t, h_tm1])))
    rnn = cg.RecurrentModel(
        input=x_t,
        output=h_t,
        initial_states=[h_tm1],
        final_states=[h_t],
        return_sequences=True,
    )
    x = keras.Input((5, 3))
    model = keras.Model(x, rnn(x))
    loaded = round_trip(model, tmp_path)
    twice = inner(inner(X[:, 0] + 0.0))  # h_0 = 0: step 1 is inner(inner(x_0))
    np.testing.assert_allclose(
        loaded.predict(X, verbose=0)[:, 0], np.asarray(twice), rtol=1e-6
    )


def test_one_cell_in_two_sequence_layers_loads_with_tied_weights(tmp_path):
    cell = cg.cells.GRUCell(3, input_dim=3, name="shared_gru")
    a = cell.get_layer(return_sequences=True)
    b = cell.get_layer(return_sequences=True)
    x = keras.Input((5, 3))
    loaded = round_trip(keras.Model(x, b(a(x))), tmp_path)
    first, second = loaded.layers[1], loaded.layers[2]
    cells = [
        [la for la in rnn.step_model.layers if la.name == "shared_gru"][0]
        for rnn in (first, second)
    ]
    assert cells[0] is cells[1]  # one cell, one set of weights


def test_a_cell_layer_is_saved_as_its_cell(tmp_path):
    rnn = cg.cells.LSTMCell(3, input_dim=3).get_layer(return_sequences=True)
    config = rnn.get_config()
    assert "cell" in config and "step_model" not in config
    x = keras.Input((5, 3))
    round_trip(keras.Model(x, rnn(x)), tmp_path)
