"""The lean step executor: a one-step graph run as plain calls of its layers.

Calling a functional model runs Keras's whole call machinery for the model
and for each of its layers: argument conversion, input checks, the training
and mask resolution, autocast scopes, node bookkeeping. Inside a time loop
that is paid at every step, and on the PyTorch backend (which runs each op
eagerly) it costs more than the step's arithmetic. `LeanGraph` walks the
graph once, from the model's public config (`get_config()["layers"]`, the
format `.keras` files store), and then runs each node by calling the
layer's `call` directly, with the step's `training` flag.

A node keeps Keras's full call (`layer(*args)`) wherever the lean call
could differ: a dtype policy other than the loop's, an input whose dtype
the layer would cast, an activity regularizer, a quantized layer, an
explicit `training=` argument in the graph, a nested sequence layer. A graph
in which any layer produces a Keras mask, or whose structure the executor
does not read (a serialized object among a layer's arguments, nested inputs
or outputs), is not compiled at all: the caller keeps the generic path.
"""

from __future__ import annotations

import inspect

import keras

from cellgraph import backend
from cellgraph._loop import cast

_TENSOR = "__keras_tensor__"


class Unsupported(Exception):
    """Raised while compiling a graph that must keep the generic path."""


class LeanGraph:
    """A functional model's graph, run node by node without `Layer.__call__`.

    Use `LeanGraph.compile(model, dtype_policy)`, which returns `None` where
    the graph must keep Keras's generic call (`LeanGraph.reason(...)` says
    why).

    Call arguments:
        inputs: the model's inputs, a flat list in `model.inputs` order.
        training: the training flag for the layers that take one.

    Returns:
        The model's outputs, a flat list in `model.outputs` order.
    """

    def __init__(self, inputs, nodes, outputs, size):
        self._inputs = inputs  # [(slot, dtype)]
        self._nodes = nodes
        self._outputs = outputs
        self._size = size
        self._specs = {}
        self._factories = {}  # training is None -> (compiled make, constants)

    @classmethod
    def compile(cls, model, dtype_policy=None) -> LeanGraph | None:
        """Compiles `model`'s graph, or returns `None` where it cannot.

        Args:
            model: a functional `keras.Model`.
            dtype_policy: the policy of the loop the graph runs in (the
                enclosing layer's); a layer with another policy keeps its
                full call. Default: the global policy.
        """
        try:
            return cls._compile(model, _policy_dtypes(dtype_policy))
        except Unsupported:
            return None

    @classmethod
    def reason(cls, model, dtype_policy=None) -> str | None:
        """Why `compile` returns `None` for `model` (`None` when it does not)."""
        try:
            cls._compile(model, _policy_dtypes(dtype_policy))
        except Unsupported as error:
            return str(error)
        return None

    @property
    def lean_layers(self) -> list[str]:
        """Names of the nodes' operations that run their `call` directly."""
        return [node.name for node in self._nodes if node.lean]

    @property
    def fast_layers(self) -> list[str]:
        """Names of the lean nodes that run a backend-native call
        (`cellgraph.backend.fast_call`) instead of the layer's `call`."""
        return [
            node.name
            for node in self._nodes
            if node.binder is not None and not isinstance(node.op, keras.Model)
        ]

    @property
    def full_call_layers(self) -> list[str]:
        """Names of the nodes' operations that keep Keras's full call."""
        return [node.name for node in self._nodes if not node.lean]

    def __call__(self, inputs, training=None) -> list:
        slots = [None] * self._size
        for (slot, dtype), value in zip(self._inputs, inputs, strict=True):
            # `None`: a step input only hoisted work reads (`hoist`).
            slots[slot] = value if value is None else cast(value, dtype)
        for node in self._nodes:
            node.run(slots, training)
        return [slots[slot] for slot in self._outputs]

    def bind(self, training=None):
        """The graph as one function for one sequence: `run(inputs) -> outputs`.

        Each node's call is bound once (`_Node.bind`: the fast calls read
        their variables here) and the graph runs as straight-line Python,
        generated once per graph (`_source`), without the per-node argument
        building of `__call__`. Bind inside the enclosing layer's call, after
        the cells' `begin_sequence` (their dropout masks decide their call).
        """
        key = training is None
        make = self._factories.get(key)
        if make is None:
            source, constants = self._source(with_training=not key)
            namespace = {
                "_one": _one,
                "_flat": _flat,
                "_cast": cast,
                "_ops_cast": _ops_cast,
            }
            exec(
                compile(source, f"<cellgraph step graph {id(self)}>", "exec"), namespace
            )
            make = self._factories[key] = (namespace["make"], constants)
        factory, constants = make
        return factory(
            [node.bind(training) for node in self._nodes], constants, training
        )

    def _source(self, with_training: bool):
        """Python source of `make(calls, constants, training) -> run`."""
        constants = []

        def constant(value) -> str:
            constants.append(value)
            return f"C[{len(constants) - 1}]"

        def read(source) -> str:
            slot, dtype = source
            return f"v{slot}" if dtype is None else f"_ops_cast(v{slot}, {dtype!r})"

        def argument(arg) -> str:
            kind, value = arg
            if kind == _ONE:
                return read(value)
            if kind == _LIST:
                return "[" + ", ".join(read(v) for v in value) + "]"
            return constant(value)

        names = "".join(f"v{slot}, " for slot, _ in self._inputs)
        calls = "".join(f"F{number}, " for number in range(len(self._nodes)))
        lines = ["def make(F, C, T):", f"    ({calls}) = F", "    def run(inputs):"]
        lines.append(f"        ({names}) = inputs")
        for slot, dtype in self._inputs:
            v = f"v{slot}"
            lines.append(f"        {v} = {v} if {v} is None else _cast({v}, {dtype!r})")
        for number, node in enumerate(self._nodes):
            parts = [argument(a) for a in node.args]
            kwargs = dict(node.kwargs)
            if node.takes_training and with_training:
                kwargs.pop("training", None)
                parts.append("training=T")
            for key, value in kwargs.items():
                if key.isidentifier():
                    parts.append(f"{key}={argument(value)}")
                else:
                    parts.append(f"**{{{key!r}: {argument(value)}}}")
            call = f"F{number}({', '.join(parts)})"
            if len(node.outputs) == 1 and node.outputs[0][0] == 0:
                lines.append(f"        v{node.outputs[0][1]} = _one({call})")
            elif not node.outputs:
                lines.append(f"        {call}")
            else:
                lines.append(f"        r = _flat({call})")
                lines.extend(
                    f"        v{target} = r[{position}]"
                    for position, target in node.outputs
                )
        outputs = ", ".join(f"v{slot}" for slot in self._outputs)
        lines += [f"        return [{outputs}]", "    return run", ""]
        return "\n".join(lines), constants

    def hoist(self, num_inputs: int):
        """Splits off the work that reads only the first `num_inputs` inputs.

        The nodes that depend on the step inputs alone (and are known to
        treat each example on its own) can run once, for all timesteps at
        once, before the loop: `Hoist.sequences(xs)`. The returned loop graph
        takes the model's inputs followed by the hoisted values of the step.

        Returns:
            `(hoist, loop_graph)`, or `None` when no matrix product (`Dense`,
            `EinsumDense`, `Embedding`) would leave the loop.
        """
        varying = {slot for slot, _ in self._inputs[:num_inputs]}
        hoisted = []
        for node in self._nodes:
            sources = node.sources()
            if node.lean and _per_example(node.op) and sources and sources <= varying:
                hoisted.append(node)
                varying.update(target for _, target in node.outputs)
        if not any(type(node.op).__name__ in _PROJECTIONS for node in hoisted):
            return None
        produced = {target for node in hoisted for _, target in node.outputs}
        kept = [node for node in self._nodes if node not in hoisted]
        needed = {s for node in kept for s in node.sources()} | set(self._outputs)
        feeds = sorted(produced & needed)
        if any(
            s not in self._specs or None in self._specs[s][0][1:] for s in feeds
        ) or any(None in x for x in self._input_shapes(num_inputs)):
            return None
        inputs = {slot for slot, _ in self._inputs[:num_inputs]}
        hoist = Hoist(self, hoisted, num_inputs, feeds)
        hoist.inputs_in_loop = bool(inputs & needed)
        loop = LeanGraph(
            self._inputs + [(s, self._specs[s][1]) for s in feeds],
            kept,
            self._outputs,
            self._size,
        )
        loop._specs = self._specs
        return hoist, loop

    def _input_shapes(self, count):
        return [
            self._specs.get(slot, ((None, None),))[0][1:]
            for slot, _ in self._inputs[:count]
        ]

    # -- compilation ------------------------------------------------------
    @classmethod
    def _compile(cls, model, policy) -> LeanGraph:
        if not isinstance(model, keras.Model):
            raise Unsupported(f"{type(model).__name__} is not a functional model")
        try:
            config = model.get_config()
        except Exception as error:  # a layer without get_config
            raise Unsupported(f"get_config() failed: {error}") from None
        if not isinstance(config, dict) or "input_layers" not in config:
            raise Unsupported(f"{model.name} has no functional config")
        input_refs = _flat_refs(config["input_layers"], "input_layers")
        output_refs = _flat_refs(config["output_layers"], "output_layers")
        if len(input_refs) != len(model.inputs):
            raise Unsupported("nested model inputs")
        operations = {op.name: op for op in model.operations}
        # A config's output references count a functional model's own first
        # node (the one from its inputs to its outputs), its nodes' arguments
        # do not (Keras's `functional_from_config` subtracts it again).
        output_refs = [
            [name, index - 1 if _is_functional(operations.get(name)) else index, i]
            for name, index, i in output_refs
        ]

        slots: dict[tuple, int] = {}
        specs: dict[int, tuple] = {}  # slot -> (shape, dtype) where recorded

        def slot(key, record=None) -> int:
            index = slots.setdefault(tuple(key), len(slots))
            if record is not None and "shape" in record:
                specs[index] = (tuple(record["shape"]), record.get("dtype"))
            return index

        inputs = [
            (
                slot(ref, {"shape": x.shape, "dtype": x.dtype}),
                keras.backend.standardize_dtype(x.dtype),
            )
            for ref, x in zip(input_refs, model.inputs, strict=True)
        ]
        done = {(ref[0], ref[1]) for ref in input_refs}
        pending = []
        for layer_config in config["layers"]:
            if layer_config["class_name"] == "InputLayer":
                continue
            op = operations.get(layer_config["name"])
            if op is None:
                raise Unsupported(f"operation {layer_config['name']!r} not found")
            for index, node in enumerate(layer_config["inbound_nodes"]):
                pending.append((op, index, node))

        # Keras lists operations by depth; a shared layer's later node can
        # depend on an operation listed after it, so order by readiness.
        order = []
        while pending:
            waiting = []
            for op, index, node in pending:
                if all(
                    (r["keras_history"][0], r["keras_history"][1]) in done
                    for r in _tensor_refs(node)
                ):
                    order.append(_Node.compile(op, index, node, slot, policy))
                    done.add((op.name, index))
                else:
                    waiting.append((op, index, node))
            if len(waiting) == len(pending):
                raise Unsupported("the graph's nodes cannot be ordered")
            pending = waiting
        for ref in output_refs:
            if (ref[0], ref[1]) not in done:
                raise Unsupported(f"output {ref} is not computed")
        outputs = [
            slot(ref, {"shape": x.shape, "dtype": x.dtype})
            for ref, x in zip(output_refs, model.outputs, strict=True)
        ]
        # Each node writes the outputs that something reads: consumers name
        # them (operation, node index, index in the flat outputs).
        by_node = {(node.name, node.index): node for node in order}
        for (name, index, position), target in slots.items():
            node = by_node.get((name, index))
            if node is not None:
                node.outputs.append((position, target))
        graph = cls(inputs, order, outputs, len(slots))
        graph._specs = specs
        return graph


