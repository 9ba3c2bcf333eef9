"""Tests of plot_step_graph and plot_unrolled: their DOT, files and errors."""

import os
import shutil
import stat
import sys

import keras
import numpy as np
import pytest
from keras import layers

import cellgraph as cg
from cellgraph import plotting

pydot = pytest.importorskip("pydot")

HAS_GRAPHVIZ = (shutil.which("dot") or shutil.which("graphviz-pure")) is not None
needs_graphviz = pytest.mark.skipif(
    not HAS_GRAPHVIZ,
    reason="no Graphviz program (`dot` or `graphviz-pure`) on the PATH",
)


# -- helpers ---------------------------------------------------------------------------
def _unquote(value):
    return value.strip('"') if isinstance(value, str) else value


def _nodes(graph) -> dict:
    """All nodes of a pydot graph and its clusters, by name."""
    found = {
        node.get_name(): node
        for node in graph.get_nodes()
        if node.get_name() not in ("node", "edge", "graph")
    }
    for sub in graph.get_subgraph_list():
        found.update(_nodes(sub))
    return found


def _edges(graph) -> set:
    found = {(e.get_source(), e.get_destination()) for e in graph.get_edges()}
    for sub in graph.get_subgraph_list():
        found |= _edges(sub)
    return found


def _label(node) -> str:
    return _unquote(node.get("label")).replace("\\n", "\n")


def _clusters(graph) -> dict:
    return {sub.get_name(): sub for sub in graph.get_subgraph_list()}


def _lstm(units=8):
    """An LSTM written by hand as a step graph (named layers)."""
    x_t = keras.Input((4,), name="x_t")
    h_tm1 = keras.Input((units,), name="h_tm1")
    c_tm1 = keras.Input((units,), name="c_tm1")
    xh = layers.Concatenate(name="x_h")([x_t, h_tm1])
    i = layers.Dense(units, activation="sigmoid", name="input_gate")(xh)
    f = layers.Dense(units, activation="sigmoid", name="forget_gate")(xh)
    o = layers.Dense(units, activation="sigmoid", name="output_gate")(xh)
    g = layers.Dense(units, activation="tanh", name="candidate")(xh)
    forget = layers.Multiply(name="forget")([f, c_tm1])
    c_t = layers.Add(name="c_t")([forget, layers.Multiply(name="write")([i, g])])
    h_t = layers.Multiply(name="h_t")(
        [o, layers.Activation("tanh", name="tanh_c")(c_t)]
    )
    return cg.RecurrentModel(
        input=x_t,
        output=h_t,
        initial_states=[h_tm1, c_tm1],
        final_states=[h_t, c_t],
        name="lstm",
    )


def _multi_role():
    """Two inputs, a vector state, a matrix state passed through, a constant
    and a readout."""
    a_t = keras.Input((3,), name="a_t")
    b_t = keras.Input((2,), name="b_t")
    h_tm1 = keras.Input((4,), name="h_tm1")
    memory_tm1 = keras.Input((2, 4), name="memory_tm1")
    key = keras.Input((5,), name="key")
    readout = keras.Input((4,), name="readout_tm1")
    flat = layers.Flatten(name="flat")(memory_tm1)
    z = layers.Concatenate(name="features")([a_t, b_t, h_tm1, key, readout, flat])
    h_t = layers.Dense(4, activation="tanh", name="update")(z)
    return cg.RecurrentModel(
        input=[a_t, b_t],
        output=h_t,
        initial_states=[h_tm1, memory_tm1],
        final_states=[h_t, memory_tm1],
        constants=[key],
        readout_input=readout,
        name="multi",
    )


def _layer_ids(dot) -> dict:
    """Layer name -> node name, read back from the step graph's labels."""
    return {
        _label(node).split(" (")[0]: name
        for name, node in _nodes(dot).items()
        if name.startswith("layer_")
    }


