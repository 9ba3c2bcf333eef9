"""Finite differences agree with autodiff through each cell's sequence (float64)."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import cellgraph as cg

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


@pytest.mark.parametrize("name", sorted(CELLS))
def test_finite_differences_match_autodiff(name):
    layer = CELLS[name]().get_layer(return_sequences=True)
    rng = np.random.default_rng(0)
    x = tf.constant(rng.normal(size=(2, 4, 2)), dtype="float64")
    layer(x)
    weights = [w for w in layer.trainable_weights]
    probe = tf.constant(rng.normal(size=(2, 4, 3)), dtype="float64")

    def loss():
        return tf.reduce_sum(layer(x) * probe)

    with tf.GradientTape() as tape:
        tape.watch(x)
        value = loss()
    grads = tape.gradient(value, [x, *weights])
    eps = 1e-6
    for variable, grad in zip([None, *weights], grads):
        base = np.asarray(x if variable is None else variable)
        for index in rng.choice(base.size, size=min(6, base.size), replace=False):
            if variable is None:
                plus = float(tf.reduce_sum(layer(perturbed(base, index, eps)) * probe))
                minus = float(
                    tf.reduce_sum(layer(perturbed(base, index, -eps)) * probe)
                )
            else:
                variable.assign(perturbed(base, index, eps))
                plus = float(loss())
                variable.assign(perturbed(base, index, -eps))
                minus = float(loss())
                variable.assign(base)
            numeric = (plus - minus) / (2 * eps)
            analytic = np.asarray(grad).reshape(-1)[index]
            np.testing.assert_allclose(analytic, numeric, rtol=1e-5, atol=1e-7)
    keras.backend.clear_session()
