"""Readout, teacher forcing, scheduled sampling, decoding and constants."""

import keras
import numpy as np
import pytest
from _autodiff import gradients
from keras import layers, ops

import cellgraph as cg


def readout_graph(features=3, units=4, out=2):
    x_t, h_tm1, r_tm1 = (
        keras.Input((features,)),
        keras.Input((units,)),
        keras.Input((out,)),
    )
    h_t = layers.Dense(units, activation="tanh")(
        layers.Concatenate()([x_t, h_tm1, r_tm1])
    )
    y_t = layers.Dense(out)(h_t)
    return dict(
        input=x_t,
        output=y_t,
        initial_states=[h_tm1],
        final_states=[h_t],
        readout_input=r_tm1,
    )


def free_running(rnn, x, readout=None, backwards=False):
    batch = x.shape[0]
    states = [np.zeros((batch, 4), "float32")]
    previous = readout if readout is not None else np.zeros((batch, 2), "float32")
    outputs = []
    steps = range(x.shape[1])
    for t in reversed(steps) if backwards else steps:
        previous, states = rnn.step(x[:, t], states, readout=previous)
        outputs.append(np.asarray(previous))
    return np.stack(outputs, 1), np.asarray(states[0])


@pytest.mark.parametrize("go_backwards", [False, True])
def test_readout_feeds_previous_output(rng, go_backwards):
    rnn = cg.RecurrentModel(
        **readout_graph(),
        return_sequences=True,
        return_state=True,
        go_backwards=go_backwards,
    )
    x = rng.random((2, 5, 3)).astype("float32")
    first = rng.random((2, 2)).astype("float32")
    y, h = rnn(x, initial_readout=first)
    y_ref, h_ref = free_running(rnn, x, first, backwards=go_backwards)
    np.testing.assert_allclose(y, y_ref, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(h, h_ref, rtol=1e-5, atol=1e-6)


def test_readout_with_mask_holds_during_padding(rng):
    rnn = cg.RecurrentModel(**readout_graph(), return_state=True)
    inputs = keras.Input((None, 3))
    model = keras.Model(inputs, rnn(layers.Masking()(inputs)))
    x = rng.random((2, 4, 3)).astype("float32") + 0.1
    padded = np.concatenate([x, np.zeros((2, 2, 3), "float32")], axis=1)
    for a, b in zip(model.predict(x, verbose=0), model.predict(padded, verbose=0)):
        np.testing.assert_array_equal(a, b)


def teacher_reference(rnn, x, truth, first=None):
    states = [np.zeros((x.shape[0], 4), "float32")]
    outputs = []
    for t in range(x.shape[1]):
        if t == 0:
            previous = first if first is not None else np.zeros_like(truth[:, 0])
        else:
            previous = truth[:, t - 1]
        out, states = rnn.step(x[:, t], states, readout=previous)
        outputs.append(np.asarray(out))
    return np.stack(outputs, 1)


def test_teacher_forcing_reads_previous_target_in_training_only(rng):
    rnn = cg.RecurrentModel(
        **readout_graph(), teacher_force=True, return_sequences=True
    )
    x = rng.random((2, 5, 3)).astype("float32")
    truth = rng.random((2, 5, 2)).astype("float32")
    first = rng.random((2, 2)).astype("float32")
    trained = rnn(x, ground_truth=truth, initial_readout=first, training=True)
    np.testing.assert_allclose(
        trained, teacher_reference(rnn, x, truth, first), rtol=1e-5, atol=1e-6
    )
    inferred = rnn(x, ground_truth=truth, training=False)
    np.testing.assert_allclose(inferred, free_running(rnn, x)[0], rtol=1e-5, atol=1e-6)
    # predict needs no ground truth input at all
    inputs = keras.Input((None, 3))
    model = keras.Model(inputs, rnn(inputs))
    np.testing.assert_allclose(model.predict(x, verbose=0), inferred, atol=1e-6)


def test_teacher_forcing_backwards_aligns_with_outputs(rng):
    rnn = cg.RecurrentModel(
        **readout_graph(), teacher_force=True, return_sequences=True, go_backwards=True
    )
    x = rng.random((2, 4, 3)).astype("float32")
    truth = rng.random((2, 4, 2)).astype("float32")
    y = rnn(x, ground_truth=truth, training=True)
    # outputs come in processing order; output k was fed truth[:, k - 1]
    expected = teacher_reference(rnn, x[:, ::-1], truth)
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-6)


