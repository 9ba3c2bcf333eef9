"""cellgraph's benchmarks: cellgraph against Keras's (and PyTorch's) LSTMs.

    python benchmarks/run.py [--quick] [--only NAME ...] [--json OUT]

Sections (`--only` picks some): `lstm` (train step and inference against
`keras.layers.LSTM`, `keras.layers.RNN(LSTMCell)`, PyTorch `nn.LSTM` when
installed, with and without XLA), `superloop` (time to first training step
and steady step of a 64-step x 32-layer SGU step graph, against the same maths
in one flat `keras.layers.RNN` cell), `build` (build +
first step at T=10 vs T=1000), `memory` (peak memory of a training step at
T=1000, with and without rematerialisation), `backends` (the cellgraph and
Keras LSTMs on each installed Keras backend, TensorFlow, JAX and PyTorch, one
process after another, with `jit_compile` False and True), `torch` (on the
PyTorch backend: cellgraph's LSTM/GRU layers and step graphs against
`keras.layers.LSTM`/`GRU`, native `torch.nn.LSTM`/`GRU` and the same maths as
raw torch loops). Contenders are timed
round-robin after warm-up; the table shows medians and ratios against each
section's anchor. `--quick` runs tiny shapes with 1-3 repeats (a smoke test;
its figures mean nothing; its memory and backends processes run alongside the
other sections).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

SECTIONS = ("lstm", "superloop", "build", "memory", "backends", "torch")
COLUMNS = ("case", "contender", "metric", "median", "best", "ratio", "anchor", "others")


def main(argv=None) -> dict:
    """Runs the benchmarks, prints the table, returns `{"meta": ..., "rows": ...}`."""
    parser = argparse.ArgumentParser(
        prog="benchmarks/run.py", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--quick", action="store_true", help="tiny shapes, 1-3 runs")
    parser.add_argument(
        "--only",
        nargs="+",
        choices=SECTIONS,
        metavar="NAME",
        help=f"run only these sections ({', '.join(SECTIONS)})",
    )
    parser.add_argument("--json", metavar="OUT", help="also write the results here")
    args = parser.parse_args(argv)

    import tensorflow as tf

    from benchmarks import (
        backends,
        build_time,
        lstm,
        memory,
        superloop_shape,
        torch_loops,
    )

    tf.get_logger().setLevel("ERROR")  # retracing notices: every model is new

    modules = {
        "lstm": lstm,
        "backends": backends,
        "superloop": superloop_shape,
        "build": build_time,
        "memory": memory,
        "torch": torch_loops,
    }
    sections = args.only or SECTIONS
    results = {"meta": _machine(args.quick), "rows": []}
    background = ThreadPoolExecutor(max_workers=1)
    early = {}
    for name in ("memory", "backends", "torch"):
        if args.quick and name in sections:
            # These sections run in their own processes (one after another):
            # in a smoke test they may as well use the other core while the
            # sections here run.
            early[name] = background.submit(modules[name].run, quick=True, log=_log)
    for name in sections:
        start, cpu = time.perf_counter(), _cpu_seconds()
        if name in early:
            results["rows"].extend(early[name].result())
        else:
            results["rows"].extend(modules[name].run(quick=args.quick, log=_log))
        seconds, cpu = time.perf_counter() - start, _cpu_seconds() - cpu
        results["meta"].setdefault("section_seconds", {})[name] = {
            "wall": round(seconds, 1),
            "cpu": round(cpu, 1),
        }
        _log(f"[{name}] done in {seconds:.0f} s ({cpu:.0f} s of CPU time)")
        if args.json:  # keep what is done if a later section fails
            _write(args.json, results)
    background.shutdown()
    results["meta"]["load_average_end"] = _load()
    print(format_table(results["rows"]))
    if args.json:
        _write(args.json, results)
    return results


def format_table(rows: list[dict]) -> str:
    """The rows as Markdown tables, one per section."""
    lines, section = [], None
    for r in rows:
        if r["section"] != section:
            section = r["section"]
            lines += [
                "",
                f"### {section}",
                "",
                "| " + " | ".join(COLUMNS) + " |",
                "|---|---|---|---:|---:|---:|---|---|",
            ]
        if r["median"] is not None:
            median = f"{_number(r['median'])} {r['unit']}"
        else:
            median = (
                "error: " + r["error"]
                if r["error"]
                else "skipped: " + str(r["skipped"])
            )
        best = _number(r["best"]) if r["best"] is not None else "-"
        ratio = f"{r['ratio']:.2f}" if r["ratio"] is not None else "-"
        others = ", ".join(f"{k} {v:.2f}" for k, v in r["other_ratios"].items())
        cells = [
            r["case"],
            r["contender"],
            r["metric"],
            median,
            best,
            ratio,
            r["anchor"] or "-",
            others or "-",
        ]
        lines.append("| " + " | ".join(c.replace("|", "/") for c in cells) + " |")
    return "\n".join(lines).lstrip("\n")


def _number(value: float) -> str:
    return f"{value:.3g}" if abs(value) < 100 else f"{value:.0f}"


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _cpu_seconds() -> float:
    """CPU time used by this process and its finished children."""
    import resource

    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return sum(u.ru_utime + u.ru_stime for u in (own, children))


def _load() -> list[float] | None:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None


def _machine(quick: bool) -> dict:
    import keras
    import numpy as np
    import tensorflow as tf

    from benchmarks.models import torch_available

    torch_missing = torch_available()
    if torch_missing is None:
        import torch

        torch_version = torch.__version__
    else:
        torch_version = torch_missing
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(
            timespec="seconds"
        ),
        "quick": quick,
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "numpy": np.__version__,
        "torch": torch_version,
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "gpus": [d.name for d in tf.config.list_physical_devices("GPU")],
        "load_average_start": _load(),
    }


def _write(path: str, results: dict) -> None:
    with open(path, "w") as f:
        json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
