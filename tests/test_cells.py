"""Tests of the built-in cells against Keras's SimpleRNN, GRU and LSTM."""

import keras
import numpy as np
import pytest

from cellgraph.cells import GRUCell, LSTMCell, SimpleRNNCell

ATOL = 1e-5

# name -> (our cell, Keras cell, Keras layer, number of states)
CELLS = {
    "simple_rnn": (
        SimpleRNNCell,
        keras.layers.SimpleRNNCell,
        keras.layers.SimpleRNN,
        1,
    ),
    "gru": (GRUCell, keras.layers.GRUCell, keras.layers.GRU, 1),
    "lstm": (LSTMCell, keras.layers.LSTMCell, keras.layers.LSTM, 2),
}

# (cell name, extra constructor arguments), with pytest ids.
VARIANTS = [
    pytest.param("simple_rnn", {}, id="simple_rnn"),
    pytest.param(
        "simple_rnn",
        {"activation": "relu", "use_bias": False},
        id="simple_rnn-relu-nobias",
    ),
    pytest.param("gru", {}, id="gru"),
    pytest.param("gru", {"reset_after": False}, id="gru-reset_before"),
    pytest.param("gru", {"use_bias": False}, id="gru-nobias"),
    pytest.param("lstm", {}, id="lstm"),
    pytest.param(
        "lstm", {"unit_forget_bias": False, "use_bias": False}, id="lstm-nobias"
    ),
    pytest.param(
        "lstm", {"recurrent_activation": "hard_sigmoid"}, id="lstm-hard_sigmoid"
    ),
]

# Whole-sequence tests mostly exercise the loop: fewer variants keep them fast.
SEQUENCE_VARIANTS = [VARIANTS[i] for i in (0, 2, 3, 5)]

BATCH, TIME, INPUT_DIM, UNITS = 3, 5, 4, 6


def _rng(seed=0):
    return np.random.default_rng(seed)


def _randomize(cell_or_layer, seed=0):
    """Sets every weight to random values (biases included)."""
    rng = _rng(seed)
    cell_or_layer.set_weights(
        [
            rng.normal(scale=0.5, size=w.shape).astype("float32")
            for w in cell_or_layer.weights
        ]
    )


def _keras_cell(name, built=True, **kwargs):
    keras_cell = CELLS[name][1](UNITS, **kwargs)
    if built:
        keras_cell.build((None, INPUT_DIM))
        _randomize(keras_cell)
    return keras_cell


def _our_cell(cell_name, **kwargs):
    return CELLS[cell_name][0](UNITS, input_dim=INPUT_DIM, **kwargs)


def _states(name, batch=BATCH, seed=1):
    rng = _rng(seed)
    return [
        rng.normal(size=(batch, UNITS)).astype("float32") for _ in range(CELLS[name][3])
    ]


def _sequence(batch=BATCH, time=TIME, seed=2):
    return _rng(seed).normal(size=(batch, time, INPUT_DIM)).astype("float32")


def _step_layer(cell):
    # A built-in cell is one layer: it owns its weights and its dropout masks.
    assert cell.model is None and hasattr(cell, "begin_sequence")
    return cell


def _as_list(value):
    return (
        [keras.ops.convert_to_numpy(v) for v in value]
        if isinstance(value, (list, tuple))
        else [keras.ops.convert_to_numpy(value)]
    )


def _assert_all_close(actual, expected, atol=ATOL):
    actual, expected = _as_list(actual), _as_list(expected)
    assert len(actual) == len(expected)
    for a, e in zip(actual, expected, strict=True):
        np.testing.assert_allclose(a, e, atol=atol, rtol=atol)


# -- one step ------------------------------------------------------------------------


@pytest.mark.parametrize("name, kwargs", VARIANTS)
def test_weights_match_keras_cell(name, kwargs):
    keras_cell = _keras_cell(name, **kwargs)
    cell = _our_cell(name, **kwargs)
    cell([keras.Input((INPUT_DIM,)), *[keras.Input((UNITS,)) for _ in _states(name)]])
    ours = [(w.name, tuple(w.shape), w.trainable) for w in cell.weights]
    theirs = [(w.name, tuple(w.shape), w.trainable) for w in keras_cell.weights]
    assert ours == theirs


