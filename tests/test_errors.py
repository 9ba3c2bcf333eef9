"""Misuse of RecurrentModel and RNNCell fails early with a clear message."""

import keras
import numpy as np
import pytest
from keras import layers

import cellgraph as cg


def simple_graph(units=4, features=3):
    x_t, h_tm1 = keras.Input((features,)), keras.Input((units,))
    h_t = layers.Dense(units, activation="tanh")(layers.Concatenate()([x_t, h_tm1]))
    return x_t, h_tm1, h_t


def test_state_counts_differ():
    x_t, h_tm1, h_t = simple_graph()
    with pytest.raises(ValueError, match=r"same length.*1 initial_states and 2"):
        cg.RecurrentModel(
            input=x_t, output=h_t, initial_states=[h_tm1], final_states=[h_t, h_t]
        )


def test_final_state_shape_differs():
    x_t, h_tm1, h_t = simple_graph()
    wrong = layers.Dense(5)(h_t)
    with pytest.raises(
        ValueError, match=r"final_states\[0\].*\(None, 5\).*\(None, 4\)"
    ):
        cg.RecurrentModel(
            input=x_t, output=h_t, initial_states=[h_tm1], final_states=[wrong]
        )


def test_output_not_computed_from_inputs():
    x_t, h_tm1, h_t = simple_graph()
    stray = layers.Dense(4)(keras.Input((2,)))
    with pytest.raises(ValueError, match=r"`output` is not computed"):
        cg.RecurrentModel(
            input=x_t, output=stray, initial_states=[h_tm1], final_states=[h_t]
        )
    with pytest.raises(ValueError, match=r"`final_states\[0\]` is not computed"):
        cg.RecurrentModel(
            input=x_t, output=h_t, initial_states=[h_tm1], final_states=[stray]
        )


def test_final_states_without_initial_states():
    x_t, _, h_t = simple_graph()
    with pytest.raises(ValueError, match="without `initial_states`"):
        cg.RecurrentModel(input=x_t, output=h_t, final_states=[h_t])


def test_teacher_forcing_without_readout():
    x_t, h_tm1, h_t = simple_graph()
    with pytest.raises(ValueError, match="readout_input"):
        cg.RecurrentModel(
            input=x_t,
            output=h_t,
            initial_states=[h_tm1],
            final_states=[h_t],
            teacher_force=True,
        )
    with pytest.raises(ValueError, match=r"teacher_force.*\(0, 1\]"):
        cg.RecurrentModel(
            input=x_t,
            output=h_t,
            initial_states=[h_tm1],
            final_states=[h_t],
            teacher_force=1.5,
        )


def test_teacher_forcing_in_training_needs_ground_truth():
    x_t, h_tm1 = keras.Input((3,)), keras.Input((4,))
    r_tm1 = keras.Input((4,))
    h_t = layers.Dense(4)(layers.Concatenate()([x_t, h_tm1, r_tm1]))
    rnn = cg.RecurrentModel(
        input=x_t,
        output=h_t,
        initial_states=[h_tm1],
        final_states=[h_t],
        readout_input=r_tm1,
        teacher_force=True,
    )
    with pytest.raises(ValueError, match="ground_truth"):
        rnn(np.zeros((2, 3, 3), "float32"), training=True)


def test_decode_without_output_length():
    x_t, h_tm1, h_t = simple_graph()
    with pytest.raises(ValueError, match="output_length.*Received: output_length=None"):
        cg.RecurrentModel(
            input=x_t,
            output=h_t,
            initial_states=[h_tm1],
            final_states=[h_t],
            decode=True,
        )


def test_wrong_feature_size_of_call_input():
    x_t, h_tm1, h_t = simple_graph(features=3)
    rnn = cg.RecurrentModel(
        input=x_t, output=h_t, initial_states=[h_tm1], final_states=[h_t]
    )
    with pytest.raises(
        ValueError, match=r"`inputs`.*\(None, None, 3\).*\(None, 7, 6\)"
    ):
        rnn(keras.Input((7, 6)))
    with pytest.raises(ValueError, match=r"`inputs`"):
        rnn(np.zeros((2, 5, 4), "float32"))


def test_wrong_number_of_inputs():
    x_t, h_tm1, h_t = simple_graph()
    rnn = cg.RecurrentModel(
        input=x_t, output=h_t, initial_states=[h_tm1], final_states=[h_t]
    )
    with pytest.raises(ValueError, match="1 step inputs.*Received 2"):
        rnn([keras.Input((5, 3)), keras.Input((5, 3))])


def test_wrong_number_of_initial_states_at_call():
    x_t, h_tm1, h_t = simple_graph()
    rnn = cg.RecurrentModel(
        input=x_t, output=h_t, initial_states=[h_tm1], final_states=[h_t]
    )
    with pytest.raises(ValueError, match=r"`initial_state`.*1 tensors.*Received 2"):
        rnn(keras.Input((5, 3)), initial_state=[keras.Input((4,)), keras.Input((4,))])
    with pytest.raises(ValueError, match=r"initial_state\[0\]"):
        rnn(np.zeros((2, 5, 3), "float32"), initial_state=[np.zeros((2, 6), "float32")])


def test_wrong_number_of_constants():
    x_t, h_tm1 = keras.Input((3,)), keras.Input((4,))
    data = keras.Input((4,))
    h_t = layers.Add()([layers.Dense(4)(x_t), h_tm1, data])
    rnn = cg.RecurrentModel(
        input=x_t,
        output=h_t,
        initial_states=[h_tm1],
        final_states=[h_t],
        constants=[data],
    )
    with pytest.raises(ValueError, match="`constants`.*1 tensors.*Received 0"):
        rnn(np.zeros((2, 5, 3), "float32"))


