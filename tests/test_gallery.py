"""Smoke runs of the real-data gallery's --quick modes (full runs: docs/gallery.md).

Each run is offline: the network is blocked while it loads its data.
"""

import importlib.util
import math
import socket
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
COMMON_KEYS = {
    "example",
    "quick",
    "seed",
    "epochs",
    "units",
    "params",
    "train_size",
    "test_size",
    "test_accuracy",
    "test_loss",
    "goal",
    "published",
    "train_seconds",
    "seconds",
    "plot",
}


def load(name):
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def offline(monkeypatch):
    """Any attempt to open a network connection fails the test."""

    def refuse(*args, **kwargs):
        raise AssertionError(f"the example tried to use the network: {args}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def check_common(result, name, tmp_path):
    assert COMMON_KEYS <= set(result)
    assert result["example"] == name and result["quick"] is True
    assert 0.0 <= result["test_accuracy"] <= 1.0
    assert math.isfinite(result["test_loss"])
    assert 0.0 < result["published"]["accuracy"] <= 1.0
    assert result["params"] > 0 and result["seconds"] >= result["train_seconds"]
    plot = Path(result["plot"])
    assert plot.parent == tmp_path and plot.stat().st_size > 0
    assert (tmp_path / "results.json").exists()


def check_history(history, epochs):
    assert set(history) == {"loss", "accuracy", "val_loss", "val_accuracy"}
    assert all(len(values) == epochs for values in history.values())
    assert all(math.isfinite(v) for v in history["loss"] + history["val_loss"])


def test_digits_rows_quick_run(tmp_path, offline):
    pytest.importorskip("sklearn", reason="digits_rows needs scikit-learn")
    result = load("digits_rows").main(["--quick", "--out", str(tmp_path)])
    check_common(result, "digits_rows", tmp_path)
    check_history(result["history"], result["epochs"])
    assert 0.0 <= result["svc_same_split"] <= 1.0


def test_digits_rows_shift_moves_by_at_most_one_pixel():
    import numpy as np

    module = load("digits_rows")
    image = np.zeros((1, 8, 8), "float32")
    image[0, 3, 4] = 1.0
    shifted = module.shift(np.repeat(image, 50, axis=0), np.random.default_rng(0))
    rows, cols = np.nonzero(shifted.sum(axis=0))
    assert set(rows) <= {2, 3, 4} and set(cols) <= {3, 4, 5}
    assert len(set(zip(rows, cols))) > 1  # it does move
    assert (shifted.reshape(50, -1).sum(axis=1) == 1.0).all()


def test_mnist1d_gru_quick_run(tmp_path, offline):
    pytest.importorskip("mnist1d", reason="mnist1d_gru needs `pip install mnist1d`")
    result = load("mnist1d_gru").main(["--quick", "--out", str(tmp_path)])
    check_common(result, "mnist1d_gru", tmp_path)
    check_history(result["history"], result["epochs"])
    assert result["published"]["accuracy"] == pytest.approx(0.91)


def test_japanese_vowels_quick_run(tmp_path, offline):
    pytest.importorskip("sktime", reason="japanese_vowels needs `pip install sktime`")
    result = load("japanese_vowels").main(["--quick", "--out", str(tmp_path)])
    check_common(result, "japanese_vowels", tmp_path)
    assert len(result["member_accuracies"]) == result["members"]
    assert len(result["histories"]) == result["members"]
    for history in result["histories"]:
        check_history(history, result["epochs"])
    shortest, longest = result["lengths"]
    assert 7 <= shortest <= longest <= 29


def test_japanese_vowels_uses_the_official_split_and_pads_with_zeros(offline):
    pytest.importorskip("sktime", reason="japanese_vowels needs `pip install sktime`")
    import numpy as np

    (x_train, y_train), (x_test, y_test), lengths = load("japanese_vowels").load_data()
    assert x_train.shape == (270, 29, 12) and x_test.shape == (370, 29, 12)
    assert sorted(set(y_train)) == list(range(9))
    real = np.any(x_train != 0.0, axis=-1)  # what Masking(0.0) keeps
    # every utterance is a run of real frames followed by padding only
    assert (np.diff(real.astype(int), axis=1) <= 0).all()
    assert real.sum(axis=1).min() == lengths[0] == 7