@pytest.mark.portable
@pytest.mark.parametrize("name, kwargs", VARIANTS)
def test_step_matches_keras_cell(name, kwargs):
    keras_cell = _keras_cell(name, **kwargs)
    x = _rng(3).normal(size=(BATCH, INPUT_DIM)).astype("float32")
    states = _states(name)
    output, new_states = keras_cell(x, states)
    cell = _our_cell(name, **kwargs)
    cell([x, *states])
    cell.set_weights(keras_cell.get_weights())
    _assert_all_close(cell([x, *states]), [output, *new_states])


@pytest.mark.parametrize("name", ["simple_rnn", "gru", "lstm"])
def test_state_shape(name):
    cell = _our_cell(name)
    assert cell.state_shapes == [(UNITS,)] * CELLS[name][3]
    assert cell.num_states == CELLS[name][3]
    outputs = cell([np.zeros((2, INPUT_DIM), "float32"), *_states(name, batch=2)])
    assert [tuple(o.shape) for o in outputs] == [(2, UNITS)] * (1 + CELLS[name][3])


@pytest.mark.parametrize("name", ["simple_rnn", "gru", "lstm"])
def test_default_bias_initialization_matches_keras(name):
    cell = _our_cell(name)
    cell([np.zeros((1, INPUT_DIM), "float32"), *_states(name, batch=1)])
    keras_cell = _keras_cell(name, built=False)
    keras_cell.build((None, INPUT_DIM))
    # The bias is deterministic (zeros; ones for the LSTM's forget gate).
    np.testing.assert_array_equal(
        cell.weights[2].numpy(), keras_cell.weights[2].numpy()
    )


@pytest.mark.parametrize("name, kwargs", VARIANTS)
@pytest.mark.parametrize("recurrent_dropout", [0.0, 0.4])
def test_step_dropout_matches_keras_cell_with_same_seed(
    name, kwargs, recurrent_dropout
):
    # Same seed, same draw order and the same number of masks (one, or one
    # per gate with recurrent dropout) give exactly Keras's masks.
    rates = {"dropout": 0.5, "recurrent_dropout": recurrent_dropout, "seed": 11}
    keras_cell = _keras_cell(name, **rates, **kwargs)
    x = _rng(3).normal(size=(BATCH, INPUT_DIM)).astype("float32")
    states = _states(name)
    cell = _our_cell(name, **rates, **kwargs)
    cell([x, *states])
    cell.set_weights(keras_cell.get_weights())
    output, new_states = keras_cell(x, states, training=True)
    _assert_all_close(cell([x, *states], training=True), [output, *new_states])
    # ... and in inference, dropout changes nothing.
    output, new_states = _keras_cell(name, **kwargs)(x, states)
    _assert_all_close(cell([x, *states], training=False), [output, *new_states])
    _assert_all_close(cell([x, *states]), [output, *new_states])


@pytest.mark.parametrize("name", ["simple_rnn", "gru", "lstm"])
def test_begin_sequence_keeps_one_mask(name):
    cell = _our_cell(name, dropout=0.5, recurrent_dropout=0.5, seed=1)
    x = np.ones((BATCH, INPUT_DIM), "float32")
    states = _states(name)
    cell([x, *states])
    _randomize(cell)
    step = _step_layer(cell)

    step.begin_sequence(BATCH, training=True)
    first = cell([x, *states], training=True)
    second = cell([x, *states], training=True)
    _assert_all_close(second, first, atol=0)
    step.end_sequence()

    # Outside a sequence, each training call draws its own masks.
    third = cell([x, *states], training=True)
    assert not np.allclose(
        keras.ops.convert_to_numpy(third[0]), keras.ops.convert_to_numpy(first[0])
    )

    # Inference ignores dropout, and begin_sequence(training=False) draws none.
    step.begin_sequence(BATCH, training=False)
    plain = _our_cell(name)
    plain([x, *states])
    plain.set_weights(cell.get_weights())
    _assert_all_close(cell([x, *states]), plain([x, *states]))
    step.end_sequence()


