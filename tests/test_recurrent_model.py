"""RecurrentModel: the loop equals the steps, options, masks, state, saving."""

import keras
import numpy as np
import pytest
from keras import layers

import cellgraph as cg


def vector_matrix_graph():
    """A step graph with a vector state h (4,) and a matrix state M (3, 4)."""
    x_t = keras.Input((2,), name="x_t")
    h_tm1 = keras.Input((4,), name="h_tm1")
    m_tm1 = keras.Input((3, 4), name="m_tm1")
    features = layers.Concatenate()([x_t, h_tm1, layers.Flatten()(m_tm1)])
    h_t = layers.Dense(4, activation="tanh")(features)
    m_t = layers.Activation("tanh")(
        layers.Add()([layers.Dense(4)(m_tm1), layers.Reshape((1, 4))(h_t)])
    )
    return dict(
        input=x_t, output=h_t, initial_states=[h_tm1, m_tm1], final_states=[h_t, m_t]
    )


def manual_loop(rnn, x, states, backwards=False, **step_kwargs):
    steps = range(x.shape[1])
    outputs = []
    for t in reversed(steps) if backwards else steps:
        output, states = rnn.step(x[:, t], states, **step_kwargs)
        outputs.append(np.asarray(output))
    return np.stack(outputs, axis=1), [np.asarray(s) for s in states]


def zeros_like_states(rnn, batch):
    return [np.zeros((batch, *s), "float32") for s in rnn.state_shapes]