class SequenceRun:
    """`graph` as the executor of one sequence, bound at its first step.

    Binding waits for the first step: by then the loop has begun the
    sequence (the cells have drawn their dropout masks).

    Call arguments:
        inputs: the graph's inputs, a flat list.
        training: ignored (the sequence's flag is `training`).
    """

    def __init__(self, graph: LeanGraph, training=None):
        self._graph = graph
        self._training = training
        self._run = None

    def __call__(self, inputs, training=None) -> list:
        if self._run is None:
            self._run = self._graph.bind(self._training)
        return self._run(inputs)


class Hoist:
    """The step-input-only part of a step graph, run for every timestep at once.

    Made by `LeanGraph.hoist`. `sequences(xs, training)` takes the step
    inputs' sequences, `(batch, time, *shape)`, runs the hoisted nodes on
    them folded to `(batch * time, *shape)`, and returns each value the loop
    needs as a sequence, `(batch, time, *shape)`, with its per-step shape
    and dtype in `specs`. `inputs_in_loop` says whether the loop still reads
    the step inputs themselves.
    """

    def __init__(self, graph, nodes, num_inputs, feeds):
        self._graph = graph
        self._nodes = nodes
        self._num_inputs = num_inputs
        self._feeds = feeds
        self.inputs_in_loop = True
        self.specs = [
            (tuple(graph._specs[s][0][1:]), graph._specs[s][1]) for s in feeds
        ]

    @property
    def layers(self) -> list[str]:
        """Names of the operations that run before the loop."""
        return [node.name for node in self._nodes]

    def sequences(self, xs, training=None) -> list:
        ops = keras.ops
        batch, time = ops.shape(xs[0])[0], ops.shape(xs[0])[1]
        slots = [None] * self._graph._size
        for (slot, dtype), x in zip(self._graph._inputs, xs):
            slots[slot] = cast(ops.reshape(x, (-1, *x.shape[2:])), dtype)
        for node in self._nodes:
            node.run(slots, training)
        return [
            ops.reshape(slots[s], (batch, time, *shape))
            for s, (shape, _) in zip(self._feeds, self.specs, strict=True)
        ]


