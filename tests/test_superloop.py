"""Tests of `cellgraph.superloop.Superloop`: step graph, feedback, config, saving."""

import keras
import numpy as np
import pytest
from keras import layers

import cellgraph as cg
from cellgraph.superloop import Superloop
from cellgraph.systems import AddressableMemory, Attention, RegisterMemory, Stack

# The usage example of the original project's README (seed 002), verbatim.
SEED_CONFIG = {
    "timesteps": 64,
    "suppress_output": 0,
    "model_name": "Main",
    "model_inputs": 2,
    "model_outputs": 0,
    "recurrent_model": "SGU",
    "recurrent_layers": 32,
    "recurrent_units": 16,
    "superloop_models": ["Attention"],
    "printvalues": False,
    "Attention": {
        "datapoints": 16,
        "outputs": 1,
    },
}


def np_(x):
    return keras.ops.convert_to_numpy(x)


def random(rng, *shape):
    return rng.standard_normal(shape).astype("float32")


def small_superloop(**kwargs):
    options = {
        "layers": 2,
        "units": 4,
        "systems": [Attention(datapoints=6, width=2)],
        "return_state": True,
    }
    options.update(kwargs)
    return Superloop(**options)


# -- the loop equals its steps ---------------------------------------------
def test_sequence_output_and_states_equal_a_loop_of_steps(rng):
    superloop = small_superloop(
        systems=[Attention(datapoints=6, width=2), RegisterMemory(depth=3, width=2)]
    )
    x, data = random(rng, 3, 5, 3), random(rng, 3, 6, 2)
    output, *final = superloop(x, constants=[data])
    assert output.shape == (3, 5, 4)

    states = None
    for t in range(5):
        step_output, states = superloop.step(x[:, t], states, constants=[data])
        # atol: XLA's compiled loop and eager steps round differently near 0
        np.testing.assert_allclose(
            np_(output[:, t]), np_(step_output), rtol=1e-5, atol=1e-6
        )
    assert len(final) == len(states) == len(superloop.state_names)
    for name, got, want in zip(superloop.state_names, final, states):
        np.testing.assert_allclose(
            np_(got), np_(want), rtol=1e-5, atol=1e-6, err_msg=name
        )


def test_timesteps_run_equals_a_loop_of_steps_and_trace_records_them(rng):
    superloop = small_superloop(timesteps=7, outputs=3)
    data = random(rng, 2, 6, 2)
    output, *final = superloop(data)
    assert output.shape == (2, 7, 3)

    trace = superloop.trace(data)
    states = None
    for t in range(7):
        step_output, states = superloop.step(data, states)
        np.testing.assert_allclose(np_(output[:, t]), np_(step_output), rtol=1e-5)
        for name, state in zip(superloop.state_names, states):
            np.testing.assert_allclose(trace[name][:, t], np_(state), rtol=1e-5)
    np.testing.assert_allclose(trace["output"], np_(output), rtol=1e-5)
    position = superloop.state_names.index("attention/position")
    np.testing.assert_allclose(np_(final[position]), trace["attention/position"][:, -1])


def test_step_builds_the_layer_and_get_cell_runs_one_step(rng):
    superloop = small_superloop(return_state=False)
    x_t, data = random(rng, 2, 3), random(rng, 2, 6, 2)
    output, states = superloop.step(x_t, constants=[data])
    assert output.shape == (2, 4) and len(states) == len(superloop.state_names)
    cell = superloop.get_cell()
    again = cell([x_t, *superloop.get_initial_state(2), data])
    np.testing.assert_allclose(np_(again[0]), np_(output), rtol=1e-6)
    with pytest.raises(ValueError, match="call the layer once"):
        small_superloop().get_cell()


def test_state_names_order_cells_then_each_systems_read_and_states():
    attention, memory = Attention(datapoints=4, width=1), RegisterMemory(2, 3)
    superloop = Superloop(cell="lstm", layers=2, units=3, systems=[attention, memory])
    assert superloop.state_names == [
        "lstm_0/h",
        "lstm_0/c",
        "lstm_1/h",
        "lstm_1/c",
        f"{attention.name}/read",
        f"{attention.name}/position",
        f"{memory.name}/read",
        f"{memory.name}/memory",
    ]
    assert superloop.state_shapes == [(3,)] * 4 + [(1,), (1,), (3,), (2, 3)]
    assert superloop.systems == [attention, memory]
    plain = Superloop(cell=cg.cells.SimpleRNNCell, layers=1, units=2)
    assert plain.state_names == ["simplernn_0/h"]


