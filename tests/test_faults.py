"""Faults: interrupted training resumes exactly; NaN input stops training."""

import keras
import numpy as np
import pytest
from keras import layers

import cellgraph as cg


class Interrupt(keras.callbacks.Callback):
    """Raises in the middle of `epoch`, as a crash or a pre-emption would."""

    def __init__(self, epoch, batch):
        super().__init__()
        self.epoch, self.batch, self.current = epoch, batch, 0

    def on_epoch_begin(self, epoch, logs=None):
        self.current = epoch

    def on_train_batch_end(self, batch, logs=None):
        if self.current == self.epoch and batch == self.batch:
            raise RuntimeError("interrupted")


def make_model():
    keras.utils.set_random_seed(5)
    rnn = cg.RecurrentSequential(
        readout="add",
        teacher_force=True,
        state_initializer="learned",
        layers=[cg.cells.GRUCell(3)],
        return_sequences=True,
    )
    inputs, truth = keras.Input((6, 3)), keras.Input((6, 3))
    model = keras.Model([inputs, truth], rnn(inputs, ground_truth=truth))
    model.compile(keras.optimizers.Adam(0.01), "mse")
    return model


def test_backup_and_restore_resumes_to_the_same_weights(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.random((32, 6, 3)).astype("float32")
    y = np.cumsum(x, axis=1) / 6
    fit = dict(epochs=4, batch_size=8, shuffle=False, verbose=0)

    reference = make_model()
    reference.fit([x, y], y, **fit)

    resumed = make_model()
    backup = keras.callbacks.BackupAndRestore(str(tmp_path / "backup"))
    with pytest.raises(RuntimeError, match="interrupted"):
        resumed.fit([x, y], y, callbacks=[backup, Interrupt(2, 1)], **fit)
    resumed = make_model()  # a fresh process would start from scratch
    history = resumed.fit([x, y], y, callbacks=[backup], **fit)
    # it really resumed: only epochs 2 and 3 ran again, from the backup
    assert len(history.history["loss"]) == 2

    for a, b in zip(reference.get_weights(), resumed.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


def test_terminate_on_nan_stops_a_run_fed_nans():
    x_t, h_tm1 = keras.Input((2,)), keras.Input((4,))
    h_t = layers.Dense(4, activation="tanh")(layers.Concatenate()([x_t, h_tm1]))
    rnn = cg.RecurrentModel(
        input=x_t, output=h_t, initial_states=[h_tm1], final_states=[h_t]
    )
    model = keras.Model(i := keras.Input((5, 2)), layers.Dense(1)(rnn(i)))
    model.compile("sgd", "mse")
    x = np.random.default_rng(1).random((64, 5, 2)).astype("float32")
    x[8:] = np.nan
    history = model.fit(
        x,
        np.zeros((64, 1)),
        batch_size=8,
        epochs=3,
        verbose=0,
        callbacks=[keras.callbacks.TerminateOnNaN()],
    )
    assert len(history.history["loss"]) == 1
    assert np.isnan(history.history["loss"][0])