# Layers and `keras.ops` operations that treat each example on its own (so
# that a batch of `batch * time` examples gives each step's values), by class.
_PROJECTIONS = {"Dense", "EinsumDense", "Embedding"}
_PER_EXAMPLE_LAYERS = _PROJECTIONS | {
    "Activation",
    "Add",
    "Subtract",
    "Multiply",
    "Average",
    "Maximum",
    "Minimum",
    "Concatenate",
    "Reshape",
    "Flatten",
    "Identity",
    "ReLU",
    "LeakyReLU",
    "ELU",
    "Rescaling",
    "LayerNormalization",
    "Softmax",
}
_ELEMENTWISE_OPS = {
    "Add",
    "Subtract",
    "Multiply",
    "Divide",
    "TrueDivide",
    "Negative",
    "Abs",
    "Square",
    "Sqrt",
    "Exp",
    "Log",
    "Tanh",
    "Sin",
    "Cos",
    "Sigmoid",
    "Relu",
}


def _per_example(op) -> bool:
    """Whether `op` is known to compute each example independently."""
    name = type(op).__name__
    module = type(op).__module__ or ""
    if not module.startswith("keras."):
        return False  # a subclass or a user's layer may do anything
    if not isinstance(op, keras.layers.Layer):
        return name in _ELEMENTWISE_OPS
    if name not in _PER_EXAMPLE_LAYERS:
        return False
    axes = getattr(op, "axis", -1)
    axes = axes if isinstance(axes, (list, tuple)) else [axes]
    return 0 not in axes  # never along the batch axis


