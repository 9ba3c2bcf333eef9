"""Backends: the LSTM step graph on Keras's TensorFlow, JAX and PyTorch backends.

For every backend whose package can be imported, a fresh Python process
(`python -m benchmarks.backends --worker SPEC`, with `KERAS_BACKEND` set)
builds `Input -> LSTM -> Dense(1)` (Adam, MSE; `benchmarks.models.lstm_model`)
with cellgraph's `cells.LSTMCell` and with `keras.layers.LSTM`, each compiled
with `jit_compile=False` and `jit_compile=True` (`--quick`: only Keras's
default for the backend, on a tiny shape), and times their train steps
(`train_on_batch`) and inference calls (`predict_on_batch`) round-robin after
two warm-up rounds. The first train step of each model (trace, compile, run)
is a row of its own, one sample per process. The processes run one after
another, never side by side; a full run starts `PASSES` of them per backend,
in alternating order (TF, JAX, torch, then torch, JAX, TF), each timing half
the rounds, so that a change in the machine's load is spread over the
backends. Where a round is so slow that the rounds would take more than
`ROUND_BUDGET_S` (JAX without jit), a process times fewer rounds.

What `jit_compile` means differs by backend:

- TensorFlow: False runs the step as a `tf.function` graph (Keras's default on
  a CPU); True compiles it with XLA.
- JAX: False runs the step eagerly, op by op (`lax.scan` compiles its body
  anew at every call); True compiles the whole step with XLA (`jax.jit`,
  Keras's default).
- PyTorch: False runs eagerly (Keras's default); True wraps the step in
  `torch.compile`. Its first step compiles for minutes (TorchDynamo unrolls
  Keras's Python loop over time and breaks the graph at every step), so it is
  skipped unless `TORCH_COMPILE=1` (or `--torch-compile` when this module
  runs on its own) asks for it.

Every row's ratio is against TensorFlow's `keras.layers.LSTM` without XLA
(the anchor, measured in the same run). For the cellgraph rows, "vs same
backend keras.layers.LSTM" compares with that backend's `keras.layers.LSTM`
in the same mode, and "paired" is the median of the per-round ratios to it
(both timed in the same process, round by round); the Keras rows with
`jit_compile=True` carry the ratio to the same backend without it. Ratios
across backends compare processes that ran one after another, under whatever
load the machine had then (each row's note gives the load average). The
workers run with `OMP_WAIT_POLICY=PASSIVE` unless it is set: PyTorch's
OpenMP threads otherwise spin while they wait, which on a machine with more
busy threads than cores made its steps 4-5x slower than with one thread.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
import time
from pathlib import Path

SECTION = "backends"
BACKENDS = ("tensorflow", "jax", "torch")
FULL = dict(batch=64, timesteps=100, features=32, units=128)
QUICK = dict(batch=4, timesteps=5, features=3, units=8)
FULL_REPEATS, QUICK_REPEATS = 30, 2  # rounds per backend, over all passes
PASSES = 2  # full run: worker processes per backend (quick: 1)
# A full pass times fewer rounds where a round (all of a backend's calls) is
# so slow that the rounds would take longer than this (JAX without jit).
ROUND_BUDGET_S, MIN_REPEATS = 60, 3
TIMEOUT_S = 1200  # one worker process (quick: QUICK_TIMEOUT_S)
QUICK_TIMEOUT_S = 300
METRICS = ("train step", "inference")
FIRST = "first train step"  # trace + compile + run, one sample per pass
CELLGRAPH = "cellgraph LSTMCell"
KERAS_LSTM = "keras.layers.LSTM"
KINDS = (CELLGRAPH, KERAS_LSTM)
ANCHOR = ("tensorflow", KERAS_LSTM, False)
# Keras's own choice (`jit_compile="auto"`) on a CPU: the only mode --quick runs.
DEFAULT_JIT = {"tensorflow": False, "jax": True, "torch": False}
# What `jit_compile=False` / `True` is on each backend, as the tables say it.
MODES = {
    "tensorflow": {False: "tf.function", True: "XLA"},
    "jax": {False: "eager", True: "XLA"},
    "torch": {False: "eager", True: "torch.compile"},
}
TORCH_COMPILE_SKIPPED = (
    "torch.compile not run: its first train step compiled for 2 min at T=5 "
    "and 7 min at T=100 on the 2-core test machine (Dynamo unrolls Keras's "
    "Python loop over time, with a graph break at every step); "
    "TORCH_COMPILE=1 runs it"
)
ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # `python benchmarks/backends.py`
    sys.path.insert(0, str(ROOT))


def contender(backend: str, kind: str, jit: bool) -> str:
    """`"jax cellgraph LSTMCell [XLA]"`: the name in the table."""
    return f"{backend} {kind} [{MODES[backend][jit]}]"


def run(quick: bool = False, log=print, torch_compile: bool | None = None) -> list:
    """Runs one worker process per backend (per pass), then sets the ratios."""
    from benchmarks.common import row

    if torch_compile is None:
        torch_compile = os.environ.get("TORCH_COMPILE", "") not in ("", "0")
    shape = QUICK if quick else FULL
    case = "B{batch} T{timesteps} F{features} U{units}".format(**shape)
    passes = 1 if quick else PASSES
    repeats = QUICK_REPEATS if quick else FULL_REPEATS
    installed = [b for b in BACKENDS if importlib.util.find_spec(b) is not None]
    modes = {b: [DEFAULT_JIT[b]] if quick else [False, True] for b in BACKENDS}
    reports = {b: [] for b in installed}
    for p in range(passes):
        for backend in installed if p % 2 == 0 else installed[::-1]:
            log(f"[backends] {case}: {backend}, pass {p + 1} of {passes}")
            spec = dict(
                shape,
                backend=backend,
                modes=modes[backend],
                repeats=-(-repeats // passes),
                warmup=1 if quick else 2,
                budget_s=None if quick else ROUND_BUDGET_S,
                torch_compile=torch_compile,
            )
            reports[backend].append(_spawn(spec, QUICK_TIMEOUT_S if quick else None))

    merged = {b: _merge(reports[b]) for b in installed}
    rows = []
    for metric in (*METRICS, FIRST):
        unit = "s" if metric == FIRST else "ms"
        for backend in BACKENDS:
            for jit in modes[backend]:
                for kind in KINDS:
                    name = contender(backend, kind, jit)
                    if backend not in installed:
                        why = f"{backend} not installed"
                        rows.append(row(SECTION, case, name, metric, unit, skipped=why))
                        continue
                    got = merged[backend]
                    result = got.get(f"{kind}|{int(jit)}|{metric}")
                    if result is None:  # the worker died before reporting
                        result = {"error": got.get("error", "no result")}
                    rows.append(
                        row(
                            SECTION,
                            case,
                            name,
                            metric,
                            unit,
                            result.get("samples"),
                            error=result.get("error"),
                            skipped=result.get("skipped"),
                            note=got.get("note"),
                        )
                    )
    _set_ratios(rows)
    return rows


def _set_ratios(rows: list[dict]) -> None:
    """The anchor's ratio, and within a backend cellgraph vs Keras, XLA vs not."""
    from benchmarks.common import add_paired_ratio, add_ratio, set_ratio

    by_name = {(r["contender"], r["metric"]): r for r in rows}
    for r in rows:
        set_ratio(r, by_name.get((contender(*ANCHOR), r["metric"])))
        backend = r["contender"].split(" ", 1)[0]
        for jit in (False, True):
            keras_row = by_name.get((contender(backend, KERAS_LSTM, jit), r["metric"]))
            if r["contender"] == contender(backend, CELLGRAPH, jit):
                add_ratio(r, keras_row, "vs same backend keras.layers.LSTM")
                if r["metric"] != FIRST:  # one sample per pass: no rounds
                    add_paired_ratio(r, keras_row, "paired")
            elif r["contender"] == contender(backend, KERAS_LSTM, jit) and jit:
                plain = by_name.get(
                    (contender(backend, KERAS_LSTM, False), r["metric"])
                )
                add_ratio(r, plain, f"vs same backend {MODES[backend][False]}")