@pytest.mark.parametrize("name", ["simple_rnn", "gru", "lstm"])
def test_dropout_cell_config_round_trip_keeps_mask_count(name):
    # (Was the private step layer's config; the cell is now that layer.)
    cell = _our_cell(
        name, dropout=0.25, recurrent_dropout=0.5, seed=3, kernel_regularizer="l2"
    )
    cell([np.zeros((1, INPUT_DIM), "float32"), *_states(name, batch=1)])
    step = _step_layer(cell)
    config = step.get_config()
    clone = type(step).from_config(config)
    assert clone.get_config() == config
    expected = 1 if name == "simple_rnn" else (3 if name == "gru" else 4)
    assert step.mask_count == clone.mask_count == expected


@pytest.mark.parametrize("name, kwargs", VARIANTS)
def test_cell_config_round_trip(name, kwargs):
    cell = _our_cell(
        name,
        kernel_regularizer="l2",
        recurrent_constraint="non_neg",
        bias_initializer=keras.initializers.Constant(0.5),
        dropout=0.1,
        seed=4,
        name="my_cell",
        **kwargs,
    )
    config = cell.get_config()
    clone = type(cell).from_config(config)
    assert clone.get_config() == config
    serialized = keras.saving.serialize_keras_object(cell)
    assert serialized["registered_name"].startswith("cellgraph>")


@pytest.mark.parametrize("name", ["simple_rnn", "gru", "lstm"])
def test_regularizers_add_losses(name):
    cell = _our_cell(
        name, kernel_regularizer="l2", recurrent_regularizer="l2", bias_regularizer="l1"
    )
    cell([np.ones((2, INPUT_DIM), "float32"), *_states(name, batch=2)])
    assert len(cell.losses) == 3


@pytest.mark.parametrize("name", ["simple_rnn", "gru", "lstm"])
def test_invalid_arguments_raise(name):
    cls = CELLS[name][0]
    with pytest.raises(ValueError, match="units"):
        cls(0)
    with pytest.raises(ValueError, match="recurrent_dropout"):
        cls(4, recurrent_dropout=1.5)
    with pytest.raises(ValueError, match="dropout"):
        cls(4, dropout=-0.1)
    with pytest.raises(ValueError, match="features"):
        cls(4)(
            [keras.Input((3, 2)), *[keras.Input((4,)) for _ in range(CELLS[name][3])]]
        )


# -- Keras's own reference numbers (keras/src/layers/rnn/*_test.py) ------------------

SEQ_A = np.arange(24).reshape((2, 3, 4)).astype("float32")
SEQ_B = np.arange(24).reshape((2, 4, 3)).astype("float32")
SEQ_C = np.arange(72).reshape((3, 6, 4)).astype("float32")
MASK_1 = np.array([[True, True, False, True], [True, False, False, True]])
MASK_2 = np.array([[True, True, True, False], [True, True, False, False]])
MASK_2_BACKWARDS = np.array([[False, True, True, True], [False, False, True, True]])


def _rows(values, units):
    """`(batch, units)` with every row constant."""
    return np.repeat(np.asarray(values, "float32")[:, None], units, axis=1)


def _seqs(values, units):
    """`(batch, time, units)` with every step constant."""
    return np.repeat(np.asarray(values, "float32")[..., None], units, axis=-1)


def _case(
    name,
    units,
    expected,
    seq=SEQ_C,
    cell_kwargs=None,
    layer_kwargs=None,
    *,
    id,  # noqa: A002 (pytest's name)
    **call,
):
    """One Keras reference case; `call` holds initial_state/mask/stateful."""
    return pytest.param(
        name, units, cell_kwargs or {}, layer_kwargs or {}, seq, call, expected, id=id
    )