# -- the step graph --------------------------------------------------------------------
def test_step_graph_has_one_node_per_layer_and_the_lstm_dataflow():
    rnn = _lstm()
    dot = plotting.step_graph_to_dot(rnn)
    ids = _layer_ids(dot)
    inner = [
        layer.name
        for layer in rnn.step_model.layers
        if not isinstance(layer, keras.layers.InputLayer)
    ]
    assert sorted(ids) == sorted(inner)  # every non-input layer, once
    assert len(inner) == 10
    edges = _edges(dot)
    expected = {
        ("input_0", ids["x_h"]),
        ("state_0", ids["x_h"]),
        ("state_1", ids["forget"]),
        (ids["forget_gate"], ids["forget"]),
        (ids["forget"], ids["c_t"]),
        (ids["write"], ids["c_t"]),
        (ids["c_t"], ids["tanh_c"]),
        (ids["h_t"], "output"),
        (ids["h_t"], "next_state_0"),
        (ids["c_t"], "next_state_1"),
    }
    assert expected <= edges
    for gate in ("input_gate", "forget_gate", "output_gate", "candidate"):
        assert (ids["x_h"], ids[gate]) in edges
    # Nothing flows into a role input, nothing out of an output.
    assert not any(dst in ("input_0", "state_0", "state_1") for _, dst in edges)
    assert not any(src in ("output", "next_state_0") for src, _ in edges)
    assert len(edges) == 18


def test_step_graph_marks_every_role():
    dot = plotting.step_graph_to_dot(_multi_role())
    nodes = _nodes(dot)
    expected = {
        "input_0": ("a_t", "input", "input  (3,)"),
        "input_1": ("b_t", "input", "input  (2,)"),
        "state_0": ("h_tm1", "state", "previous state [0]  (4,)"),
        "state_1": ("memory_tm1", "state", "previous state [1]  (2, 4)"),
        "constant_0": ("key", "constant", "constant [0]  (5,)"),
        "readout": ("readout_tm1", "readout", "readout (output at t-1)  (4,)"),
        "output": ("output  (4,)", "output", None),
        "next_state_0": ("h_t", "state", "next state [0]  (4,)"),
        "next_state_1": ("memory_t", "state", "next state [1]  (2, 4)"),
    }
    for name, (first, kind, second) in expected.items():
        lines = _label(nodes[name]).split("\n")
        assert lines[0] == first, name
        if second is not None:
            assert lines[1] == second, name
        assert _unquote(nodes[name].get("fillcolor")) == plotting.ROLE_COLORS[kind]
    ids = _layer_ids(dot)
    edges = _edges(dot)
    for role in ("input_0", "input_1", "state_0", "constant_0", "readout"):
        assert (role, ids["features"]) in edges
    assert ("state_1", ids["flat"]) in edges
    # The memory goes through the step unchanged: previous -> next state.
    assert ("state_1", "next_state_1") in edges
    assert _label(nodes[ids["features"]]).endswith("(26,)")


def test_step_graph_recurrence_edges_are_optional():
    rnn = _multi_role()
    assert not any(
        dst.startswith("state_") for _, dst in _edges(plotting.step_graph_to_dot(rnn))
    )
    dot = plotting.step_graph_to_dot(rnn, show_recurrence=True)
    back = {
        (e.get_source(), e.get_destination())
        for e in dot.get_edges()
        if _unquote(e.get("label")) == "t+1"
    }
    assert back == {
        ("next_state_0", "state_0"),
        ("next_state_1", "state_1"),
        ("output", "readout"),
    }


def test_step_graph_without_shapes_or_names():
    dot = plotting.step_graph_to_dot(_lstm(), show_shapes=False, show_layer_names=False)
    labels = [_label(node) for node in _nodes(dot).values()]
    assert "Concatenate" in labels and labels.count("Dense") == 4
    assert not any("(8,)" in label for label in labels)


# -- the unrolled loop -----------------------------------------------------------------
def test_unrolled_lstm_has_a_cluster_per_step_and_state_edges_between_steps():
    dot = plotting.unrolled_to_dot(_lstm(), timesteps=3)
    clusters = _clusters(dot)
    assert sorted(clusters) == ["cluster_t0", "cluster_t1", "cluster_t2"]
    for t in range(3):
        assert _unquote(clusters[f"cluster_t{t}"].get("label")) == f"t = {t}"
        inside = set(_nodes(clusters[f"cluster_t{t}"]))
        assert inside == {
            f"t{t}_input_0",
            f"t{t}_step",
            f"t{t}_output",
            f"t{t}_state_0",
            f"t{t}_state_1",
        }
    edges = _edges(dot)
    expected = {("init_state_0", "t0_step"), ("init_state_1", "t0_step")}
    for t in range(3):
        expected |= {
            (f"t{t}_input_0", f"t{t}_step"),
            (f"t{t}_step", f"t{t}_output"),
            (f"t{t}_step", f"t{t}_state_0"),
            (f"t{t}_step", f"t{t}_state_1"),
        }
    for t in range(2):
        expected |= {
            (f"t{t}_state_0", f"t{t + 1}_step"),
            (f"t{t}_state_1", f"t{t + 1}_step"),
        }
    assert edges == expected
    nodes = _nodes(dot)
    assert _label(nodes["init_state_0"]) == "h[init]  (8,)"
    assert _label(nodes["t1_state_1"]) == "c[1]  (8,)"
    assert _label(nodes["t2_input_0"]) == "x[2]  (4,)"
    assert _label(nodes["t2_output"]) == "y[2]  (8,)"
    assert "Dense x4" in _label(nodes["t0_step"])


