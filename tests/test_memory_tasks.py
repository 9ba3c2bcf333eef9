"""The memory tasks at the papers' settings (issue 19): data, scores, quick runs.

The examples are `examples/transduction.py`, `ntm_tasks.py`, `dyck2.py` and
`anbn.py`, sharing `examples/memory_common.py`. Their full runs are recorded
in docs/memory_tasks.md; here the generators are checked against hand-made
cases, and each `--quick` run must beat the best constant predictor on its
validation split, which only a model that learnt something from its inputs
does.
"""

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def load(name):
    if str(EXAMPLES) not in sys.path:
        sys.path.insert(0, str(EXAMPLES))  # the examples import memory_common
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def common():
    return load("memory_common")


@pytest.fixture(scope="module")
def transduction():
    return load("transduction")


@pytest.fixture(scope="module")
def ntm():
    return load("ntm_tasks")


@pytest.fixture(scope="module")
def dyck():
    return load("dyck2")


@pytest.fixture(scope="module")
def anbn():
    return load("anbn")


# -- the shared helper -----------------------------------------------------------
def test_lstm_units_for_gives_the_smallest_baseline_at_least_as_big(common):
    # 4 * (3 + 10 + 1) * 10 + 11 * 2 = 582 weights for 10 units
    assert common.lstm_params(3, 10, 2) == 582
    assert common.lstm_units_for(582, 3, 2) == 10
    assert common.lstm_units_for(583, 3, 2) == 11
    model = common.lstm_baseline(3, 2, 10)
    assert model.count_params() == 582


def test_length_batches_cover_every_sequence_once_in_one_bucket(common, rng):
    steps = rng.integers(1, 40, 301)
    data = {"inputs": np.zeros((301, 40, 1)), "steps": steps}
    batches = common.length_batches(data, 16, rng, multiple=16)
    seen = np.concatenate([indices for indices, _ in batches])
    np.testing.assert_array_equal(np.sort(seen), np.arange(301))
    for indices, bucket in batches:
        assert len(indices) <= 16
        assert bucket in (16, 32, 40)  # the last bucket stops at the padding
        assert (steps[indices] <= bucket).all()
        assert (steps[indices] > {16: 0, 32: 16, 40: 32}[bucket]).all()


def test_weighted_loss_averages_over_scored_steps_only(common):
    outputs = np.array([[[0.5, 0.5], [0.9, 0.1], [0.2, 0.8]]])
    targets = np.array([[0, 0, 1]])
    weights = np.array([[0.0, 1.0, 1.0]])
    expected = -(np.log(0.9) + np.log(0.8)) / 2
    assert common.weighted_loss(outputs, targets, weights) == pytest.approx(expected)
    bits = np.array([[[1.0, 0.0]]])
    sig = np.array([[[0.9, 0.4]]])
    expected = -(np.log(0.9) + np.log(0.6)) / 2
    assert common.weighted_loss(sig, bits, np.ones((1, 1))) == pytest.approx(expected)


def test_constant_outputs_are_the_training_frequencies(common):
    train = {
        "targets": np.array([[2, 0, 2, 1]]),
        "weights": np.array([[1.0, 1.0, 1.0, 0.0]]),  # the 1 is not scored
    }
    out = common.constant_outputs(train, {"weights": np.ones((2, 3))}, 3)
    assert out.shape == (2, 3, 3)
    np.testing.assert_allclose(out[1, 2], [1 / 3, 0.0, 2 / 3])


def test_bad_command_lines_are_refused(common):
    with pytest.raises(SystemExit):
        common.parse_args("x", ["--epochs", "0"])
    with pytest.raises(SystemExit):
        common.parse_args("x", ["--budget", "-5"])


