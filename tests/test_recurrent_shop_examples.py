"""The Recurrent Shop README's examples, run on cellgraph with only DESIGN.md's renames.

Renames: `from recurrentshop import *` -> `from cellgraph import *` plus
`from cellgraph.cells import *`; Keras 2's `Input(shape=...)`/`add` are Keras 3's.
"""

import numpy as np
from keras.layers import Activation, Dense, Input, add
from keras.models import Model

from cellgraph import RecurrentModel, RecurrentSequential
from cellgraph.cells import GRUCell, LSTMCell, SimpleRNNCell


def test_simple_rnn_with_functional_api():
    x_t = Input(shape=(5,))
    h_tm1 = Input(shape=(10,))
    h_t = add([Dense(10)(x_t), Dense(10, use_bias=False)(h_tm1)])
    h_t = Activation("tanh")(h_t)
    rnn = RecurrentModel(
        input=x_t, initial_states=[h_tm1], output=h_t, final_states=[h_t]
    )
    x = Input(shape=(7, 5))
    y = rnn(x)
    model = Model(x, y)
    out = model.predict(np.random.random((1, 7, 5)), verbose=0)
    assert out.shape == (1, 10)

    rnn2 = RecurrentModel(
        input=x_t,
        initial_states=[h_tm1],
        output=h_t,
        final_states=[h_t],
        return_sequences=True,
    )
    x = Input(shape=(None, 5))
    model2 = Model(x, rnn2(x))
    sequence = np.random.random((1, 7, 5))
    out2 = model2.predict(sequence, verbose=0)
    assert out2.shape == (1, 7, 10)
    # both layers share the step graph's weights: the last step is rnn's output
    np.testing.assert_allclose(
        out2[:, -1], model.predict(sequence, verbose=0), atol=1e-6
    )


def test_cell_get_layer():
    lstm_cell = LSTMCell(10, input_dim=5)
    lstm_layer = lstm_cell.get_layer()
    assert lstm_layer(np.zeros((2, 7, 5), "float32")).shape == (2, 10)
    lstm_layer = lstm_cell.get_layer(return_sequences=True, unroll=True)
    assert lstm_layer(np.zeros((2, 7, 5), "float32")).shape == (2, 7, 10)


def test_recurrent_sequential_and_nesting():
    rnn = RecurrentSequential(unroll=False, return_sequences=False)
    rnn.add(SimpleRNNCell(10, input_dim=5))
    assert rnn(np.zeros((2, 7, 5), "float32")).shape == (2, 10)

    rnn1 = RecurrentSequential()
    rnn1.add(SimpleRNNCell(10, input_dim=5))
    rnn1_cell = rnn1.get_cell()
    rnn2 = RecurrentSequential()
    rnn2.add(rnn1_cell)
    assert rnn2(np.zeros((2, 7, 5), "float32")).shape == (2, 10)


def test_cells_in_functional_api():
    input = Input((5,))
    state1_tm1 = Input((10,))
    state2_tm1 = Input((10,))
    state3_tm1 = Input((10,))
    lstm_output, state1_t, state2_t = LSTMCell(10)([input, state1_tm1, state2_tm1])
    gru_output, state3_t = GRUCell(10)([input, state3_tm1])
    output = add([lstm_output, gru_output])
    output = Activation("tanh")(output)
    rnn = RecurrentModel(
        input=input,
        initial_states=[state1_tm1, state2_tm1, state3_tm1],
        output=output,
        final_states=[state1_t, state2_t, state3_t],
    )
    assert rnn(np.zeros((2, 4, 5), "float32")).shape == (2, 10)
