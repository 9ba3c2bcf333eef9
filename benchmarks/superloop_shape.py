"""The superloop shape: 64 steps x 32 stacked SGU cells x 16 units, batch 64.

The step graph is built by hand from `cells.SGUCell` with an explicit
readout state (the previous top output, concatenated with the step input)
and run by `RecurrentModel`. Measured: the time to the first training step
(construction + compile + first `train_on_batch`) and the steady training
step, against the project's goals and the figures of the earlier designs
(an unrolled step graph, a plain RNN; taken on the same machine, another
day). The contenders, all the same model:

- cellgraph on TensorFlow as Keras compiles it by default on a CPU (a
  `tf.function` graph, no XLA);
- the same one-step model in a plain `keras.layers.RNN` (the reference);
- the same maths written flat: one plain `keras.layers.RNN` cell that holds
  the 32 SGU layers' weights and the head's and computes a step with
  `keras.ops` (`models.FlatSGUStackCell`; no step graph, no nested models);
  the yardstick for the engine's own cost ("vs flat cell", and "paired vs
  flat cell", the median of the per-round ratios);
- cellgraph on TensorFlow compiled with XLA (`jit_compile=True`);
- cellgraph on TensorFlow with `model.optimizer.build(model.trainable_variables)`
  called before the first step (Keras builds Adam's slots lazily, inside the
  first trace of the train step, and then traces the step a second time);
- cellgraph on JAX (Keras's default there: the train step is `jax.jit`-ed,
  XLA), in a Python process of its own, when JAX is installed;
- the same step graph with the 32 cells fused into one
  `cells.FusedCellStack` (4 stacked variables instead of 96, one
  batched recurrent matmul per step), on TF, TF with XLA and JAX, each
  against its unfused twin ("vs unfused", "paired vs unfused").

A step graph of 32 small layers runs ~1000 tiny ops per step; XLA fuses
them, which is where the steady step is won. TensorFlow's first step is
dominated by tracing, by building the gradient of a 33-state loop and by
Keras tracing the train step twice; JAX traces the step once and compiles it.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # `python benchmarks/superloop_shape.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import models  # noqa: E402
from benchmarks.common import (  # noqa: E402
    add_paired_ratio,
    add_ratio,
    fresh_keras,
    interleave,
    load_average,
    random_data,
    ratio_to_value,
    row,
    spawn_worker,
)

SECTION = "superloop"
FULL = dict(batch=64, timesteps=64, features=8, layers=32, units=16)
QUICK = dict(batch=4, timesteps=4, features=3, layers=2, units=4)
FULL_REPEATS = dict(first=2, steady=11)
QUICK_REPEATS = dict(first=1, steady=3)
WORKER_TIMEOUT_S = dict(full=900, quick=300)

CELLGRAPH, PLAIN = models.SUPERLOOP_CELLGRAPH, models.SUPERLOOP_PLAIN
FLAT = models.SUPERLOOP_FLAT
CELLGRAPH_XLA = CELLGRAPH + " [TF XLA]"
CELLGRAPH_BUILT = CELLGRAPH + ", Adam built first"
CELLGRAPH_JAX = CELLGRAPH + " [JAX]"
FUSED = models.SUPERLOOP_FUSED
FUSED_XLA = FUSED + " [TF XLA]"
FUSED_JAX = FUSED + " [JAX]"
# (name, engine, jit_compile, build the optimizer first) timed in a JAX process.
IN_JAX = ((CELLGRAPH_JAX, CELLGRAPH, "auto", False), (FUSED_JAX, FUSED, "auto", False))
# (name, engine, jit_compile, build the optimizer before the first step) of
# the models timed in this process (TF).
IN_PROCESS = (
    (CELLGRAPH, CELLGRAPH, False, False),
    (PLAIN, PLAIN, False, False),
    (FLAT, FLAT, False, False),
    (CELLGRAPH_XLA, CELLGRAPH, True, False),
    (CELLGRAPH_BUILT, CELLGRAPH, False, True),
    (FUSED, FUSED, False, False),
    (FUSED_XLA, FUSED, True, False),
)
FIRST, STEADY = "build + compile + first step", "steady train step"

# Issue 6: the goals, and its figures for the unrolled design and for a
# plain keras.layers.RNN loop over the same step graph.
GOAL_FIRST_S, GOAL_STEADY_MS = 5.0, 139.0
# Issue 18: the fused stack's first TF step (from 10.7 s unfused, quiet machine).
GOAL_FUSED_FIRST_S = 6.5
UNROLLED_FIRST_S = 216.0
PLAIN_RNN_FIRST_S, PLAIN_RNN_STEADY_MS = 23.0, 267.0


def run(quick: bool = False, log=print) -> list[dict]:
    shape = QUICK if quick else FULL
    repeats = QUICK_REPEATS if quick else FULL_REPEATS
    case = "B{batch} T{timesteps} {layers}x SGU({units}) F{features}".format(**shape)
    firsts, steady = _measure(IN_PROCESS, shape, repeats, quick, log=log)

    if importlib.util.find_spec("jax") is None:
        jax = {"skipped": "JAX not installed"}
    else:
        log(f"[superloop] {case}: {CELLGRAPH_JAX} and {FUSED_JAX}, in a JAX process")
        spec = dict(shape=shape, repeats=repeats, quick=quick)
        timeout = WORKER_TIMEOUT_S["quick" if quick else "full"]
        jax = spawn_worker("benchmarks.superloop_shape", spec, "jax", timeout)
    if "first" in jax:
        firsts.update(jax["first"])
        steady.update(jax["steady"])

    first_rows, step_rows = {}, {}
    jax_names = [c[0] for c in IN_JAX]
    for name in [c[0] for c in IN_PROCESS] + jax_names:
        missing = {}
        if name not in firsts:
            missing = dict(error=jax.get("error"), skipped=jax.get("skipped"))
        note = jax.get("note") if name in jax_names else None
        first_rows[name] = row(
            SECTION, case, name, FIRST, "s", firsts.get(name), note=note, **missing
        )
        ratio_to_value(first_rows[name], GOAL_FIRST_S, f"goal {GOAL_FIRST_S:g} s", True)
        step_ms = [1000 * s for s in steady.get(name, [])]
        step_rows[name] = row(
            SECTION, case, name, STEADY, "ms", step_ms, note=note, **missing
        )
        ratio_to_value(
            step_rows[name], GOAL_STEADY_MS, f"goal {GOAL_STEADY_MS:g} ms", True
        )
    for rows in (first_rows, step_rows):
        add_ratio(rows[CELLGRAPH], rows[PLAIN], "vs plain RNN")
        add_ratio(rows[CELLGRAPH], rows[FLAT], "vs flat cell")
        add_paired_ratio(rows[CELLGRAPH], rows[FLAT], "paired vs flat cell")
        add_ratio(rows[CELLGRAPH_XLA], rows[CELLGRAPH], "vs same without XLA")
        add_ratio(rows[CELLGRAPH_BUILT], rows[CELLGRAPH], "vs Adam built lazily")
        add_ratio(rows[CELLGRAPH_JAX], rows[CELLGRAPH], "vs same on TF")
        for fused, unfused in (
            (FUSED, CELLGRAPH),
            (FUSED_XLA, CELLGRAPH_XLA),
            (FUSED_JAX, CELLGRAPH_JAX),
        ):
            add_ratio(rows[fused], rows[unfused], "vs unfused")
            add_paired_ratio(rows[fused], rows[unfused], "paired vs unfused")
        add_ratio(rows[FUSED], rows[FLAT], "vs flat cell")
    ratio_to_value(
        first_rows[FUSED], GOAL_FUSED_FIRST_S, f"goal {GOAL_FUSED_FIRST_S:g} s", True
    )
    unrolled = "vs unrolled design"
    ratio_to_value(first_rows[CELLGRAPH], UNROLLED_FIRST_S, unrolled, False)
    ratio_to_value(first_rows[PLAIN], PLAIN_RNN_FIRST_S, "vs earlier figure", False)
    ratio_to_value(step_rows[PLAIN], PLAIN_RNN_STEADY_MS, "vs earlier figure", False)
    return [r for name in first_rows for r in (first_rows[name], step_rows[name])]


def _measure(contenders, shape, repeats, quick, log=print):
    """First-step seconds (fresh model each round) and steady-step seconds."""
    model_args = {k: v for k, v in shape.items() if k != "batch"}
    x = random_data((shape["batch"], shape["timesteps"], shape["features"]), 0)
    y = random_data((shape["batch"], shape["timesteps"], shape["features"]), 1)
    if not quick:  # pay the backend's one-time start-up costs before timing
        fresh_keras()
        warm = models.superloop_shape_model(2, shape["features"], 1, shape["units"])
        warm.train_on_batch(x[:, :2], y[:, :2])

    firsts = {c[0]: [] for c in contenders}
    trained = {}
    for r in range(repeats["first"]):
        for name, engine, jit, built in contenders[:: 1 if r % 2 == 0 else -1]:
            log(f"[superloop] {name}: build + first step, round {r + 1}")
            fresh_keras()
            start = time.perf_counter()
            model = models.superloop_shape_model(
                **model_args, engine=engine, jit_compile=jit
            )
            if built:
                model.optimizer.build(model.trainable_variables)
            model.train_on_batch(x, y)
            firsts[name].append(time.perf_counter() - start)
            trained[name] = model
    log("[superloop] steady steps")
    steady = interleave(
        {name: _bind(model.train_on_batch, x, y) for name, model in trained.items()},
        repeats=repeats["steady"],
        warmup=1,
    )
    return firsts, steady


def _worker(spec: dict) -> dict:
    """In a JAX process: the first and steady steps (seconds) of `IN_JAX`."""
    import keras

    start_load = load_average()
    if keras.backend.backend() != "jax":
        return {"error": f"expected the JAX backend, got {keras.backend.backend()}"}
    firsts, steady = _measure(
        IN_JAX,
        spec["shape"],
        spec["repeats"],
        spec["quick"],
        log=lambda message: None,
    )
    version = sys.modules["jax"].__version__
    note = f"jax {version}, load {start_load} -> {load_average()}"
    return {"first": firsts, "steady": steady, "note": note}


def _bind(function, *args):
    return lambda: function(*args)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker", metavar="SPEC", help="JSON: shape, repeats")
    parser.add_argument("--quick", action="store_true", help="tiny shape")
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(_worker(json.loads(args.worker))), flush=True)
        return
    from benchmarks.run import format_table

    print(format_table(run(quick=args.quick)))


if __name__ == "__main__":
    main()
