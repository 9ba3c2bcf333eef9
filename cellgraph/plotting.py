"""Diagrams of a recurrent layer: its step graph, and its loop unrolled over steps."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections import Counter
from dataclasses import dataclass, field

from cellgraph.recurrent_model import RecurrentModel

# Fill colours by role, shared by both diagrams.
ROLE_COLORS = {
    "input": "#cfe2ff",
    "state": "#ffe0b2",
    "constant": "#e0e0e0",
    "readout": "#e1bee7",
    "output": "#c8e6c9",
}
_STATE_EDGE = {"color": "#e65100", "penwidth": "2"}
_READOUT_EDGE = {"color": "#7b1fa2", "penwidth": "1.5", "style": "dashed"}
_CONSTANT_EDGE = {"color": "#757575", "style": "dashed"}
# Between steps, minlen=2 leaves a rank for x[t+1]: the steps then sit side by
# side instead of in a staircase.
_NEXT_STEP = {"minlen": "2"}
_IMAGES = ("png", "svg")
_SOURCES = ("dot", "gv")


# -- what a step graph holds -----------------------------------------------------------
@dataclass
class _Role:
    """One input of the step model: its role, position and names."""

    kind: str  # "input", "state", "constant" or "readout"
    index: int
    label: str  # shown in the step graph: the Input's (or Superloop state's) name
    short: str  # base name in the unrolled diagram: "h" for "h_tm1"
    shape: tuple


@dataclass
class _Layer:
    """One layer (operation) of the step model and the layers that feed it."""

    name: str
    class_name: str
    sources: list = field(default_factory=list)
    shapes: dict = field(default_factory=dict)  # output index -> step shape


@dataclass
class _Output:
    """The step output (`kind="output"`) or a next state (`kind="state"`)."""

    kind: str
    index: int
    source: str  # the layer (or role input) that computes it
    shape: tuple


@dataclass
class _Graph:
    name: str
    roles: dict  # Input layer name -> _Role, in the step model's input order
    layers: list  # _Layer, in the step model's (topological) order
    outputs: list  # _Output: the output, then the next states
    decode: bool

    def states(self) -> dict:
        return {r.index: r for r in self.roles.values() if r.kind == "state"}


def _require_pydot():
    try:
        import pydot
    except ImportError:
        raise ImportError(
            "cellgraph's plotting functions need the `pydot` package to build "
            "the diagram, and it is not installed. Install it with "
            "`pip install pydot` (images also need the Graphviz `dot` program; "
            "a `.dot` file does not)."
        ) from None
    return pydot


def _ensure_built(rnn, input_shape, function: str) -> None:
    if not isinstance(rnn, RecurrentModel):
        raise TypeError(
            f"`{function}` draws a cellgraph.RecurrentModel (or a "
            "RecurrentSequential, Superloop, or `cell.get_layer()`). Received: "
            f"rnn={type(rnn).__name__} {rnn!r}"
        )
    if rnn.step_model is None and input_shape is not None:
        rnn.build(input_shape)
    if rnn.step_model is None:
        raise ValueError(
            f"{rnn.name} ({type(rnn).__name__}) has no step graph yet: it is "
            "built at the first call, when the input shape is known. Call the "
            "layer once (`rnn(x)`), build it (`rnn.build((None, None, "
            f"features))`), or pass the call's input shape: `{function}(rnn, "
            "input_shape=(None, None, features))`."
        )


def _tensor_refs(value) -> list:
    """`(layer, node, index, shape)` of each tensor in a serialized call."""
    if isinstance(value, dict):
        if value.get("class_name") == "__keras_tensor__":
            config = value["config"]
            return [(*config["keras_history"], config.get("shape"))]
        return [ref for item in value.values() for ref in _tensor_refs(item)]
    if isinstance(value, (list, tuple)):
        return [ref for item in value for ref in _tensor_refs(item)]
    return []


def _base_name(name: str, suffixes: tuple, fallback: str) -> str:
    if name.startswith(("input_layer", "keras_tensor")):  # Keras's own names
        return fallback
    for suffix in suffixes:
        if name.endswith(suffix) and name != suffix:
            return name[: -len(suffix)]
    return name


def _roles(rnn, input_names: list, shapes: list) -> dict:
    layout = rnn.step_graph.layout
    kinds = layout.roles
    state_names = getattr(rnn, "state_names", None)  # a Superloop's
    if not isinstance(state_names, list) or len(state_names) != layout.num_states:
        state_names = None
    roles, seen = {}, Counter()
    for kind, name, shape in zip(kinds, input_names, shapes):
        index, label = seen[kind], name
        seen[kind] += 1
        if kind == "state" and state_names:
            label = short = state_names[index]
        elif kind == "state":
            short = _base_name(name, ("_tm1",), f"state{index}")
        elif kind == "input":
            several = layout.num_inputs > 1
            short = _base_name(name, ("_t", "_tm1"), f"x{index}" if several else "x")
        elif kind == "constant":
            short = _base_name(name, (), f"constant{index}")
        else:
            short = "y"
        roles[name] = _Role(kind, index, label, short, tuple(shape)[1:])
    return roles


def _describe(rnn) -> _Graph:
    """Reads the roles, layers and outputs of `rnn`'s step model.

    The dataflow comes from the functional model's config (the public,
    serialized description of its graph): each layer's inbound tensors name
    the layer that computed them.
    """
    model = rnn.step_model
    config = model.get_config()
    roles = _roles(
        rnn,
        [name for name, _, _ in config["input_layers"]],
        [tensor.shape for tensor in model.inputs],
    )
    layers = {}
    for item in config["layers"]:
        if item["name"] not in roles:
            layers[item["name"]] = _Layer(item["name"], item.get("class_name", "?"))
    for item in config["layers"]:
        for node in item.get("inbound_nodes", []):
            for source, _, index, shape in _tensor_refs(node):
                layer = layers.get(item["name"])
                if layer is not None and source not in layer.sources:
                    layer.sources.append(source)
                if source in layers and shape is not None:
                    layers[source].shapes[index] = tuple(shape)[1:]
    outputs = []
    for i, ((source, _, index), tensor) in enumerate(
        zip(config["output_layers"], model.outputs)
    ):
        shape = tuple(tensor.shape)[1:]
        if source in layers:
            layers[source].shapes[index] = shape
        kind = "output" if i == 0 else "state"
        outputs.append(_Output(kind, max(i - 1, 0), source, shape))
    return _Graph(rnn.name, roles, list(layers.values()), outputs, bool(rnn.decode))


# -- DOT pieces ------------------------------------------------------------------------
def _shape_text(shape) -> str:
    return str(tuple(shape)).replace("None", "?")


def _with_shape(label: str, shape, show_shapes: bool) -> str:
    return f"{label}  {_shape_text(shape)}" if show_shapes else label


def _layer_label(layer: _Layer, show_shapes: bool, show_layer_names: bool) -> str:
    label = (
        f"{layer.name} ({layer.class_name})" if show_layer_names else layer.class_name
    )
    if show_shapes and layer.shapes:
        label += "\n" + ", ".join(
            _shape_text(layer.shapes[i]) for i in sorted(layer.shapes)
        )
    return label


def _node(pydot, name: str, label: str, kind: str | None = None, **attrs):
    style = {"shape": "box", "fontname": "Helvetica", "label": label}
    if kind is not None:
        style.update(style="rounded,filled", fillcolor=ROLE_COLORS[kind])
    style.update(attrs)
    return pydot.Node(name, **style)


def _new_dot(pydot, name: str, title: str, rankdir: str):
    dot = pydot.Dot(
        graph_name=name,
        graph_type="digraph",
        rankdir=rankdir,
        fontname="Helvetica",
        label=title,
        labelloc="t",
    )
    dot.set_edge_defaults(fontname="Helvetica", fontsize="10")
    return dot


# -- the step graph --------------------------------------------------------------------
_ROLE_TITLES = {
    "input": "input",
    "state": "previous state [{}]",
    "constant": "constant [{}]",
    "readout": "readout (output at t-1)",
}


def _role_id(role: _Role) -> str:
    return "readout" if role.kind == "readout" else f"{role.kind}_{role.index}"


def step_graph_to_dot(
    rnn,
    show_shapes: bool = True,
    show_layer_names: bool = True,
    show_recurrence: bool = False,
    rankdir: str = "TB",
    input_shape=None,
):
    """Returns the step graph of `rnn` as a `pydot.Dot` (see `plot_step_graph`).

    Node names: `input_<i>`, `state_<i>` (previous states), `constant_<i>`,
    `readout`, `layer_<k>` (the k-th layer of the step model), `output` and
    `next_state_<i>`.
    """
    pydot = _require_pydot()
    _ensure_built(rnn, input_shape, "step_graph_to_dot")
    graph = _describe(rnn)
    dot = _new_dot(pydot, "step_graph", f"{graph.name}: one step", rankdir)
    ids = {}
    for name, role in graph.roles.items():
        ids[name] = _role_id(role)
        title = _ROLE_TITLES[role.kind].format(role.index)
        label = _with_shape(f"{role.label}\n{title}", role.shape, show_shapes)
        dot.add_node(_node(pydot, ids[name], label, role.kind))
    for k, layer in enumerate(graph.layers):
        ids[layer.name] = f"layer_{k}"
        label = _layer_label(layer, show_shapes, show_layer_names)
        dot.add_node(_node(pydot, ids[layer.name], label))
    for layer in graph.layers:
        for source in layer.sources:
            dot.add_edge(pydot.Edge(ids[source], ids[layer.name]))
    states = graph.states()
    readout = next((r for r in graph.roles.values() if r.kind == "readout"), None)
    for out in graph.outputs:
        if out.kind == "output":
            node_id, label, back = "output", "output", readout
        else:
            back = states[out.index]
            name = back.label
            if name.endswith("_tm1"):  # h_tm1 -> h_t
                name = name[: -len("_tm1")] + "_t"
            node_id = f"next_state_{out.index}"
            label = f"{name}\nnext state [{out.index}]"
        label = _with_shape(label, out.shape, show_shapes)
        dot.add_node(_node(pydot, node_id, label, out.kind))
        dot.add_edge(pydot.Edge(ids[out.source], node_id))
        if show_recurrence and back is not None:
            style = _STATE_EDGE if out.kind == "state" else _READOUT_EDGE
            back_id = _role_id(back)
            dot.add_edge(
                pydot.Edge(node_id, back_id, label="t+1", constraint="false", **style)
            )
    return dot


# -- the unrolled loop -----------------------------------------------------------------
def _summary(graph: _Graph) -> str:
    counts = Counter(layer.class_name for layer in graph.layers)
    parts = [f"{name} x{n}" if n > 1 else name for name, n in counts.items()]
    lines = [", ".join(parts[i : i + 3]) for i in range(0, len(parts), 3)]
    return "\n".join([f"{graph.name} step", *lines])


def _feeder(graph: _Graph, role: _Role, t: int) -> tuple[str, dict]:
    """The node that feeds `role` at step t, and the edge's style."""
    if role.kind == "input":
        if graph.decode:
            return f"input_{role.index}", _CONSTANT_EDGE
        return f"t{t}_input_{role.index}", {}
    if role.kind == "constant":
        return f"constant_{role.index}", _CONSTANT_EDGE
    if role.kind == "state":
        if t == 0:
            return f"init_state_{role.index}", _STATE_EDGE
        return f"t{t - 1}_state_{role.index}", {**_STATE_EDGE, **_NEXT_STEP}
    if t == 0:
        return "init_readout", _READOUT_EDGE
    return f"t{t - 1}_output", {**_READOUT_EDGE, **_NEXT_STEP}