class _Node:
    """One call of one operation: where its arguments come from and go to."""

    def __init__(
        self, name, index, fn, lean, args, kwargs, takes_training, op=None, binder=None
    ):
        self.op = op
        self.name = name
        self.index = index
        # `binder(training) -> call`, made once per sequence, where the call
        # depends on the sequence (variables read once, a nested graph's own
        # binding); `fn` otherwise.
        self.binder = binder
        self.fn = fn if binder is None else _bind_per_call(binder)
        self.lean = lean
        self.args = args  # [(kind, value)]
        self.kwargs = kwargs  # {name: (kind, value)}
        self.takes_training = takes_training
        self.outputs = []  # [(index in the flat outputs, slot)]

    @classmethod
    def compile(cls, op, index, node, slot, policy) -> _Node:
        raw_args, raw_kwargs = node.get("args", []), node.get("kwargs", {})
        _refuse_masks(op, raw_args)
        # The graph records each call's keyword arguments as Keras resolved
        # them (`training` and `mask` included); like Keras's functional
        # call, the step's own `training` replaces the recorded one.
        takes_training = "training" in _call_parameters(op)
        # A layer told `training=True` in the graph passes it to its own
        # layers through Keras's call context: keep its full call.
        lean = raw_kwargs.get("training") is not True and not _needs_full_call(
            op, policy
        )
        input_dtype = None
        if lean and isinstance(op, keras.layers.Layer):
            if op.autocast and not isinstance(op, keras.Model):
                # (a model casts its inputs to its Inputs' dtypes itself)
                input_dtype = getattr(op, "input_dtype", op.compute_dtype)
        args = [_argument(a, slot, input_dtype) for a in raw_args]
        kwargs = {k: _argument(v, slot, input_dtype) for k, v in raw_kwargs.items()}
        fn, binder = op, None
        if lean and isinstance(op, keras.Model):
            binder = _nested_graph(op, args, kwargs, policy)
            lean = binder is not None
        elif lean:
            shapes = [r.get("shape") or () for r in _tensor_refs({"args": raw_args})]
            binder = backend.fast_call(op, shapes)
            fn = op.call
        if not lean:  # Keras's call casts the inputs itself
            args = [_argument(a, slot, None) for a in raw_args]
            kwargs = {k: _argument(v, slot, None) for k, v in raw_kwargs.items()}
        return cls(op.name, index, fn, lean, args, kwargs, takes_training, op, binder)

    def bind(self, training):
        """The node's call for one sequence."""
        return self.fn if self.binder is None else self.binder(training)

    def sources(self) -> set:
        """The slots this node reads."""
        found = set()
        for kind, value in [*self.args, *self.kwargs.values()]:
            if kind == _ONE:
                found.add(value[0])
            elif kind == _LIST:
                found.update(v[0] for v in value)
        return found

    def run(self, slots, training):
        args = [_value(a, slots) for a in self.args]
        kwargs = {k: _value(v, slots) for k, v in self.kwargs.items()}
        if self.takes_training and training is not None:
            kwargs["training"] = training
        flat = _flat(self.fn(*args, **kwargs))
        for position, target in self.outputs:
            slots[target] = flat[position]


