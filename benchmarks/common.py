"""Shared pieces of the benchmarks: result rows, interleaved timing, memory probes."""

from __future__ import annotations

import gc
import json
import os
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np


def row(
    section: str,
    case: str,
    contender: str,
    metric: str,
    unit: str,
    samples: list[float] | None = None,
    *,
    error: str | None = None,
    skipped: str | None = None,
    note: str | None = None,
) -> dict:
    """One result: the median of `samples` (times or sizes); ratios come later.

    A row that could not be measured carries `error` (the contender failed) or
    `skipped` (the contender is not available here) and no median.
    """
    return {
        "section": section,
        "case": case,
        "contender": contender,
        "metric": metric,
        "unit": unit,
        "median": statistics.median(samples) if samples else None,
        "best": min(samples) if samples else None,
        "repeats": len(samples) if samples else 0,
        "samples": list(samples) if samples else [],
        "ratio": None,
        "anchor": None,
        "other_ratios": {},
        "error": error,
        "skipped": skipped,
        "note": note,
    }


def set_ratio(target: dict, anchor_row: dict | None, label: str | None = None) -> None:
    """Sets `target["ratio"]` to target / anchor (the anchor's label by default)."""
    value = _ratio(target, anchor_row)
    if value is not None:
        target["ratio"] = value
        target["anchor"] = label or anchor_row["contender"]


def add_ratio(target: dict, anchor_row: dict | None, label: str) -> None:
    """Adds a secondary ratio target / anchor under `label`."""
    value = _ratio(target, anchor_row)
    if value is not None:
        target["other_ratios"][label] = value


def ratio_to_value(target: dict, value: float, label: str, primary: bool) -> None:
    """A ratio against a fixed figure (a goal, or a number quoted in the issue)."""
    if target["median"] is None or value <= 0:
        return
    if primary:
        target["ratio"] = target["median"] / value
        target["anchor"] = label
    else:
        target["other_ratios"][label] = target["median"] / value


def add_paired_ratio(target: dict, anchor_row: dict | None, label: str) -> None:
    """Adds the median of the per-round ratios target_i / anchor_i.

    Rows timed round-robin by `interleave` hold one sample per round, so the
    i-th samples of two rows were taken seconds apart, under the same load.
    """
    if anchor_row is None or not target["samples"] or not anchor_row["samples"]:
        return
    pairs = zip(target["samples"], anchor_row["samples"])
    target["other_ratios"][label] = statistics.median(a / b for a, b in pairs)


def _ratio(target: dict, anchor_row: dict | None) -> float | None:
    if anchor_row is None or target["median"] is None or not anchor_row["median"]:
        return None
    return target["median"] / anchor_row["median"]


def describe_error(exc: BaseException, limit: int = 200) -> str:
    """`Type: message` on one line, short enough for a table cell.

    Keras wraps errors raised in a layer's call as "Exception encountered
    when calling X.call()." followed by the cause; both are kept.
    """
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc))
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if len(lines) > 1 and lines[0].startswith("Exception encountered"):
        lines = [lines[0] + " " + lines[1]]
    text = f"{type(exc).__name__}: {lines[0] if lines else ''}"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def interleave(
    tasks: dict[str, Callable[[], object]], repeats: int, warmup: int = 1
) -> dict[str, list[float]]:
    """Times every task `repeats` times, round-robin, after `warmup` untimed calls.

    Each round visits all tasks once, starting one task later than the round
    before, so that a change in the machine's load hits all tasks alike and
    none always runs first. Returns seconds per call.
    """
    names = list(tasks)
    for name in names:
        for _ in range(warmup):
            tasks[name]()
    samples: dict[str, list[float]] = {name: [] for name in names}
    for r in range(repeats):
        shift = r % len(names)
        for name in names[shift:] + names[:shift]:
            start = time.perf_counter()
            tasks[name]()
            samples[name].append(time.perf_counter() - start)
    return samples


def fresh_keras() -> None:
    """Drops Keras's global state (layer names, graphs) and collects garbage."""
    import keras

    keras.backend.clear_session()
    gc.collect()


def random_data(shape: tuple, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape).astype("float32")


# -- worker processes ------------------------------------------------------------
ROOT = Path(__file__).resolve().parent.parent


def spawn_worker(module: str, spec: dict, backend: str, timeout: float) -> dict:
    """Runs `python -m module --worker SPEC` under `KERAS_BACKEND=backend`.

    The worker prints its result as one JSON line (the last line starting
    with `{`); that dict is returned, or `{"error": ...}` when the process
    died or ran longer than `timeout` seconds.
    """
    env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="3")
    env.pop("JAX_ENABLE_X64", None)  # JAX's defaults (the tests turn it on)
    # PyTorch's OpenMP threads spin while they wait for work; on a machine
    # with more busy threads than cores (a shared CI box) that made its steps
    # 4-5x slower than one thread, where a passive wait costs nothing.
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p
    )
    command = [sys.executable, "-m", module, "--worker", json.dumps(spec)]
    try:
        done = subprocess.run(
            command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
        )
    except subprocess.TimeoutExpired:
        return {"error": f"TimeoutExpired: the {backend} worker ran too long"}
    for line in reversed(done.stdout.splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
    return {"error": f"worker exited with {done.returncode}: {tail[:150]}"}


def load_average() -> float | None:
    """The 1-minute load average, rounded (None where unsupported)."""
    try:
        return round(os.getloadavg()[0], 1)
    except OSError:
        return None


# -- memory ---------------------------------------------------------------------
def rss_mib() -> dict[str, float] | None:
    """Current (VmRSS) and high-water (VmHWM) resident memory of this process."""
    try:
        with open("/proc/self/status") as f:
            fields = dict(line.split(":", 1) for line in f if ":" in line)
        return {
            "rss": int(fields["VmRSS"].split()[0]) / 1024,
            "hwm": int(fields["VmHWM"].split()[0]) / 1024,
        }
    except (OSError, KeyError, ValueError):
        return None


def reset_rss_peak() -> bool:
    """Resets VmHWM to the current RSS (Linux >= 4.0); False where unsupported."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def maxrss_mib() -> float:
    """The process's RSS high-water mark since it started (`getrusage`)."""
    import resource
    import sys

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 1024 / (1024 if sys.platform == "darwin" else 1)