# -- the superloop feeds the reads back -------------------------------------
def test_equals_an_explicitly_wired_recurrent_model_with_the_same_weights(rng):
    superloop = small_superloop(outputs=2)
    x, data = random(rng, 2, 6, 3), random(rng, 2, 6, 2)
    expected, *_ = superloop(x, constants=[data])

    # The same step graph, wired by hand: the read is an explicit state.
    cells = [cg.cells.SGUCell(4), cg.cells.SGUCell(4)]
    attention = Attention(datapoints=6, width=2)
    head = layers.Dense(2)
    x_t = keras.Input((3,))
    read_tm1 = keras.Input((2,))
    h_tm1 = [keras.Input((4,)), keras.Input((4,))]
    (position_tm1,) = attention.initial_state_inputs()
    (data_in,) = attention.constant_inputs()
    h = layers.Concatenate()([x_t, read_tm1])
    h, h0 = cells[0]([h, h_tm1[0]])
    h, h1 = cells[1]([h, h_tm1[1]])
    read_t, position_t = attention([h, position_tm1, data_in])
    manual = cg.RecurrentModel(
        input=x_t,
        output=head(h),
        initial_states=[*h_tm1, read_tm1, position_tm1],
        final_states=[h0, h1, read_t, position_t],
        constants=[data_in],
        return_sequences=True,
    )
    for mine, theirs in zip(
        [*cells, head, attention],
        [*superloop.cells, superloop.output_layer] + superloop.systems,
    ):
        mine.set_weights(theirs.get_weights())
    np.testing.assert_allclose(
        np_(manual(x, constants=[data])), np_(expected), rtol=1e-5, atol=1e-6
    )


def test_the_data_reaches_the_output_only_through_the_read_of_the_previous_step(rng):
    superloop = small_superloop(return_state=False)
    x = random(rng, 2, 4, 3)
    first = np_(superloop(x, constants=[random(rng, 2, 6, 2)]))
    second = np_(superloop(x, constants=[random(rng, 2, 6, 2)]))
    # Step 0 sees zero reads; from step 1 on it sees what the system read.
    np.testing.assert_array_equal(first[:, 0], second[:, 0])
    assert np.abs(first[:, 1:] - second[:, 1:]).min() > 0.0


# -- suppress_output ------------------------------------------------------------
def test_suppress_output_drops_the_first_outputs_of_the_sequence(rng):
    superloop = small_superloop(return_state=False)
    suppressed = small_superloop(return_state=False, suppress_output=2)
    x, data = random(rng, 2, 5, 3), random(rng, 2, 6, 2)
    full = np_(superloop(x, constants=[data]))
    suppressed(x, constants=[data])
    suppressed.set_weights(superloop.get_weights())
    np.testing.assert_allclose(
        np_(suppressed(x, constants=[data])), full[:, 2:], rtol=1e-6
    )
    symbolic = suppressed(keras.Input((5, 3)), constants=[keras.Input((6, 2))])
    assert tuple(symbolic.shape) == (None, 3, 4)
    last = small_superloop(return_sequences=False, suppress_output=2)
    output, *_ = last(x, constants=[data])
    assert output.shape == (2, 4)


def test_suppress_output_also_slices_the_mask():
    superloop = small_superloop(return_state=False, suppress_output=1)
    tokens = keras.Input((5,), dtype="int32")
    x = layers.Embedding(10, 3, mask_zero=True)(tokens)
    y = superloop(x, constants=[keras.Input((6, 2))])
    assert tuple(y.shape) == (None, 4, 4)
    assert superloop.compute_mask(None, keras.ops.ones((2, 5), "bool")).shape == (
        2,
        4,
    )


