"""Finite differences agree with autodiff through each cell's sequence (float64).

The cells, feedback chains and trees (dense and convolutional feature-map
states) and a Spoerer et al. (2017) model: central differences of
`sum(layer(x) * probe)` against `tf.GradientTape`, for the input and a few
elements of every trainable weight.

TensorFlow only: Keras 3 computes float64 ops in float32 on JAX and PyTorch
(`keras.backend.result_type` maps float64 to float32 there), so float64
finite differences mean nothing on them. tests/test_systems.py checks the
systems' gradients on every backend in float32.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf
from keras import layers

import cellgraph as cg
from cellgraph.feedback import (
    FeedbackChain,
    FeedbackTree,
    Merger,
    Splitter,
    spoerer2017,
)

pytestmark = pytest.mark.skipif(
    keras.backend.backend() != "tensorflow",
    reason="float64 finite differences need float64 compute (TensorFlow backend)",
)

CELLS = {
    "simple_rnn": lambda: cg.cells.SimpleRNNCell(3, input_dim=2, dtype="float64"),
    "gru": lambda: cg.cells.GRUCell(3, input_dim=2, dtype="float64"),
    "gru_reset_before": lambda: cg.cells.GRUCell(
        3, input_dim=2, reset_after=False, dtype="float64"
    ),
    "lstm": lambda: cg.cells.LSTMCell(3, input_dim=2, dtype="float64"),
    "sgu": lambda: cg.cells.SGUCell(
        3, input_dim=2, gate_activation="sigmoid", dtype="float64"
    ),
    "rhn": lambda: cg.cells.RHNCell(3, 2, input_dim=2, dtype="float64"),
}


def perturbed(base, index, delta):
    """A copy of `base` with its flat element `index` moved by `delta`."""
    flat = base.reshape(-1).copy()
    flat[index] += delta
    return flat.reshape(base.shape)


def check_gradients(layer, x, rng, samples=6, eps=1e-6, rtol=1e-5, atol=1e-7):
    """Central differences equal autodiff for `x` and every trainable weight.

    The loss is `sum(layer(x) * probe)` with a fixed random probe; `samples`
    random elements of `x` and of each weight are checked.
    """
    x = tf.constant(x, dtype="float64")
    y = layer(x)
    assert y.dtype == tf.float64, y.dtype
    probe = tf.constant(rng.normal(size=y.shape), dtype="float64")
    weights = list(layer.trainable_weights)
    assert weights, "nothing to check"

    def loss(inputs=x):
        return tf.reduce_sum(layer(inputs) * probe)

    with tf.GradientTape() as tape:
        tape.watch(x)
        value = loss()
    grads = tape.gradient(value, [x, *weights])
    # The same loss as one graph (traced once, reading the variables at each
    # call) for the many perturbed evaluations: eager calls cost ~20x more.
    graph_loss = tf.function(loss)
    np.testing.assert_allclose(float(graph_loss(x)), float(value), rtol=1e-12)
    loss = graph_loss
    for variable, grad in zip([None, *weights], grads):
        assert grad is not None, f"no gradient for {variable}"
        base = np.asarray(x if variable is None else variable)
        for index in rng.choice(base.size, size=min(samples, base.size), replace=False):
            if variable is None:
                plus = float(loss(tf.constant(perturbed(base, index, eps))))
                minus = float(loss(tf.constant(perturbed(base, index, -eps))))
            else:
                variable.assign(perturbed(base, index, eps))
                plus = float(loss())
                variable.assign(perturbed(base, index, -eps))
                minus = float(loss())
                variable.assign(base)
            numeric = (plus - minus) / (2 * eps)
            analytic = np.asarray(grad).reshape(-1)[index]
            where = "input" if variable is None else variable.path
            np.testing.assert_allclose(
                analytic, numeric, rtol=rtol, atol=atol, err_msg=f"{where}[{index}]"
            )


@pytest.mark.parametrize("name", sorted(CELLS))
def test_finite_differences_match_autodiff(name):
    layer = CELLS[name]().get_layer(return_sequences=True)
    rng = np.random.default_rng(0)
    check_gradients(layer, rng.normal(size=(2, 4, 2)), rng)
    keras.backend.clear_session()


# -- feedback networks ----------------------------------------------------------
@pytest.fixture
def float64():
    """Feedback chains build their step Inputs with the default float type.

    (See `test_float64_chain_keeps_float64_inside_its_step`.)
    """
    previous = keras.config.floatx()
    keras.config.set_floatx("float64")
    yield
    keras.config.set_floatx(previous)


def dense_feedback(kind):
    """Two states: a top-down one (added) and a lateral one (multiplied)."""
    return kind(
        [
            layers.Dense(4),
            Merger("top", layers.Dense(4, use_bias=False)),
            layers.Activation("tanh"),
            Splitter("low"),
            layers.Dense(3, activation="tanh"),
            Merger("low", layers.Dense(3), op="mul"),
            Splitter("top"),
            layers.Dense(2),
        ],
        input_shape=(3,),
    )


@pytest.mark.parametrize("kind", [FeedbackChain, FeedbackTree])
def test_dense_feedback_gradients_over_a_sequence(float64, kind):
    layer = dense_feedback(kind).get_layer(return_sequences=True)
    rng = np.random.default_rng(1)
    check_gradients(layer, rng.normal(size=(2, 4, 3)), rng, samples=4)


def test_dense_feedback_gradients_on_a_static_input(float64):
    layer = dense_feedback(FeedbackChain).get_layer(timesteps=3)
    rng = np.random.default_rng(2)
    check_gradients(layer, rng.normal(size=(2, 3)), rng, samples=4)


def test_conv_feature_map_state_gradients(float64):
    """A (5, 5, 2) feature map fed back through a convolution and concatenated."""
    chain = FeedbackChain(
        [
            layers.Conv2D(2, 3, padding="same"),
            Merger("map", layers.Conv2D(2, 3, padding="same", use_bias=False)),
            layers.Activation("tanh"),
            Splitter("map"),
            Merger("map", layers.Conv2D(1, 1), op="concat"),
            layers.GlobalAveragePooling2D(),
            layers.Dense(2),
        ],
        input_shape=(5, 5, 1),
    )
    layer = chain.get_layer(return_sequences=True)
    assert layer.state_shapes == [(5, 5, 2)]
    rng = np.random.default_rng(3)
    check_gradients(layer, rng.normal(size=(2, 3, 5, 5, 1)), rng, samples=4)


def test_spoerer_blt_gradients(float64):
    """BLT: bottom-up, lateral and (cropped) top-down convolutions, LRN, pooling."""
    layer = spoerer2017(
        "BLT", (7, 7, 1), classes=3, timesteps=2, features=2, return_sequences=True
    )
    rng = np.random.default_rng(4)
    check_gradients(layer, rng.normal(size=(2, 7, 7, 1)), rng, samples=3)
    assert layer.state_shapes == [(7, 7, 2), (4, 4, 2)]


def test_float64_chain_keeps_float64_inside_its_step():
    d = "float64"
    chain = FeedbackChain(
        [layers.Dense(4, dtype=d), Splitter("h"), layers.Dense(2, dtype=d)],
        input_shape=(3,),
        dtype=d,
    )
    chain.get_layer(timesteps=2)
    assert [t.dtype for t in chain.model.inputs] == [d, d]
    assert [t.dtype for t in chain.model.outputs] == [d, d]
