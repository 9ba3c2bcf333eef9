"""Peak memory of an LSTM training step at T=1000 (with and without remat) and T=10,000.

Every variant runs in a fresh Python process (`python -m benchmarks.memory
--worker SPECS`), so that one variant's freed memory cannot hide the next
one's (`--quick` runs all its variants in one process, to save start-ups).
The worker asks glibc to map every allocation of 4 KiB or more on its own
and to give freed memory back at once (`MALLOC_MMAP_THRESHOLD_`,
`MALLOC_TRIM_THRESHOLD_`): without that, the second training step reuses the
heap the first one grew and its resident-memory peak says little. The figure
is the rise of the resident set (VmHWM after `/proc/self/clear_refs`) during
one warm training step, above the resident set just before it; where Linux
cannot reset the high-water mark, it is the `getrusage` peak of the whole
process above the resident set before its first step (tracing included).

The long case runs the same model at T=10,000 (`--quick`: T=200), without
remat, for cellgraph and `keras.layers.LSTM`; its rows also carry the ratio
to the same contender at T=1000 (about 10 where memory grows linearly in T).

TensorFlow's own allocator statistics (`tf.config.experimental.
get_memory_info("CPU:0")`) are recorded too, but on the CPU they do not see
the loop's buffers (a few MiB where the resident set grows by ~80 MiB), so
they are only a note.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

SECTION = "memory"
FULL = dict(batch=16, timesteps=1000, features=32, units=128, steps=3)
QUICK = dict(batch=16, timesteps=20, features=3, units=32, steps=2)
# The long case: the same shapes with 10x the timesteps, and fewer measured
# steps (a T=10,000 step takes seconds and ~1 GiB).
LONG = dict(FULL, timesteps=10_000, steps=2)
QUICK_LONG = dict(QUICK, timesteps=200)
# (contender name, LSTM kind, remat mode); quick mode runs the first two.
# `RematScope(mode="full")` is what the issue asks for; on the TensorFlow
# backend it fails inside a compiled train step (TF's `custom_gradient` takes
# keyword arguments only eagerly, and Keras passes `training=`), which the
# table then shows. `mode="activations"` recomputes only the activations.
VARIANTS = [
    ("cellgraph LSTMCell", "cellgraph LSTMCell", None),
    (
        "cellgraph LSTMCell, RematScope(activations)",
        "cellgraph LSTMCell",
        "activations",
    ),
    ("cellgraph LSTMCell, RematScope(full)", "cellgraph LSTMCell", "full"),
    ("keras.layers.LSTM", "keras.layers.LSTM", None),
    ("keras.layers.LSTM, RematScope(full)", "keras.layers.LSTM", "full"),
    ("keras.layers.LSTM, RematScope(activations)", "keras.layers.LSTM", "activations"),
]
# The long case's variants; quick mode runs the first.
LONG_VARIANTS = [
    ("cellgraph LSTMCell", "cellgraph LSTMCell", None),
    ("keras.layers.LSTM", "keras.layers.LSTM", None),
]
WORKER_ENV = {
    "MALLOC_MMAP_THRESHOLD_": "4096",
    "MALLOC_TRIM_THRESHOLD_": "0",
    "TF_CPP_MIN_LOG_LEVEL": "3",
    "KERAS_BACKEND": "tensorflow",
}
ROOT = Path(__file__).resolve().parent.parent


def _case(cfg: dict) -> str:
    return "B{batch} T{timesteps} F{features} U{units}".format(**cfg)


def run(quick: bool = False, log=print) -> list[dict]:
    from benchmarks.common import add_ratio

    cases = [
        (QUICK if quick else FULL, VARIANTS[:2] if quick else VARIANTS),
        (QUICK_LONG if quick else LONG, LONG_VARIANTS[:1] if quick else LONG_VARIANTS),
    ]
    specs = [
        dict(cfg, kind=kind, remat=remat)
        for cfg, variants in cases
        for _, kind, remat in variants
    ]
    names = ", ".join(_case(cfg) for cfg, _ in cases)
    if quick:  # one process for all: starting TensorFlow is the slow part
        log(f"[memory] {names}: {len(specs)} variants in one fresh process")
        reports = _spawn(specs)
    else:
        log(f"[memory] {names}: {len(specs)} variants, one fresh process each")
        reports = [_spawn([spec])[0] for spec in specs]

    rows = []
    for cfg, variants in cases:
        case_reports, reports = reports[: len(variants)], reports[len(variants) :]
        rows += _case_rows(_case(cfg), variants, case_reports)
    (short, _), (long, _) = cases
    same = {r["contender"]: r for r in rows if r["case"] == _case(short)}
    for result in rows:
        if result["case"] == _case(long):
            label = f"vs same at T{short['timesteps']}"
            add_ratio(result, same.get(result["contender"]), label)
    return rows


def _case_rows(case: str, variants: list, reports: list[dict]) -> list[dict]:
    """One row per variant of one case, with ratios to the case's anchors."""
    from benchmarks.common import add_ratio, row, set_ratio

    rows = []
    for (name, _, _), report in zip(variants, reports):
        if "error" in report or "skipped" in report:
            kwargs = {k: report[k] for k in ("error", "skipped") if k in report}
            rows.append(row(SECTION, case, name, "train-step peak", "MiB", **kwargs))
            continue
        rows.append(
            row(
                SECTION,
                case,
                name,
                "train-step peak",
                "MiB",
                report["step_peak_mib"],
                note=report["note"],
            )
        )
    by_name = {r["contender"]: r for r in rows}
    for result in rows:
        set_ratio(result, rows[0])
        add_ratio(result, by_name.get("keras.layers.LSTM"), "vs keras.layers.LSTM")
    return rows


