"""The memory examples: stack reversal and NTM copy (data generators, quick runs)."""

import importlib.util
import math
from pathlib import Path

import numpy as np
import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def load(name):
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def reversal():
    return load("stack_reversal")


@pytest.fixture(scope="module")
def copy():
    return load("ntm_copy")


# -- sequence reversal ---------------------------------------------------------
def test_reversal_targets_are_the_reversed_symbols(reversal, rng):
    data = reversal.make_data(200, (4, 16), rng)
    vocab = reversal.VOCAB
    assert data["inputs"].shape == (200, 33, vocab + 1)
    assert data["targets"].shape == data["weights"].shape == (200, 33)
    for x, y, w, symbols, length in zip(
        data["inputs"],
        data["targets"],
        data["weights"],
        data["symbols"],
        data["lengths"],
    ):
        seq = symbols[:length]
        assert (symbols[length:] == -1).all()
        # L symbols, one separator, then blanks (and padding): all zeros
        np.testing.assert_array_equal(x[:length, :vocab].argmax(-1), seq)
        np.testing.assert_array_equal(x[:length].sum(-1), 1.0)
        assert x[length, vocab] == 1.0 and x[length].sum() == 1.0
        assert not x[length + 1 :].any()
        # the loss covers exactly the L blank steps, which hold the reversal
        np.testing.assert_array_equal(np.flatnonzero(w), length + 1 + np.arange(length))
        np.testing.assert_array_equal(y[length + 1 : 2 * length + 1], seq[::-1])
        assert not y[w == 0].any()


def test_reversal_test_lengths_are_17_to_32_and_fit_the_stack(reversal, rng):
    assert reversal.TRAIN_LENGTHS == (4, 16)
    assert reversal.TEST_LENGTHS == (17, 32)
    test = reversal.make_data(2000, reversal.TEST_LENGTHS, rng)
    assert set(np.unique(test["lengths"])) == set(range(17, 33))
    np.testing.assert_array_equal(test["weights"].sum(1), test["lengths"])
    train = reversal.make_data(2000, reversal.TRAIN_LENGTHS, rng)
    assert set(np.unique(train["lengths"])) == set(range(4, 17))
    # the buffer shifts every step: it must hold the longest test sequence
    assert reversal.CAPACITY >= test["inputs"].shape[1] == 2 * 32 + 1


def test_reversal_accuracy_counts_whole_sequences_and_symbols(reversal, rng):
    data = reversal.make_data(4, (2, 3), rng, vocab=3)
    perfect = np.eye(3)[data["targets"]]
    assert reversal.sequence_accuracy(perfect, data["targets"], data["weights"]) == (
        1.0,
        1.0,
    )
    wrong = perfect.copy()
    first = int(np.flatnonzero(data["weights"][0])[0])
    wrong[0, first] = np.roll(wrong[0, first], 1)  # one wrong symbol
    # predictions off the scored steps do not count
    wrong[1, 0] = np.roll(wrong[1, 0], 1)
    coarse, fine = reversal.sequence_accuracy(wrong, data["targets"], data["weights"])
    assert coarse == 0.75
    assert fine == pytest.approx(1 - 1 / data["weights"].sum())


def test_reversal_bad_arguments_are_errors(reversal):
    with pytest.raises(ValueError, match="lengths"):
        reversal.make_data(2, (5, 4))
    with pytest.raises(ValueError, match="steps"):
        reversal.make_data(2, (4, 16), steps=32)
    with pytest.raises(SystemExit):
        reversal.parse_args(["--epochs", "0"])


def test_reversal_quick_run_returns_results(reversal):
    results = reversal.main(["--quick"])
    assert results["test_lengths"] == [17, 32]
    for model in ("stack", "lstm"):
        for metric in (
            "coarse_accuracy",
            "fine_accuracy",
            "valid_coarse_accuracy",
            "valid_fine_accuracy",
        ):
            assert 0.0 <= results[f"{model}_{metric}"] <= 1.0, (model, metric)
        assert results[f"{model}_train_seconds"] > 0.0
        assert results[f"{model}_params"] > 0
    assert results["lstm_params"] <= results["stack_params"]
    assert math.isfinite(results["total_seconds"])
    assert results["quick"] is True


