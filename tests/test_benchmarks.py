"""The benchmarks run end to end (`run.py --quick`) and report sane rows."""

import contextlib
import importlib.util
import io
import json
import math
from pathlib import Path

import pytest

RUN = Path(__file__).resolve().parent.parent / "benchmarks" / "run.py"


def load_run():
    spec = importlib.util.spec_from_file_location("benchmarks_run", RUN)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def finite_positive(value):
    return isinstance(value, (int, float)) and math.isfinite(value) and value > 0


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    """One `run.py --quick` for the module: (results, printed table, JSON file).

    Its backends section is the same `backends.run(quick=True)` that
    `--only backends` runs, so the two tests below read one run (each run
    starts a worker process per backend).
    """
    out = tmp_path_factory.mktemp("benchmarks") / "results.json"
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        results = load_run().main(["--quick", "--json", str(out)])
    return results, printed.getvalue(), out


def test_quick_run_reports_finite_positive_medians_and_ratios(quick_run):
    results, table, out = quick_run

    rows = results["rows"]
    sections = {"lstm", "superloop", "build", "memory", "backends", "torch"}
    assert {r["section"] for r in rows} == sections
    for r in rows:
        if r["skipped"]:  # only PyTorch (or a Keras backend's package) may be missing
            assert (
                r["contender"] == "torch nn.LSTM"
                or r["section"] in ("backends", "torch")
                or r["contender"].endswith("[JAX]")
            ), r
            continue
        assert r["error"] is None, r
        assert finite_positive(r["median"]), r
        assert finite_positive(r["ratio"]), r
        assert r["anchor"], r
        assert all(finite_positive(v) for v in r["other_ratios"].values()), r

    lstm = {(r["contender"], r["metric"]) for r in rows if r["section"] == "lstm"}
    for contender in (  # --quick leaves out the other Keras contenders
        "cellgraph LSTMCell",
        "keras.layers.LSTM",
        "cellgraph LSTMCell [XLA]",
        "torch nn.LSTM",
    ):
        assert (contender, "train step") in lstm
        assert (contender, "inference") in lstm
    assert ("cellgraph, x·W+b before the loop", "train step") in lstm
    superloop = {r["contender"] for r in rows if r["section"] == "superloop"}
    assert superloop == {
        "cellgraph RecurrentModel",
        "keras.layers.RNN(step model)",
        "keras.layers.RNN(flat SGU cell)",
        "cellgraph RecurrentModel [TF XLA]",
        "cellgraph RecurrentModel, Adam built first",
        "cellgraph RecurrentModel [JAX]",
        "cellgraph RecurrentModel, FusedCellStack",
        "cellgraph RecurrentModel, FusedCellStack [TF XLA]",
        "cellgraph RecurrentModel, FusedCellStack [JAX]",
    }
    cellgraph = [r for r in rows if r["contender"] == "cellgraph RecurrentModel"]
    assert len(cellgraph) == 2  # first step and steady step, each against flat
    for r in cellgraph:
        assert {"vs flat cell", "paired vs flat cell"} <= set(r["other_ratios"]), r
    torch_rows = {
        (r["case"], r["contender"], r["metric"])
        for r in rows
        if r["section"] == "torch" and not r["skipped"]
    }
    if torch_rows:  # PyTorch installed
        for case, contender in (
            ("lstm", "cellgraph"),
            ("lstm", "cellgraph [generic]"),
            ("lstm", "torch nn.LSTM"),
            ("vanilla", "cellgraph"),
            ("vanilla", "raw torch loop, projections hoisted"),
        ):
            assert (case, contender, "train step") in torch_rows
            assert (case, contender, "inference") in torch_rows
            assert (case, contender, "forward") in torch_rows
    anchors = [r for r in rows if r["contender"] == "keras.layers.LSTM"]
    assert all(r["ratio"] == 1.0 for r in anchors if r["section"] == "lstm")

    assert json.loads(out.read_text())["rows"] == json.loads(json.dumps(rows))
    assert "| cellgraph LSTMCell | train step |" in table
    assert "### memory" in table


BACKENDS = ("tensorflow", "jax", "torch")


