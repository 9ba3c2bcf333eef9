"""Cross-backend portability: a model saved under one backend predicts alike on all."""

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = Path(__file__).resolve().parent / "_portable_models.py"
BACKENDS = ("tensorflow", "jax", "torch")
MISSING = [b for b in BACKENDS if importlib.util.find_spec(b) is None]

pytestmark = pytest.mark.skipif(
    bool(MISSING),
    reason=f"needs every backend installed (pip install -e '.[backends]'); "
    f"missing: {MISSING}",
)


def run(backend, command, folder):
    env = {
        **os.environ,
        "KERAS_BACKEND": backend,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
        "TF_CPP_MIN_LOG_LEVEL": "3",
    }
    result = subprocess.run(
        [sys.executable, str(SCRIPT), command, str(folder)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, (
        f"{command} under {backend} failed:\n{result.stderr[-3000:]}"
    )


def test_keras_files_load_and_predict_identically_on_every_backend(tmp_path):
    for backend in BACKENDS:
        run(backend, "save", tmp_path)
    for backend in BACKENDS:
        run(backend, "load", tmp_path)
    saved = sorted(tmp_path.glob("*.keras"))
    names = {p.stem.split("-", 1)[1] for p in saved}
    assert names == {"lstm", "graph", "sequential", "superloop", "feedback"}
    assert len(saved) == 5 * len(BACKENDS)
    for path in saved:
        reference = np.load(path.with_suffix(".npy"))
        assert np.all(np.isfinite(reference))
        for backend in BACKENDS:
            loaded = np.load(tmp_path / f"{path.stem}.on-{backend}.npy")
            np.testing.assert_allclose(
                loaded,
                reference,
                atol=1e-5,
                rtol=0,
                err_msg=f"{path.name} saved on one backend, predicted on {backend}",
            )