# -- NTM copy ----------------------------------------------------------------
def test_copy_targets_are_the_input_vectors_after_the_delimiter(copy, rng):
    data = copy.make_data(200, (1, 10), rng)
    bits = copy.BITS
    assert data["inputs"].shape == (200, 21, bits + 1)
    assert data["targets"].shape == (200, 21, bits)
    assert set(np.unique(data["lengths"])) == set(range(1, 11))
    for x, y, w, vectors, length in zip(
        data["inputs"],
        data["targets"],
        data["weights"],
        data["vectors"],
        data["lengths"],
    ):
        seq = vectors[:length]
        assert set(np.unique(seq)) <= {0.0, 1.0}
        np.testing.assert_array_equal(x[:length, :bits], seq)
        assert not x[:length, bits].any()
        assert x[length, bits] == 1.0 and x[length].sum() == 1.0
        assert not x[length + 1 :].any()
        np.testing.assert_array_equal(np.flatnonzero(w), length + 1 + np.arange(length))
        np.testing.assert_array_equal(y[length + 1 : 2 * length + 1], seq)
        assert not y[w == 0].any()


def test_copy_bits_of_error_counts_wrong_bits_per_sequence(copy, rng):
    data = copy.make_data(10, (3, 3), rng)
    targets, weights = data["targets"], data["weights"]
    assert copy.bits_of_error(targets, targets, weights) == 0.0
    noisy = targets.copy()
    noisy[0, 4, :3] = 1.0 - noisy[0, 4, :3]  # 3 wrong bits on a scored step
    noisy[1, 0, :] = 1.0 - noisy[1, 0, :]  # unscored step: not counted
    assert copy.bits_of_error(noisy, targets, weights) == pytest.approx(0.3)
    # all-zero output: every 1 bit is wrong (half the bits on average)
    zeros = copy.bits_of_error(np.zeros_like(targets), targets, weights)
    assert zeros == pytest.approx(targets.sum() / 10)


def test_copy_quick_run_returns_results(copy):
    results = copy.main(["--quick"])
    assert results["lengths"] == [1, 10]
    assert results["slots"] >= 16
    for model in ("ntm", "lstm"):
        value = results[f"{model}_bits_error"]
        assert math.isfinite(value) and 0.0 <= value <= 8 * 10
        assert results[f"{model}_train_seconds"] > 0.0
    assert results["lstm_params"] <= results["ntm_params"]
    assert 0.0 < results["zero_output_bits_error"] <= 8 * 10
    assert results["quick"] is True


# -- random restarts picked on validation (examples/memory_common.py) -----------
@pytest.mark.parametrize("name", ["dyck2", "anbn"])
def test_quick_run_with_restarts_prints_the_picked_restart(name, capsys):
    import sys

    if str(EXAMPLES) not in sys.path:
        sys.path.insert(0, str(EXAMPLES))  # the examples import memory_common
    argv = ["--quick", "--verbose", "1", "--no-baseline", "--seed", "3"]
    argv += ["--restarts", "2", "--restart-epochs", "1", "--epochs", "3"]
    results = load(name).main(argv)
    rows = results["stack_restarts"]
    assert [(row["restart"], row["seed"]) for row in rows] == [(0, 3), (1, 4)]

    # the pick is the best validation row: exact first, then the lower loss
    # (aⁿbⁿ: first the loss on the deterministic steps, then on all steps)
    def key(row):
        return (row["val_exact"], -row.get("val_det_loss", 0.0), -row["val_loss"])

    best = max(rows, key=key)
    assert results["stack_picked_restart"] == best["restart"]
    assert results["stack_picked_seed"] == 3 + best["restart"]
    assert results["stack_epochs"] == 3
    out = capsys.readouterr().out
    picked = best["restart"]
    assert f"stack: picked restart {picked} (seed {3 + picked})" in out
    assert out.count("stack restart {") == 2


@pytest.mark.parametrize(
    "name, task, model",
    [("transduction", "copy", "memory"), ("ntm_tasks", "recall", "ntm")],
)
def test_the_other_memory_examples_take_restarts(name, task, model):
    import sys

    if str(EXAMPLES) not in sys.path:
        sys.path.insert(0, str(EXAMPLES))
    argv = ["--quick", "--verbose", "0", "--no-baseline", "--task", task]
    argv += ["--restarts", "2", "--restart-epochs", "1", "--epochs", "2"]
    results = load(name).main(argv)
    assert [row["seed"] for row in results[f"{model}_restarts"]] == [0, 1]
    assert results[f"{model}_picked_restart"] in (0, 1)
    assert results[f"{model}_epochs"] == 2