def test_only_runs_the_sections_named(monkeypatch, capsys):
    # `--only` picks sections: only their `run` is called, only their rows
    # come back (the sections themselves are stood in for: the quick run
    # above runs them all).
    from benchmarks import backends, build_time, common, lstm, memory, superloop_shape

    calls = []

    def fake(section):
        def run(quick=False, log=print):
            calls.append((section, quick))
            return [common.row(section, "c", f"{section} contender", "m", "s", [1.0])]

        return run

    for module, section in [
        (lstm, "lstm"),
        (backends, "backends"),
        (superloop_shape, "superloop"),
        (build_time, "build"),
        (memory, "memory"),
    ]:
        monkeypatch.setattr(module, "run", fake(section))
    results = load_run().main(["--quick", "--only", "backends"])
    assert calls == [("backends", True)]
    assert [r["contender"] for r in results["rows"]] == ["backends contender"]
    assert "### backends" in capsys.readouterr().out
    calls.clear()
    results = load_run().main(["--only", "build", "lstm"])
    assert calls == [("build", False), ("lstm", False)]
    assert {r["section"] for r in results["rows"]} == {"build", "lstm"}


def test_backends_section_reports_every_installed_backend(quick_run):
    results, table, _ = quick_run

    rows = [r for r in results["rows"] if r["section"] == "backends"]
    assert rows
    installed = [b for b in BACKENDS if importlib.util.find_spec(b) is not None]
    for r in rows:
        backend = r["contender"].split(" ", 1)[0]
        assert backend in BACKENDS, r
        if backend not in installed:
            assert r["skipped"] and r["median"] is None, r
            continue
        assert r["error"] is None and r["skipped"] is None, r
        assert finite_positive(r["median"]), r
        assert finite_positive(r["ratio"]), r
        assert r["anchor"] == "tensorflow keras.layers.LSTM [tf.function]", r
        assert all(finite_positive(v) for v in r["other_ratios"].values()), r
    measured = {(r["contender"], r["metric"]) for r in rows if r["median"]}
    for backend in installed:  # --quick: Keras's default jit_compile only
        mode = {"tensorflow": "tf.function", "jax": "XLA", "torch": "eager"}[backend]
        for kind in ("cellgraph LSTMCell", "keras.layers.LSTM"):
            for metric in ("train step", "inference", "first train step"):
                assert (f"{backend} {kind} [{mode}]", metric) in measured
        cellgraph = [
            r
            for r in rows
            if r["contender"] == f"{backend} cellgraph LSTMCell [{mode}]"
            and r["metric"] == "train step"
        ]
        assert "vs same backend keras.layers.LSTM" in cellgraph[0]["other_ratios"]
    anchors = [
        r
        for r in rows
        if r["contender"] == "tensorflow keras.layers.LSTM [tf.function]"
    ]
    assert anchors and all(r["ratio"] == 1.0 for r in anchors)
    assert "| tensorflow cellgraph LSTMCell [tf.function] | train step |" in table


def test_precomputed_lstm_contender_computes_cells_lstm():
    # The benchmark's "x·W+b before the loop" LSTM must compute what
    # cells.LSTMCell computes with the same weights, or its timing means nothing.
    import numpy as np

    import cellgraph as cg
    from benchmarks import models

    x = np.random.default_rng(0).standard_normal((3, 6, 5)).astype("float32")
    cell = cg.cells.LSTMCell(4, input_dim=5, bias_initializer="uniform")
    reference = cell.get_layer()
    expected = reference(x)
    kernel, recurrent_kernel, bias = reference.get_weights()
    contender = models.PrecomputedLSTM(4)
    contender(x)
    contender.projection.set_weights([kernel, bias])
    contender.recurrent.set_weights([recurrent_kernel])
    np.testing.assert_allclose(contender(x), expected, rtol=1e-5, atol=1e-6)


def test_fused_tf_lstm_contender_computes_cells_lstm():
    # The benchmark's "TF fused kernel" LSTM must give cells.LSTMCell's
    # outputs and gradients with the same weights (TensorFlow only).
    import numpy as np
    import tensorflow as tf

    import cellgraph as cg
    from benchmarks import models

    x = tf.constant(np.random.default_rng(0).standard_normal((3, 6, 5)), "float32")
    cell = cg.cells.LSTMCell(4, input_dim=5, bias_initializer="uniform")
    reference = cell.get_layer()
    reference(x)
    contender = models.FusedBlockLSTM(4)
    contender(x)
    contender.set_weights(reference.get_weights())

    def outputs_and_gradients(layer):
        with tf.GradientTape() as tape:
            y = layer(x)
            loss = tf.reduce_sum(y * tf.range(1.0, 5.0))
        return y, tape.gradient(loss, [v.value for v in layer.trainable_weights])

    expected, expected_grads = outputs_and_gradients(reference)
    got, grads = outputs_and_gradients(contender)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    assert len(grads) == 3 and all(g is not None for g in grads)
    for g, e in zip(grads, expected_grads):
        np.testing.assert_allclose(g, e, rtol=1e-5, atol=1e-6)