def _flat(result):
    """A call's result as the flat sequence the graph's tensor indices count in."""
    if isinstance(result, (list, tuple)):
        if any(isinstance(r, (list, tuple, dict)) for r in result):
            return keras.tree.flatten(result)
        return result
    if isinstance(result, dict):
        return keras.tree.flatten(result)
    return (result,)


def _one(result):
    """The first tensor of a call's result (most calls return one tensor)."""
    if isinstance(result, (list, tuple, dict)):
        return _flat(result)[0]
    return result


def _call_parameters(op):
    try:
        return inspect.signature(op.call).parameters
    except (TypeError, ValueError):
        return {}


def _needs_full_call(op, policy) -> bool:
    """Whether Keras's `Layer.__call__` could compute something else here."""
    if not isinstance(op, keras.layers.Layer):
        return False  # a `keras.ops` operation: its call is the op
    if getattr(op, "_cellgraph_sequence_layer", False):
        return True  # a nested sequence layer checks its own arguments
    if op.activity_regularizer is not None:
        return True
    if getattr(op, "quantization_mode", None) is not None:
        return True
    # The loop runs inside the enclosing layer's autocast scope; a layer
    # with another policy would open its own.
    if (op.compute_dtype, op.variable_dtype) != policy:
        return True
    # A layer that does not autocast (an `Embedding`) reads its variables in
    # their own dtype: the same under a non-mixed policy's scope, if any.
    return not op.autocast and policy[0] != policy[1]


def _refuse_masks(op, raw_args):
    """Refuses a graph in which `op` attaches a Keras mask to its outputs.

    A layer's call reads masks from its inputs only through Keras's full
    call; the graph's inputs carry none, so masks appear only where a layer
    makes them (an `Embedding(mask_zero=True)`, a `Masking`).
    """
    if not isinstance(op, keras.layers.Layer) or not op.supports_masking:
        return
    if type(op).compute_mask is keras.layers.Layer.compute_mask:
        return  # the default passes the (absent) input mask through
    if not raw_args:
        raise Unsupported(f"{op.name} may compute a mask")

    def symbolic(value):
        if _is_tensor(value):
            config = value["config"]
            return keras.KerasTensor(config["shape"], dtype=config["dtype"])
        if isinstance(value, list):
            return [symbolic(v) for v in value]
        return value

    try:
        mask = op.compute_mask(symbolic(raw_args[0]), None)
    except Exception as error:
        raise Unsupported(f"{op.name}.compute_mask failed: {error}") from None
    if any(m is not None for m in keras.tree.flatten(mask)):
        raise Unsupported(f"{op.name} computes a Keras mask")


