"""Step models read from a config, whose graph is rebuilt once loading is over.

Keras rebuilds a functional model by calling each layer again, and it finds a
call by its index among *all* the calls of that layer, while a saved config
counts only the calls of its own model. A layer in a step graph that the outer
model calls too (`dense(rnn(x))` with `dense` inside the step graph) would get
the step graph's call first, when the sequence layer is deserialized, and the
outer model's index would then point at that call. So a step model read from a
config stays pending:

- its layers are deserialized at once, so that a layer met again elsewhere in
  the file (a shared layer) is the same object;
- a private copy of the step model, without shared objects, gives the shapes
  the outer model needs while Keras rebuilds it;
- the step graph itself is replayed later (when weights are loaded, or at the
  first call), each call found by its index among this graph's calls only.
"""

from __future__ import annotations

import copy
import threading

import keras

from cellgraph import _options


class _NotYet(Exception):
    """A call needs a tensor that the replay has not produced yet."""


class PendingStepModel:
    """A step model's layers, and the replay of its graph once loading is over.

    Made by `load_step_model`, which passes the class to Keras as a custom
    object (it is not registered: it stands for a step model's config while
    that config is read, and is never written into a file).

    Args:
        step_model: the serialized functional step model.
        owner: name of the layer it belongs to, for error messages.
    """

    def __init__(self, step_model: dict, owner: str = "?", preview: bool = True):
        self._config = step_model
        self._owner = owner
        # Copies first: Keras's deserialization consumes parts of a config.
        self._graph = _unshared(step_model["config"])
        self.preview = None
        if preview:
            self.preview = _options.deserialize_part(_unshared(step_model), owner)
        entries = step_model["config"]["layers"]
        self._parts = [self._part(entry) for entry in entries]
        self._model = None
        self._lock = threading.Lock()

    def _part(self, entry):
        """A layer of the step model; a plain Keras sub-model stays pending too.

        Keras would rebuild a functional sub-model's graph now, taking the
        first call of a layer it shares with the outer model.
        """
        if entry.get("class_name") == "Functional" and str(
            entry.get("module")
        ).startswith("keras"):
            return PendingStepModel(entry, self._owner, preview=False)
        return keras.saving.deserialize_keras_object(entry)

    @property
    def layers(self) -> list:
        """The layers that hold the weights (those of pending sub-models too)."""
        found = []
        for part in self._parts:
            if isinstance(part, PendingStepModel):
                found += part.layers
            else:
                found.append(part)
        return found

    def resolve(self) -> keras.Model:
        """The step model over the shared layers (replayed on the first call)."""
        with self._lock:  # eager calls from two threads replay it once
            if self._model is None:
                parts = [
                    p.resolve() if isinstance(p, PendingStepModel) else p
                    for p in self._parts
                ]
                self._model = _replay(self._graph, parts, self._owner)
                self.preview = None
        return self._model

    def get_config(self) -> dict:
        return {"step_model": self._config, "owner": self._owner}

    @classmethod
    def from_config(cls, config):
        return cls(config["step_model"], config.get("owner", "?"))


_PENDING = "cellgraph.loading>PendingStepModel"


def load_step_model(config: dict, owner: str, custom_objects=None):
    """A step model from its config: a `keras.Model` or a `PendingStepModel`.

    Configs written by cellgraph mark the step model with a shared object id
    (see `_options.serialize_shared`); every config with the same id loads as
    the same `PendingStepModel`, so a `RecurrentModel` and its `get_cell()`
    keep one step model. A config without the mark loads directly.
    """
    if not isinstance(config, dict) or "shared_object_id" not in config:
        return _options.deserialize_part(config, owner, custom_objects)
    wrapper = {
        "module": None,
        "class_name": PendingStepModel.__name__,
        "registered_name": _PENDING,
        "config": {"step_model": config, "owner": owner},
        "shared_object_id": config["shared_object_id"],
    }
    objects = {**(custom_objects or {}), _PENDING: PendingStepModel}
    return keras.saving.deserialize_keras_object(wrapper, custom_objects=objects)


def split(model):
    """`(pending, model to use now)` for what `load_step_model` returned.

    `pending` is `None` for a ready `keras.Model` (or a pending one already
    replayed); otherwise the model to use now is the private preview.
    """
    if not isinstance(model, PendingStepModel):
        return None, model
    if model.preview is None:
        return None, model.resolve()
    return model, model.preview