def test_unroll_with_unknown_time():
    x_t, h_tm1, h_t = simple_graph()
    rnn = cg.RecurrentModel(
        input=x_t, output=h_t, initial_states=[h_tm1], final_states=[h_t], unroll=True
    )
    with pytest.raises(ValueError, match="unroll"):
        rnn(keras.Input((None, 3)))


def test_stateful_with_unknown_batch_size():
    x_t, h_tm1, h_t = simple_graph()
    rnn = cg.RecurrentModel(
        input=x_t, output=h_t, initial_states=[h_tm1], final_states=[h_t], stateful=True
    )
    with pytest.raises(ValueError, match="batch size"):
        rnn(keras.Input((5, 3)))


@pytest.mark.parametrize("bad", [np.zeros((3,)), "x", 3, None])
def test_non_keras_object_as_input(bad):
    _, h_tm1, h_t = simple_graph()
    error = ValueError if bad is None else TypeError
    with pytest.raises(error, match="`input`"):
        cg.RecurrentModel(
            input=bad, output=h_t, initial_states=[h_tm1], final_states=[h_t]
        )


def test_non_keras_object_as_state():
    x_t, _, h_t = simple_graph()
    with pytest.raises(TypeError, match=r"`initial_states\[0\]`.*ndarray"):
        cg.RecurrentModel(
            input=x_t, output=h_t, initial_states=[np.zeros(4)], final_states=[h_t]
        )


def test_state_with_unknown_dimension():
    x_t = keras.Input((3,))
    h_tm1 = keras.Input((None,))
    with pytest.raises(ValueError, match=r"initial_states\[0\].*fully known"):
        cg.RecurrentModel(
            input=x_t, output=x_t, initial_states=[h_tm1], final_states=[h_tm1]
        )


def test_readout_shape_must_match_output():
    x_t, h_tm1, h_t = simple_graph()
    readout = keras.Input((7,))
    with pytest.raises(ValueError, match="readout_input.*output"):
        cg.RecurrentModel(
            input=x_t,
            output=h_t,
            initial_states=[h_tm1],
            final_states=[h_t],
            readout_input=readout,
        )


def test_same_tensor_in_two_roles():
    x_t, h_tm1, h_t = simple_graph()
    with pytest.raises(ValueError, match="one role"):
        cg.RecurrentModel(
            input=x_t,
            output=h_t,
            initial_states=[h_tm1],
            final_states=[h_t],
            constants=[h_tm1],
        )


def test_output_must_be_one_tensor():
    x_t, h_tm1, h_t = simple_graph()
    with pytest.raises(ValueError, match="`output` must be one tensor"):
        cg.RecurrentModel(
            input=x_t, output=[h_t, h_t], initial_states=[h_tm1], final_states=[h_t]
        )


def test_cell_called_with_wrong_state_count_or_shape():
    x, h = keras.Input((3,)), keras.Input((4,))
    h_new = layers.Dense(4)(layers.Concatenate()([x, h]))
    cell = cg.RNNCell.from_model(keras.Model([x, h], [h_new, h_new]))
    with pytest.raises(ValueError, match="2 tensors"):
        cell([keras.Input((3,)), keras.Input((4,)), keras.Input((4,))])
    cell2 = cg.RNNCell.from_model(keras.Model([x, h], [h_new, h_new]))
    with pytest.raises(ValueError, match=r"state 0 must have shape \(None, 4\)"):
        cell2([keras.Input((3,)), keras.Input((5,))])


def test_cell_from_model_checks_the_model():
    with pytest.raises(TypeError, match="keras.Model"):
        cg.RNNCell.from_model(layers.Dense(3))
    x, h = keras.Input((3,)), keras.Input((4,))
    with pytest.raises(ValueError, match="as many outputs as inputs"):
        cg.RNNCell.from_model(keras.Model([x, h], [layers.Dense(4)(h)]))


def test_get_layer_needs_input_dim():
    class Bare(cg.RNNCell):
        state_shape = [(2,)]

    with pytest.raises(ValueError, match="input_dim"):
        Bare().get_layer()
    with pytest.raises(ValueError, match="input_dim"):
        Bare(input_dim=-1)


def test_bad_state_initializer():
    x_t, h_tm1, h_t = simple_graph()
    with pytest.raises(ValueError, match="state_initializer"):
        cg.RecurrentModel(
            input=x_t,
            output=h_t,
            initial_states=[h_tm1],
            final_states=[h_t],
            state_initializer="no_such_thing",
        )


def test_reset_states_on_non_stateful_layer():
    x_t, h_tm1, h_t = simple_graph()
    rnn = cg.RecurrentModel(
        input=x_t, output=h_t, initial_states=[h_tm1], final_states=[h_t]
    )
    with pytest.raises(ValueError, match="stateful"):
        rnn.reset_states()


@pytest.mark.parametrize("where", ["layer", "cell"])
def test_activity_regularizer_inside_the_step_is_refused(where):
    if where == "cell":
        with pytest.raises(ValueError, match="activity regularizer"):
            cg.cells.LSTMCell(4, activity_regularizer="l2", input_dim=3).get_layer()
        return
    x_t, h_tm1 = keras.Input((3,)), keras.Input((4,))
    h_t = keras.layers.Dense(4, activity_regularizer="l2", name="noisy")(
        keras.layers.Concatenate()([x_t, h_tm1])
    )
    with pytest.raises(ValueError, match="'noisy' .*activity regularizer"):
        cg.RecurrentModel(
            input=x_t, output=h_t, initial_states=[h_tm1], final_states=[h_t]
        )