@pytest.mark.parametrize("go_backwards", [False, True])
def test_sequence_equals_loop_of_steps(rng, go_backwards):
    rnn = cg.RecurrentModel(
        **vector_matrix_graph(),
        return_sequences=True,
        return_state=True,
        go_backwards=go_backwards,
    )
    x = rng.random((3, 6, 2)).astype("float32")
    y, h, m = rnn(x)
    y_ref, (h_ref, m_ref) = manual_loop(
        rnn, x, zeros_like_states(rnn, 3), backwards=go_backwards
    )
    np.testing.assert_allclose(y, y_ref, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(h, h_ref, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(m, m_ref, rtol=1e-5, atol=1e-6)
    assert m.shape == (3, 3, 4)


def test_output_shapes_symbolic_with_unknown_time():
    rnn = cg.RecurrentModel(**vector_matrix_graph(), return_state=True)
    outputs = rnn(keras.Input((None, 2)))
    assert [tuple(o.shape) for o in outputs] == [(None, 4), (None, 4), (None, 3, 4)]
    seq = cg.RecurrentModel(**vector_matrix_graph(), return_sequences=True)
    assert tuple(seq(keras.Input((7, 2))).shape) == (None, 7, 4)
    assert rnn.num_states == 2
    assert rnn.step_model.output_shape[0] == (None, 4)


def test_numpy_recomputation_of_simple_rnn_graph(rng):
    x_t = keras.Input((5,))
    h_tm1 = keras.Input((10,))
    dense_x, dense_h = layers.Dense(10), layers.Dense(10, use_bias=False)
    h_t = layers.Activation("tanh")(layers.Add()([dense_x(x_t), dense_h(h_tm1)]))
    rnn = cg.RecurrentModel(
        input=x_t,
        initial_states=[h_tm1],
        output=h_t,
        final_states=[h_t],
        return_sequences=True,
    )
    x = rng.random((2, 7, 5)).astype("float32")
    y = np.asarray(rnn(x))
    w, b = dense_x.get_weights()
    (u,) = dense_h.get_weights()
    h = np.zeros((2, 10), "float32")
    for t in range(7):
        h = np.tanh(x[:, t] @ w + b + h @ u)
        np.testing.assert_allclose(y[:, t], h, rtol=1e-5, atol=1e-6)


def test_several_step_inputs_of_different_rank(rng):
    a_t, b_t, s = keras.Input((2,)), keras.Input((3, 2)), keras.Input((5,))
    n = layers.Dense(5, activation="tanh")(
        layers.Concatenate()([a_t, layers.Flatten()(b_t), s])
    )
    rnn = cg.RecurrentModel(
        input=[a_t, b_t],
        output=n,
        initial_states=[s],
        final_states=[n],
        return_sequences=True,
    )
    xa = rng.random((2, 4, 2)).astype("float32")
    xb = rng.random((2, 4, 3, 2)).astype("float32")
    y = rnn([xa, xb])
    states = [np.zeros((2, 5), "float32")]
    outputs = []
    for t in range(4):
        out, states = rnn.step([xa[:, t], xb[:, t]], states)
        outputs.append(out)
    np.testing.assert_allclose(y, np.stack(outputs, 1), rtol=1e-5, atol=1e-6)


def test_integer_step_input_through_embedding(rng):
    token = keras.Input((), dtype="int32")
    h_tm1 = keras.Input((4,))
    embedded = layers.Embedding(10, 3)(token)
    h_t = layers.Dense(4, activation="tanh")(layers.Concatenate()([embedded, h_tm1]))
    rnn = cg.RecurrentModel(
        input=token,
        output=h_t,
        initial_states=[h_tm1],
        final_states=[h_t],
        return_sequences=True,
    )
    x = rng.integers(0, 10, (2, 5)).astype("int32")
    y_ref, _ = manual_loop(rnn, x, [np.zeros((2, 4), "float32")])
    np.testing.assert_allclose(rnn(x), y_ref, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("go_backwards", [False, True])
@pytest.mark.parametrize("masker", ["masking", "embedding"])
def test_padded_sequence_ends_in_state_of_unpadded(rng, go_backwards, masker):
    if masker == "masking":
        spec = vector_matrix_graph()
        inputs = keras.Input((None, 2))
        masked = layers.Masking()(inputs)
        x = rng.random((2, 5, 2)).astype("float32") + 0.1
        padded = np.concatenate([x, np.zeros((2, 3, 2), "float32")], axis=1)
    else:
        x_t, h_tm1 = keras.Input((3,)), keras.Input((4,))
        h_t = layers.Dense(4, activation="tanh")(layers.Concatenate()([x_t, h_tm1]))
        spec = dict(input=x_t, output=h_t, initial_states=[h_tm1], final_states=[h_t])
        inputs = keras.Input((None,), dtype="int32")
        masked = layers.Embedding(9, 3, mask_zero=True)(inputs)
        x = rng.integers(1, 9, (2, 5)).astype("int32")
        padded = np.concatenate([x, np.zeros((2, 3), "int32")], axis=1)
    rnn = cg.RecurrentModel(**spec, return_state=True, go_backwards=go_backwards)
    model = keras.Model(inputs, rnn(masked))
    short = model.predict(x, verbose=0)
    long = model.predict(padded, verbose=0)
    for a, b in zip(short, long):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("zero_output_for_mask", [False, True])
def test_masked_steps_keep_or_zero_the_output(rng, zero_output_for_mask):
    rnn = cg.RecurrentModel(
        **vector_matrix_graph(),
        return_sequences=True,
        zero_output_for_mask=zero_output_for_mask,
    )
    x = rng.random((2, 5, 2)).astype("float32")
    mask = np.array([[1, 1, 0, 1, 0], [1, 1, 1, 1, 1]], bool)
    y = np.asarray(rnn(x, mask=mask))
    expected = np.zeros_like(y[0, 1]) if zero_output_for_mask else y[0, 1]
    np.testing.assert_array_equal(y[0, 2], expected)
    assert rnn.compute_mask(x, mask) is mask


def test_unroll_equals_loop(rng):
    x = rng.random((2, 6, 2)).astype("float32")
    spec = vector_matrix_graph()
    looped = cg.RecurrentModel(**spec, return_sequences=True)
    unrolled = cg.RecurrentModel(**spec, return_sequences=True, unroll=True)
    np.testing.assert_allclose(looped(x), unrolled(x), rtol=1e-6, atol=1e-7)


def test_initial_state_at_call(rng):
    rnn = cg.RecurrentModel(**vector_matrix_graph(), return_sequences=True)
    x = rng.random((2, 4, 2)).astype("float32")
    states = [
        rng.random((2, 4)).astype("float32"),
        rng.random((2, 3, 4)).astype("float32"),
    ]
    y_ref, _ = manual_loop(rnn, x, states)
    np.testing.assert_allclose(
        rnn(x, initial_state=states), y_ref, rtol=1e-5, atol=1e-6
    )
    inputs = keras.Input((None, 2))
    h0, m0 = keras.Input((4,)), keras.Input((3, 4))
    model = keras.Model([inputs, h0, m0], rnn(inputs, initial_state=[h0, m0]))
    np.testing.assert_allclose(
        model.predict([x, *states], verbose=0), y_ref, rtol=1e-5, atol=1e-6
    )


def test_stateful_carries_states_and_resets_to_initializer(rng):
    spec = vector_matrix_graph()
    init = ["ones", None]
    rnn = cg.RecurrentModel(
        **spec, return_sequences=True, stateful=True, state_initializer=init
    )
    model = keras.Model(i := keras.Input(batch_shape=(2, 3, 2)), rnn(i))
    whole = cg.RecurrentModel(**spec, return_sequences=True, state_initializer=init)
    x = rng.random((2, 6, 2)).astype("float32")
    halves = np.concatenate(
        [model.predict(x[:, :3], verbose=0), model.predict(x[:, 3:], verbose=0)], axis=1
    )
    np.testing.assert_allclose(halves, whole(x), rtol=1e-5, atol=1e-6)
    rnn.reset_states()
    np.testing.assert_allclose(rnn.states[0], np.ones((2, 4)))
    np.testing.assert_allclose(
        model.predict(x[:, :3], verbose=0), whole(x[:, :3]), rtol=1e-5, atol=1e-6
    )
    given = [np.full((2, 4), 0.5, "float32"), np.zeros((2, 3, 4), "float32")]
    rnn.reset_states(given)
    y_ref, _ = manual_loop(rnn, x[:, :3], given)
    np.testing.assert_allclose(
        model.predict(x[:, :3], verbose=0), y_ref, rtol=1e-5, atol=1e-6
    )


def test_stateful_batch_size_errors(rng):
    spec = vector_matrix_graph()
    with pytest.raises(ValueError, match="batch size"):
        cg.RecurrentModel(**spec, stateful=True)(keras.Input((3, 2)))
    rnn = cg.RecurrentModel(**spec, stateful=True)
    rnn(keras.Input(batch_shape=(2, 3, 2)))
    with pytest.raises(ValueError, match="batch size"):
        rnn(np.zeros((3, 3, 2), "float32"))
    with pytest.raises(ValueError, match="batch size"):
        rnn.reset_states([np.zeros((3, 4)), np.zeros((3, 3, 4))])


def test_state_initializer_values_and_learned_states_train(rng):
    spec = vector_matrix_graph()
    rnn = cg.RecurrentModel(
        **spec, state_initializer=["learned", "ones"], return_sequences=True
    )
    x = rng.random((2, 3, 2)).astype("float32")
    rnn.build((None, None, 2))
    h0, m0 = (np.asarray(s) for s in rnn.get_initial_state(2))
    np.testing.assert_array_equal(h0, 0.0)
    np.testing.assert_array_equal(m0, 1.0)
    y_ref, _ = manual_loop(rnn, x, [h0, m0])
    np.testing.assert_allclose(rnn(x), y_ref, rtol=1e-5, atol=1e-6)
    trainable = {w.path.split("/")[-1] for w in rnn.trainable_weights}
    assert "initial_state_0" in trainable and "initial_state_1" not in trainable
    model = keras.Model(i := keras.Input((None, 2)), rnn(i))
    model.compile(keras.optimizers.SGD(0.5), "mse")
    model.fit(x, np.ones((2, 3, 4)), epochs=2, verbose=0)
    assert np.abs(np.asarray(rnn.get_initial_state(1)[0])).max() > 1e-4
    with pytest.raises(ValueError, match="state_initializer"):
        cg.RecurrentModel(**spec, state_initializer=["ones"])


def test_fit_reduces_loss(rng):
    x_t, h_tm1 = keras.Input((3,)), keras.Input((8,))
    h_t = layers.Dense(8, activation="tanh")(layers.Concatenate()([x_t, h_tm1]))
    rnn = cg.RecurrentModel(
        input=x_t, output=h_t, initial_states=[h_tm1], final_states=[h_t]
    )
    inputs = keras.Input((None, 3))
    model = keras.Model(inputs, layers.Dense(1)(rnn(inputs)))
    model.compile(keras.optimizers.Adam(0.02), "mse")
    x = rng.random((64, 6, 3)).astype("float32")
    y = x.sum(axis=(1, 2))[:, None] / 9.0
    history = model.fit(x, y, epochs=15, batch_size=16, verbose=0).history["loss"]
    assert history[-1] < 0.5 * history[0]


def test_step_model_and_cell_share_weights(rng):
    spec = vector_matrix_graph()
    rnn = cg.RecurrentModel(**spec)
    cell = rnn.get_cell()
    assert isinstance(cell, cg.RNNCell)
    assert cell.state_shapes == [(4,), (3, 4)]
    x = rng.random((2, 2)).astype("float32")
    states = [
        rng.random((2, 4)).astype("float32"),
        rng.random((2, 3, 4)).astype("float32"),
    ]
    out, h, m = cell([x, *states])
    ref_out, (ref_h, ref_m) = rnn.step(x, states)
    np.testing.assert_allclose(out, ref_out)
    np.testing.assert_allclose(m, ref_m)
    assert {id(w) for w in cell.weights} == {id(w) for w in rnn.weights}


def test_rnn_cell_from_model_and_get_layer(rng):
    x, h = keras.Input((4,)), keras.Input((6,))
    h_new = layers.Dense(6, activation="tanh")(layers.Concatenate()([x, h]))
    cell = cg.RNNCell.from_model(keras.Model([x, h], [h_new, h_new]))
    assert cell.num_states == 1 and cell.state_shapes == [(6,)]
    layer = cell.get_layer(return_sequences=True)
    seq = rng.random((2, 5, 4)).astype("float32")
    y = np.asarray(layer(seq))
    state = np.zeros((2, 6), "float32")
    for t in range(5):
        out, state = cell([seq[:, t], state])
        np.testing.assert_allclose(y[:, t], out, rtol=1e-5, atol=1e-6)


def test_nested_recurrent_model_inside_step_graph(rng, tmp_path):
    """An inner loop over a per-step sequence runs inside the outer loop."""
    inner_x, inner_h = keras.Input((2,)), keras.Input((3,))
    inner_h_t = layers.Dense(3, activation="tanh")(
        layers.Concatenate()([inner_x, inner_h])
    )
    inner = cg.RecurrentModel(
        input=inner_x,
        output=inner_h_t,
        initial_states=[inner_h],
        final_states=[inner_h_t],
    )
    outer_x, outer_h = keras.Input((4, 2)), keras.Input((5,))
    summary = inner(outer_x)
    outer_h_t = layers.Dense(5, activation="tanh")(
        layers.Concatenate()([summary, outer_h])
    )
    outer = cg.RecurrentModel(
        input=outer_x,
        output=outer_h_t,
        initial_states=[outer_h],
        final_states=[outer_h_t],
        return_sequences=True,
    )
    x = rng.random((2, 3, 4, 2)).astype("float32")
    y_ref, _ = manual_loop(outer, x, [np.zeros((2, 5), "float32")])
    np.testing.assert_allclose(outer(x), y_ref, rtol=1e-5, atol=1e-6)
    model = keras.Model(i := keras.Input((None, 4, 2)), outer(i))
    model.compile("adam", "mse")
    model.fit(x, np.zeros((2, 3, 5)), epochs=1, verbose=0)
    model.save(tmp_path / "nested.keras")
    loaded = keras.models.load_model(tmp_path / "nested.keras", safe_mode=True)
    np.testing.assert_array_equal(
        model.predict(x, verbose=0), loaded.predict(x, verbose=0)
    )


def test_layer_without_states_uses_placeholder(rng):
    x_t = keras.Input((3,))
    y_t = layers.Dense(2)(x_t)
    rnn = cg.RecurrentModel(input=x_t, output=y_t, return_sequences=True)
    x = rng.random((2, 4, 3)).astype("float32")
    y = np.asarray(rnn(x))
    reference = np.asarray(rnn.step_model(x.reshape(8, 3))).reshape(2, 4, 2)
    np.testing.assert_allclose(y, reference, rtol=1e-5, atol=1e-6)
    assert rnn.num_states == 0
    y_ref, states = manual_loop(rnn, x, [])
    np.testing.assert_allclose(y, y_ref, rtol=1e-5, atol=1e-6)
    assert states == []


def test_summary_shows_the_step_graph(capsys):
    rnn = cg.RecurrentModel(**vector_matrix_graph())
    rnn.summary()
    printed = capsys.readouterr().out
    assert "dense" in printed.lower() and "reshape" in printed.lower()
    stack = cg.RecurrentSequential(layers=[cg.cells.GRUCell(3)])
    with pytest.raises(ValueError, match="call it"):
        stack.summary()


@pytest.mark.skipif(keras.backend.backend() != "jax", reason="a JAX-only option")
def test_rematerialised_step_trains_like_the_plain_step(rng, monkeypatch):
    """On JAX the loop recomputes each step in the backward pass: same training."""
    import jax

    from cellgraph import backend

    calls = []
    checkpoint = jax.checkpoint
    monkeypatch.setattr(jax, "checkpoint", lambda f: calls.append(f) or checkpoint(f))
    x = rng.random((4, 6, 3)).astype("float32")
    x[0, 4:] = 0.0  # a padded example: the mask path too
    y = rng.random((4, 6, 2)).astype("float32")

    def train(remat):
        monkeypatch.setattr(backend, "REMAT_STEP_ON_JAX", remat)
        keras.utils.set_random_seed(3)
        inputs = keras.Input((6, 3))
        cell = cg.cells.LSTMCell(5, input_dim=3, dropout=0.2, recurrent_dropout=0.2)
        h = cell.get_layer(return_sequences=True)(layers.Masking(0.0)(inputs))
        model = keras.Model(inputs, layers.Dense(2)(h))
        model.compile(keras.optimizers.SGD(0.1), "mse")
        losses = model.fit(x, y, epochs=3, batch_size=4, verbose=0).history["loss"]
        return losses, model.get_weights()

    plain_losses, plain = train(False)
    assert not calls
    remat_losses, remat = train(True)
    assert calls  # the loop did run the rematerialised step
    np.testing.assert_allclose(remat_losses, plain_losses, rtol=1e-6)
    assert plain_losses[-1] < plain_losses[0]
    for a, b in zip(remat, plain):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
