"""The engine's contract: per-call plans, dtypes, combined masks, builder hook."""

import functools
import threading

import keras
import numpy as np
import pytest
from keras import layers, ops

import cellgraph as cg
from cellgraph.feedback import FeedbackChain, Splitter

pytestmark = pytest.mark.portable

BIG = 2**24  # float32 has no integers past this one apart


# -- threads ------------------------------------------------------------------
def attention_like_layer():
    """A step graph that reads a constant: each call's constant matters."""
    x_t, h_tm1 = keras.Input((3,)), keras.Input((4,))
    data = keras.Input((5, 4))
    summary = layers.GlobalAveragePooling1D()(data)
    h_t = layers.Dense(4, activation="tanh")(
        layers.Concatenate()([x_t, h_tm1, summary])
    )
    return cg.RecurrentModel(
        input=x_t,
        output=h_t,
        initial_states=[h_tm1],
        final_states=[h_t],
        constants=[data],
        return_sequences=True,
    )


@pytest.mark.parametrize("masked", [False, True])
def test_eager_calls_from_four_threads_equal_the_serial_results(rng, masked):
    rnn = attention_like_layer()
    jobs = []
    for i in range(8):
        x = rng.normal(size=(2, 6, 3)).astype("float32")
        data = rng.normal(size=(2, 5, 4)).astype("float32") + i
        mask = None
        if masked:
            mask = np.ones((2, 6), bool)
            mask[0, 6 - 1 - i % 4 :] = False
        jobs.append((x, data, mask))

    def run(job):
        x, data, mask = job
        return ops.convert_to_numpy(rnn(x, constants=[data], mask=mask))

    serial = [run(job) for job in jobs]
    results, errors = [None] * len(jobs), []

    def worker(indices):
        try:
            for _ in range(3):
                for i in indices:
                    results[i] = run(jobs[i])
        except Exception as error:  # reported below, with the thread's error
            errors.append(error)

    threads = [
        threading.Thread(target=worker, args=(range(k, len(jobs), 4),))
        for k in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    for got, want in zip(results, serial):
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)


# -- dtypes -------------------------------------------------------------------
def id_sum_layer(id_shape, dtype, with_float=False):
    """Adds the step's ids to an integer state: the final state is their sum."""
    ids_t = keras.Input(id_shape, dtype=dtype)
    total_tm1 = keras.Input(id_shape, dtype=dtype)
    inputs = [ids_t]
    output = total_t = layers.Add()([total_tm1, ids_t])
    if with_float:
        x_t = keras.Input((2,))
        inputs = [x_t, ids_t]
        output = layers.Dense(1)(x_t)
    return cg.RecurrentModel(
        input=inputs if with_float else ids_t,
        output=output,
        initial_states=[total_tm1],
        final_states=[total_t],
        return_state=True,
    )


@pytest.mark.parametrize("dtype", ["int32", "int64"])
@pytest.mark.parametrize("id_shape", [(), (2,)], ids=["scalar", "vector"])
@pytest.mark.parametrize("with_float", [False, True], ids=["alone", "beside_float"])
def test_integer_ids_above_2_24_cross_the_loop_exactly(dtype, id_shape, with_float):
    if dtype == "int64" and keras.backend.backend() == "jax":
        pytest.skip("JAX runs int64 as int32 unless jax_enable_x64 is set")
    rnn = id_sum_layer(id_shape, dtype, with_float)
    ids = np.zeros((2, 3, *id_shape), dtype)
    ids[:, 0] = BIG + 1
    ids[:, 1] = 1
    ids[:, 2] = 1
    if with_float:
        x = np.ones((2, 3, 2), "float32")
        _, total = rnn([x, ids])
    else:
        _, total = rnn(ids)
    total = ops.convert_to_numpy(total)
    assert total.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(total, BIG + 3)


