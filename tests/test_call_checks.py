"""Bad call arguments get errors naming the argument, expected and received shape."""

import os

import keras
import numpy as np
import pytest
from keras import layers

import cellgraph as cg

pytestmark = pytest.mark.portable


def readout_layer(**options):
    x_t, h_tm1, y_tm1 = keras.Input((3,)), keras.Input((4,)), keras.Input((2,))
    data = keras.Input((5, 4))
    h_t = layers.Dense(4, activation="tanh")(
        layers.Concatenate()([x_t, h_tm1, y_tm1, layers.GlobalAveragePooling1D()(data)])
    )
    y_t = layers.Dense(2)(h_t)
    return cg.RecurrentModel(
        input=x_t,
        output=y_t,
        initial_states=[h_tm1],
        final_states=[h_t],
        readout_input=y_tm1,
        constants=[data],
        **options,
    )


X = np.zeros((2, 6, 3), "float32")
DATA = np.zeros((2, 5, 4), "float32")
TRUTH = np.zeros((2, 6, 2), "float32")

CASES = {
    "ground_truth feature size": (
        dict(ground_truth=np.zeros((2, 6, 3), "float32"), training=True),
        r"`ground_truth`.*\(2, 6, 2\).*Received: shape=\(2, 6, 3\)",
    ),
    "ground_truth one step short": (
        dict(ground_truth=np.zeros((2, 5, 2), "float32"), training=True),
        r"`ground_truth`.*\(2, 6, 2\).*Received: shape=\(2, 5, 2\)",
    ),
    "ground_truth one step long": (
        dict(ground_truth=np.zeros((2, 7, 2), "float32"), training=True),
        r"`ground_truth`.*Received: shape=\(2, 7, 2\)",
    ),
    "ground_truth rank": (
        dict(ground_truth=np.zeros((2, 6), "float32"), training=True),
        r"`ground_truth`.*Received: shape=\(2, 6\)",
    ),
    "mask time length": (
        dict(mask=np.ones((2, 5), bool)),
        r"`mask`.*\(2, 6\).*Received: shape=\(2, 5\)",
    ),
    "mask batch size": (
        dict(mask=np.ones((3, 6), bool)),
        r"`mask`.*\(2, 6\).*Received: shape=\(3, 6\)",
    ),
    "initial_state batch size": (
        dict(initial_state=[np.zeros((3, 4), "float32")]),
        r"`initial_state\[0\]`.*batch size 2.*Received: shape=\(3, 4\)",
    ),
    "constants batch size": (
        dict(constants=[np.zeros((3, 5, 4), "float32")]),
        r"`constants\[0\]`.*batch size 2.*Received: shape=\(3, 5, 4\)",
    ),
    "constants shape": (
        dict(constants=[np.zeros((2, 5, 3), "float32")]),
        r"`constants\[0\]`.*\(None, 5, 4\).*Received: shape=\(2, 5, 3\)",
    ),
    "initial_readout shape": (
        dict(initial_readout=np.zeros((2, 3), "float32")),
        r"`initial_readout`.*\(None, 2\).*Received: shape=\(2, 3\)",
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_call_argument_is_named(case):
    kwargs, message = CASES[case]
    rnn = readout_layer(teacher_force=True, return_sequences=True)
    kwargs = {"constants": [DATA], **kwargs}
    with pytest.raises(ValueError, match=message):
        rnn(X, **kwargs)


def test_initial_readout_without_readout_input_is_refused():
    cell = cg.cells.SimpleRNNCell(4, input_dim=3)
    rnn = cell.get_layer()
    with pytest.raises(ValueError, match=r"`initial_readout`.*no `readout_input`"):
        rnn(X, initial_readout=np.zeros((2, 4), "float32"))


def test_zero_length_sequence_is_refused():
    rnn = cg.cells.GRUCell(4, input_dim=3).get_layer()
    with pytest.raises(ValueError, match=r"`inputs`.*0 steps.*\(2, 0, 3\)"):
        rnn(np.zeros((2, 0, 3), "float32"))


def test_output_length_must_be_an_int_not_a_bool():
    with pytest.raises(ValueError, match="`output_length`.*output_length=True"):
        readout_layer(decode=True, output_length=True)


@pytest.mark.parametrize(
    "kwargs,message",
    [
        (
            dict(states=[np.zeros((2, 5), "float32")], constants=[DATA[:, :, :]]),
            r"`states\[0\]`.*\(None, 4\).*Received: shape=\(2, 5\)",
        ),
        (
            dict(states=[np.zeros((2, 4)), np.zeros((2, 4))], constants=[DATA]),
            r"`states`.*1 tensors.*Received 2",
        ),
        (dict(states=None), r"`constants`.*1 tensors.*Received 0"),
    ],
)
def test_step_arguments_are_checked(kwargs, message):
    rnn = readout_layer()
    rnn(X, constants=[DATA])
    with pytest.raises(ValueError, match=message):
        rnn.step(X[:, 0], **kwargs)


def test_superloop_refuses_suppressing_every_output():
    loop = cg.Superloop(
        layers=1, units=3, systems=[cg.systems.RegisterMemory(2, 2)], suppress_output=5
    )
    with pytest.raises(ValueError, match=r"first 5 outputs.*`suppress_output=5`"):
        loop(np.zeros((2, 3, 1), "float32"))
    assert loop(np.zeros((2, 7, 1), "float32")).shape == (2, 2, 3)


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="a TF graph")
def test_superloop_refuses_suppressing_every_output_at_run_time():
    loop = cg.Superloop(
        layers=1, units=3, systems=[cg.systems.RegisterMemory(2, 2)], suppress_output=5
    )
    x = keras.Input((None, 1))
    model = keras.Model(x, loop(x))
    with pytest.raises(Exception, match=r"more than 5 steps"):
        model.predict(np.zeros((2, 3, 1), "float32"), verbose=0)


def test_resumed_scheduled_sampling_equals_the_uninterrupted_run(tmp_path):
    """The sampling seed's state is saved: 2 epochs = 1, save, load, 1."""

    def build():
        keras.utils.set_random_seed(3)
        x_t, h_tm1, y_tm1 = keras.Input((3,)), keras.Input((4,)), keras.Input((2,))
        h_t = layers.Dense(4, activation="tanh")(
            layers.Concatenate()([x_t, h_tm1, y_tm1])
        )
        rnn = cg.RecurrentModel(
            input=x_t,
            output=layers.Dense(2)(h_t),
            initial_states=[h_tm1],
            final_states=[h_t],
            readout_input=y_tm1,
            teacher_force=0.5,
            return_sequences=True,
        )
        x, t = keras.Input((6, 3)), keras.Input((6, 2))
        model = keras.Model([x, t], rnn(x, ground_truth=t))
        model.compile("adam", "mse")
        return model

    rng = np.random.default_rng(0)
    xs = rng.normal(size=(16, 6, 3)).astype("float32")
    ts = rng.normal(size=(16, 6, 2)).astype("float32")
    fit = dict(batch_size=4, shuffle=False, verbose=0)
    whole = build()
    whole.fit([xs, ts], ts, epochs=2, **fit)
    first = build()
    first.fit([xs, ts], ts, epochs=1, **fit)
    path = os.path.join(tmp_path, "half.keras")
    first.save(path)
    resumed = keras.models.load_model(path)
    resumed.fit([xs, ts], ts, epochs=1, **fit)
    for a, b in zip(whole.get_weights(), resumed.get_weights()):
        np.testing.assert_array_equal(a, b)


class _PenaltyLayer(layers.Layer):
    """Adds the sum of its input as a loss (an `add_loss` inside a step)."""

    def call(self, x):
        self.add_loss(keras.ops.sum(x))
        return x


def test_add_loss_inside_the_step_graph_is_refused_at_the_first_call():
    x_t, h_tm1 = keras.Input((3,)), keras.Input((4,))
    dense = layers.Dense(4, kernel_regularizer="l2")  # weight losses are fine
    h_t = _PenaltyLayer(name="penalty")(dense(layers.Concatenate()([x_t, h_tm1])))
    with pytest.raises(ValueError, match=r"'penalty' \(_PenaltyLayer\).*add_loss"):
        # refused at construction on JAX (its loop drops losses), else at the call
        rnn = cg.RecurrentModel(
            input=x_t, output=h_t, initial_states=[h_tm1], final_states=[h_t]
        )
        rnn(X)


def test_weight_regularizers_inside_the_step_graph_still_train():
    x_t, h_tm1 = keras.Input((3,)), keras.Input((4,))
    h_t = layers.Dense(4, kernel_regularizer="l2")(layers.Concatenate()([x_t, h_tm1]))
    rnn = cg.RecurrentModel(
        input=x_t, output=h_t, initial_states=[h_tm1], final_states=[h_t]
    )
    model = keras.Sequential([keras.Input((6, 3)), rnn])
    model.compile("sgd", "mse")
    history = model.fit(X + 1.0, np.ones((2, 4), "float32"), epochs=2, verbose=0)
    assert history.history["loss"][1] < history.history["loss"][0]
    assert len(model.losses) == 1


@keras.saving.register_keras_serializable(package="cellgraph_tests")
class Halve(layers.Layer):
    """`0.5 * x` as a layer with a config: what replaces the Lambda."""

    def call(self, x):
        return 0.5 * x


def _halving_rnn(halve):
    x_t, h_tm1 = keras.Input((3,)), keras.Input((4,))
    h_t = layers.Dense(4, activation="tanh")(layers.Concatenate()([halve(x_t), h_tm1]))
    return cg.RecurrentModel(
        input=x_t, output=h_t, initial_states=[h_tm1], final_states=[h_t], name="qrn"
    )


def test_bidirectional_of_a_step_graph_with_a_lambda_names_the_fix():
    """Recurrent Shop's query reduction network wraps such a layer."""
    rnn = _halving_rnn(layers.Lambda(lambda t: 0.5 * t, name="halve"))
    with pytest.raises(
        ValueError,
        match=r"(?s)Lambda.*'forward_qrn'.*\['halve'\].*Bidirectional.*Layer subclass",
    ):
        layers.Bidirectional(rnn)
    # the fix the message names works
    both = layers.Bidirectional(_halving_rnn(Halve()))
    assert both(X).shape == (2, 8)