# -- the original project's CONFIG -----------------------------------------
def test_seed_readme_example_runs_translated():
    # Original:
    #   slmodel = superloop.Model(CONFIG); (input, dummy_output) = slmodel.build_all()
    #   model = keras.models.Model(inputs=[input, slmodel.superloop_models[0].data],
    #                              outputs=slmodel.superloop_models[0].position)
    superloop = Superloop.from_superloop_config(SEED_CONFIG, return_state=True)
    sequence = keras.Input((SEED_CONFIG["timesteps"], SEED_CONFIG["model_inputs"]))
    data = keras.Input((16, 1))
    _, *states = superloop(sequence, constants=[data])
    position = states[superloop.state_names.index("attention/position")]
    model = keras.Model(inputs=[sequence, data], outputs=position)

    assert len(superloop.cells) == 32 and superloop.cells[0].units == 16
    assert isinstance(superloop.cells[0], cg.cells.SGUCell)
    (attention,) = superloop.systems
    assert (attention.datapoints, attention.width) == (16, 1)
    zeros = np.zeros((2, 64, 2), "float32")
    values = np.random.default_rng(0).integers(0, 10, (2, 16, 1)).astype("float32")
    # predict() runs the loop as one graph: eagerly, 64 steps x 32 cells is slow.
    result = model.predict([zeros, values], verbose=0)
    assert result.shape == (2, 1) and np.isfinite(result).all()


def test_from_superloop_config_maps_every_key(rng):
    config = {
        "timesteps": 6,
        "suppress_output": 2,
        "model_inputs": 0,
        "model_outputs": 3,
        "recurrent_model": "LSTM",
        "recurrent_layers": 2,
        "recurrent_units": 5,
        "superloop_models": ["Attention", "RegisterMemory"],
        "Attention": {"datapoints": 4, "outputs": 2},
        "RegisterMemory": {"depth": 3, "register_width": 2},
    }
    superloop = Superloop.from_superloop_config(config)
    assert superloop.cell_class is cg.cells.LSTMCell
    assert (superloop.num_layers, superloop.units) == (2, 5)
    assert (superloop.outputs, superloop.suppress_output) == (3, 2)
    assert superloop.timesteps == 6
    attention, memory = superloop.systems
    assert (attention.datapoints, attention.width) == (4, 2)
    assert (memory.depth, memory.width) == (3, 2)
    # No per-step input: the call input is the systems' constants.
    assert superloop(random(rng, 2, 4, 2)).shape == (2, 4, 3)


def test_from_superloop_config_accepts_classes_and_ignores_print_options():
    config = {
        "timesteps": 3,
        "model_name": "Main",
        "printvalues": 1024,
        "model_inputs": 2,
        "recurrent_model": cg.cells.GRUCell,
        "recurrent_layers": 1,
        "recurrent_units": 2,
        "superloop_models": [Stack],
        "Stack": {"width": 2, "capacity": 4},
    }
    superloop = Superloop.from_superloop_config(config, name="main")
    assert superloop.name == "main" and superloop.timesteps is None
    assert superloop.cell_class is cg.cells.GRUCell
    assert superloop(np.zeros((1, 3, 2), "float32")).shape == (1, 3, 2)


BAD_CONFIGS = [
    ({"batch_size": 1024}, "batch_size"),
    ({"RegisterMemory": {"depth": 2, "register_width": 2}}, "RegisterMemory"),
    ({"superloop_models": ["Attentoin"]}, "Attentoin"),
    ({"Attention": {"datapoints": 16, "outputs": 1, "heads": 2}}, "heads"),
    ({"Attention": None}, "Attention"),
    ({"recurrent_model": "RNN"}, "cell"),
    ({"recurrent_layers": 0}, "layers"),
    ({"model_inputs": 0, "timesteps": None}, "timesteps"),
]


def test_from_superloop_config_rejects_bad_configs():
    # One test for all cases: each test pays about a second of session clean-up.
    for change, message in BAD_CONFIGS:
        config = {**SEED_CONFIG, "recurrent_layers": 1, **change}
        with pytest.raises(ValueError, match=message):
            Superloop.from_superloop_config(config)


# -- saving ------------------------------------------------------------------
def test_save_and_load_are_bit_identical(tmp_path, rng):
    sequence = keras.Input((5, 3))
    data = keras.Input((6, 2))
    superloop = Superloop(
        cell="lstm",
        layers=2,
        units=4,
        systems=[Attention(datapoints=6, width=2), RegisterMemory(depth=3, width=2)],
        outputs=2,
        suppress_output=1,
        return_state=True,
    )
    output, *states = superloop(sequence, constants=[data])
    model = keras.Model([sequence, data], [output, states[-1]])
    x, values = random(rng, 2, 5, 3), random(rng, 2, 6, 2)
    path = tmp_path / "superloop.keras"
    model.save(path)
    loaded = keras.models.load_model(path, safe_mode=True)

    (restored,) = [layer for layer in loaded.layers if isinstance(layer, Superloop)]
    assert restored.state_names == superloop.state_names
    assert restored.suppress_output == 1 and restored.outputs == 2
    for got, want in zip(loaded.get_weights(), model.get_weights()):
        np.testing.assert_array_equal(got, want)
    for got, want in zip(loaded([x, values]), model([x, values])):
        np.testing.assert_array_equal(np_(got), np_(want))


