"""Smoke run of examples/feedback_digits.py --quick (full run: docs/feedback.md)."""

import importlib.util
from pathlib import Path

import keras
import numpy as np
import pytest

pytest.importorskip("sklearn")

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "feedback_digits.py"


@pytest.fixture(scope="module")
def example():
    spec = importlib.util.spec_from_file_location("feedback_digits", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_quick_run_reports_accuracy_per_step_and_plots(example, tmp_path):
    result = example.main(["--quick", "--out", str(tmp_path)])
    assert set(result["results"]) == {"digits", "debris"}
    for rows in result["results"].values():
        assert set(rows) == {"B", "BLT"}
        for row in rows.values():
            assert len(row["accuracy"]) == result["timesteps"]
            assert all(0.0 <= a <= 1.0 for a in row["accuracy"])
        # the feedforward model computes the same thing at every step
        assert len(set(rows["B"]["accuracy"])) == 1
    assert (tmp_path / "feedback_digits.png").stat().st_size > 0
    assert (tmp_path / "results.json").exists()


def test_debris_adds_fragments_and_keeps_the_digit(example):
    rng = np.random.default_rng(0)
    clean, labels = example.load_data("digits", rng)
    debris, same_labels = example.load_data("debris", np.random.default_rng(0))
    assert clean.shape == debris.shape == (1797, 8, 8, 1)
    np.testing.assert_array_equal(labels, same_labels)
    assert (debris >= clean).all() and (debris > clean).any()


@pytest.mark.parametrize("variant", ["B", "BL", "BT", "BLT"])
def test_parameter_budget_formula_matches_the_models(example, variant):
    from cellgraph.feedback import spoerer2017

    features = example.features_for_budget(variant, example.count_params("BLT", 6))
    rnn = spoerer2017(variant, (8, 8, 1), 10, 2, features=features)
    images = keras.Input((8, 8, 1))
    model = keras.Model(images, rnn(images))
    assert model.count_params() == example.count_params(variant, features)