def test_teacher_forcing_never_leaks_the_current_target(rng):
    """Targets are i.i.d. noise: seeing target t would make the loss ~0."""
    r_tm1, x_t, h_tm1 = keras.Input((1,)), keras.Input((1,)), keras.Input((1,))
    y_t = layers.Dense(1)(layers.Concatenate()([r_tm1, x_t]))
    rnn = cg.RecurrentModel(
        input=x_t,
        output=y_t,
        initial_states=[h_tm1],
        final_states=[h_tm1],
        readout_input=r_tm1,
        teacher_force=True,
        return_sequences=True,
    )
    inputs, truth = keras.Input((None, 1)), keras.Input((None, 1))
    model = keras.Model([inputs, truth], rnn(inputs, ground_truth=truth))
    model.compile(keras.optimizers.Adam(0.05), "mse")
    x = np.zeros((256, 8, 1), "float32")
    targets = rng.normal(size=(256, 8, 1)).astype("float32")
    loss = model.fit(
        [x, targets], targets, epochs=30, batch_size=64, verbose=0
    ).history["loss"][-1]
    assert loss > 0.8 * targets.var()
    # Control: feeding what a leak would feed (target t at step t, via a
    # ground truth shifted by one) lets the same model fit the noise.
    leaked = np.concatenate([targets[:, 1:], np.zeros_like(targets[:, :1])], 1)
    loss = model.fit([x, leaked], targets, epochs=30, batch_size=64, verbose=0).history[
        "loss"
    ][-1]
    assert loss < 0.3 * targets.var()


def test_scheduled_sampling_limits(rng):
    x = rng.random((3, 6, 3)).astype("float32")
    truth = rng.random((3, 6, 2)).astype("float32")
    spec = readout_graph()
    always = cg.RecurrentModel(**spec, teacher_force=1.0, return_sequences=True)
    almost_never = cg.RecurrentModel(**spec, teacher_force=1e-9, return_sequences=True)
    half = cg.RecurrentModel(**spec, teacher_force=0.5, return_sequences=True)
    forced = np.asarray(always(x, ground_truth=truth, training=True))
    free = np.asarray(almost_never(x, ground_truth=truth, training=True))
    np.testing.assert_allclose(forced, teacher_reference(always, x, truth), atol=1e-6)
    np.testing.assert_allclose(free, free_running(always, x)[0], atol=1e-6)
    mixed = np.asarray(half(x, ground_truth=truth, training=True))
    assert not np.allclose(mixed, forced) and not np.allclose(mixed, free)
    keras.utils.set_random_seed(7)
    a = cg.RecurrentModel(**spec, teacher_force=0.5, return_sequences=True)
    first = np.asarray(a(x, ground_truth=truth, training=True))
    keras.utils.set_random_seed(7)
    b = cg.RecurrentModel(**spec, teacher_force=0.5, return_sequences=True)
    np.testing.assert_array_equal(first, b(x, ground_truth=truth, training=True))


def test_decode_feeds_the_same_input_every_step(rng):
    spec = readout_graph()
    decoder = cg.RecurrentModel(
        **spec, decode=True, output_length=4, return_sequences=True
    )
    vector = rng.random((2, 3)).astype("float32")
    expected, _ = free_running(decoder, np.repeat(vector[:, None], 4, axis=1))
    np.testing.assert_allclose(decoder(vector), expected, rtol=1e-5, atol=1e-6)
    symbolic = decoder(keras.Input((3,)))
    assert tuple(symbolic.shape) == (None, 4, 2)


@pytest.mark.parametrize("teacher_force", [True, 0.999999])
def test_decode_with_teacher_forcing(rng, teacher_force):
    decoder = cg.RecurrentModel(
        **readout_graph(),
        decode=True,
        output_length=4,
        teacher_force=teacher_force,
        return_sequences=True,
    )
    vector = rng.random((2, 3)).astype("float32")
    truth = rng.random((2, 4, 2)).astype("float32")
    expected = teacher_reference(decoder, np.repeat(vector[:, None], 4, axis=1), truth)
    y = decoder(vector, ground_truth=truth, training=True)
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-6)


def test_constants_of_any_rank_visible_at_every_step(rng):
    data, x_t, h_tm1 = keras.Input((4, 3)), keras.Input((3,)), keras.Input((4,))
    scores = layers.Dot(axes=(2, 1))([data, x_t])
    h_t = layers.Dense(4, activation="tanh")(layers.Concatenate()([scores, h_tm1]))
    rnn = cg.RecurrentModel(
        input=x_t,
        output=h_t,
        initial_states=[h_tm1],
        final_states=[h_t],
        constants=[data],
        return_sequences=True,
    )
    x = rng.random((2, 5, 3)).astype("float32")
    given = rng.random((2, 4, 3)).astype("float32")
    y = np.asarray(rnn(x, constants=[given]))
    states = [np.zeros((2, 4), "float32")]
    for t in range(5):
        out, states = rnn.step(x[:, t], states, constants=[given])
        np.testing.assert_allclose(y[:, t], out, rtol=1e-5, atol=1e-6)
    # gradients reach the constant input
    (grad,) = gradients(lambda c: ops.sum(rnn(x, constants=[c])), [given])
    assert np.abs(grad).sum() > 0