def _add_outside_nodes(pydot, dot, graph: _Graph, show_shapes: bool) -> None:
    """Initial states, initial readout, constants and a decoder's input."""
    for role in graph.roles.values():
        if role.kind == "state":
            node_id, label = f"init_state_{role.index}", f"{role.short}[init]"
        elif role.kind == "readout":
            node_id, label = "init_readout", "y[init] (readout)"
        elif role.kind == "constant":
            node_id = f"constant_{role.index}"
            label = f"{role.short}\nconstant (every step)"
        elif graph.decode:
            node_id = f"input_{role.index}"
            label = f"{role.short}\ninput (every step)"
        else:
            continue
        label = _with_shape(label, role.shape, show_shapes)
        dot.add_node(_node(pydot, node_id, label, role.kind))


def _add_step(pydot, dot, graph: _Graph, t: int, expand: bool, show_shapes, names):
    """Cluster `t`: inputs, the step (or its layers), output and next states."""
    cluster = pydot.Cluster(
        f"t{t}",
        label=f"t = {t}",
        style="rounded",
        color="#90a4ae",
        fontname="Helvetica",
    )
    dot.add_subgraph(cluster)
    roles = list(graph.roles.values())
    for role in roles:
        if role.kind == "input" and not graph.decode:
            label = _with_shape(f"{role.short}[{t}]", role.shape, show_shapes)
            cluster.add_node(_node(pydot, f"t{t}_input_{role.index}", label, "input"))
    layer_ids = {layer.name: f"t{t}_layer_{k}" for k, layer in enumerate(graph.layers)}
    if expand:
        for layer in graph.layers:
            label = _layer_label(layer, show_shapes, names)
            cluster.add_node(_node(pydot, layer_ids[layer.name], label))
        for layer in graph.layers:
            for source in layer.sources:
                if source in graph.roles:
                    node, style = _feeder(graph, graph.roles[source], t)
                else:
                    node, style = layer_ids[source], {}
                dot.add_edge(pydot.Edge(node, layer_ids[layer.name], **style))
    else:
        cluster.add_node(_node(pydot, f"t{t}_step", _summary(graph), style="bold"))
        for role in roles:
            node, style = _feeder(graph, role, t)
            dot.add_edge(pydot.Edge(node, f"t{t}_step", **style))
    states = graph.states()
    # With ordering=out, nodes follow the order of the edges that reach them.
    for out in sorted(graph.outputs, key=lambda out: out.kind == "output"):
        if out.kind == "output":
            node_id, label = f"t{t}_output", f"y[{t}]"
        else:
            node_id = f"t{t}_state_{out.index}"
            label = f"{states[out.index].short}[{t}]"
        label = _with_shape(label, out.shape, show_shapes)
        cluster.add_node(_node(pydot, node_id, label, out.kind))
        if not expand:
            node, style = f"t{t}_step", {}
        elif out.source in graph.roles:  # passed through the step as is
            node, style = _feeder(graph, graph.roles[out.source], t)
        else:
            node, style = layer_ids[out.source], {}
        dot.add_edge(pydot.Edge(node, node_id, **style))


