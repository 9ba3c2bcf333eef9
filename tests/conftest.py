"""Shared pytest set-up: quiet TensorFlow, seeded randomness, a fresh Keras session."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
# float64 tests (finite differences) need JAX's 64-bit mode.
os.environ.setdefault("JAX_ENABLE_X64", "1")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

if keras.backend.backend() == "torch":
    import torch

    _tensor_array = torch.Tensor.__array__

    def _detached_array(self, *args, **kwargs):
        # Tests compare layer outputs with NumPy (np.asarray, assert_allclose),
        # as TensorFlow and JAX tensors allow; a torch tensor that requires
        # grad refuses, so the tests see its detached values
        # (keras.ops.convert_to_numpy does the same).
        return _tensor_array(self.detach(), *args, **kwargs)

    torch.Tensor.__array__ = _detached_array


_tests_run = 0


@pytest.fixture(autouse=True)
def _seeded():
    global _tests_run
    keras.utils.set_random_seed(1234)
    yield
    # A full garbage collection after every test (clear_session's default)
    # costs 0.5-3 s each; every 25 tests keeps memory flat at a fraction.
    _tests_run += 1
    keras.backend.clear_session(free_memory=_tests_run % 25 == 0)


@pytest.fixture
def rng():
    return np.random.default_rng(0)


# The portable subset (`pytest -m portable`): every public class, run by CI on
# each Keras backend (KERAS_BACKEND=jax / torch); the whole suite runs on
# TensorFlow. Modules that test TensorFlow-only features (SavedModel export,
# tf.distribute, float64 finite differences) are left out or skip themselves;
# test_cells.py marks its Keras-parity tests one by one.
PORTABLE_MODULES = {
    "test_recurrent_model.py",
    "test_readout_teacher.py",
    "test_sequential.py",
    "test_sgu_rhn.py",
    "test_systems.py",
    "test_superloop.py",
    "test_feedback.py",
    "test_saving.py",
    "test_misuse_table.py",
}


def pytest_collection_modifyitems(config, items):
    for item in items:
        if item.path.name in PORTABLE_MODULES:
            item.add_marker(pytest.mark.portable)