KERAS_REFERENCE_CASES = [
    # simple_rnn_test.py
    _case(
        "simple_rnn", 4, _rows([0.405432, 0.73605347], 4), SEQ_A, id="simple_rnn-basic"
    ),
    _case(
        "simple_rnn",
        4,
        _rows([0.405432, 0.73605347], 4),
        SEQ_A,
        layer_kwargs={"unroll": True},
        id="simple_rnn-unroll",
    ),
    _case(
        "simple_rnn",
        4,
        _rows([0.11144729, 0.5528889], 4),
        SEQ_A,
        layer_kwargs={"go_backwards": True},
        id="simple_rnn-backwards",
    ),
    _case(
        "simple_rnn",
        4,
        _rows([0.11144729, 0.5528889], 4),
        SEQ_A,
        layer_kwargs={"go_backwards": True, "unroll": True},
        id="simple_rnn-backwards-unroll",
    ),
    _case(
        "simple_rnn",
        4,
        _rows([0.40559256, 0.7361247], 4),
        SEQ_A,
        layer_kwargs={"stateful": True},
        stateful=True,
        id="simple_rnn-stateful",
    ),
    _case(
        "simple_rnn",
        4,
        _rows([0.33621645, 0.6262637], 4),
        SEQ_B,
        initial_state=[np.arange(8).reshape((2, 4))],
        id="simple_rnn-initial_state",
    ),
    _case(
        "simple_rnn",
        4,
        _rows([0.07344437, 0.43043602], 4),
        SEQ_B,
        layer_kwargs={"go_backwards": True},
        initial_state=[np.arange(8).reshape((2, 4))],
        id="simple_rnn-initial_state-backwards",
    ),
    _case(
        "simple_rnn",
        4,
        _rows([0.32951632, 0.61799484], 4),
        SEQ_B,
        layer_kwargs={"unroll": True},
        mask=MASK_1,
        id="simple_rnn-mask-unroll",
    ),
    _case(
        "simple_rnn",
        2,
        _seqs(
            [
                [0.0599281, 0.15122814, 0.15122814, 0.32394567],
                [0.3969304, 0.3969304, 0.3969304, 0.608085],
            ],
            2,
        ),
        SEQ_B,
        layer_kwargs={"return_sequences": True},
        mask=MASK_1,
        id="simple_rnn-mask-sequences",
    ),
    _case(
        "simple_rnn",
        2,
        _seqs(
            [[0.0599281, 0.15122814, 0.0, 0.32394567], [0.3969304, 0.0, 0.0, 0.608085]],
            2,
        ),
        SEQ_B,
        layer_kwargs={"return_sequences": True, "zero_output_for_mask": True},
        mask=MASK_1,
        id="simple_rnn-mask-zero_output",
    ),
    _case(
        "simple_rnn",
        4,
        _rows([0.07376196, 0.43645123], 4),
        SEQ_B,
        layer_kwargs={"go_backwards": True},
        mask=MASK_1,
        id="simple_rnn-mask-backwards",
    ),
    # gru_test.py
    _case("gru", 3, _rows([0.5217289, 0.6371659, 0.39384964], 3), id="gru-basic"),
    _case(
        "gru",
        3,
        _rows([0.24406259, 0.611516, 0.3928808], 3),
        layer_kwargs={"go_backwards": True},
        id="gru-backwards",
    ),
    _case(
        "gru",
        3,
        _rows([0.5217289, 0.6371659, 0.39384964], 3),
        layer_kwargs={"unroll": True},
        id="gru-unroll",
    ),
    _case(
        "gru",
        3,
        _rows([0.51447755, 0.6426879, 0.40208298], 3),
        cell_kwargs={"reset_after": False},
        id="gru-reset_before",
    ),
    _case(
        "gru",
        3,
        _rows([0.49988455, 0.64701194, 0.4103359], 3),
        cell_kwargs={"use_bias": False},
        id="gru-nobias",
    ),
    _case(
        "gru",
        4,
        _rows([0.29542392, 0.5885018], 4),
        SEQ_A,
        layer_kwargs={"stateful": True},
        stateful=True,
        id="gru-stateful",
    ),
    _case(
        "gru",
        2,
        np.array([[0.23774096, 0.33508456], [0.83659905, 1.0227708]]),
        SEQ_B,
        initial_state=[np.arange(4).reshape((2, 2))],
        id="gru-initial_state",
    ),
    _case(
        "gru",
        2,
        np.array([[0.13486053, 0.23261218], [0.78257304, 0.9691353]]),
        SEQ_B,
        layer_kwargs={"go_backwards": True},
        initial_state=[np.arange(4).reshape((2, 2))],
        id="gru-initial_state-backwards",
    ),
    _case(
        "gru",
        2,
        [np.array([[0.23774096, 0.33508456], [0.83659905, 1.0227708]])] * 2,
        SEQ_B,
        layer_kwargs={"return_state": True},
        initial_state=[np.arange(4).reshape((2, 2))],
        id="gru-return_state",
    ),
    _case(
        "gru",
        2,
        [np.array([[0.13486053, 0.23261218], [0.78257304, 0.9691353]])] * 2,
        SEQ_B,
        layer_kwargs={"return_state": True, "go_backwards": True},
        initial_state=[np.arange(4).reshape((2, 2))],
        id="gru-return_state-backwards",
    ),
    _case(
        "gru",
        2,
        _rows([0.19393763, 0.30818558], 2),
        SEQ_B,
        layer_kwargs={"unroll": True},
        mask=MASK_1,
        id="gru-mask-unroll",
    ),
    _case(
        "gru",
        2,
        _seqs(
            [
                [0.03606692, 0.09497581, 0.09497581, 0.19393763],
                [0.16051409, 0.16051409, 0.16051409, 0.30818558],
            ],
            2,
        ),
        SEQ_B,
        layer_kwargs={"return_sequences": True},
        mask=MASK_1,
        id="gru-mask-sequences",
    ),
    _case(
        "gru",
        2,
        _seqs(
            [
                [0.03606692, 0.09497581, 0.0, 0.19393763],
                [0.16051409, 0.0, 0.0, 0.30818558],
            ],
            2,
        ),
        SEQ_B,
        layer_kwargs={"return_sequences": True, "zero_output_for_mask": True},
        mask=MASK_1,
        id="gru-mask-zero_output",
    ),
    _case(
        "gru",
        2,
        _rows([0.11669192, 0.28380975], 2),
        SEQ_B,
        layer_kwargs={"go_backwards": True},
        mask=MASK_1,
        id="gru-mask-backwards",
    ),
    # lstm_test.py
    _case("lstm", 3, _rows([0.6288687, 0.86899155, 0.9460773], 3), id="lstm-basic"),
    _case(
        "lstm",
        3,
        _rows([0.6288687, 0.86899155, 0.9460773], 3),
        cell_kwargs={"implementation": 1},
        id="lstm-implementation1",
    ),
    _case(
        "lstm",
        3,
        _rows([0.35622165, 0.74789524, 0.8872726], 3),
        layer_kwargs={"go_backwards": True},
        id="lstm-backwards",
    ),
    _case(
        "lstm",
        3,
        _rows([0.6288687, 0.86899155, 0.9460773], 3),
        layer_kwargs={"unroll": True},
        id="lstm-unroll",
    ),
    _case(
        "lstm",
        3,
        _rows([0.57019705, 0.8661914, 0.9459622], 3),
        cell_kwargs={"unit_forget_bias": False},
        id="lstm-no_unit_forget_bias",
    ),
    _case(
        "lstm",
        3,
        _rows([0.54986924, 0.86226785, 0.9443936], 3),
        cell_kwargs={"use_bias": False},
        id="lstm-nobias",
    ),
    _case(
        "lstm",
        4,
        _rows([0.3124785, 0.6863672], 4),
        SEQ_A,
        layer_kwargs={"stateful": True},
        stateful=True,
        id="lstm-stateful",
    ),
    _case(
        "lstm",
        2,
        np.array([[0.20574439, 0.3558822], [0.64930826, 0.66276]]),
        SEQ_B,
        initial_state=[np.arange(4).reshape((2, 2))] * 2,
        id="lstm-initial_state",
    ),
    _case(
        "lstm",
        2,
        np.array([[0.13281618, 0.2790356], [0.5839337, 0.5992567]]),
        SEQ_B,
        layer_kwargs={"go_backwards": True},
        initial_state=[np.arange(4).reshape((2, 2))] * 2,
        id="lstm-initial_state-backwards",
    ),
    _case(
        "lstm",
        2,
        _rows([0.11755939, 0.28556206], 2),
        SEQ_B,
        layer_kwargs={"unroll": True},
        mask=MASK_2,
        id="lstm-mask-unroll",
    ),
    _case(
        "lstm",
        2,
        _seqs(
            [
                [0.01588910, 0.05552048, 0.11755939, 0.11755939],
                [0.14185596, 0.28556206, 0.28556206, 0.28556206],
            ],
            2,
        ),
        SEQ_B,
        layer_kwargs={"return_sequences": True},
        mask=MASK_2,
        id="lstm-mask-sequences",
    ),
    _case(
        "lstm",
        2,
        _seqs(
            [
                [0.01588910, 0.05552048, 0.11755939, 0.0],
                [0.14185596, 0.28556206, 0.0, 0.0],
            ],
            2,
        ),
        SEQ_B,
        layer_kwargs={"return_sequences": True, "zero_output_for_mask": True},
        mask=MASK_2,
        id="lstm-mask-zero_output",
    ),
    _case(
        "lstm",
        2,
        _rows([0.15341201, 0.3844719], 2),
        SEQ_B,
        layer_kwargs={"go_backwards": True},
        mask=MASK_2_BACKWARDS,
        id="lstm-mask-backwards",
    ),
]