def test_selection_key_orders_metrics_then_the_validation_loss(common):
    key = common.selection_key
    assert key({"exact": 1.0}, 0.2, "exact") == (1.0, -0.2)
    # more exact beats a lower loss; on ties the lower loss wins
    assert key({"exact": 0.9}, 0.1, "exact") < key({"exact": 1.0}, 0.5, "exact")
    assert key({"exact": 1.0}, 0.3, "exact") < key({"exact": 1.0}, 0.2, "exact")
    # a tuple: in order, "-name" where lower is better
    both = ("exact", "-bits")
    assert key({"exact": 1.0, "bits": 2.0}, 0.1, both) == (1.0, -2.0, -0.1)
    better = key({"exact": 1.0, "bits": 1.0}, 0.9, both)
    assert better > key({"exact": 1.0, "bits": 2.0}, 0.1, both)


def test_pick_restart_takes_the_best_key_and_the_first_on_ties(common):
    assert common.pick_restart([(0.0, -0.3), (1.0, -0.2), (1.0, -0.1)]) == 2
    assert common.pick_restart([(1.0, -0.1), (0.5, 0.0), (1.0, -0.1)]) == 0
    with pytest.raises(ValueError, match="at least one restart"):
        common.pick_restart([])


def stub_model(bias, compiled=True):
    """A sequence model that outputs `bias` everywhere on zero inputs (lr 0)."""
    import keras

    model = keras.Sequential(
        [
            keras.Input((None, 1)),
            keras.layers.Dense(
                1, bias_initializer=keras.initializers.Constant(bias), name="out"
            ),
        ]
    )
    if compiled:
        model.compile(optimizer=keras.optimizers.SGD(0.0), loss="mse")
    return model


def stub_data(num, steps, value):
    return {
        "inputs": np.full((num, steps, 1), value, "float32"),
        "targets": np.zeros((num, steps), "int64"),
        "weights": np.ones((num, steps), "float32"),
        "steps": np.full(num, steps),
    }


def test_restarts_are_picked_on_the_validation_split(common, capsys):
    # restart k outputs biases[k]; the stub score is the mean output on the
    # data it is given, and records which data that was
    biases = iter([0.3, 0.5])
    seen = []

    def score(outputs, data):
        seen.append(data["name"])
        return {"exact": float(np.mean(outputs))}

    train = stub_data(8, 4, 1.0)
    valid = {**stub_data(4, 4, 0.0), "name": "valid"}
    first = stub_model(0.1)
    model, summary, rows = common.train_with_restarts(
        lambda: stub_model(next(biases), compiled=False),
        first,
        restarts=3,
        restart_epochs=1,
        epochs=3,
        seed=5,
        name="stub",
        train=train,
        valid=valid,
        score=score,
        primary="exact",
        batch_size=4,
        verbose=1,
    )
    assert [row["restart"] for row in rows] == [0, 1, 2]
    assert [row["seed"] for row in rows] == [5, 6, 7]
    np.testing.assert_allclose([row["val_exact"] for row in rows], [0.1, 0.3, 0.5])
    assert (summary["restart"], summary["seed"]) == (2, 7)
    # one model trained throughout: each restart's weights are copied into it
    assert model is first
    np.testing.assert_allclose(model.get_layer("out").bias.numpy(), [0.5])
    # the picked restart trained on to 3 epochs; the others stopped after 1
    assert summary["epochs"] == 3 and [h["epoch"] for h in summary["history"]] == [
        1,
        2,
        3,
    ]
    assert set(seen) == {"valid"} and len(seen) == 3 + 2
    assert "stub: picked restart 2 (seed 7)" in capsys.readouterr().out


