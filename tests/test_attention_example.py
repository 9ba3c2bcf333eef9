"""The attention superloop demo (`cellgraph.demo_attention`) and the docs page."""

import json
import math
import re
from pathlib import Path

import keras
import numpy as np
import pytest

from cellgraph import demo_attention

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
DOCS = Path(__file__).resolve().parent.parent / "docs" / "superloop.md"


def test_data_targets_are_the_last_two_before_the_nine():
    digits, target = demo_attention.make_data(500, np.random.default_rng(0))
    assert digits.shape == (500, 16) and target.shape == (500,)
    assert set(np.unique(digits)) == {0, 1, 2, 3, 4, 9}
    np.testing.assert_array_equal((digits == 9).sum(axis=1), 1)
    np.testing.assert_array_equal(demo_attention.last_two_before_nine(digits), target)
    nine = np.argmax(digits == 9, axis=1)
    assert (nine >= 1).all() and (target < nine).all()
    # other 2s often come before the target, so "the first 2" is not the answer
    first_two = np.argmax(digits == 2, axis=1)
    assert 0.2 < np.mean(first_two != target) < 0.8
    # every target index 0..14 occurs, small ones most often
    assert set(np.unique(target)) == set(range(15))
    assert np.mean(target == 0) > np.mean(target == 7)


def test_one_hot_encodes_the_digits():
    x = demo_attention.one_hot(np.array([[0, 9, 2]]))
    assert x.shape == (1, 3, 10) and x.dtype == np.float32
    np.testing.assert_array_equal(x.argmax(-1), [[0, 9, 2]])
    np.testing.assert_array_equal(x.sum(-1), 1.0)


def test_lstm_baseline_is_sized_like_the_superloop():
    model, _ = demo_attention.build_superloop_model(timesteps=4, units=32)
    units = demo_attention.lstm_units_for(model.count_params())
    lstm = demo_attention.build_lstm_model(units)
    assert lstm.count_params() <= model.count_params()
    assert lstm.count_params() > 0.85 * model.count_params()


def test_bad_arguments_are_usage_errors(capsys):
    with pytest.raises(SystemExit):
        demo_attention.parse_args(["--epochs", "0"])
    assert "--epochs" in capsys.readouterr().err
    with pytest.raises(ValueError, match="datapoints"):
        demo_attention.make_data(3, datapoints=1)


def test_quick_run_returns_results_and_writes_a_png(tmp_path):
    results = demo_attention.main(["--quick", "--out", str(tmp_path), "--verbose", "0"])

    for key in ("superloop_accuracy", "lstm_accuracy", "zero_baseline_accuracy"):
        assert 0.0 <= results[key] <= 1.0, key
    for key in ("superloop_seconds", "lstm_seconds", "total_seconds"):
        assert math.isfinite(results[key]) and results[key] > 0.0
    assert results["quick"] is True
    assert results["epochs"] == demo_attention.QUICK["epochs"]
    assert len(results["history"]["superloop"]["loss"]) == results["epochs"]
    assert len(results["history"]["lstm"]["loss"]) == results["epochs"]
    assert results["lstm_params"] <= results["superloop_params"]

    plot = tmp_path / "attention_positions.png"
    assert results["plot"] == str(plot)
    data = plot.read_bytes()
    assert data.startswith(PNG_MAGIC) and len(data) > 1000
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["superloop_accuracy"] == pytest.approx(results["superloop_accuracy"])


def test_every_python_block_of_the_superloop_docs_runs(capsys):
    text = DOCS.read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.DOTALL)
    assert len(blocks) >= 2
    for i, block in enumerate(blocks):
        keras.backend.clear_session()  # layer names as in a fresh session
        exec(compile(block, f"{DOCS.name}[{i}]", "exec"), {"__name__": "docs"})
    out = capsys.readouterr().out
    assert "(5, 10, 2)" in out and "'register_memory/memory'" in out
