"""Long sequences: a training step over T = 10,000 timesteps works and is exact.

Keras's own `keras.layers.LSTM` with the same weights is the reference: one
`fit` step of each must report the same (finite) loss and end with the same
weights, so the whole 10,000-step forward and backward pass is checked.
"""

import keras
import numpy as np
from keras import layers

import cellgraph as cg

T = 10_000


def model_and_reference(features, units):
    inputs = keras.Input((None, features))  # time length unknown when built
    rnn = cg.cells.LSTMCell(units, input_dim=features).get_layer()
    model = keras.Model(inputs, layers.Dense(1)(rnn(inputs)))
    reference = keras.Model(inputs, layers.Dense(1)(layers.LSTM(units)(inputs)))
    reference.set_weights(model.get_weights())
    for m in (model, reference):
        m.compile(keras.optimizers.SGD(0.05), "mse")
    return model, reference


def test_one_training_step_over_ten_thousand_timesteps(rng):
    model, reference = model_and_reference(features=3, units=8)
    before = model.get_weights()
    x = rng.normal(size=(2, T, 3)).astype("float32")
    y = rng.normal(size=(2, 1)).astype("float32")

    history = model.fit(x, y, batch_size=2, epochs=1, verbose=0)
    expected = reference.fit(x, y, batch_size=2, epochs=1, verbose=0)

    (loss,) = history.history["loss"]
    assert np.isfinite(loss) and loss > 0
    np.testing.assert_allclose(loss, expected.history["loss"][0], rtol=1e-5)
    after = model.get_weights()
    for a, b in zip(after, reference.get_weights(), strict=True):
        assert np.all(np.isfinite(a))
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
    # the step did something: every weight moved (the gradient reached them)
    for a, b in zip(after, before, strict=True):
        assert not np.array_equal(a, b)
    np.testing.assert_allclose(
        model.predict(x, verbose=0), reference.predict(x, verbose=0), atol=1e-5
    )
