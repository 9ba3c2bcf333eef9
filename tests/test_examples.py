"""Smoke runs of the examples' --quick modes (the full runs are recorded in docs/)."""

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


def test_seq2seq_quick_runs_and_reports_accuracy():
    module = load("seq2seq_teacher_forcing")
    source, target = module.make_data(8, __import__("numpy").random.default_rng(0))
    # targets are the reversed digits, padding stays at the end
    for s, t in zip(source, target):
        digits = s[s > 0]
        assert list(t[: len(digits)]) == list(digits[::-1])
        assert not t[len(digits) :].any()
    result = module.main(["--quick"])
    assert 0.0 <= result["test_exact_accuracy"] <= 1.0
    assert math.isfinite(result["final_loss"])


def test_adding_problem_quick_runs():
    result = load("adding_problem").main(["--quick", "--units", "8"])
    assert math.isfinite(result["test_mse"])
    assert result["baseline_mse"] == pytest.approx(1 / 6)