@pytest.mark.parametrize(
    "name, units, cell_kwargs, layer_kwargs, seq, call, expected", KERAS_REFERENCE_CASES
)
def test_keras_reference_numbers(
    name, units, cell_kwargs, layer_kwargs, seq, call, expected
):
    cell = CELLS[name][0](
        units,
        kernel_initializer=keras.initializers.Constant(0.01),
        recurrent_initializer=keras.initializers.Constant(0.02),
        bias_initializer=keras.initializers.Constant(0.03),
        input_dim=seq.shape[-1],
        **cell_kwargs,
    )
    layer = cell.get_layer(**layer_kwargs)
    call = dict(call)
    if call.pop("stateful", False):
        layer(seq)
        _assert_all_close(layer(seq), expected)
        layer.reset_states()
        layer(seq)
        _assert_all_close(layer(seq), expected)
        return
    if "initial_state" in call:
        call["initial_state"] = [s.astype("float32") for s in call["initial_state"]]
    _assert_all_close(layer(seq, **call), expected)


# -- whole sequences against keras.layers.SimpleRNN / GRU / LSTM ---------------------


def _layer_pair(name, cell_kwargs=None, **layer_kwargs):
    """Keras's layer and ours, same weights, neither called yet."""
    cell_kwargs = cell_kwargs or {}
    keras_layer = CELLS[name][2](UNITS, **cell_kwargs, **layer_kwargs)
    batch = BATCH if layer_kwargs.get("stateful") else None
    keras_layer.build((batch, None, INPUT_DIM))
    _randomize(keras_layer.cell)
    cell = _our_cell(name, **cell_kwargs)
    layer = cell.get_layer(**layer_kwargs)
    cell.set_weights(keras_layer.cell.get_weights())
    return keras_layer, layer


