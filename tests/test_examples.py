"""Short seeded runs of the examples: they must learn (full runs are in docs/)."""

import importlib.util
import math
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def load(name):
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_seq2seq_quick_run_beats_answering_padding():
    module = load("seq2seq_teacher_forcing")
    source, target = module.make_data(8, __import__("numpy").random.default_rng(0))
    # targets are the reversed digits, padding stays at the end
    for s, t in zip(source, target):
        digits = s[s > 0]
        assert list(t[: len(digits)]) == list(digits[::-1])
        assert not t[len(digits) :].any()
    # three quick epochs: the untrained decoder's loss is ln(11) = 2.40 (a
    # uniform guess) and free-running it answers padding; trained, the loss
    # falls (2.00) and the free-running decoder gets more tokens right (0.36)
    # than always answering padding (0.26). Whole strings need the full run.
    result = module.main(["--quick", "--epochs", "3"])
    assert result["final_loss"] < math.log(module.VOCAB) - 0.2
    assert result["padding_baseline_accuracy"] == pytest.approx(0.25, abs=0.03)
    assert result["test_token_accuracy"] > result["padding_baseline_accuracy"] + 0.05


def test_adding_problem_quick_run_learns_the_mean():
    # The untrained model answers about 0: an MSE of E[y^2] = 1 + 1/6. Three
    # quick epochs bring it to the mean predictor's baseline (0.15 here,
    # against 1/6); beating the baseline by learning the sum needs the full run.
    result = load("adding_problem").main(["--quick", "--units", "8", "--epochs", "3"])
    assert result["baseline_mse"] == pytest.approx(1 / 6)
    assert result["test_mse"] < 0.25 * (1 + 1 / 6)