def test_int32_counter_state_counts_past_2_24():
    x_t = keras.Input((1,))
    count_tm1 = keras.Input((1,), dtype="int32")
    one = layers.Identity()(ops.ones_like(count_tm1))
    count_t = layers.Add()([count_tm1, one])
    rnn = cg.RecurrentModel(
        input=x_t,
        output=layers.Dense(1)(x_t),
        initial_states=[count_tm1],
        final_states=[count_t],
        return_state=True,
    )
    start = np.full((2, 1), BIG, "int32")
    _, count = rnn(np.zeros((2, 3, 1), "float32"), initial_state=[start])
    np.testing.assert_array_equal(ops.convert_to_numpy(count), BIG + 3)


@pytest.mark.parametrize("policy", ["mixed_bfloat16", "mixed_float16"])
def test_token_ids_reach_the_embedding_unrounded_under_mixed_precision(policy):
    ids = np.array([[257, 1001, 30001], [3001, 4093, 2049]], "int32")
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(policy)
    try:
        embedding = layers.Embedding(40000, 3)
        ids_t, h_tm1 = keras.Input((), dtype="int32"), keras.Input((3,))
        h_t = layers.Add()([h_tm1, embedding(ids_t)])
        rnn = cg.RecurrentModel(
            input=ids_t,
            output=h_t,
            initial_states=[h_tm1],
            final_states=[h_t],
            return_sequences=True,
        )
        got = ops.convert_to_numpy(ops.cast(rnn(ids), "float32"))
        rows = ops.convert_to_numpy(ops.cast(embedding(ids), "float32"))
    finally:
        keras.config.set_dtype_policy(previous)
    np.testing.assert_allclose(got, np.cumsum(rows, axis=1), rtol=2e-2, atol=2e-2)
    # Rounded ids (256, 1000, 29952, ...) would read other, random rows.
    rounded = ops.convert_to_numpy(
        ops.cast(embedding(ops.cast(ops.cast(ids, "bfloat16"), "int32")), "float32")
    )
    assert not np.allclose(rows, rounded, atol=1e-3)


def test_ids_beside_a_float_input_under_bfloat16():
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_bfloat16")
    try:
        ids_t, x_t = keras.Input((), dtype="int32"), keras.Input((2,))
        last_tm1 = keras.Input((), dtype="int32")
        rnn = cg.RecurrentModel(
            input=[x_t, ids_t],
            output=layers.Dense(2)(x_t),
            initial_states=[last_tm1],
            final_states=[layers.Identity()(ids_t)],
            return_state=True,
        )
        ids = np.array([[5, 257], [1001, 30001]], "int32")
        _, last = rnn([np.ones((2, 2, 2), "float32"), ids])
    finally:
        keras.config.set_dtype_policy(previous)
    np.testing.assert_array_equal(ops.convert_to_numpy(last), [257, 30001])


# -- every public layer under mixed precision -----------------------------------
def _zoo():
    from test_safe_loading import MODELS

    return MODELS


@functools.cache
def _float32_reference(name):
    """A zoo model's float32 weights, batch and predictions (NumPy arrays).

    Both policies compare with the same float32 run, so it is built and
    predicted once per model.
    """
    keras.utils.set_random_seed(1)
    reference, shapes = _zoo()[name]()
    rng = np.random.default_rng(0)
    data = [rng.normal(size=s).astype("float32") for s in shapes]
    data = data if len(data) > 1 else data[0]
    return reference.get_weights(), data, reference.predict(data, verbose=0)


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
@pytest.mark.parametrize("name", sorted(_zoo()))
def test_every_public_layer_under_mixed_precision(name, policy):
    build = _zoo()[name]
    weights, data, want = _float32_reference(name)
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(policy)
    try:
        model, _ = build()
        model.set_weights(weights)
        got = model.predict(data, verbose=0)
        compute = keras.config.dtype_policy().compute_dtype
    finally:
        keras.config.set_dtype_policy(previous)
    for w in model.weights:  # variables stay float32, as Keras's layers do
        if "float" in w.dtype:
            assert w.dtype == "float32", w.path
    got = got if isinstance(got, list) else [got]
    want = want if isinstance(want, list) else [want]
    tolerance = 3e-2 if policy == "mixed_float16" else 1.5e-1
    for g, w in zip(got, want):
        assert np.all(np.isfinite(np.asarray(g, "float32")))
        scale = max(1.0, float(np.max(np.abs(w))))
        np.testing.assert_allclose(
            np.asarray(g, "float32"), w, atol=tolerance * scale, rtol=tolerance
        )
    assert compute in ("float16", "bfloat16")