SEQUENCE_OPTIONS = [
    pytest.param({}, id="last"),
    pytest.param({"return_sequences": True}, id="sequences"),
    pytest.param({"return_state": True}, id="state"),
    pytest.param({"go_backwards": True, "return_sequences": True}, id="backwards"),
    pytest.param({"go_backwards": True, "return_state": True}, id="backwards-state"),
    pytest.param({"unroll": True, "return_sequences": True}, id="unroll"),
    pytest.param(
        {"unroll": True, "go_backwards": True, "return_state": True},
        id="unroll-backwards-state",
    ),
]


@pytest.mark.portable
@pytest.mark.parametrize("name, cell_kwargs", SEQUENCE_VARIANTS)
@pytest.mark.parametrize("options", SEQUENCE_OPTIONS)
def test_sequence_matches_keras_layer(name, cell_kwargs, options):
    keras_layer, layer = _layer_pair(name, cell_kwargs, **options)
    x = _sequence()
    _assert_all_close(layer(x), keras_layer(x))
    states = _states(name)
    _assert_all_close(
        layer(x, initial_state=states), keras_layer(x, initial_state=states)
    )


def _padded_sequence():
    """Right-, left- and inner-padded samples (zeros at the padded steps)."""
    x = _sequence(batch=4, time=6)
    mask = np.array(
        [
            [1, 1, 1, 1, 1, 1],
            [1, 1, 1, 0, 0, 0],
            [0, 0, 1, 1, 1, 1],
            [1, 0, 1, 1, 0, 1],
        ],
        dtype=bool,
    )
    return x * mask[..., None], mask