def test_restart_options_need_a_config_that_holds_them(common):
    args = common.parse_args("x", ["--restarts", "4", "--restart-epochs", "3"])
    cfg = common.configure(args, {"epochs": 30}, {"epochs": 5})
    assert (cfg["restarts"], cfg["restart_epochs"]) == (4, 3)
    cfg = common.configure(
        common.parse_args("x", ["--restarts", "2"]), {"epochs": 30}, {}
    )
    assert (cfg["restarts"], cfg["restart_epochs"]) == (2, 3)  # a tenth
    assert (
        common.configure(common.parse_args("x", []), {"epochs": 30}, {})["restarts"]
        == 1
    )
    with pytest.raises(ValueError, match="restart_epochs=40, epochs=30"):
        common.configure(
            common.parse_args("x", ["--restarts", "2", "--restart-epochs", "40"]),
            {"epochs": 30},
            {},
        )
    # a config's restart epochs shrink with fewer --epochs; the command line's don't
    args = common.parse_args("x", ["--epochs", "5"])
    cfg = common.configure(
        args, {"epochs": 30, "restarts": 6, "restart_epochs": 10}, {}
    )
    assert (cfg["restarts"], cfg["restart_epochs"]) == (6, 5)
    with pytest.raises(SystemExit):
        common.parse_args("x", ["--restarts", "0"])


# -- transduction ----------------------------------------------------------------
def test_transduction_settings_are_the_papers(transduction):
    assert transduction.VOCAB == 128
    assert transduction.FULL["train_lengths"] == (8, 64)
    assert transduction.FULL["test_lengths"] == (65, 128)


@pytest.mark.parametrize("task", ["reverse", "copy"])
def test_transduction_targets_follow_the_separator(transduction, rng, task):
    data = transduction.make_data(100, (3, 9), rng, task, vocab=5)
    assert data["inputs"].shape == (100, 19, 6)
    for x, y, w, length in zip(
        data["inputs"], data["targets"], data["weights"], data["lengths"]
    ):
        seq = x[:length, :5].argmax(-1)
        assert x[length, 5] == 1.0 and x[length].sum() == 1.0
        assert not x[length + 1 :].any()
        np.testing.assert_array_equal(np.flatnonzero(w), length + 1 + np.arange(length))
        want = seq[::-1] if task == "reverse" else seq
        np.testing.assert_array_equal(y[length + 1 : 2 * length + 1], want)
    np.testing.assert_array_equal(data["steps"], 2 * data["lengths"] + 1)
    with pytest.raises(ValueError, match="task"):
        transduction.make_data(2, (3, 4), rng, "sort")
    with pytest.raises(ValueError, match="lengths"):
        transduction.make_data(2, (4, 3), rng)


def test_transduction_score_counts_sequences_and_symbols(transduction, rng):
    data = transduction.make_data(4, (2, 3), rng, vocab=3)
    perfect = np.eye(3)[data["targets"]]
    assert transduction.score(perfect, data) == {"coarse": 1.0, "fine": 1.0}
    first = int(np.flatnonzero(data["weights"][0])[0])
    perfect[0, first] = np.roll(perfect[0, first], 1)
    perfect[1, 0] = np.roll(perfect[1, 0], 1)  # an unscored step
    result = transduction.score(perfect, data)
    assert result["coarse"] == 0.75
    assert result["fine"] == pytest.approx(1 - 1 / data["weights"].sum())


def test_transduction_push_and_pop_biases_start_the_strengths(transduction):
    model = transduction.build_memory_model("copy", 5, 8, 3, 11, 2.0, -2.0)
    memory = model.get_layer("memory_rnn").step_model.get_layer("memory")
    np.testing.assert_array_equal(
        memory.projection.get_weights()[1], [0.0, 0.0, 0.0, 2.0, -2.0]
    )


def test_transduction_defaults_are_per_task(transduction):
    # the copy's defaults are the flags that solved it on the validation split
    assert transduction.TASK_DEFAULTS == {
        "reverse": {"push_bias": 0.0, "pop_bias": 0.0, "lr": 3e-3},
        "copy": {"push_bias": 2.0, "pop_bias": -3.0, "lr": 1e-3},
    }
    assert transduction.per_task("pop_bias") == "reverse: 0; copy: -3"