# -- masks ---------------------------------------------------------------------
def two_input_sum():
    """Sums both inputs into the state; counts the processed steps."""
    a_t, b_t = keras.Input((2,)), keras.Input((2,))
    total_tm1, steps_tm1 = keras.Input((2,)), keras.Input((1,))
    total_t = layers.Add()([total_tm1, a_t, b_t])
    steps_t = layers.Identity()(steps_tm1 + 1.0)
    return cg.RecurrentModel(
        input=[a_t, b_t],
        output=total_t,
        initial_states=[total_tm1, steps_tm1],
        final_states=[total_t, steps_t],
        return_state=True,
    )


def test_masks_of_several_inputs_are_combined_with_and(rng):
    rnn = two_input_sum()
    a = rng.normal(size=(2, 5, 2)).astype("float32")
    b = rng.normal(size=(2, 5, 2)).astype("float32")
    a_mask = np.ones((2, 5), bool)
    b_mask = np.ones((2, 5), bool)
    b_mask[:, 3:] = False  # only the second input is padded
    _, total, steps = rnn([a, b], mask=[a_mask, b_mask])
    _, want_total, want_steps = rnn([a[:, :3], b[:, :3]])
    np.testing.assert_allclose(ops.convert_to_numpy(steps), 3.0)
    np.testing.assert_allclose(
        ops.convert_to_numpy(total), ops.convert_to_numpy(want_total), rtol=1e-6
    )
    np.testing.assert_allclose(ops.convert_to_numpy(want_steps), 3.0)


def test_masks_from_two_masked_inputs_in_a_model(rng):
    rnn = two_input_sum()
    a_in, b_in = keras.Input((5, 2)), keras.Input((5, 2))
    outputs = rnn([layers.Masking()(a_in), layers.Masking()(b_in)])
    model = keras.Model([a_in, b_in], outputs[2])
    a = rng.normal(size=(2, 5, 2)).astype("float32")
    b = rng.normal(size=(2, 5, 2)).astype("float32")
    b[:, 3:] = 0.0
    np.testing.assert_allclose(model.predict([a, b], verbose=0), 3.0)


# -- the step graph as the hinge ----------------------------------------------------
def test_from_step_graph_and_step_graph_property(rng):
    x_t, h_tm1 = keras.Input((3,)), keras.Input((4,))
    h_t = layers.Dense(4, activation="tanh")(layers.Concatenate()([x_t, h_tm1]))
    graph = cg.StepGraph(
        inputs=x_t, output=h_t, initial_states=[h_tm1], final_states=[h_t]
    )
    rnn = cg.RecurrentModel.from_step_graph(graph, return_sequences=True)
    assert rnn.step_graph is graph
    assert rnn.step_model is graph.model
    assert rnn.step_graph.layout == cg.GraphLayout(num_inputs=1, num_states=1)
    x = rng.normal(size=(2, 5, 3)).astype("float32")
    y = ops.convert_to_numpy(rnn(x))
    states = [np.zeros((2, 4), "float32")]
    for t in range(5):
        out, states = rnn.step(x[:, t], states)
        np.testing.assert_allclose(
            y[:, t], ops.convert_to_numpy(out), rtol=1e-5, atol=1e-6
        )
    with pytest.raises(TypeError, match="`graph`.*StepGraph.*Received: dict"):
        cg.RecurrentModel.from_step_graph({})
    with pytest.raises(TypeError, match="roles from the graph.*'output'"):
        cg.RecurrentModel.from_step_graph(graph, output=h_t)


def test_recurrent_model_without_a_graph_is_refused():
    with pytest.raises(ValueError, match="`input` and `output`.*from_step_graph"):
        cg.RecurrentModel(return_sequences=True)


def test_graph_cell_lives_beside_recurrent_model():
    from cellgraph import recurrent_model

    assert cg.GraphCell is recurrent_model.GraphCell