@pytest.mark.portable
@pytest.mark.parametrize("name", ["simple_rnn", "gru", "lstm"])
@pytest.mark.parametrize("masking", ["masking_layer", "explicit_mask"])
@pytest.mark.parametrize(
    "options",
    [
        pytest.param({"return_sequences": True, "return_state": True}, id="sequences"),
        pytest.param({"go_backwards": True, "return_state": True}, id="backwards"),
        pytest.param({"unroll": True, "return_sequences": True}, id="unroll"),
        pytest.param(
            {"return_sequences": True, "zero_output_for_mask": True}, id="zero_output"
        ),
    ],
)
def test_masked_sequence_matches_keras_layer(name, masking, options):
    keras_layer, layer = _layer_pair(name, **options)
    x, mask = _padded_sequence()
    if masking == "explicit_mask":
        _assert_all_close(layer(x, mask=mask), keras_layer(x, mask=mask))
        return
    inputs = keras.Input(x.shape[1:])  # unroll needs the time dimension
    masked = keras.layers.Masking(0.0)(inputs)
    ours = keras.Model(inputs, layer(masked))
    theirs = keras.Model(inputs, keras_layer(masked))
    _assert_all_close(ours(x), theirs(x))


@pytest.mark.parametrize("name", ["simple_rnn", "gru", "lstm"])
def test_padded_sequence_ends_in_unpadded_state(name):
    layer = _our_cell(name).get_layer(return_state=True)
    x, mask = _padded_sequence()
    short = layer(x[1:2, :3])
    padded = layer(x[1:2], mask=mask[1:2])
    _assert_all_close(padded, short)


@pytest.mark.portable
@pytest.mark.parametrize("name", ["simple_rnn", "gru", "lstm"])
def test_stateful_matches_keras_layer(name):
    keras_layer, layer = _layer_pair(name, stateful=True, return_sequences=True)
    first, second = _sequence(seed=5), _sequence(seed=6)
    for x in (first, second, first):
        _assert_all_close(layer(x), keras_layer(x))
    layer.reset_states()
    keras_layer.reset_state()
    _assert_all_close(layer(second), keras_layer(second))


# -- dropout over a sequence ---------------------------------------------------------


@pytest.mark.parametrize("name, cell_kwargs", SEQUENCE_VARIANTS)
def test_dropout_is_inactive_in_inference(name, cell_kwargs):
    keras_layer, plain = _layer_pair(name, cell_kwargs, return_sequences=True)
    cell = _our_cell(name, dropout=0.5, recurrent_dropout=0.5, **cell_kwargs)
    layer = cell.get_layer(return_sequences=True)
    cell.set_weights(keras_layer.cell.get_weights())
    x = _sequence()
    expected = keras_layer(x)
    _assert_all_close(layer(x), expected)
    _assert_all_close(layer(x, training=False), expected)
    _assert_all_close(plain(x, training=True), expected)


@pytest.mark.parametrize("name, cell_kwargs", SEQUENCE_VARIANTS)
@pytest.mark.parametrize("rates", [(0.5, 0.0), (0.3, 0.4), (0.0, 0.5)])
def test_training_dropout_matches_keras_layer_with_same_seed(name, cell_kwargs, rates):
    # Keras draws its masks once per sequence, before the loop; so does the
    # engine (begin_sequence). Same seed and draw order: the same numbers.
    dropout, recurrent_dropout = rates
    kwargs = {"dropout": dropout, "recurrent_dropout": recurrent_dropout, "seed": 7}
    keras_layer, layer = _layer_pair(
        name, {**cell_kwargs, **kwargs}, return_sequences=True
    )
    x = _sequence()
    _assert_all_close(layer(x, training=True), keras_layer(x, training=True))