@pytest.mark.parametrize("timesteps", [1, 5])
def test_unrolled_counts_steps(timesteps):
    dot = plotting.unrolled_to_dot(_lstm(), timesteps=timesteps)
    assert len(_clusters(dot)) == timesteps
    state_edges = [
        (src, dst)
        for src, dst in _edges(dot)
        if "_state_" in src and dst.endswith("_step") and not src.startswith("init")
    ]
    assert len(state_edges) == 2 * (timesteps - 1)
    for src, dst in state_edges:
        assert int(dst[1 : dst.index("_")]) == int(src[1 : src.index("_")]) + 1


def test_unrolled_expanded_links_states_to_their_consumers_in_the_next_step():
    rnn = _lstm()
    dot = plotting.unrolled_to_dot(rnn, timesteps=3, expand_layers=True)
    nodes = _nodes(dot)
    step_layers = [name for name in nodes if name.startswith("t1_layer_")]
    assert len(step_layers) == 10
    ids = {
        _label(nodes[name]).split("\n")[0]: name.split("_", 1)[1]
        for name in step_layers
    }
    assert ids["Concatenate"] == "layer_0"
    forget = next(
        name
        for name in step_layers
        if _label(nodes[name]).startswith("Multiply")
        and ("t0_state_1", name) in _edges(dot)
    )
    edges = _edges(dot)
    # h feeds the concatenation, c the forget product, of the next step only.
    assert ("t0_state_0", "t1_layer_0") in edges
    assert ("t1_state_0", "t2_layer_0") in edges
    assert ("init_state_0", "t0_layer_0") in edges
    assert forget.startswith("t1_")
    assert not any(src == "t0_state_0" and dst.startswith("t2_") for src, dst in edges)
    assert not any(dst.endswith("_step") for _, dst in edges)
    assert ("t2_input_0", "t2_layer_0") in edges


def test_unrolled_readout_constants_and_several_inputs():
    dot = plotting.unrolled_to_dot(_multi_role(), timesteps=3)
    nodes = _nodes(dot)
    edges = _edges(dot)
    outside = set(_nodes(dot)) - {n for c in _clusters(dot).values() for n in _nodes(c)}
    assert outside == {"init_state_0", "init_state_1", "init_readout", "constant_0"}
    assert _unquote(nodes["init_readout"].get("fillcolor")) == "#e1bee7"
    assert ("init_readout", "t0_step") in edges
    for t in range(3):
        assert ("constant_0", f"t{t}_step") in edges
        assert (f"t{t}_input_0", f"t{t}_step") in edges
        assert (f"t{t}_input_1", f"t{t}_step") in edges
    for t in (1, 2):
        assert (f"t{t - 1}_output", f"t{t}_step") in edges
    assert _label(nodes["t1_input_1"]) == "b[1]  (2,)"
    assert _label(nodes["t0_state_1"]) == "memory[0]  (2, 4)"


def test_superloop_decoder_input_feeds_every_step():
    attention = cg.systems.Attention(datapoints=16, width=1)
    superloop = cg.Superloop(
        cell="gru", layers=2, units=8, systems=[attention], timesteps=20
    )
    superloop(np.zeros((2, 16, 1), "float32"))
    dot = plotting.unrolled_to_dot(superloop, timesteps=3)
    nodes = _nodes(dot)
    edges = _edges(dot)
    assert "input_0" in nodes and "every step" in _label(nodes["input_0"])
    for t in range(3):
        assert ("input_0", f"t{t}_step") in edges
        assert f"t{t}_input_0" not in nodes
    names = superloop.state_names
    assert len(names) == 4
    position = names.index("attention/position")
    assert _label(nodes[f"t2_state_{position}"]) == "attention/position[2]  (1,)"
    assert (f"t1_state_{position}", "t2_step") in edges
    step = plotting.step_graph_to_dot(superloop)
    labels = {name: _label(node) for name, node in _nodes(step).items()}
    assert labels[f"state_{position}"].startswith("attention/position\n")
    assert labels[f"next_state_{position}"].startswith("attention/position\n")
    assert sum("(GRUCell)" in label for label in labels.values()) == 2