# -- one builder hook: options validated at construction ---------------------------
def _simple_graph():
    x_t, h_tm1 = keras.Input((3,)), keras.Input((4,))
    h_t = layers.Dense(4)(layers.Concatenate()([x_t, h_tm1]))
    return {
        "input": x_t,
        "output": h_t,
        "initial_states": [h_tm1],
        "final_states": [h_t],
    }


def _chain():
    return FeedbackChain([layers.Dense(3), Splitter("s")], input_shape=(3,))


BUILDERS = {
    "RecurrentModel": lambda **kw: cg.RecurrentModel(**_simple_graph(), **kw),
    "RecurrentSequential": lambda **kw: cg.RecurrentSequential(
        layers=[cg.cells.GRUCell(3)], readout="add", **kw
    ),
    "Superloop": lambda **kw: cg.Superloop(
        layers=1, units=2, systems=[cg.systems.RegisterMemory(2, 2)], **kw
    ),
    "FeedbackChain": lambda **kw: _chain().get_layer(**kw),
}
BAD_OPTIONS = [
    ({"teacher_force": 2.0}, ValueError, r"`teacher_force`.*teacher_force=2\.0"),
    ({"state_initializer": "bogus"}, ValueError, "`state_initializer`.*'bogus'"),
    ({"output_length": 5}, ValueError, "`output_length`.*decode=False"),
    ({"return_state": "yes"}, TypeError, "`return_state`.*'yes'"),
]


@pytest.mark.parametrize("builder", sorted(BUILDERS))
@pytest.mark.parametrize("case", range(len(BAD_OPTIONS)))
def test_builders_validate_options_at_construction(builder, case):
    options, error, message = BAD_OPTIONS[case]
    if builder == "Superloop" and (
        "teacher_force" in options or "output_length" in options
    ):
        pytest.skip("Superloop has no teacher forcing; `timesteps` sets the length")
    with pytest.raises(error, match=message):
        BUILDERS[builder](**options)


def test_superloop_refuses_teacher_force_as_an_unknown_argument():
    with pytest.raises(TypeError, match=r"\['teacher_force'\].*timesteps"):
        cg.Superloop(layers=1, units=2, systems=[], teacher_force=True)


def test_builders_give_their_graph_through_the_hook():
    for builder in (cg.RecurrentSequential, cg.Superloop):
        assert builder.build_step_graph is not cg.RecurrentModel.build_step_graph
    stack = BUILDERS["RecurrentSequential"](return_sequences=True)
    assert stack.step_graph is None
    stack(np.zeros((2, 4, 3), "float32"))
    assert isinstance(stack.step_graph, cg.StepGraph)
    assert stack.step_graph.layout.has_readout


# -- contract changes ------------------------------------------------------------
def test_decode_returns_the_sequence_by_default():
    rnn = cg.RecurrentSequential(decode=True, output_length=10)
    rnn.add(cg.cells.LSTMCell(6))
    model = keras.Sequential([keras.Input((20,)), rnn])
    assert model.output_shape == (None, 10, 6)
    last = cg.RecurrentSequential(decode=True, output_length=10, return_sequences=False)
    last.add(cg.cells.LSTMCell(6))
    assert last(np.zeros((2, 20), "float32")).shape == (2, 6)
    plain = cg.RecurrentModel(**_simple_graph())
    assert plain(np.zeros((2, 5, 3), "float32")).shape == (2, 4)


def test_training_in_one_thread_leaves_inference_in_another_unchanged(rng):
    """A cell's per-sequence dropout masks belong to the thread that drew them."""
    rnn = cg.cells.GRUCell(
        4, input_dim=3, dropout=0.5, recurrent_dropout=0.5
    ).get_layer()
    x = rng.normal(size=(2, 6, 3)).astype("float32")
    want = ops.convert_to_numpy(rnn(x, training=False))
    results, errors, stop = [], [], threading.Event()

    def train():
        try:
            while not stop.is_set():
                rnn(x, training=True)
        except Exception as error:  # reported below
            errors.append(error)

    trainer = threading.Thread(target=train)
    trainer.start()
    try:
        for _ in range(20):
            results.append(ops.convert_to_numpy(rnn(x, training=False)))
    finally:
        stop.set()
        trainer.join()
    assert not errors, errors
    for got in results:
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