def _nested_graph(model, args, kwargs, policy):
    """A nested functional model's own lean graph, as a call, or `None`."""
    if set(kwargs) - {"training", "mask"} or kwargs.get("mask", (0, None))[1]:
        return None  # a mask passed in, or arguments the model does not take
    if len(args) != 1 or args[0][0] == _CONSTANT:
        return None
    try:
        graph = LeanGraph._compile(model, policy)
    except Unsupported:
        return None

    def bind(training=None):
        run = graph.bind(training)

        def call(inputs, training=None, mask=None):
            return run(inputs if isinstance(inputs, list) else [inputs])

        return call

    return bind


def _bind_per_call(binder):
    """A binder as a plain call that binds at every call (outside the loop)."""

    def call(*args, **kwargs):
        return binder(kwargs.get("training"))(*args, **kwargs)

    return call


def _is_functional(op) -> bool:
    """Whether `op` is a functional model (Keras's class `Functional`)."""
    return isinstance(op, keras.Model) and any(
        cls.__name__ == "Functional" for cls in type(op).__mro__
    )


def _policy_dtypes(dtype_policy) -> tuple[str, str]:
    policy = keras.dtype_policies.get(
        dtype_policy if dtype_policy is not None else keras.config.dtype_policy()
    )
    return policy.compute_dtype, policy.variable_dtype


def _flat_refs(refs, what) -> list:
    """`[[name, node, tensor], ...]` from a config's input/output layers."""
    if (
        isinstance(refs, list)
        and len(refs) == 3
        and isinstance(refs[0], str)
        and isinstance(refs[1], int)
    ):
        return [refs]
    if not isinstance(refs, list) or not all(
        isinstance(r, list) and len(r) == 3 and isinstance(r[0], str) for r in refs
    ):
        raise Unsupported(f"nested {what}")
    return refs


def _is_tensor(value) -> bool:
    return isinstance(value, dict) and value.get("class_name") == _TENSOR


def _tensor_refs(node) -> list:
    refs = []

    def visit(value):
        if _is_tensor(value):
            refs.append(value["config"])
        elif isinstance(value, (list, tuple)):
            for v in value:
                visit(v)
        elif isinstance(value, dict):
            for v in value.values():
                visit(v)

    visit(node.get("args", []))
    visit(node.get("kwargs", {}))
    return refs


_CONSTANT, _ONE, _LIST = 0, 1, 2


def _argument(value, slot, input_dtype):
    """How to build one argument at run time: a tensor, a list of them, a value.

    With `input_dtype` (a lean layer's input dtype), floating tensors recorded with
    another dtype are cast to it, as Keras's call would
    (`DTypePolicy.convert_input`).
    """
    if _is_tensor(value):
        config = value["config"]
        return (
            _ONE,
            (slot(config["keras_history"], config), _cast(value, input_dtype)),
        )
    if isinstance(value, list) and value and all(_is_tensor(v) for v in value):
        return (
            _LIST,
            [
                (slot(v["config"]["keras_history"], v["config"]), _cast(v, input_dtype))
                for v in value
            ],
        )
    if _contains_object(value):
        raise Unsupported(f"an argument the executor does not read: {value!r:.80}")
    return (_CONSTANT, value)


def _cast(tensor, input_dtype):
    dtype = tensor["config"].get("dtype")
    if input_dtype is None or dtype is None or "float" not in dtype:
        return None
    return None if dtype == input_dtype else input_dtype


def _contains_object(value) -> bool:
    if isinstance(value, dict):
        return True  # a serialized object, or a tensor nested in a dict
    if isinstance(value, (list, tuple)):
        return any(_contains_object(v) for v in value)
    return False


def _value(argument, slots):
    kind, value = argument
    if kind == _ONE:
        return _read(slots, value)
    if kind == _LIST:
        return [_read(slots, v) for v in value]
    return value


def _read(slots, source):
    slot, dtype = source
    if dtype is None:
        return slots[slot]
    return _ops_cast(slots[slot], dtype)


def _ops_cast(x, dtype):
    return keras.ops.cast(x, dtype)
