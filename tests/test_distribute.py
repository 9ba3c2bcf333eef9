"""Scale-out: a model holding a RecurrentModel trains under tf.distribute strategies.

Two logical CPU devices (`MirroredStrategy`) and two worker processes on
127.0.0.1 (`MultiWorkerMirroredStrategy`) must end with the weights of the
same training on one device: same initial weights, same data, the global
batch split across the replicas. The strategies run in fresh processes
(tests/_distribute_worker.py), all started at once (they spend most of their
time starting TensorFlow), each bounded by a timeout and killed on failure.
"""

import importlib.util
import json
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import keras
import numpy as np
import pytest

pytestmark = pytest.mark.skipif(
    keras.backend.backend() != "tensorflow",
    reason="tf.distribute strategies need the TensorFlow backend",
)

WORKER = Path(__file__).resolve().parent / "_distribute_worker.py"
ROOT = WORKER.parent.parent
TIMEOUT = 120  # seconds, for each process
LOG_LINE = re.compile(r"^([IWE]\d{4} |WARNING: All log messages|To enable the)")


def load_worker():
    spec = importlib.util.spec_from_file_location("_distribute_worker", WORKER)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class Process:
    """A worker process with its stderr log and its output file."""

    def __init__(self, mode, data, folder, name, **env):
        self.out = folder / f"{name}.npz"
        self.log = folder / f"{name}.log"
        environment = dict(os.environ, KERAS_BACKEND="tensorflow")
        environment.update(TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="")
        environment.pop("TF_CONFIG", None)
        environment["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(ROOT), environment.get("PYTHONPATH", "")) if p
        )
        environment.update(env)
        command = [sys.executable, str(WORKER), mode, str(data), str(self.out)]
        with open(self.log, "w") as err:
            self.popen = subprocess.Popen(
                command,
                cwd=ROOT,
                env=environment,
                stdout=subprocess.DEVNULL,
                stderr=err,
            )
        self.deadline = time.monotonic() + TIMEOUT

    def kill(self):
        if self.popen.poll() is None:
            self.popen.kill()
            self.popen.wait()

    def tail(self, lines=30):
        """The last lines of stderr, without TensorFlow's log chatter."""
        text = self.log.read_text(errors="replace").splitlines()
        kept = [line for line in text if line.strip() and not LOG_LINE.match(line)]
        return "\n".join(kept[-lines:]) or "(empty)"


def wait_for(processes):
    """Waits for all; on a failure or a timeout kills all and fails the test.

    The failure names each process's exit code and its stderr tail.
    """
    failure = None
    try:
        while failure is None and any(p.popen.poll() is None for p in processes):
            if any(p.popen.poll() not in (None, 0) for p in processes):
                failure = "a worker failed"
            elif any(time.monotonic() > p.deadline for p in processes):
                failure = f"timed out after {TIMEOUT} s"
            else:
                time.sleep(0.2)
        if failure is None and any(p.popen.returncode != 0 for p in processes):
            failure = "a worker failed"
    finally:
        for p in processes:
            p.kill()
    if failure:
        report = "\n".join(
            f"--- worker {i}: exit code {p.popen.returncode}; stderr tail:\n{p.tail()}"
            for i, p in enumerate(processes)
        )
        pytest.fail(f"{failure}\n{report}", pytrace=False)
    return [np.load(p.out) for p in processes]


def free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


@pytest.fixture(scope="module")
def job(tmp_path_factory):
    """Starts every strategy's processes, then trains the one-device reference.

    Yields the processes by strategy, the reference weights and losses, and
    the initial weights.
    """
    folder = tmp_path_factory.mktemp("distribute")
    worker = load_worker()
    rng = np.random.default_rng(0)
    x = rng.normal(size=(32, 5, 3)).astype("float32")
    y = rng.normal(size=(32, 1)).astype("float32")
    keras.utils.set_random_seed(0)
    model = worker.build_model()
    initial = model.get_weights()
    data = folder / "data.npz"
    np.savez(data, x=x, y=y, **{f"w{i}": w for i, w in enumerate(initial)})

    cluster = {"worker": [f"127.0.0.1:{port}" for port in free_ports(2)]}
    processes = {"mirrored": [Process("mirrored", data, folder, "mirrored")]}
    processes["multi_worker"] = [
        Process(
            "multi_worker",
            data,
            folder,
            f"worker{i}",
            TF_CONFIG=json.dumps(
                {"cluster": cluster, "task": {"type": "worker", "index": i}}
            ),
        )
        for i in range(2)
    ]
    try:
        loss = worker.train(model, x, y)
        yield processes, model.get_weights(), loss, initial
    finally:
        for group in processes.values():
            for p in group:
                p.kill()
        keras.backend.clear_session()


def weights_of(result):
    count = sum(1 for name in result.files if name.startswith("w"))
    return [result[f"w{i}"] for i in range(count)]


def assert_same_weights(got, want, atol=1e-5):
    assert len(got) == len(want)
    for i, (a, b) in enumerate(zip(got, want)):
        np.testing.assert_allclose(a, b, rtol=0, atol=atol, err_msg=f"weight {i}")


def test_mirrored_strategy_on_two_devices_equals_one_device(job):
    processes, reference, reference_loss, initial = job
    (result,) = wait_for(processes["mirrored"])

    assert int(result["replicas"]) == 2
    # the global batch of 8 is split: 4 examples on each device
    assert result["local_batch_shapes"].tolist() == [[4, 5, 3], [4, 5, 3]]
    weights = weights_of(result)
    assert_same_weights(weights, reference)
    np.testing.assert_allclose(result["loss"], reference_loss, rtol=1e-5)
    # and training changed them (the comparison is not trivially true)
    assert max(np.abs(a - b).max() for a, b in zip(weights, initial)) > 1e-2


def test_multi_worker_mirrored_strategy_two_processes(job):
    processes, reference, reference_loss, _ = job
    first, second = wait_for(processes["multi_worker"])

    for result in (first, second):
        assert int(result["replicas"]) == 2
        # one replica per worker, each with half of the global batch
        assert result["local_batch_shapes"].tolist() == [[4, 5, 3]]
    for a, b in zip(weights_of(first), weights_of(second), strict=True):
        np.testing.assert_array_equal(a, b)  # all-reduce: identical everywhere
    assert_same_weights(weights_of(first), reference)
    np.testing.assert_allclose(first["loss"], reference_loss, rtol=1e-5)
    np.testing.assert_array_equal(first["loss"], second["loss"])
