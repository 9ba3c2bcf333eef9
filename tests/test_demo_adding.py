"""Tests of the adding-problem job, `python -m cellgraph.demo_adding`."""

import json
import math
import runpy
import sys
import warnings

import numpy as np
import pytest

from cellgraph import demo_adding as demo

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_adding_data_has_two_markers_one_per_half_and_the_sum_as_target():
    rng = np.random.default_rng(1)
    x, y = demo.make_adding_data(300, timesteps=50, rng=rng)

    assert x.shape == (300, 50, 2) and y.shape == (300, 1)
    assert x.dtype == np.float32 and y.dtype == np.float32
    values, markers = x[..., 0], x[..., 1]
    assert values.min() >= 0.0 and values.max() <= 1.0
    assert set(np.unique(markers)) == {0.0, 1.0}
    np.testing.assert_array_equal(markers[:, :25].sum(axis=1), 1.0)
    np.testing.assert_array_equal(markers[:, 25:].sum(axis=1), 1.0)
    expected = np.array(
        [values[i, markers[i] == 1.0].sum() for i in range(300)], dtype="float32"
    )
    np.testing.assert_allclose(y[:, 0], expected, rtol=1e-6)


def test_baseline_mse_is_the_error_of_predicting_the_mean():
    # Var(U1 + U2) = 2/12 for two independent U(0, 1): with 20000 samples the
    # empirical MSE of predicting 1.0 is within 0.01 of it (std ~ 0.001).
    _, y = demo.make_adding_data(20000, rng=np.random.default_rng(2))
    empirical = float(np.mean((y - 1.0) ** 2))
    assert demo.BASELINE_MSE == pytest.approx(1 / 6)
    assert empirical == pytest.approx(demo.BASELINE_MSE, abs=0.01)


def test_adding_data_rejects_too_short_sequences():
    with pytest.raises(ValueError, match="timesteps"):
        demo.make_adding_data(4, timesteps=1)


def test_quick_run_trains_writes_a_png_and_reports_results(tmp_path):
    results = demo.main(["--quick", "--out", str(tmp_path), "--seed", "3"])

    for key in ("train_mse", "test_mse", "baseline_mse", "epochs", "train_seconds"):
        assert key in results
    assert results["epochs"] == demo.QUICK["epochs"]
    assert len(results["history"]["loss"]) == results["epochs"]
    assert len(results["history"]["val_loss"]) == results["epochs"]

    # An untrained model predicts about 0, an MSE of E[y^2] = 1 + 1/6 ~ 1.17.
    # Two quick epochs must at least bring it near the mean predictor's 0.167;
    # beating the baseline needs the full run.
    for key in ("train_mse", "test_mse"):
        assert math.isfinite(results[key])
        assert 0.0 <= results[key] < 1.5 * demo.BASELINE_MSE, (key, results[key])
    assert results["history"]["loss"][-1] < results["history"]["loss"][0]

    plot = tmp_path / "adding_loss.png"
    assert results["plot"] == str(plot)
    data = plot.read_bytes()
    assert data.startswith(PNG_MAGIC) and len(data) > 1000

    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["test_mse"] == pytest.approx(results["test_mse"])


def test_bad_epochs_flag_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exit_info:
        demo.parse_args(["--epochs", "0"])
    assert exit_info.value.code == 2
    assert "--epochs" in capsys.readouterr().err


def test_module_runs_as_a_script(monkeypatch, capsys):
    # What `python -m cellgraph.demo_adding --help` does, without a second process
    # (and a second TensorFlow import).
    monkeypatch.setattr(sys, "argv", ["python -m cellgraph.demo_adding", "--help"])
    with warnings.catch_warnings():
        # runpy warns that cellgraph.demo_adding is already imported; harmless here.
        warnings.simplefilter("ignore", RuntimeWarning)
        with pytest.raises(SystemExit) as exit_info:
            runpy.run_module("cellgraph.demo_adding", run_name="__main__")
    assert exit_info.value.code == 0
    usage = capsys.readouterr().out
    assert "--quick" in usage and "adding problem" in usage


@pytest.mark.slow
def test_full_run_learns_the_adding_problem(tmp_path):
    # The full run needs memory across 50 steps: beating the mean predictor's
    # 0.167 by a factor of ~17 (test MSE < 0.01) is only possible if gradients
    # flow through the LSTM step graph over the whole sequence. About a minute
    # on 2 CPU cores; the tuned run reaches ~1e-3.
    results = demo.main(["--out", str(tmp_path), "--seed", "0"])

    assert results["epochs"] == demo.FULL["epochs"]
    assert results["test_mse"] < 0.01, results["test_mse"]
    assert results["train_mse"] < 0.01, results["train_mse"]