# -- NTM copy and associative recall --------------------------------------------
def test_ntm_settings_are_the_papers(ntm):
    assert ntm.FULL["copy"]["train_lengths"] == (1, 20)
    assert ntm.FULL["copy"]["test_lengths"] == (20, 40, 120)
    assert ntm.FULL["recall"]["train_lengths"] == (2, 6)
    assert ntm.FULL["recall"]["test_lengths"] == (12,)
    assert ntm.SHARED_FULL["slots"] >= 120  # a copy of 120 vectors fits


def test_copy_targets_are_the_inputs_after_the_delimiter(ntm, rng):
    data = ntm.make_copy_data(50, (1, 6), rng)
    for x, y, w, steps in zip(
        data["inputs"], data["targets"], data["weights"], data["steps"]
    ):
        length = (steps - 1) // 2
        assert x[length, 8] == 1.0 and x[length].sum() == 1.0
        assert not x[:length, 8].any() and not x[length + 1 :].any()
        np.testing.assert_array_equal(y[length + 1 : steps], x[:length, :8])
        np.testing.assert_array_equal(np.flatnonzero(w), length + 1 + np.arange(length))


def test_recall_targets_are_the_item_after_the_query(ntm, rng):
    data = ntm.make_recall_data(60, (2, 5), rng)
    bits = ntm.RECALL_BITS
    for x, y, w, steps, query in zip(
        data["inputs"],
        data["targets"],
        data["weights"],
        data["steps"],
        data["queries"],
    ):
        k = (steps - 8) // 4
        items = [x[4 * j + 1 : 4 * j + 4, :bits] for j in range(k)]
        assert all(x[4 * j, bits] == 1.0 for j in range(k))
        start = 4 * k
        assert x[start, bits + 1] == 1.0 and x[start + 4, bits + 1] == 1.0
        np.testing.assert_array_equal(x[start + 1 : start + 4, :bits], items[query])
        assert 0 <= query < k - 1
        np.testing.assert_array_equal(y[start + 5 : start + 8], items[query + 1])
        np.testing.assert_array_equal(np.flatnonzero(w), start + 5 + np.arange(3))
        assert not x[start + 5 :].any()
    assert ntm.recall_steps(12) == 56


def test_ntm_score_counts_wrong_bits_per_sequence(ntm, rng):
    data = ntm.make_copy_data(10, (3, 3), rng)
    assert ntm.score(data["targets"], data)["bits_error"] == 0.0
    noisy = data["targets"].copy()
    noisy[0, 4, :3] = 1 - noisy[0, 4, :3]  # 3 wrong bits on a scored step
    noisy[1, 0] = 1 - noisy[1, 0]  # an unscored step
    assert ntm.score(noisy, data) == {"bits_error": pytest.approx(0.3), "exact": 0.9}


# -- Dyck-2 -----------------------------------------------------------------------
def test_next_token_sets_track_the_innermost_open_bracket(dyck):
    sets = dyck.next_token_sets("([])[]")
    np.testing.assert_array_equal(
        sets,
        [
            [1, 1, 1, 0, 0],  # "(": close with ")"
            [1, 1, 0, 1, 0],  # "([": close with "]"
            [1, 1, 1, 0, 0],  # "([]": back to ")"
            [1, 1, 0, 0, 1],  # "([])": balanced, may end
            [1, 1, 0, 1, 0],
            [1, 1, 0, 0, 1],
        ],
    )
    with pytest.raises(ValueError, match="Dyck-2"):
        dyck.next_token_sets("(]")


def test_dyck_strings_are_balanced_and_in_range(dyck, rng):
    assert dyck.FULL["train_lengths"] == (2, 50)
    assert dyck.FULL["test_lengths"] == (52, 100)
    assert (dyck.FULL["train"], dyck.FULL["test"]) == (5000, 1000)
    strings = dyck.sample_strings(300, (52, 100), rng)
    assert all(52 <= len(s) <= 100 for s in strings)
    for s in strings:
        assert dyck.next_token_sets(s)[-1, 4] == 1.0  # balanced at the end
    data = dyck.make_data(strings)
    np.testing.assert_array_equal(data["weights"].sum(1), [len(s) for s in strings])


