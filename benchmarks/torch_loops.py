"""PyTorch backend: cellgraph's step graphs against hand-written torch loops.

In one PyTorch-backend process (`python -m benchmarks.torch_loops --worker
SPEC`, `KERAS_BACKEND=torch`), each case builds the same model several ways
and times train steps (Adam, MSE: `train_on_batch` for Keras models, a
forward, backward and `Adam.step` for plain torch), inference calls
(`predict_on_batch`, which also converts NumPy in and out) and forward calls
(the model called on a torch tensor under `torch.no_grad()`; for plain torch
"inference" and "forward" are both its forward call) round-robin after a
warm-up.
The cases and their anchors:

- `lstm`, `gru` (batch 64, 100 steps, 32 features, 128 units, `Dense(1)` on
  the last output): `cells.LSTMCell(...).get_layer()` as cellgraph runs it
  by default (PyTorch's fused kernel), the same layer on the step loop
  (`NATIVE_KERNELS_ON_TORCH = False`) and on the generic path with Keras's
  loop (`STEP_EXECUTOR = "generic"`, `OWN_LOOP_ON_TORCH = False`: what
  cellgraph did before the lean executor), `keras.layers.LSTM`/`GRU`, and
  native `torch.nn.LSTM`/`GRU` (the anchor).
- `vanilla` (same shape): the README's step graph, `Dense(x_t) +
  Dense(h_tm1) -> tanh`; `gru graph`: a GRU written as a step graph of
  `Dense` layers and `keras.ops`; `superloop` (batch 64, 64 steps, 8
  features, 32 x `SGUCell(16)`, the top output fed back, `Dense(8)` on every
  step): cellgraph by default (lean executor, input projections before the
  loop) and generic, against the same maths as a raw torch Python loop with
  the input projections computed before the loop (the anchor).

Ratios are medians against the case's anchor; "paired" is the median of the
per-round ratios (both timed seconds apart, under the same load).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # `python benchmarks/torch_loops.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

SECTION = "torch"
FULL = dict(batch=64, timesteps=100, features=32, units=128, repeats=9)
FULL_SUPERLOOP = dict(batch=64, timesteps=64, features=8, layers=32, units=16)
QUICK = dict(batch=4, timesteps=5, features=3, units=8, repeats=2)
QUICK_SUPERLOOP = dict(batch=4, timesteps=4, features=3, layers=3, units=4)
TIMEOUT_S = 1800
METRICS = ("train step", "inference", "forward")
DEFAULT, LOOP, GENERIC = "cellgraph", "cellgraph [step loop]", "cellgraph [generic]"
RAW = "raw torch loop, projections hoisted"


def run(quick: bool = False, log=print) -> list:
    """Runs the worker process and turns its timings into rows."""
    import importlib.util

    from benchmarks.common import (
        add_paired_ratio,
        add_ratio,
        row,
        set_ratio,
        spawn_worker,
    )

    if importlib.util.find_spec("torch") is None:
        return [row(SECTION, "all", "-", m, "s", skipped="no torch") for m in METRICS]
    spec = {"quick": quick}
    log(f"[{SECTION}] a PyTorch-backend process ({'quick' if quick else 'full'})")
    report = spawn_worker("benchmarks.torch_loops", spec, "torch", TIMEOUT_S)
    if "error" in report:
        return [
            row(SECTION, "all", "-", m, "s", error=report["error"]) for m in METRICS
        ]
    rows = []
    for case in report["cases"]:
        note = f"load {report['load']}"
        made = {}
        for contender, samples in case["samples"].items():
            for metric in METRICS:
                made[contender, metric] = row(
                    SECTION,
                    case["name"],
                    contender,
                    metric,
                    "s",
                    samples[metric],
                    note=note,
                )
        for (contender, metric), r in made.items():
            anchor = made.get((case["anchor"], metric))
            set_ratio(r, anchor)
            add_paired_ratio(r, anchor, "paired")
            if case.get("keras") and contender != case["keras"]:
                keras_row = made.get((case["keras"], metric))
                add_ratio(r, keras_row, "vs " + case["keras"])
            rows.append(r)
    return rows


# -- the worker process -------------------------------------------------------
def _worker(spec: dict) -> dict:
    import keras
    import torch

    from benchmarks.common import interleave, load_average, random_data
    from cellgraph import backend

    native_last, raw_vanilla, raw_gru, _ = _torch_modules()

    assert keras.backend.backend() == "torch"
    quick = spec["quick"]
    shape = QUICK if quick else FULL
    loop_shape = QUICK_SUPERLOOP if quick else FULL_SUPERLOOP
    repeats = shape["repeats"]
    modes = {  # contender -> STEP_EXECUTOR, NATIVE_KERNELS_ON_TORCH, OWN_LOOP_ON_TORCH
        DEFAULT: ("auto", True, True),
        LOOP: ("auto", False, True),
        GENERIC: ("generic", False, False),
    }

    def keras_tasks(model, x, y, mode=None):
        def use():
            if mode is not None:
                (
                    backend.STEP_EXECUTOR,
                    backend.NATIVE_KERNELS_ON_TORCH,
                    backend.OWN_LOOP_ON_TORCH,
                ) = modes[mode]

        def train():
            use()
            model.train_on_batch(x, y)

        def infer():
            use()
            model.predict_on_batch(x)

        xt = torch.tensor(x)

        def forward():
            use()
            with torch.no_grad():
                model(xt, training=False)

        return {"train step": train, "inference": infer, "forward": forward}

    def torch_tasks(module, x, y):
        optimizer = torch.optim.Adam(module.parameters(), lr=1e-3)
        xt, yt = torch.tensor(x), torch.tensor(y)

        def train():
            optimizer.zero_grad()
            loss = torch.mean((module(xt) - yt) ** 2)
            loss.backward()
            optimizer.step()

        def infer():
            with torch.no_grad():
                module(xt)

        # A torch module has no `predict`: its inference is its forward call.
        return {"train step": train, "inference": infer, "forward": infer}

    def time_case(name, tasks_by_contender, anchor, keras_name=None):
        flat = {
            (c, m): fn
            for c, tasks in tasks_by_contender.items()
            for m, fn in tasks.items()
        }
        timed = interleave(
            {f"{c}|{m}": fn for (c, m), fn in flat.items()}, repeats, warmup=1
        )
        samples = {c: {} for c in tasks_by_contender}
        for key, values in timed.items():
            c, m = key.split("|")
            samples[c][m] = values
        return {"name": name, "samples": samples, "anchor": anchor, "keras": keras_name}

    b, t, f, u = (shape[k] for k in ("batch", "timesteps", "features", "units"))
    x = random_data((b, t, f), 0)
    y_last = random_data((b, 1), 1)
    cases = []
    for kind in ("lstm",) if quick else ("lstm", "gru"):
        cell_cls = {"lstm": "LSTMCell", "gru": "GRUCell"}[kind]
        keras_cls = {"lstm": keras.layers.LSTM, "gru": keras.layers.GRU}[kind]
        tasks = {}
        for mode in modes:
            model = _head_model(_cell_layer(cell_cls, u, f), t, f)
            tasks[mode] = keras_tasks(model, x, y_last, mode)
        tasks[f"keras.layers.{kind.upper()}"] = keras_tasks(
            _head_model(keras_cls(u), t, f), x, y_last
        )
        native = f"torch nn.{kind.upper()}"
        tasks[native] = torch_tasks(native_last(kind, f, u), x, y_last)
        cases.append(time_case(kind, tasks, native, f"keras.layers.{kind.upper()}"))
        _defaults(backend)

    graphs = [("vanilla", _vanilla_layer, raw_vanilla)]
    if not quick:  # --quick, a smoke test: one case of each kind
        graphs += [("gru graph", _gru_graph_layer, raw_gru), ("superloop", None, None)]
    for name, graph, raw in graphs:
        if name == "superloop":
            cases.append(
                _superloop_case(loop_shape, keras_tasks, torch_tasks, time_case)
            )
            continue
        tasks = {
            mode: keras_tasks(_head_model(graph(u, f), t, f), x, y_last, mode)
            for mode in (DEFAULT, GENERIC)
        }
        tasks[RAW] = torch_tasks(raw(f, u), x, y_last)
        cases.append(time_case(name, tasks, RAW))
        _defaults(backend)

    return {"cases": cases, "load": load_average(), "started": time.time()}


def _superloop_case(shape, keras_tasks, torch_tasks, time_case):
    from benchmarks import models
    from benchmarks.common import random_data
    from cellgraph import backend

    _, _, _, raw_sgu_stack = _torch_modules()
    lb, lt, lf, layers, lu = (
        shape[k] for k in ("batch", "timesteps", "features", "layers", "units")
    )
    lx, ly = random_data((lb, lt, lf), 2), random_data((lb, lt, lf), 3)
    tasks = {}
    for mode in (DEFAULT, GENERIC):
        model = models.superloop_shape_model(lt, lf, layers, lu)
        tasks[mode] = keras_tasks(model, lx, ly, mode)
    tasks[RAW] = torch_tasks(raw_sgu_stack(lf, layers, lu), lx, ly)
    case = time_case(f"superloop {layers}x SGU({lu}), T={lt}", tasks, RAW)
    _defaults(backend)
    return case


def _defaults(backend):
    backend.STEP_EXECUTOR = "auto"
    backend.NATIVE_KERNELS_ON_TORCH = backend.OWN_LOOP_ON_TORCH = True


def _head_model(layer, timesteps, features):
    import keras

    inputs = keras.Input((timesteps, features))
    model = keras.Model(inputs, keras.layers.Dense(1)(layer(inputs)))
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="mse")
    return model


def _cell_layer(name, units, features):
    import cellgraph as cg

    return getattr(cg.cells, name)(units, input_dim=features).get_layer()


def _vanilla_layer(units, features):
    """The README's step graph: `tanh(Dense(x_t) + Dense(h_tm1))`."""
    import keras
    from keras import layers

    import cellgraph as cg

    x_t, h_tm1 = keras.Input((features,)), keras.Input((units,))
    h_t = layers.Activation("tanh")(
        layers.Add()([layers.Dense(units)(x_t), layers.Dense(units)(h_tm1)])
    )
    return cg.RecurrentModel(
        input=x_t, initial_states=[h_tm1], output=h_t, final_states=[h_t]
    )