def _identity_simple_rnn(
    input_dropout, recurrent_dropout, input_weight, recurrent_weight
):
    size = 16
    cell = SimpleRNNCell(
        size,
        activation=None,
        use_bias=False,
        dropout=input_dropout,
        recurrent_dropout=recurrent_dropout,
        seed=0,
        input_dim=size,
    )
    layer = cell.get_layer(return_sequences=True)
    cell.set_weights(
        [
            input_weight * np.eye(size, dtype="float32"),
            recurrent_weight * np.eye(size, dtype="float32"),
        ]
    )
    return layer


def test_input_dropout_mask_is_the_same_at_every_step():
    # h_t = (x_t * mask) @ I: with x_t = 1, h_t is the mask itself.
    layer = _identity_simple_rnn(0.5, 0.0, input_weight=1.0, recurrent_weight=0.0)
    y = keras.ops.convert_to_numpy(
        layer(np.ones((8, 10, 16), "float32"), training=True)
    )
    assert set(np.unique(y)) == {0.0, 2.0}
    np.testing.assert_array_equal(y, np.broadcast_to(y[:, :1], y.shape))
    # A new sequence draws a new mask.
    y2 = keras.ops.convert_to_numpy(
        layer(np.ones((8, 10, 16), "float32"), training=True)
    )
    assert not np.array_equal(y, y2)


def test_recurrent_dropout_mask_is_the_same_at_every_step():
    # x = 0 and h_0 = 1: h_t = (h_tm1 * mask) @ I = mask ** t. One mask for the
    # sequence keeps the same units alive at every step, each equal to 2 ** t.
    layer = _identity_simple_rnn(0.0, 0.5, input_weight=0.0, recurrent_weight=1.0)
    x = np.zeros((8, 6, 16), "float32")
    y = keras.ops.convert_to_numpy(
        layer(x, initial_state=[np.ones((8, 16), "float32")], training=True)
    )
    alive = y[:, 0] != 0
    assert 0 < alive.sum() < alive.size
    powers = 2.0 ** np.arange(1, 7, dtype="float32")
    np.testing.assert_array_equal(y, alive[:, None, :] * powers[None, :, None])


@pytest.mark.portable
@pytest.mark.parametrize("name", ["simple_rnn", "gru", "lstm"])
def test_fit_with_dropout(name):
    cell = _our_cell(name, dropout=0.2, recurrent_dropout=0.2, seed=1)
    model = keras.Sequential(
        [keras.Input((TIME, INPUT_DIM)), cell.get_layer(), keras.layers.Dense(1)]
    )
    model.compile("adam", "mse")
    before = [w.numpy().copy() for w in cell.weights]
    history = model.fit(
        _sequence(batch=8), np.ones((8, 1)), epochs=2, batch_size=4, verbose=0
    )
    assert np.all(np.isfinite(history.history["loss"]))
    assert any(
        not np.array_equal(b, w.numpy())
        for b, w in zip(before, cell.weights, strict=True)
    )


# -- saving ----------------------------------------------------------------------------


@pytest.mark.portable
@pytest.mark.parametrize("name, cell_kwargs", SEQUENCE_VARIANTS)
def test_save_and_load_round_trip(name, cell_kwargs, tmp_path):
    cell = _our_cell(
        name,
        kernel_regularizer="l2",
        recurrent_constraint="max_norm",
        dropout=0.1,
        recurrent_dropout=0.2,
        seed=3,
        **cell_kwargs,
    )
    inputs = keras.Input((None, INPUT_DIM))
    outputs = cell.get_layer(return_sequences=True)(inputs)
    model = keras.Model(inputs, keras.layers.Dense(2)(outputs))
    _randomize(cell)
    x = _sequence()
    expected = keras.ops.convert_to_numpy(model(x))

    path = tmp_path / "m.keras"
    model.save(path)
    loaded = keras.models.load_model(path, safe_mode=True)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(loaded(x)), expected)
    # predict() runs a compiled graph: compare it with the original's.
    np.testing.assert_array_equal(
        loaded.predict(x, verbose=0), model.predict(x, verbose=0)
    )
    assert len(loaded.weights) == len(model.weights)
    for a, b in zip(loaded.weights, model.weights, strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