def test_cell_get_layer_step_graph():
    rnn = cg.cells.LSTMCell(4, input_dim=3).get_layer()
    dot = plotting.step_graph_to_dot(rnn)
    edges = _edges(dot)
    assert edges == {
        ("input_0", "layer_0"),
        ("state_0", "layer_0"),
        ("state_1", "layer_0"),
        ("layer_0", "output"),
        ("layer_0", "next_state_0"),
        ("layer_0", "next_state_1"),
    }
    assert _label(_nodes(dot)["layer_0"]).startswith("lstm_cell (LSTMCell)")


# -- layers built lazily ---------------------------------------------------------------
def _stack():
    rnn = cg.RecurrentSequential(readout="add", name="stack")
    rnn.add(cg.cells.LSTMCell(6, input_dim=6))
    rnn.add(layers.Dense(6))
    rnn.add(cg.cells.GRUCell(6))
    return rnn


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # pydot's parser
def test_unbuilt_sequential_raises_then_builds_with_input_shape(tmp_path):
    rnn = _stack()
    with pytest.raises(ValueError, match="no step graph yet.*input_shape="):
        cg.plot_step_graph(rnn, tmp_path / "s.dot")
    assert not (tmp_path / "s.dot").exists()
    path = cg.plot_unrolled(rnn, 2, tmp_path / "u.dot", input_shape=(None, None, 6))
    assert rnn.step_model is not None
    dot = pydot.graph_from_dot_file(path)[0]
    assert len(_clusters(dot)) == 2
    edges = _edges(dot)
    for i in range(3):  # LSTM h, c and GRU h
        assert (f"t0_state_{i}", "t1_step") in edges
    assert ("t0_output", "t1_step") in edges  # the readout


def test_unbuilt_superloop_raises():
    superloop = cg.Superloop(layers=1, units=4, systems=[])
    with pytest.raises(ValueError, match="call the layer once|Call the layer once"):
        cg.plot_unrolled(superloop, 3, "never.dot")
    assert not os.path.exists("never.dot")


def test_called_sequential_plots():
    rnn = _stack()
    rnn(np.zeros((2, 5, 6), "float32"))
    dot = plotting.step_graph_to_dot(rnn)
    nodes = _nodes(dot)
    assert (
        _unquote(nodes["readout"].get("fillcolor")) == plotting.ROLE_COLORS["readout"]
    )
    assert {"state_0", "state_1", "state_2", "next_state_2"} <= set(nodes)


def test_bad_arguments():
    with pytest.raises(TypeError, match="RecurrentModel"):
        plotting.step_graph_to_dot(layers.LSTM(4))
    with pytest.raises(ValueError, match="timesteps"):
        plotting.unrolled_to_dot(_lstm(), timesteps=0)
    with pytest.raises(ValueError, match=r"\.png, \.svg or \.dot"):
        cg.plot_step_graph(_lstm(), "step.jpeg")