def _merge(reports: list[dict]) -> dict:
    """Joins the passes of one backend: samples appended, the first error kept."""
    merged = {"note": []}
    for report in reports:
        if "error" in report:
            merged.setdefault("error", report["error"])
            continue
        merged["note"].append(report["note"])
        for key, result in report["results"].items():
            into = merged.setdefault(key, {})
            if "samples" in result:
                into.setdefault("samples", []).extend(result["samples"])
            else:
                for field in ("error", "skipped"):
                    if field in result:
                        into.setdefault(field, result[field])
    for result in merged.values():  # an error in one pass spoils the samples
        if isinstance(result, dict) and ("error" in result or "skipped" in result):
            result.pop("samples", None)
    merged["note"] = "; ".join(merged["note"]) or None
    return merged


def _spawn(spec: dict, timeout: float | None) -> dict:
    """Runs `_worker(spec)` in a new Python process under `spec["backend"]`."""
    from benchmarks.common import spawn_worker

    limit = timeout or TIMEOUT_S * (3 if spec["torch_compile"] else 1)
    return spawn_worker("benchmarks.backends", spec, spec["backend"], limit)


# -- the worker process ---------------------------------------------------------
def _worker(spec: dict) -> dict:
    """Builds the four models of one backend, times them round-robin."""
    from benchmarks.common import load_average

    start_load = load_average()
    started = time.perf_counter()
    import keras

    from benchmarks import models
    from benchmarks.common import describe_error, interleave, random_data

    backend = keras.backend.backend()
    if backend != spec["backend"]:
        return {"error": f"KERAS_BACKEND={spec['backend']} gave {backend}"}
    if backend == "tensorflow":
        import tensorflow as tf

        tf.get_logger().setLevel("ERROR")  # retracing notices
    shape = [spec[k] for k in ("timesteps", "features", "units")]
    x = random_data((spec["batch"], spec["timesteps"], spec["features"]), seed=0)
    y = random_data((spec["batch"], 1), seed=1)
    # A throw-away model pays the backend's one-time start-up costs, which
    # would otherwise land on the first contender's first step.
    warm = models.lstm_model(KERAS_LSTM, 2, 2, 2, jit_compile=DEFAULT_JIT[backend])
    warm.train_on_batch(x[:2, :2, :2], y[:2])
    warm.predict_on_batch(x[:2, :2, :2])
    results, tasks, first = {}, {}, {}
    for kind in KINDS:
        for jit in spec["modes"]:
            keys = [f"{kind}|{int(jit)}|{metric}" for metric in (*METRICS, FIRST)]
            if backend == "torch" and jit and not spec["torch_compile"]:
                results.update({k: {"skipped": TORCH_COMPILE_SKIPPED} for k in keys})
                continue
            try:
                model = models.lstm_model(kind, *shape, jit_compile=jit)
                tic = time.perf_counter()
                model.train_on_batch(x, y)  # traces (and compiles) the step
                toc = time.perf_counter()
                model.predict_on_batch(x)
                first[f"{kind}|{int(jit)}"] = (toc - tic, time.perf_counter() - toc)
                results[keys[2]] = {"samples": [toc - tic]}  # seconds
            except Exception as exc:  # a backend may refuse a mode: report
                results.update({k: {"error": describe_error(exc)} for k in keys})
                continue
            tasks[keys[0]] = _bind(model.train_on_batch, x, y)
            tasks[keys[1]] = _bind(model.predict_on_batch, x)
    tic = time.perf_counter()
    for _ in range(spec["warmup"]):  # warm-up rounds, which also time a round
        for task in tasks.values():
            task()
    per_round = (time.perf_counter() - tic) / max(spec["warmup"], 1)
    repeats = spec["repeats"]
    if spec.get("budget_s") and per_round * repeats > spec["budget_s"]:
        repeats = max(MIN_REPEATS, int(spec["budget_s"] / per_round))
    samples = interleave(tasks, repeats=repeats, warmup=0)
    for key, seconds in samples.items():
        results[key] = {"samples": [1000 * s for s in seconds]}
    firsts = ", ".join(
        f"{k.replace('|1', ' jit').replace('|0', '')} {a:.1f}+{b:.1f} s"
        for k, (a, b) in first.items()
    )
    note = (
        f"{backend} {_version(backend)}: {time.perf_counter() - started:.0f} s, "
        f"load {start_load} -> {load_average()}; "
        f"{repeats} rounds of {per_round:.2f} s; "
        f"first train+predict call {firsts}"
    )
    return {"results": results, "note": note}


