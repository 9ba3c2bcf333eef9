"""The superloop shape: 64 steps x 32 stacked SGU cells x 16 units, batch 64.

The step graph is built by hand from `cells.SGUCell` with an explicit
readout state (the previous top output, concatenated with the step input)
and run by `RecurrentModel`; as a same-run reference, the same one-step
model runs in a plain `keras.layers.RNN`. Measured: the time to the first
training step (construction + compile + first `train_on_batch`) and the
steady training step, against the goals of issue 6 and the figures it
quotes for the earlier designs (taken on the same machine, another day).
"""

from __future__ import annotations

import time

from benchmarks import models
from benchmarks.common import (
    add_ratio,
    fresh_keras,
    interleave,
    random_data,
    ratio_to_value,
    row,
)

SECTION = "superloop"
FULL = dict(batch=64, timesteps=64, features=8, layers=32, units=16)
QUICK = dict(batch=4, timesteps=4, features=3, layers=2, units=4)
FULL_REPEATS = dict(first=2, steady=11)
QUICK_REPEATS = dict(first=1, steady=3)
CONTENDERS = (models.SUPERLOOP_CELLGRAPH, models.SUPERLOOP_PLAIN)

# Issue 6: the goals, and its figures for the unrolled design and for a
# plain keras.layers.RNN loop over the same step graph.
GOAL_FIRST_S, GOAL_STEADY_MS = 5.0, 139.0
UNROLLED_FIRST_S = 216.0
PLAIN_RNN_FIRST_S, PLAIN_RNN_STEADY_MS = 23.0, 267.0


def run(quick: bool = False, log=print) -> list[dict]:
    shape = QUICK if quick else FULL
    repeats = QUICK_REPEATS if quick else FULL_REPEATS
    case = "B{batch} T{timesteps} {layers}x SGU({units}) F{features}".format(**shape)
    model_args = {k: v for k, v in shape.items() if k != "batch"}
    x = random_data((shape["batch"], shape["timesteps"], shape["features"]), 0)
    y = random_data((shape["batch"], shape["timesteps"], shape["features"]), 1)

    if not quick:  # pay TensorFlow's one-time start-up costs before timing
        fresh_keras()
        warm = models.superloop_shape_model(2, shape["features"], 1, shape["units"])
        warm.train_on_batch(x[:, :2], y[:, :2])

    firsts = {name: [] for name in CONTENDERS}
    trained = {}
    for r in range(repeats["first"]):
        for engine in CONTENDERS if r % 2 == 0 else CONTENDERS[::-1]:
            log(f"[superloop] {case}: {engine}, build + first step, round {r + 1}")
            fresh_keras()
            start = time.perf_counter()
            model = models.superloop_shape_model(**model_args, engine=engine)
            model.train_on_batch(x, y)
            firsts[engine].append(time.perf_counter() - start)
            trained[engine] = model
    log(f"[superloop] {case}: steady steps")
    steady = interleave(
        {name: _bind(model.train_on_batch, x, y) for name, model in trained.items()},
        repeats=repeats["steady"],
        warmup=1,
    )

    first_rows, step_rows = {}, {}
    for name in CONTENDERS:
        first_rows[name] = row(
            SECTION, case, name, "build + compile + first step", "s", firsts[name]
        )
        ratio_to_value(first_rows[name], GOAL_FIRST_S, f"goal {GOAL_FIRST_S:g} s", True)
        step_rows[name] = row(
            SECTION,
            case,
            name,
            "steady train step",
            "ms",
            [1000 * s for s in steady[name]],
        )
        ratio_to_value(
            step_rows[name], GOAL_STEADY_MS, f"goal {GOAL_STEADY_MS:g} ms", True
        )
    cg, plain = models.SUPERLOOP_CELLGRAPH, models.SUPERLOOP_PLAIN
    add_ratio(first_rows[cg], first_rows[plain], "vs plain RNN")
    add_ratio(step_rows[cg], step_rows[plain], "vs plain RNN")
    ratio_to_value(first_rows[cg], UNROLLED_FIRST_S, "vs issue's unrolled", False)
    ratio_to_value(first_rows[plain], PLAIN_RNN_FIRST_S, "vs issue's figure", False)
    ratio_to_value(step_rows[plain], PLAIN_RNN_STEADY_MS, "vs issue's figure", False)
    return [first_rows[cg], step_rows[cg], first_rows[plain], step_rows[plain]]


def _bind(function, *args):
    return lambda: function(*args)