def test_dyck_pcfg_probabilities(dyck):
    # S -> "" with probability 1 - p - q = 0.25; S -> (S) or [S] with 0.25 each
    rng = np.random.default_rng(1)
    strings = [dyck.sample_string(rng, 10_000) for _ in range(4000)]
    strings = [s for s in strings if s is not None]
    assert np.mean([s == "" for s in strings]) == pytest.approx(0.25, abs=0.03)
    assert np.mean([s == "()" for s in strings]) == pytest.approx(0.25 * 0.25, abs=0.02)


# -- a^n b^n ------------------------------------------------------------------------
def test_anbn_targets_and_deterministic_part(anbn):
    data = anbn.make_data([3, 1])
    a, b, end = anbn.A, anbn.B, anbn.END
    np.testing.assert_array_equal(data["inputs"][0].argmax(-1), [a, a, a, b, b, b])
    np.testing.assert_array_equal(data["targets"][0], [a, a, b, b, b, end])
    np.testing.assert_array_equal(data["deterministic"][0], [0, 0, 0, 1, 1, 1])
    np.testing.assert_array_equal(data["targets"][1, :2], [b, end])
    np.testing.assert_array_equal(data["deterministic"][1], [0, 1, 0, 0, 0, 0])
    np.testing.assert_array_equal(data["weights"][1], [1, 1, 0, 0, 0, 0])
    assert anbn.FULL["train_n"] == (1, 20) and anbn.FULL["test_n"] == (21, 60)


def test_anbn_score_finds_the_largest_n_solved(anbn):
    data = anbn.make_data([2, 4, 3])
    outputs = np.eye(3)[data["targets"]]
    outputs[1, 6] = np.eye(3)[anbn.A]  # n = 4 wrong in its deterministic part
    outputs[2, 0] = np.eye(3)[anbn.B]  # n = 3 wrong outside it: still right
    scores = anbn.score(outputs, data)
    assert (scores["exact"], scores["max_n"]) == (pytest.approx(2 / 3), 3.0)
    # det_loss: one of the 2 + 4 + 3 deterministic steps is certain and wrong
    expected = -np.log(1e-7) / 9
    np.testing.assert_allclose(scores["det_loss"], expected, rtol=1e-6)


# -- quick runs: each must beat the best constant predictor -----------------------
QUICK_RUNS = [
    ("transduction", ["--task", "reverse"], "memory"),
    ("transduction", ["--task", "copy"], "memory"),
    ("ntm_tasks", ["--task", "copy"], "ntm"),
    ("ntm_tasks", ["--task", "recall"], "ntm"),
    ("dyck2", [], "stack"),
    ("anbn", [], "stack"),
]


@pytest.mark.parametrize("name, argv, model", QUICK_RUNS)
def test_quick_run_beats_the_constant_predictor(name, argv, model):
    results = load(name).main(["--quick", "--verbose", "0", *argv])
    assert results["quick"] is True
    for key in (model, "lstm"):
        assert results[f"{key}_epochs"] >= 1
        assert results[f"{key}_train_seconds"] > 0.0
    assert results["lstm_params"] >= results[f"{model}_params"]
    assert results[f"{model}_valid_loss"] < 0.95 * results["constant_valid_loss"]
    if name == "transduction" and argv == ["--task", "copy"]:  # its own defaults
        assert (results["push_bias"], results["pop_bias"]) == (2.0, -3.0)
        assert results["config"]["lr"] == 1e-3