# -- files -----------------------------------------------------------------------------
@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # pydot's parser
def test_dot_files_need_no_graphviz_program(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no `dot` anywhere
    rnn = _lstm()
    step = cg.plot_step_graph(rnn, tmp_path / "step.dot")
    unrolled = cg.plot_unrolled(rnn, timesteps=3, to_file=str(tmp_path / "u.gv"))
    assert step == str(tmp_path / "step.dot")
    assert unrolled == str(tmp_path / "u.gv")
    parsed = pydot.graph_from_dot_file(unrolled)[0]
    assert len(_clusters(parsed)) == 3
    assert ("t1_state_0", "t2_step") in _edges(parsed)
    text = open(step).read()
    assert text.startswith("digraph step_graph {")
    assert "previous state [1]" in text


@needs_graphviz
def test_png_and_svg_are_written(tmp_path):
    rnn = _lstm()
    png = cg.plot_step_graph(rnn, tmp_path / "step.png")
    with open(png, "rb") as file:
        head = file.read(8)
    assert head == b"\x89PNG\r\n\x1a\n"
    assert os.path.getsize(png) > 5000
    svg = cg.plot_unrolled(rnn, 3, tmp_path / "unrolled.svg")
    text = open(svg).read()
    assert "<svg" in text
    assert text.count("t = ") == 3
    assert "h[init]" in text and "c[2]" in text


# -- errors for missing dependencies ---------------------------------------------------
def test_missing_pydot_names_the_package(monkeypatch):
    monkeypatch.setitem(sys.modules, "pydot", None)  # `import pydot` fails
    with pytest.raises(ImportError, match=r"pip install pydot"):
        cg.plot_step_graph(_lstm(), "step.dot")
    with pytest.raises(ImportError, match="`pydot`"):
        cg.plot_unrolled(_lstm(), 3, "unrolled.png")


def test_missing_graphviz_program_says_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(RuntimeError) as info:
        cg.plot_step_graph(_lstm(), tmp_path / "step.png")
    message = str(info.value)
    assert "`dot`" in message and "not found" in message
    assert "apt-get install graphviz" in message
    assert "pip install graphviz-pure" in message
    assert ".dot" in message
    assert not (tmp_path / "step.png").exists()
    with pytest.raises(RuntimeError, match="`my-dot`"):
        cg.plot_unrolled(_lstm(), 2, tmp_path / "u.svg", program="my-dot")


def test_failing_graphviz_program_reports_its_error(tmp_path):
    program = tmp_path / "broken-dot"
    program.write_text("#!/bin/sh\necho 'syntax error in line 1' >&2\nexit 3\n")
    program.chmod(program.stat().st_mode | stat.S_IEXEC)
    with pytest.raises(RuntimeError, match="exit code 3.*syntax error in line 1"):
        cg.plot_step_graph(_lstm(), tmp_path / "step.png", program=str(program))


def test_shared_layer_is_one_node_with_both_inputs():
    x_t = keras.Input((4,), name="x_t")
    h_tm1 = keras.Input((4,), name="h_tm1")
    shared = layers.Dense(4, name="shared")
    h_t = layers.Add(name="sum")([shared(x_t), shared(h_tm1)])
    rnn = cg.RecurrentModel(
        input=x_t, output=h_t, initial_states=[h_tm1], final_states=[h_t]
    )
    dot = plotting.step_graph_to_dot(rnn)
    ids = _layer_ids(dot)
    assert sorted(ids) == ["shared", "sum"]
    assert _edges(dot) == {
        ("input_0", ids["shared"]),
        ("state_0", ids["shared"]),
        (ids["shared"], ids["sum"]),
        (ids["sum"], "output"),
        (ids["sum"], "next_state_0"),
    }


def test_nested_recurrent_model_is_one_layer_of_the_step_graph():
    inner = cg.cells.GRUCell(6, input_dim=3).get_layer(name="words")
    chars_t = keras.Input((5, 3), name="chars_t")  # a sequence per step
    h_tm1 = keras.Input((6,), name="h_tm1")
    h_t = layers.Add(name="sum")([inner(chars_t), h_tm1])
    rnn = cg.RecurrentModel(
        input=chars_t, output=h_t, initial_states=[h_tm1], final_states=[h_t]
    )
    dot = plotting.step_graph_to_dot(rnn)
    ids = _layer_ids(dot)
    assert _label(_nodes(dot)[ids["words"]]) == "words (RecurrentModel)\n(6,)"
    assert ("input_0", ids["words"]) in _edges(dot)
    assert _label(_nodes(dot)["input_0"]) == "chars_t\ninput  (5, 3)"
    unrolled = plotting.unrolled_to_dot(rnn, 2)
    assert _label(_nodes(unrolled)["t1_input_0"]) == "chars[1]  (5, 3)"


@pytest.mark.parametrize("program", ["dot", "graphviz-pure"])
def test_each_graphviz_program_writes_png_at_the_asked_dpi(program, tmp_path):
    if shutil.which(program) is None:
        pytest.skip(f"`{program}` is not installed")
    rnn = _lstm()
    sizes = []
    for dpi in (48, 96):
        path = cg.plot_step_graph(
            rnn, tmp_path / f"step{dpi}.png", dpi=dpi, program=program
        )
        with open(path, "rb") as file:
            header = file.read(24)
        assert header[:8] == b"\x89PNG\r\n\x1a\n"
        sizes.append(int.from_bytes(header[16:20], "big"))  # IHDR width
    assert sizes[1] == pytest.approx(2 * sizes[0], rel=0.05)
    svg = cg.plot_unrolled(rnn, 2, tmp_path / "u.svg", program=program)
    assert open(svg).read().count("t = ") == 2
