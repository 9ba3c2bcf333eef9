"""XLA: every public cellgraph layer trains under `jit_compile=True` as without it.

On the TensorFlow backend `model.compile(jit_compile=True)` compiles the train
and predict steps with XLA. Each model of the safe-loading zoo (together they
hold every class cellgraph registers, which `test_safe_loading.py` checks) is
trained twice from the same weights on the same batch, with and without XLA,
and must give the same losses, weights and predictions. Teacher forcing,
decoding and masking, which the zoo does not exercise, get models of their own.
On JAX, Keras always compiles with XLA, so the portable runs cover it there.
"""

import keras
import numpy as np
import pytest
from keras import layers
from test_readout_teacher import readout_graph
from test_safe_loading import MODELS

import cellgraph as cg

pytestmark = pytest.mark.skipif(
    keras.backend.backend() != "tensorflow",
    reason="jit_compile=True is XLA on TensorFlow; JAX compiles with XLA anyway",
)


def teacher_forcing():
    rnn = cg.RecurrentModel(
        **readout_graph(), teacher_force=True, return_sequences=True
    )
    inputs, truth = keras.Input((None, 3)), keras.Input((None, 2))
    model = keras.Model([inputs, truth], rnn(inputs, ground_truth=truth))
    return model, [(2, 4, 3), (2, 4, 2)]


def decoding():
    rnn = cg.RecurrentModel(
        **readout_graph(), decode=True, output_length=4, return_sequences=True
    )
    inputs = keras.Input((3,))
    return keras.Model(inputs, rnn(inputs)), [(2, 3)]


def masked_lstm_backwards():
    rnn = cg.cells.LSTMCell(4, input_dim=3).get_layer(
        return_sequences=True, go_backwards=True
    )
    inputs = keras.Input((None, 3))
    return keras.Model(inputs, rnn(layers.Masking()(inputs))), [(2, 5, 3)]


def batch(shapes, name):
    rng = np.random.default_rng(0)
    data = [rng.normal(size=s).astype("float32") for s in shapes]
    if name == "masked_lstm_backwards":
        data[0][0, 3:] = 0.0  # the first sequence is 3 steps long
    return data if len(data) > 1 else data[0]


CASES = {
    **MODELS,
    "teacher_forcing": teacher_forcing,
    "decoding": decoding,
    "masked_lstm_backwards": masked_lstm_backwards,
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_xla_trains_and_predicts_like_the_graph(name):
    model, shapes = CASES[name]()
    x = batch(shapes, name)
    initial = model.get_weights()
    runs, y = {}, None
    for jit in (False, True):
        model.set_weights(initial)
        model.compile(keras.optimizers.SGD(0.05), "mse", jit_compile=jit)
        assert model.jit_compile is jit  # Keras turns XLA off for unfit layers
        if y is None:  # (one predict function, traced once, for this and the last)
            y = np.random.default_rng(1).normal(size=model.predict(x, verbose=0).shape)
        losses = [float(model.train_on_batch(x, y)) for _ in range(2)]
        runs[jit] = losses, model.get_weights(), model.predict(x, verbose=0)
    plain_losses, plain_weights, plain_out = runs[False]
    xla_losses, xla_weights, xla_out = runs[True]
    assert plain_losses[1] != plain_losses[0]  # the first step changed the weights
    np.testing.assert_allclose(xla_losses, plain_losses, rtol=1e-4)
    for xla_w, plain_w in zip(xla_weights, plain_weights, strict=True):
        np.testing.assert_allclose(xla_w, plain_w, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(xla_out, plain_out, rtol=1e-4, atol=1e-5)