def unrolled_to_dot(
    rnn,
    timesteps: int = 3,
    expand_layers: bool = False,
    show_shapes: bool = True,
    show_layer_names: bool = False,
    rankdir: str = "LR",
    input_shape=None,
):
    """Returns the loop of `rnn` unrolled over `timesteps` as a `pydot.Dot`.

    See `plot_unrolled`. Clusters: `cluster_t<t>`. Node names: `t<t>_step`
    (one node per step) or `t<t>_layer_<k>` (with `expand_layers=True`),
    `t<t>_input_<i>`, `t<t>_output`, `t<t>_state_<i>` (the states after
    step t), `init_state_<i>`, `init_readout`, `constant_<i>`, and for a
    decoder (`decode=True`) `input_<i>`, the same at every step.
    """
    pydot = _require_pydot()
    if isinstance(timesteps, bool) or not isinstance(timesteps, int) or timesteps < 1:
        raise ValueError(
            "Argument `timesteps` must be a positive integer (the number of "
            f"steps to draw). Received: timesteps={timesteps!r}"
        )
    _ensure_built(rnn, input_shape, "unrolled_to_dot")
    graph = _describe(rnn)
    title = f"{graph.name} unrolled over {timesteps} steps"
    dot = _new_dot(pydot, "unrolled", title, rankdir)
    dot.set("newrank", "true")
    dot.set("ordering", "out")
    _add_outside_nodes(pydot, dot, graph, show_shapes)
    for t in range(timesteps):
        _add_step(pydot, dot, graph, t, expand_layers, show_shapes, show_layer_names)
    return dot