def test_timesteps_superloop_with_a_custom_cell_class_round_trips(tmp_path, rng):
    # Two systems with constants: the layer is called on the list of them.
    superloop = Superloop(
        cell=cg.cells.SimpleRNNCell,
        layers=1,
        units=3,
        systems=[
            Attention(datapoints=5, width=2),
            AddressableMemory(slots=4, width=2),
            Attention(datapoints=3, width=1),
        ],
        timesteps=4,
        return_sequences=False,
    )
    data, more = keras.Input((5, 2)), keras.Input((3, 1))
    model = keras.Model([data, more], superloop([data, more]))
    path = tmp_path / "timesteps.keras"
    model.save(path)
    loaded = keras.models.load_model(path, safe_mode=True)
    values = [random(rng, 3, 5, 2), random(rng, 3, 3, 1)]
    np.testing.assert_array_equal(np_(loaded(values)), np_(model(values)))
    assert loaded.layers[-1].cell_class is cg.cells.SimpleRNNCell
    assert loaded.layers[-1].state_names == superloop.state_names


# -- training ------------------------------------------------------------------
def test_fit_updates_the_cells_the_head_and_the_system_projection(rng):
    superloop = small_superloop(timesteps=4, return_sequences=False, outputs=1)
    data = keras.Input((6, 2))
    output, *_ = superloop(data)
    model = keras.Model(data, output)
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    before = [np.array(w) for w in model.get_weights()]
    model.fit(random(rng, 8, 6, 2), random(rng, 8, 1), epochs=1, verbose=0)
    after = model.get_weights()
    assert len(before) == len(after)
    changed = [not np.array_equal(b, a) for b, a in zip(before, after)]
    assert all(changed), changed


# -- errors --------------------------------------------------------------------
def bad_arguments():
    return [
        ({"cell": "rnn2"}, ValueError, "`cell`.*'rnn2'"),
        ({"cell": 5}, TypeError, "`cell`.*5"),
        ({"cell": layers.Dense}, TypeError, "`cell`"),
        ({"layers": 0}, ValueError, "`layers`.*layers=0"),
        ({"units": -1}, ValueError, "`units`.*units=-1"),
        ({"outputs": 1.5}, ValueError, "`outputs`.*1.5"),
        ({"systems": "attention"}, TypeError, "`systems`.*'attention'"),
        ({"systems": [layers.Dense(3)]}, TypeError, r"`systems\[0\]`.*Dense"),
        (
            {"systems": [Attention(4, 1, project=False)]},
            ValueError,
            "project=False",
        ),
        ({"timesteps": 0}, ValueError, "`timesteps`.*timesteps=0"),
        (
            {"timesteps": 3, "systems": [RegisterMemory(2, 2)]},
            ValueError,
            "constants",
        ),
        (
            {"timesteps": 3, "suppress_output": 3},
            ValueError,
            "suppress_output",
        ),
    ]


def test_bad_arguments_raise_errors_naming_them():
    for kwargs, error, message in bad_arguments():
        options = {"layers": 1, "units": 2, "systems": [Attention(4, 1)], **kwargs}
        with pytest.raises(error, match=message):
            Superloop(**options)


def test_the_same_system_twice_is_an_error():
    attention = Attention(4, 1)
    with pytest.raises(ValueError, match="twice"):
        Superloop(layers=1, units=2, systems=[attention, attention])


def test_missing_or_misplaced_constants_are_explained(rng):
    superloop = small_superloop()
    with pytest.raises(ValueError, match="constants.*attention"):
        superloop(random(rng, 2, 3, 3))
    timesteps = small_superloop(timesteps=3)
    with pytest.raises(ValueError, match=r"superloop\(data\)"):
        timesteps(random(rng, 2, 6, 2), constants=[random(rng, 2, 6, 2)])
    with pytest.raises(ValueError, match="features"):
        small_superloop()(random(rng, 2, 3, 3, 1), constants=[random(rng, 2, 6, 2)])


