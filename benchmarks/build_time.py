"""Build + first training step at T=10 and T=1000 (LSTM, 64 units, batch 16).

The loop is symbolic, so construction and tracing should not depend on the
sequence length: the first step at T=1000 may cost more than at T=10 only by
the longer loop itself (goal: at most 1.5x). The steady step at each T shows
what the loop itself costs; "first - steady" is the build and compile
overhead. `keras.layers.LSTM` is measured the same way for reference.
"""

from __future__ import annotations

import statistics
import time

from benchmarks import models
from benchmarks.common import add_ratio, fresh_keras, random_data, row, set_ratio

SECTION = "build"
FULL = dict(lengths=(10, 1000), batch=16, features=32, units=64, repeats=3)
QUICK = dict(lengths=(5, 50), batch=4, features=3, units=8, repeats=1)
STEADY_STEPS = 3
CONTENDERS = (models.CELLGRAPH, models.KERAS_LSTM)  # --quick: cellgraph only
GOAL_RATIO = 1.5


def run(quick: bool = False, log=print) -> list[dict]:
    cfg = QUICK if quick else FULL
    short, long = cfg["lengths"]
    data = {
        t: (
            random_data((cfg["batch"], t, cfg["features"]), 0),
            random_data((cfg["batch"], 1), 1),
        )
        for t in (short, long)
    }
    contenders = CONTENDERS[:1] if quick else CONTENDERS
    if not quick:  # pay TensorFlow's one-time start-up costs before timing
        fresh_keras()
        warm = models.lstm_model(models.KERAS_LSTM, 2, cfg["features"], 2)
        warm.train_on_batch(data[short][0][:, :2], data[short][1])

    first = {(k, t): [] for k in contenders for t in (short, long)}
    steady = {(k, t): [] for k in contenders for t in (short, long)}
    for r in range(cfg["repeats"]):
        log(f"[build] round {r + 1}/{cfg['repeats']}")
        lengths = (short, long) if r % 2 == 0 else (long, short)
        for kind in contenders if r % 2 == 0 else contenders[::-1]:
            for t in lengths:
                x, y = data[t]
                fresh_keras()
                start = time.perf_counter()
                model = models.lstm_model(kind, t, cfg["features"], cfg["units"])
                model.train_on_batch(x, y)
                first[(kind, t)].append(time.perf_counter() - start)
                times = []
                for _ in range(STEADY_STEPS):
                    start = time.perf_counter()
                    model.train_on_batch(x, y)
                    times.append(time.perf_counter() - start)
                steady[(kind, t)].append(statistics.median(times))

    case = "B{batch} F{features} U{units}".format(**cfg)
    rows = []
    for kind in contenders:
        per_t = {}
        for t in (short, long):
            f, s = first[(kind, t)], steady[(kind, t)]
            per_t[t] = [
                row(SECTION, f"{case} T={t}", kind, "build + first step", "s", f),
                row(
                    SECTION,
                    f"{case} T={t}",
                    kind,
                    "steady step",
                    "ms",
                    [1000 * v for v in s],
                ),
                row(
                    SECTION,
                    f"{case} T={t}",
                    kind,
                    "first - steady (overhead)",
                    "s",
                    [a - b for a, b in zip(f, s)],
                ),
            ]
        for anchor, result in zip(per_t[short] * 2, per_t[short] + per_t[long]):
            set_ratio(result, anchor, f"same at T={short}")
            rows.append(result)
        per_t[long][0]["anchor"] += f" (goal <= {GOAL_RATIO:g})"
    by_key = {(r["contender"], r["case"], r["metric"]): r for r in rows}
    for result in rows:
        keras_row = by_key.get((models.KERAS_LSTM, result["case"], result["metric"]))
        if result["contender"] == models.CELLGRAPH:
            add_ratio(result, keras_row, "vs " + models.KERAS_LSTM)
    return rows