class PendingBuild:
    """A builder's parts read from a config, and private copies of them.

    A builder (`RecurrentSequential`) builds its step graph by calling its
    parts; while Keras rebuilds the outer model, it builds it from the copies
    (`parts`: attribute name -> copy), so that a part the outer model calls
    too keeps its calls in the outer model's order; once loading is over it
    builds it again from its own parts, with the input shape kept here.
    """

    def __init__(self, parts: dict):
        self.parts = parts
        self.input_shape = None

    def preview_graph(self, builder, input_shape):
        """`builder.build_step_graph(input_shape)` over the copies."""
        self.input_shape = input_shape
        real = {name: getattr(builder, name) for name in self.parts}
        try:
            for name, copy_ in self.parts.items():
                object.__setattr__(builder, name, copy_)  # untracked, for a moment
            return builder.build_step_graph(input_shape)
        finally:
            for name, value in real.items():
                object.__setattr__(builder, name, value)


def has_shared_ids(config) -> bool:
    """Whether a serialized object holds a `shared_object_id` (any depth)."""
    if isinstance(config, dict):
        return "shared_object_id" in config or any(
            has_shared_ids(v) for v in config.values()
        )
    if isinstance(config, (list, tuple)):
        return any(has_shared_ids(v) for v in config)
    return False


def unshared(config):
    """A deep copy of `config` without `shared_object_id` marks."""
    return _unshared(config)


def _unshared(config):
    """A deep copy of `config` without `shared_object_id` marks."""
    if isinstance(config, dict):
        return {k: _unshared(v) for k, v in config.items() if k != "shared_object_id"}
    if isinstance(config, list):
        return [_unshared(v) for v in config]
    return copy.deepcopy(config)


def _replay(config: dict, layers: list, owner: str) -> keras.Model:
    """Calls `layers` as the functional `config` says; returns the model.

    Like Keras's `functional_from_config`, but a call is found by its index
    among the calls of this config only, whatever other graphs did with a
    shared layer before.
    """
    entries = config["layers"]
    names = [entry["name"] for entry in entries]
    by_name = dict(zip(names, layers))
    queue = {entry["name"]: list(entry.get("inbound_nodes") or []) for entry in entries}
    produced = {name: [] for name in names}
    for name in names:
        if not queue[name]:  # an input: its one call happened when it was made
            produced[name].append(keras.tree.flatten(by_name[name].output))

    def lookup(history, offset=0):
        name, node, index = history[0], int(history[1]) - offset, int(history[2])
        calls = produced.get(name)
        if calls is None or not 0 <= node < len(calls):
            raise _NotYet(name)
        return calls[node][index]

    while any(queue.values()):
        progress = False
        for name in names:
            nodes = queue[name]
            while nodes:
                try:
                    args = _revive(nodes[0].get("args", []), lookup)
                    kwargs = _revive(nodes[0].get("kwargs", {}), lookup)
                except _NotYet:
                    break
                outputs = by_name[name](*args, **kwargs)
                produced[name].append(keras.tree.flatten(outputs))
                nodes.pop(0)
                progress = True
        if not progress:
            waiting = sorted(name for name, nodes in queue.items() if nodes)
            raise ValueError(
                f"cellgraph: the step model of {owner!r} cannot be rebuilt from "
                f"its config: the calls of {waiting} wait for tensors that no "
                "layer of the step model produces."
            )

    def tensors(structure):
        if (
            isinstance(structure, (list, tuple))
            and len(structure) == 3
            and isinstance(structure[0], str)
        ):
            # Keras counts a nested functional model's own construction as its
            # first call here (not in the calls' arguments).
            return lookup(structure, int(_is_functional(by_name[structure[0]])))
        if isinstance(structure, dict):
            return {k: tensors(v) for k, v in structure.items()}
        return [tensors(v) for v in structure]

    return keras.Model(
        inputs=tensors(config["input_layers"]),
        outputs=tensors(config["output_layers"]),
        name=config.get("name"),
        trainable=config.get("trainable", True),
    )


def _is_functional(layer) -> bool:
    """Whether `layer` is a functional model (Keras's `Functional` class)."""
    return any(cls.__name__ == "Functional" for cls in type(layer).__mro__)


def _revive(value, lookup):
    """Node arguments from their config, Keras tensors taken from the replay."""
    if isinstance(value, dict):
        kind = value.get("class_name")
        if kind == "__keras_tensor__":
            return lookup(value["config"]["keras_history"])
        if kind == "__tuple__":
            return tuple(_revive(v, lookup) for v in value["config"]["value"])
        if kind is not None:
            return keras.saving.deserialize_keras_object(value)
        return {k: _revive(v, lookup) for k, v in value.items()}
    if isinstance(value, (list, tuple)):  # tuples: a config not yet in JSON
        return type(value)(_revive(v, lookup) for v in value)
    return value
