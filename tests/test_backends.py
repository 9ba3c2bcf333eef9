"""Cross-backend portability: a model saved under one backend predicts alike on all."""

import importlib.util
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
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


def run_one(backend, command, folder):
    """Runs `_portable_models.py command folder` under `backend`; None or an error."""
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
    if result.returncode != 0:
        return f"{command} under {backend} failed:\n{result.stderr[-3000:]}"
    return None


def run(command, folder):
    """Runs `command` under every backend, two processes at a time.

    The processes are independent (each writes files of its own names), and
    most of each one's time is start-up and compiling, one core's work: two at
    a time use CI's two cores, and hold two processes' memory at most. JAX,
    the slowest, starts first.
    """
    order = sorted(BACKENDS, key=lambda b: b != "jax")
    with ThreadPoolExecutor(max_workers=2) as pool:
        errors = list(pool.map(lambda b: run_one(b, command, folder), order))
    failures = [e for e in errors if e]
    assert not failures, "\n".join(failures)


def test_keras_files_load_and_predict_identically_on_every_backend(tmp_path):
    run("save", tmp_path)  # every backend's files are saved before any loads
    run("load", tmp_path)
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