def _version(backend: str) -> str:
    return getattr(sys.modules.get(backend), "__version__", "?")


def _bind(function, *args):
    return lambda: function(*args)


# -- without Keras: why XLA on JAX trains slower ---------------------------------
def raw_check(repeats: int = 31) -> dict[str, float]:
    """The same LSTM written by hand in TensorFlow and in JAX, in one process.

    `python -m benchmarks.backends --raw` times, round-robin in one process
    (so under the same load), a training step (loss, gradient, SGD update)
    and inference of `LSTM(128) -> Dense(1)` on the main shape: TF's
    `tf.function` loop (`tf.foldl`) with and without XLA, JAX's `jax.jit` of
    `lax.scan`, and the same with the step wrapped in `jax.checkpoint` (its
    backward pass recomputes each step instead of reading the step's saved
    intermediates). Needs TensorFlow and JAX; returns median milliseconds.
    """
    import statistics
    from types import SimpleNamespace

    import jax
    import jax.numpy as jnp
    import numpy as np
    import tensorflow as tf

    from benchmarks.common import interleave, random_data

    b, t, f, u = (FULL[k] for k in ("batch", "timesteps", "features", "units"))
    x, y = random_data((b, t, f), 0), random_data((b, 1), 1)
    init = [random_data(s, i + 2) * 0.1 for i, s in enumerate([(f, 4 * u), (u, 4 * u)])]
    init += [np.zeros(4 * u, "float32"), np.zeros((u, 1), "float32")]

    def gates(z, c, ops):
        i, g_f, g, o = ops.split(z, 4, axis=-1)
        c = ops.sigmoid(g_f) * c + ops.sigmoid(i) * ops.tanh(g)
        return ops.sigmoid(o) * ops.tanh(c), c

    variables = [tf.Variable(a) for a in init]

    def tf_forward(xs):
        w, r, bias, v = variables
        ops = SimpleNamespace(split=tf.split, sigmoid=tf.sigmoid, tanh=tf.tanh)

        def step(carry, x_t):
            return gates(x_t @ w + bias + carry[0] @ r, carry[1], ops)

        zeros = tf.zeros((b, u))
        h, _ = tf.foldl(step, tf.transpose(xs, [1, 0, 2]), initializer=(zeros, zeros))
        return h @ v

    def tf_train(xs, ys):
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean((tf_forward(xs) - ys) ** 2)
        for var, grad in zip(variables, tape.gradient(loss, variables)):
            var.assign_sub(1e-3 * grad)
        return loss

    def jax_forward(params, xs, remat=False):
        w, r, bias, v = params
        ops = SimpleNamespace(split=jnp.split, sigmoid=jax.nn.sigmoid, tanh=jnp.tanh)

        def step(carry, x_t):
            return gates(x_t @ w + bias + carry[0] @ r, carry[1], ops), None

        zeros = jnp.zeros((b, u))
        step = jax.checkpoint(step) if remat else step
        (h, _), _ = jax.lax.scan(step, (zeros, zeros), jnp.swapaxes(xs, 0, 1))
        return h @ v

    def jax_train(params, xs, ys, remat):
        def loss(p):
            return jnp.mean((jax_forward(p, xs, remat) - ys) ** 2)

        return jax.tree.map(lambda p, g: p - 1e-3 * g, params, jax.grad(loss)(params))

    tx, ty = tf.constant(x), tf.constant(y)
    tasks = {}
    for jit in (False, True):
        name = "TF XLA" if jit else "TF tf.function"
        train = tf.function(tf_train, jit_compile=jit)
        infer = tf.function(tf_forward, jit_compile=jit)
        tasks[name + " train"] = lambda train=train: train(tx, ty).numpy()
        tasks[name + " inference"] = lambda infer=infer: infer(tx).numpy()
    params, jx, jy = [jnp.asarray(a) for a in init], jnp.asarray(x), jnp.asarray(y)
    for remat in (False, True):
        name = "JAX jit" + (" + jax.checkpoint(step)" if remat else "")
        train = jax.jit(jax_train, static_argnums=3)
        tasks[name + " train"] = lambda train=train, remat=remat: jax.block_until_ready(
            train(params, jx, jy, remat)
        )
    infer = jax.jit(jax_forward)
    tasks["JAX jit inference"] = lambda: np.asarray(infer(params, jx))
    samples = interleave(tasks, repeats=repeats, warmup=2)
    return {k: 1000 * statistics.median(v) for k, v in samples.items()}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker", metavar="SPEC", help="JSON: shape, backend")
    parser.add_argument("--quick", action="store_true", help="tiny shape")
    parser.add_argument(
        "--torch-compile", action="store_true", help="also time torch.compile"
    )
    parser.add_argument(
        "--raw", action="store_true", help="hand-written TF vs JAX LSTM, no Keras"
    )
    args = parser.parse_args(argv)
    if args.raw:
        from benchmarks.common import load_average

        for name, ms in raw_check().items():
            print(f"{name:40s} {ms:7.1f} ms (median)")
        print(f"load average {load_average()}")
        return
    if args.worker:
        print(json.dumps(_worker(json.loads(args.worker))), flush=True)
        return
    from benchmarks.run import format_table

    rows = run(quick=args.quick, log=print, torch_compile=args.torch_compile or None)
    print(format_table(rows))


if __name__ == "__main__":
    main()