def _gru_graph_layer(units, features):
    """A GRU (PyTorch's equations) written as a step graph of `Dense` layers."""
    import keras
    from keras import layers, ops

    import cellgraph as cg

    x_t, h_tm1 = keras.Input((features,)), keras.Input((units,))
    gx = layers.Dense(3 * units)(x_t)
    gh = layers.Dense(3 * units)(h_tm1)
    rx, zx, nx = ops.split(gx, 3, axis=-1)
    rh, zh, nh = ops.split(gh, 3, axis=-1)
    r = ops.sigmoid(rx + rh)
    z = ops.sigmoid(zx + zh)
    n = ops.tanh(nx + r * nh)
    h_t = (1.0 - z) * n + z * h_tm1
    return cg.RecurrentModel(
        input=x_t, initial_states=[h_tm1], output=h_t, final_states=[h_t]
    )


def _torch_modules():
    import torch

    class NativeLast(torch.nn.Module):
        """`nn.LSTM`/`nn.GRU`, then `Linear(1)` on the last output."""

        def __init__(self, kind, features, units):
            super().__init__()
            rnn = torch.nn.LSTM if kind == "lstm" else torch.nn.GRU
            self.rnn = rnn(features, units, batch_first=True)
            self.head = torch.nn.Linear(units, 1)

        def forward(self, x):
            return self.head(self.rnn(x)[0][:, -1])

    class RawVanilla(torch.nn.Module):
        """`h = tanh(x_t W + b + h U + c)`, `x W + b` for every step at once."""

        def __init__(self, features, units):
            super().__init__()
            self.inp = torch.nn.Linear(features, units)
            self.rec = torch.nn.Linear(units, units)
            self.head = torch.nn.Linear(units, 1)

        def forward(self, x):
            h = x.new_zeros(x.shape[0], self.rec.in_features)
            for zx_t in self.inp(x).unbind(1):  # unbind: one backward copy
                h = torch.tanh(zx_t + self.rec(h))
            return self.head(h)

    class RawGRU(torch.nn.Module):
        """PyTorch's GRU equations in a Python loop, `x W` hoisted."""

        def __init__(self, features, units):
            super().__init__()
            self.inp = torch.nn.Linear(features, 3 * units)
            self.rec = torch.nn.Linear(units, 3 * units)
            self.head = torch.nn.Linear(units, 1)

        def forward(self, x):
            h = x.new_zeros(x.shape[0], self.rec.in_features)
            for gx_t in self.inp(x).unbind(1):
                rx, zx, nx = gx_t.chunk(3, -1)
                rh, zh, nh = self.rec(h).chunk(3, -1)
                r, z = torch.sigmoid(rx + rh), torch.sigmoid(zx + zh)
                n = torch.tanh(nx + r * nh)
                h = (1 - z) * n + z * h
            return self.head(h)

    class RawSGUStack(torch.nn.Module):
        """`models.FlatSGUStackCell`'s maths; the first layer's `x W` hoisted.

        Per step: `h = concat(x_t, top_tm1)`; per layer `z_f, z_c = h W + b`,
        `f = hard_sigmoid(z_f + h_i U)`, `h = f h_i + (1 - f) tanh(z_c)`;
        `Linear(features)` on every step's top output.
        """

        def __init__(self, features, layers, units):
            super().__init__()
            self.units = units
            self.first_x = torch.nn.Linear(features, 2 * units)
            self.first_top = torch.nn.Linear(units, 2 * units, bias=False)
            self.kernels = torch.nn.ModuleList(
                torch.nn.Linear(units, 2 * units) for _ in range(layers - 1)
            )
            self.recurrent = torch.nn.ModuleList(
                torch.nn.Linear(units, units, bias=False) for _ in range(layers)
            )
            self.head = torch.nn.Linear(units, features)

        def forward(self, x):
            hard_sigmoid = torch.nn.functional.hardsigmoid
            batch = x.shape[0]
            states = [x.new_zeros(batch, self.units) for _ in self.recurrent]
            top, outputs = x.new_zeros(batch, self.units), []
            for zx_t in self.first_x(x).unbind(1):
                h = top
                for i, recurrent in enumerate(self.recurrent):
                    if i:
                        z = self.kernels[i - 1](h)
                    else:
                        z = zx_t + self.first_top(h)
                    z_f, z_c = z.chunk(2, -1)
                    f = hard_sigmoid(z_f + recurrent(states[i]))
                    h = f * states[i] + (1 - f) * torch.tanh(z_c)
                    states[i] = h
                top = h
                outputs.append(h)
            return self.head(torch.stack(outputs, 1))

    return NativeLast, RawVanilla, RawGRU, RawSGUStack


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker", metavar="SPEC", help="JSON: {'quick': bool}")
    parser.add_argument("--quick", action="store_true", help="tiny shapes")
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(_worker(json.loads(args.worker))))
        return
    from benchmarks.run import format_table

    print(format_table(run(quick=args.quick)))


if __name__ == "__main__":
    main()
