"""The misuse table: across the public API, bad input fails early and says what."""

import keras
import numpy as np
import pytest
from keras import layers

import cellgraph as cg
from cellgraph import feedback, systems


def graph():
    x_t, h_tm1 = keras.Input((3,)), keras.Input((4,))
    h_t = layers.Dense(4, activation="tanh")(layers.Concatenate()([x_t, h_tm1]))
    return dict(input=x_t, output=h_t, initial_states=[h_tm1], final_states=[h_t])


def rnn(**kwargs):
    return cg.RecurrentModel(**graph(), **kwargs)


def with_(**changes):
    spec = graph()
    spec.update(changes)
    return lambda: cg.RecurrentModel(**spec)


def call(layer, *args, **kwargs):
    return lambda: layer(*args, **kwargs)


def stack(*cells, **kwargs):
    def build():
        sequential = cg.RecurrentSequential(**kwargs)
        for cell in cells:
            sequential.add(cell)
        return sequential

    return build


ZEROS = np.zeros((2, 5, 3), "float32")

# (case, thunk, exception type, a regex the message must match)
TABLE = [
    ("state counts differ", with_(final_states=[]), ValueError, "final_states"),
    (
        "final state shape",
        lambda: cg.RecurrentModel(
            **{**graph(), "final_states": [layers.Dense(5)(keras.Input((2,)))]}
        ),
        ValueError,
        "final_states",
    ),
    (
        "output not from inputs",
        with_(output=layers.Dense(2)(keras.Input((2,)))),
        ValueError,
        "`output` is not computed",
    ),
    ("non-Keras input", with_(input=np.zeros(3)), TypeError, "`input`"),
    ("non-Keras state", with_(initial_states=[3]), TypeError, "initial_states"),
    (
        "output list",
        lambda: cg.RecurrentModel(
            **{**graph(), "output": [keras.Input((2,)), keras.Input((2,))]}
        ),
        ValueError,
        "`output`",
    ),
    (
        "teacher forcing without readout",
        lambda: rnn(teacher_force=True),
        ValueError,
        "readout_input",
    ),
    (
        "teacher_force out of range",
        lambda: rnn(teacher_force=2.0),
        ValueError,
        "teacher_force",
    ),
    (
        "decode without output_length",
        lambda: rnn(decode=True),
        ValueError,
        "output_length",
    ),
    (
        "bad state_initializer",
        lambda: rnn(state_initializer="bogus"),
        ValueError,
        "state_initializer",
    ),
    (
        "state_initializer list length",
        lambda: rnn(state_initializer=[None, None]),
        ValueError,
        "state_initializer",
    ),
    (
        "wrong feature size",
        call(rnn(), np.zeros((2, 5, 4), "float32")),
        ValueError,
        "`inputs`",
    ),
    (
        "wrong initial_state count",
        call(rnn(), ZEROS, initial_state=[]),
        ValueError,
        "initial_state",
    ),
    (
        "wrong constants count",
        call(rnn(), ZEROS, constants=[ZEROS]),
        ValueError,
        "constants",
    ),
    (
        "unroll with unknown time",
        call(rnn(unroll=True), keras.Input((None, 3))),
        ValueError,
        "unroll",
    ),
    (
        "stateful unknown batch",
        call(rnn(stateful=True), keras.Input((5, 3))),
        ValueError,
        "batch size",
    ),
    (
        "reset_states when not stateful",
        lambda: rnn().reset_states(),
        ValueError,
        "stateful",
    ),
    (
        "RNNCell.from_model non-model",
        lambda: cg.RNNCell.from_model("model"),
        TypeError,
        "keras.Model",
    ),
    (
        "cell input_dim",
        lambda: cg.cells.GRUCell(4, input_dim=0),
        ValueError,
        "input_dim",
    ),
    ("cell units", lambda: cg.cells.LSTMCell(0), ValueError, "units"),
    ("RHN depth", lambda: cg.cells.RHNCell(4, 0), ValueError, "recurrence_depth"),
    (
        "stack readout mode",
        lambda: cg.RecurrentSequential(readout="concat"),
        ValueError,
        "readout",
    ),
    (
        "stack state_sync shapes",
        stack(cg.cells.GRUCell(4), cg.cells.LSTMCell(4), state_sync=True),
        ValueError,
        "state_sync",
    ),
    (
        "stack adds a sequence layer",
        stack(cg.cells.GRUCell(2, input_dim=2).get_layer()),
        TypeError,
        "get_cell",
    ),
    ("register depth", lambda: systems.RegisterMemory(0, 3), ValueError, "depth"),
    (
        "attention kernel",
        lambda: systems.Attention(4, 2, kernel="gauss"),
        ValueError,
        "kernel",
    ),
    ("stack capacity", lambda: systems.Stack(3, capacity=-1), ValueError, "capacity"),
    (
        "system control size",
        lambda: systems.RegisterMemory(2, 3, project=False)(
            [keras.Input((5,)), keras.Input((2, 3))]
        ),
        ValueError,
        "control",
    ),
    (
        "superloop cell name",
        lambda: cg.Superloop(cell="transformer"),
        ValueError,
        "cell",
    ),
    ("superloop layers", lambda: cg.Superloop(layers=0), ValueError, "layers"),
    (
        "superloop systems",
        lambda: cg.Superloop(systems=["memory"]),
        (TypeError, ValueError),
        "systems",
    ),
    (
        "superloop config key",
        lambda: cg.Superloop.from_superloop_config({"no_such_key": 1}),
        ValueError,
        "no_such_key",
    ),
    ("splitter name", lambda: feedback.Splitter(""), ValueError, "name"),
    (
        "merger op",
        lambda: feedback.Merger("a", layers.Dense(2), op="pow"),
        ValueError,
        "op",
    ),
    (
        "merger names an unknown splitter",
        lambda: (
            feedback.FeedbackChain(
                [feedback.Merger("nowhere", layers.Dense(3)), layers.Dense(3)],
                input_shape=(3,),
            ).state_shapes
        ),
        ValueError,
        "nowhere",
    ),
    (
        "duplicate splitters",
        lambda: (
            feedback.FeedbackChain(
                [layers.Dense(3), feedback.Splitter("a"), feedback.Splitter("a")],
                input_shape=(3,),
            ).state_shapes
        ),
        ValueError,
        "a",
    ),
]


@pytest.mark.parametrize(
    "thunk,error,pattern",
    [pytest.param(t, e, p, id=case) for case, t, e, p in TABLE],
)
def test_misuse_is_refused_early_with_a_clear_message(thunk, error, pattern):
    with pytest.raises(error, match=pattern) as info:
        thunk()
    assert "Traceback" not in str(info.value)
    assert len(str(info.value)) > 30  # says what was expected and received


def test_the_table_is_big_enough():
    assert len(TABLE) >= 25