def _superloop_outputs_and_gradients(model, x):
    import tensorflow as tf

    with tf.GradientTape() as tape:
        y = model(x)
        loss = tf.reduce_sum(y * tf.range(1.0, 1.0 + y.shape[-1]))
    return y, tape.gradient(loss, [v.value for v in model.trainable_weights])


def test_flat_sgu_contender_computes_the_superloop_step_graph():
    # The superloop section's "flat SGU cell" must compute what the cellgraph
    # step graph of SGUCells computes with the same weights, outputs and
    # gradients, or its timing means nothing (TensorFlow only).
    import numpy as np
    import tensorflow as tf

    from benchmarks import models

    shape = dict(timesteps=5, features=3, layers=3, units=4)
    rng = np.random.default_rng(0)
    x = tf.constant(rng.standard_normal((2, 5, 3)), "float32")
    reference = models.superloop_shape_model(**shape)
    # Random weights, biases included, most gates inside hard_sigmoid's slope.
    reference.set_weights(
        [0.7 * rng.standard_normal(w.shape) for w in reference.get_weights()]
    )
    contender = models.superloop_shape_model(**shape, engine=models.SUPERLOOP_FLAT)
    assert [w.shape for w in contender.get_weights()] == [
        w.shape for w in reference.get_weights()
    ]
    assert len(contender.trainable_weights) == 3 * 3 + 2
    contender.set_weights(reference.get_weights())

    expected, expected_grads = _superloop_outputs_and_gradients(reference, x)
    got, grads = _superloop_outputs_and_gradients(contender, x)
    assert got.shape == (2, 5, 3)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    assert len(grads) == len(expected_grads) == 11
    for g, e, v in zip(grads, expected_grads, contender.trainable_weights):
        assert np.abs(e).max() > 1e-3, v.path  # every weight matters
        np.testing.assert_allclose(g, e, rtol=1e-5, atol=1e-6, err_msg=v.path)

    # The fused contender computes the same, its weights stacked (issue 18).
    import cellgraph as cg

    fused = models.superloop_shape_model(**shape, engine=models.SUPERLOOP_FUSED)
    (stack,) = [
        layer
        for layer in fused.layers[1].step_model.layers
        if isinstance(layer, cg.cells.FusedCellStack)
    ]
    cell_weights = reference.get_weights()[:9]
    stack.set_weights(
        cg.cells.fuse_weights([cell_weights[i : i + 3] for i in range(0, 9, 3)])
    )
    fused.layers[-1].set_weights(reference.get_weights()[9:])
    got_fused, fused_grads = _superloop_outputs_and_gradients(fused, x)
    np.testing.assert_allclose(got_fused, expected, rtol=1e-5, atol=1e-6)
    expected_fused = cg.cells.fuse_weights(
        [expected_grads[i : i + 3] for i in range(0, 9, 3)]
    ) + list(expected_grads[9:])
    assert len(fused_grads) == len(expected_fused) == 4 + 2
    for g, e in zip(fused_grads, expected_fused, strict=True):
        np.testing.assert_allclose(g, e, rtol=1e-5, atol=1e-6)

    # The comparison can tell: one weight of the middle layer moved by 1e-3.
    weights = reference.get_weights()
    weights[4][1, 2] += 1e-3  # layer 1's recurrent_kernel
    contender.set_weights(weights)
    moved, _ = _superloop_outputs_and_gradients(contender, x)
    assert np.abs(np.asarray(moved) - np.asarray(expected)).max() > 1e-5


def test_cellgraph_lstm_traces_no_more_ops_than_keras_lstm():
    """A deterministic stand-in for the timing goal: on TensorFlow the loop of a
    `cells.LSTMCell` layer holds no more ops than `keras.layers.LSTM`'s."""
    import keras
    import pytest

    if keras.backend.backend() != "tensorflow":
        pytest.skip("counts TensorFlow graph ops")
    spec = importlib.util.spec_from_file_location(
        "graph_size", RUN.parent / "graph_size.py"
    )
    graph_size = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(graph_size)

    def keras_lstm():
        x = keras.Input((100, 32))
        y = keras.layers.Dense(1)(keras.layers.LSTM(128)(x))
        return keras.Model(x, y), [(64, 100, 32)], (64, 1)

    ours = graph_size.count(graph_size.MODELS["lstm"])
    theirs = graph_size.count(keras_lstm)
    assert ours["inference"] <= theirs["inference"], (ours, theirs)
    assert ours["train"] <= theirs["train"], (ours, theirs)