def _spawn(specs: list[dict]) -> list[dict]:
    """Runs `_worker` on each spec, in order, in one new Python process."""
    env = dict(os.environ, **WORKER_ENV)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p
    )
    command = [sys.executable, "-m", "benchmarks.memory", "--worker", json.dumps(specs)]
    try:
        done = subprocess.run(
            command,
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=900 * len(specs),
        )
    except subprocess.TimeoutExpired:
        return [{"error": "TimeoutExpired: the worker ran too long"}] * len(specs)
    for line in reversed(done.stdout.splitlines()):
        if line.startswith("["):
            return json.loads(line)
    tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
    error = f"worker exited with {done.returncode}: {tail[:150]}"
    return [{"error": error}] * len(specs)


# -- the worker process ---------------------------------------------------------
def _worker(spec: dict) -> dict:
    import keras

    from benchmarks import models
    from benchmarks.common import (
        describe_error,
        maxrss_mib,
        random_data,
        reset_rss_peak,
        rss_mib,
    )

    if spec["remat"] and not hasattr(keras, "RematScope"):
        return {"skipped": "keras.RematScope not available in this Keras"}
    x = random_data((spec["batch"], spec["timesteps"], spec["features"]), 0)
    y = random_data((spec["batch"], 1), 1)
    try:
        model = models.lstm_model_remat(
            spec["kind"],
            spec["timesteps"],
            spec["features"],
            spec["units"],
            spec["remat"],
        )
        before_first = rss_mib()
        model.train_on_batch(x, y)
    except Exception as exc:
        return {"error": describe_error(exc)}
    tf_peak = _tf_allocator_peak(lambda: model.train_on_batch(x, y))
    peaks = []
    for _ in range(spec["steps"]):
        if before_first is None or not reset_rss_peak():
            break
        before = rss_mib()["rss"]
        model.train_on_batch(x, y)
        peaks.append(rss_mib()["hwm"] - before)
    if peaks:
        note = "RSS rise in a warm step (VmHWM reset)"
    else:  # no resettable high-water mark: the whole first step, tracing included
        base = before_first["rss"] if before_first else 0.0
        peaks.append(maxrss_mib() - base)
        note = "getrusage peak above pre-first-step RSS (includes tracing)"
    if tf_peak is None:
        note += "; TF's CPU allocator reports no peak"
    else:
        note += f"; TF's CPU allocator reports a {tf_peak:.1f} MiB peak"
    return {"step_peak_mib": peaks, "note": note}


def _tf_allocator_peak(step) -> float | None:
    """TensorFlow's CPU allocator peak during `step()`, in MiB (None if absent)."""
    try:
        import tensorflow as tf

        tf.config.experimental.reset_memory_stats("CPU:0")
        before = tf.config.experimental.get_memory_info("CPU:0")["current"]
        step()
        peak = tf.config.experimental.get_memory_info("CPU:0")["peak"]
    except Exception:
        return None
    return (peak - before) / 2**20 if peak else None


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker", required=True, help="JSON list of variants")
    args = parser.parse_args(argv)
    reports = [_worker(spec) for spec in json.loads(args.worker)]
    print(json.dumps(reports), flush=True)


if __name__ == "__main__":
    main()
