"""Models whose layers share weights save and load back exactly, or refuse to save."""

import keras
import numpy as np
import pytest
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


KERAS_NODE_LIMIT = (
    "Keras rebuilds a shared layer's calls by their index among all its calls: "
    "when the calls inside a step graph are rebuilt first, the outer graph's "
    "indices point at them. Not solved yet; a precise refusal at save time "
    "needs to know which graphs are saved together, which Keras does not expose."
)


@pytest.mark.xfail(strict=True, reason=KERAS_NODE_LIMIT)
def test_layer_in_the_step_graph_and_the_outer_model_loads(tmp_path):
    dense = layers.Dense(3, name="tied")
    rnn = graph_with(dense)
    x = keras.Input((5, 3))
    round_trip(keras.Model(x, dense(rnn(x))), tmp_path)


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