# -- fused=True: the cell stack as one FusedCellStack ----------------------
@pytest.mark.parametrize("cell", ["sgu", "lstm"])
def test_fused_superloop_equals_the_unfused_one_with_copied_weights(rng, cell):
    systems = lambda: [Attention(datapoints=6, width=2, name="attention")]  # noqa: E731
    unfused = small_superloop(cell=cell, layers=3, outputs=2, systems=systems())
    fused = small_superloop(
        cell=cell, layers=3, outputs=2, systems=systems(), fused=True
    )
    assert fused.state_names == unfused.state_names
    assert fused.state_names[:2] == (
        ["sgu_0/h", "sgu_1/h"] if cell == "sgu" else ["lstm_0/h", "lstm_0/c"]
    )
    (stack,) = fused.cells
    assert isinstance(stack, cg.cells.FusedCellStack) and stack.num_layers == 3
    x, data = random(rng, 2, 5, 3), random(rng, 2, 6, 2)
    unfused(x, constants=[data])
    fused(x, constants=[data])
    stack.set_weights(cg.cells.fuse_weights([c.get_weights() for c in unfused.cells]))
    fused.output_layer.set_weights(unfused.output_layer.get_weights())
    fused.systems[0].set_weights(unfused.systems[0].get_weights())

    initial = [random(rng, 2, *shape) for shape in unfused.state_shapes]
    expected = unfused(x, constants=[data], initial_state=initial)
    got = fused(x, constants=[data], initial_state=initial)
    assert len(got) == len(expected) == 1 + len(unfused.state_names)
    for e, g in zip(expected, got, strict=True):
        np.testing.assert_allclose(np_(g), np_(e), rtol=1e-6, atol=1e-6)
    traced, reference = (
        fused.trace(x, constants=[data]),
        unfused.trace(x, constants=[data]),
    )
    assert list(traced) == list(reference)
    for name in reference:
        np.testing.assert_allclose(traced[name], reference[name], rtol=1e-6, atol=1e-6)
    # the unfused cells come back with the same weights
    for mine, theirs in zip(stack.to_cells(), unfused.cells, strict=True):
        assert mine.name == theirs.name
        for a, b in zip(mine.get_weights(), theirs.get_weights(), strict=True):
            np.testing.assert_array_equal(a, b)


def test_fused_superloop_saves_and_loads(rng, tmp_path):
    superloop = small_superloop(fused=True, return_state=False)
    x, data = keras.Input((5, 3)), keras.Input((6, 2))
    model = keras.Model([x, data], superloop(x, constants=[data]))
    arrays = [random(rng, 2, 5, 3), random(rng, 2, 6, 2)]
    expected = np_(model(arrays))
    model.save(tmp_path / "fused.keras")
    loaded = keras.models.load_model(tmp_path / "fused.keras", safe_mode=True)
    np.testing.assert_array_equal(np_(loaded(arrays)), expected)
    assert loaded.layers[-1].fused is True


def test_fused_seed_config_builds_and_trains_one_step():
    superloop = Superloop.from_superloop_config(SEED_CONFIG, fused=True)
    (stack,) = superloop.cells
    assert (stack.cell, stack.num_layers, stack.units) == ("sgu", 32, 16)
    assert superloop.state_names[31] == "sgu_31/h"
    sequence = keras.Input((SEED_CONFIG["timesteps"], SEED_CONFIG["model_inputs"]))
    data = keras.Input((16, 1))
    model = keras.Model([sequence, data], superloop(sequence, constants=[data]))
    assert len(stack.weights) == 4
    model.compile(optimizer="adam", loss="mse")
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 64, 2)).astype("float32")
    values = rng.integers(0, 10, (2, 16, 1)).astype("float32")
    before = stack.get_weights()[2].copy()
    loss = model.train_on_batch([x, values], np.zeros((2, 64, 16), "float32"))
    assert np.isfinite(loss)
    assert np.abs(stack.get_weights()[2] - before).max() > 0


def test_fused_needs_a_built_in_cell():
    with pytest.raises(ValueError, match="`fused=True` needs a built-in cell"):
        Superloop(cell=cg.cells.RHNCell, layers=2, units=4, fused=True)
    with pytest.raises(TypeError, match="Argument `fused` must be True or False"):
        Superloop(layers=2, units=4, fused="yes")