# -- writing files ---------------------------------------------------------------------
def _find_program(program: str | None) -> str | None:
    if program is not None:
        return shutil.which(program) or (program if os.path.isfile(program) else None)
    return shutil.which("dot") or shutil.which("graphviz-pure")


def _write(dot, to_file, program: str | None, dpi, function: str) -> str:
    path = os.fspath(to_file)
    extension = os.path.splitext(path)[1].lower().lstrip(".")
    if extension not in _IMAGES + _SOURCES:
        raise ValueError(
            f"`{function}` writes .png, .svg or .dot/.gv (Graphviz source) "
            f"files. Received: to_file={path!r}"
        )
    if extension in _SOURCES:
        with open(path, "w", encoding="utf-8") as file:
            file.write(dot.to_string())
        return path
    found = _find_program(program)
    if found is None:
        wanted = f"`{program}`" if program else "`dot` (or `graphviz-pure`)"
        raise RuntimeError(
            f"Writing {path!r} needs the Graphviz program {wanted}, which was "
            "not found on the PATH. Install Graphviz (`apt-get install "
            "graphviz`, `brew install graphviz` or `conda install graphviz`) "
            "or its pip-installable port (`pip install graphviz-pure`), or "
            "write a `.dot` file instead, which needs no program."
        )
    if extension == "png" and dpi is not None:
        dot.set("dpi", str(dpi))
    result = subprocess.run(
        [found, f"-T{extension}", "-o", path],
        input=dot.to_string().encode("utf-8"),
        capture_output=True,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(
            f"{found} could not write {path!r} (exit code {result.returncode}): "
            f"{result.stderr.decode('utf-8', 'replace').strip()}"
        )
    return path


# -- public functions ------------------------------------------------------------------
def plot_step_graph(
    rnn,
    to_file: str | os.PathLike = "step.png",
    show_shapes: bool = True,
    show_layer_names: bool = True,
    show_recurrence: bool = False,
    rankdir: str = "TB",
    dpi: int | None = 96,
    input_shape=None,
    program: str | None = None,
) -> str:
    """Draws the step graph of a recurrent layer: what runs in one timestep.

    Each layer of the step model is a box. The step model's inputs are
    marked by role, in words and colour: step inputs (blue), previous
    states (orange), constants (grey) and the readout of the previous
    output (purple); the step output (green) and the next states (orange)
    leave the graph. Works for any `cellgraph.RecurrentModel`, including
    `RecurrentSequential` and `Superloop`, once its step graph exists: they
    build it at the first call (or pass `input_shape=`).

    Args:
        rnn: a `cellgraph.RecurrentModel` (or subclass).
        to_file: where to write: a `.png` or `.svg` image (needs the
            Graphviz program `dot`, or `graphviz-pure`) or a `.dot`/`.gv`
            Graphviz source file (needs only `pydot`).
        show_shapes: show step shapes (without the batch dimension).
        show_layer_names: show layer names beside their classes.
        show_recurrence: also draw dashed `t+1` edges from each next state
            (and the output, with a readout) back to where it enters the
            next step.
        rankdir: `"TB"` (top to bottom) or `"LR"` (left to right).
        dpi: resolution of a PNG (`None`: Graphviz's default).
        input_shape: the call's input shape, to build an unbuilt layer,
            e.g. `(None, None, 8)`.
        program: the Graphviz program to run (default: `dot`, else
            `graphviz-pure`, from the PATH).

    Returns:
        The path written, as a string.

    Raises:
        ImportError: `pydot` is not installed.
        RuntimeError: an image needs a Graphviz program and none is found
            (or it fails).
        ValueError: the layer has no step graph yet, or `to_file` has
            another extension.

    Example:

    ```python
    rnn = cellgraph.cells.LSTMCell(8, input_dim=4).get_layer()
    cellgraph.plot_step_graph(rnn, "lstm_step.dot")
    cellgraph.plot_step_graph(rnn, "lstm_step.png")  # needs Graphviz
    ```
    """
    dot = step_graph_to_dot(
        rnn,
        show_shapes=show_shapes,
        show_layer_names=show_layer_names,
        show_recurrence=show_recurrence,
        rankdir=rankdir,
        input_shape=input_shape,
    )
    return _write(dot, to_file, program, dpi, "plot_step_graph")


def plot_unrolled(
    rnn,
    timesteps: int = 3,
    to_file: str | os.PathLike = "unrolled.png",
    expand_layers: bool = False,
    show_shapes: bool = True,
    show_layer_names: bool = False,
    rankdir: str = "LR",
    dpi: int | None = 96,
    input_shape=None,
    program: str | None = None,
) -> str:
    """Draws the loop of a recurrent layer unrolled over a few timesteps.

    Each step is a cluster `t = 0, 1, ...` holding the step input `x[t]`,
    the step (one box listing its layers, or every layer with
    `expand_layers=True`), the step output `y[t]` and the states after the
    step (`h[t]`, ...). State edges (orange) run from the states of step t
    into step t+1; the initial states (`h[init]`) enter step 0. Constants,
    and a decoder's input, are drawn once and feed every step (dashed); a
    readout takes `y[t-1]` (purple).

    Args:
        rnn: a `cellgraph.RecurrentModel` (or subclass).
        timesteps: number of steps to draw.
        to_file: where to write: `.png`, `.svg` (needs Graphviz) or
            `.dot`/`.gv` (needs only `pydot`).
        expand_layers: draw every layer of each step instead of one box.
        show_shapes: show the step shapes of inputs, outputs and states.
        show_layer_names: with `expand_layers`, show layer names too.
        rankdir: `"LR"` (steps left to right) or `"TB"`.
        dpi: resolution of a PNG (`None`: Graphviz's default).
        input_shape: the call's input shape, to build an unbuilt layer.
        program: the Graphviz program to run (default: `dot`, else
            `graphviz-pure`, from the PATH).

    Returns:
        The path written, as a string.

    Raises:
        ImportError: `pydot` is not installed.
        RuntimeError: an image needs a Graphviz program and none is found
            (or it fails).
        ValueError: the layer has no step graph yet, `timesteps` is not a
            positive integer, or `to_file` has another extension.

    Example:

    ```python
    rnn = cellgraph.cells.LSTMCell(8, input_dim=4).get_layer()
    cellgraph.plot_unrolled(rnn, timesteps=3, to_file="lstm_unrolled.dot")
    cellgraph.plot_unrolled(rnn, 3, "lstm_unrolled.svg")  # needs Graphviz
    ```
    """
    dot = unrolled_to_dot(
        rnn,
        timesteps=timesteps,
        expand_layers=expand_layers,
        show_shapes=show_shapes,
        show_layer_names=show_layer_names,
        rankdir=rankdir,
        input_shape=input_shape,
    )
    return _write(dot, to_file, program, dpi, "plot_unrolled")
