"""Property tests: random step graphs equal a manual loop of their one-step model."""

import math

import keras
import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from keras import layers

import cellgraph as cg

state_shapes = st.lists(
    st.lists(st.integers(1, 3), min_size=1, max_size=3).map(tuple),
    min_size=1,
    max_size=3,
)


def random_graph(features, units, shapes):
    x_t = keras.Input((features,))
    states = [keras.Input(shape) for shape in shapes]
    flat = [x_t] + [layers.Flatten()(s) if len(s.shape) > 2 else s for s in states]
    hidden = layers.Dense(units, activation="tanh")(
        layers.Concatenate()(flat) if len(flat) > 1 else flat[0]
    )
    finals = [
        layers.Reshape(shape)(layers.Dense(math.prod(shape), activation="tanh")(hidden))
        for shape in shapes
    ]
    return dict(input=x_t, output=hidden, initial_states=states, final_states=finals)


def manual(step_model, x, mask, shapes, backwards):
    batch, time = x.shape[:2]
    states = [np.zeros((batch, *s), "float32") for s in shapes]
    output = np.zeros((batch, step_model.output_shape[0][-1]), "float32")
    outputs = []
    for t in reversed(range(time)) if backwards else range(time):
        new_output, *new_states = (
            np.asarray(v) for v in step_model([x[:, t], *states])
        )
        keep = mask[:, t]
        output = np.where(keep[:, None], new_output, output)
        states = [
            np.where(keep.reshape(-1, *[1] * len(s)), n, o)
            for s, n, o in zip(shapes, new_states, states)
        ]
        outputs.append(output)
    return np.stack(outputs, 1), states


def random_case(features, units, shapes, time, backwards, seed):
    """A `random_graph` layer (every step, and its states) and a masked batch."""
    rng = np.random.default_rng(seed)
    rnn = cg.RecurrentModel(
        **random_graph(features, units, shapes),
        return_sequences=True,
        return_state=True,
        go_backwards=backwards,
    )
    x = rng.normal(size=(3, time, features)).astype("float32") * 3
    mask = rng.random((3, time)) > 0.3
    return rnn, x, mask


def graph_arguments(max_time):
    """The hypothesis strategies of `random_graph` and its call (a dict)."""
    return dict(
        features=st.integers(1, 4),
        units=st.integers(1, 6),
        shapes=state_shapes,
        time=st.integers(1, max_time),
        backwards=st.booleans(),
        seed=st.integers(0, 2**16),
    )


@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(**graph_arguments(max_time=20))
def test_sequence_layer_equals_loop_of_step_model(
    features, units, shapes, time, backwards, seed
):
    rnn, x, mask = random_case(features, units, shapes, time, backwards, seed)
    y, *states = rnn(x, mask=mask)
    y_ref, states_ref = manual(rnn.step_model, x, mask, shapes, backwards)
    np.testing.assert_allclose(y, y_ref, rtol=1e-5, atol=1e-5)
    for got, want in zip(states, states_ref):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
        assert np.isfinite(np.asarray(got)).all()