# -- the stack options of dyck2.py and anbn.py ------------------------------------
def test_stack_actions_sigmoid_softmax_and_temperature(common):
    import keras

    x = np.array([[0.5, -1.0, 2.0]], "float32")
    for actions, size in (("sigmoid", 2), ("softmax", 3)):
        layer = common.StackActions(actions)
        out = np.asarray(layer(x))
        kernel, bias = [np.asarray(w) for w in layer.dense.weights]
        logits = x @ kernel + bias
        if actions == "sigmoid":
            expected = 1 / (1 + np.exp(-logits))
        else:
            expected = (np.exp(logits) / np.exp(logits).sum())[:, :2]
        assert kernel.shape == (3, size)
        np.testing.assert_allclose(out, expected, rtol=1e-5)
        model = keras.Sequential([keras.Input((3,)), layer])
        assert common.set_temperature(model, 0.25) == 1
        sharp = np.asarray(layer(x))
        logits = logits / 0.25
        if actions == "sigmoid":
            expected = 1 / (1 + np.exp(-logits))
        else:
            expected = (np.exp(logits) / np.exp(logits).sum())[:, :2]
        np.testing.assert_allclose(sharp, expected, rtol=1e-5)
    noisy = common.StackActions("sigmoid", noise=1.0, seed=3)
    clean = np.asarray(noisy(x))
    np.testing.assert_array_equal(np.asarray(noisy(x, training=False)), clean)
    assert not np.allclose(np.asarray(noisy(x, training=True)), clean)
    schedule = common.temperature_schedule(0.01, epochs=3)
    model = keras.Sequential([keras.Input((3,)), noisy])
    for epoch, temperature in ((1, 1.0), (2, 0.1), (3, 0.01), (9, 0.01)):
        schedule(model, epoch)
        np.testing.assert_allclose(float(noisy.temperature), temperature, rtol=1e-5)


@pytest.mark.parametrize("name", ["dyck2", "anbn"])
def test_quick_run_with_the_stack_options(name):
    argv = ["--quick", "--verbose", "0", "--no-baseline", "--epochs", "2"]
    argv += ["--push-value", "input", "--actions", "softmax", "--round", "test"]
    argv += ["--anneal", "0.5", "--noise", "0.5", "--controller", "dense"]
    results = load(name).main(argv)
    assert (results["round"], results["push_value"]) == ("test", "input")
    assert results["controller"] == "dense"
    assert results["stack_epochs"] == 2 and "lstm_epochs" not in results
    # the rounded copy is scored on the test; the same weights unrounded too
    assert {"stack_test_exact", "stack_test_soft_exact"} <= set(results)


def test_a_restart_starts_the_optimizer_afresh(common):
    import keras

    # Adam at lr 0.1 on y = 0. Restart 1 starts from seed 1's weights with
    # the step count and moments of a new optimizer, so after its 2 epochs
    # (one batch each) it equals a model built with seed 1 and trained 2 steps
    def make(compiled=True):
        model = keras.Sequential([keras.Input((None, 1)), keras.layers.Dense(1)])
        if compiled:
            model.compile(optimizer=keras.optimizers.Adam(0.1), loss="mse")
        return model

    data = {**stub_data(4, 2, 1.0), "targets": np.zeros((4, 2, 1), "float32")}
    calls = []

    def score(outputs, data):  # every epoch better: restart 1, its epoch 2
        calls.append(None)
        return {"exact": float(len(calls))}

    keras.utils.set_random_seed(1)
    reference = make()
    for _ in range(2):
        reference.train_on_batch(data["inputs"], data["targets"], data["weights"])
    keras.utils.set_random_seed(0)
    model, summary, rows = common.train_with_restarts(
        lambda: make(compiled=False),
        make(),
        restarts=2,
        restart_epochs=2,
        epochs=2,
        seed=0,
        train=data,
        valid=data,
        score=score,
        primary="exact",
        batch_size=4,
        verbose=0,
    )
    assert (summary["restart"], summary["best_epoch"], len(calls)) == (1, 2, 4)
    assert int(model.optimizer.iterations.numpy()) == 2
    for got, expected in zip(model.get_weights(), reference.get_weights()):
        np.testing.assert_allclose(got, expected, rtol=1e-5)
    assert not np.allclose(reference.get_weights()[0], make().get_weights()[0])
