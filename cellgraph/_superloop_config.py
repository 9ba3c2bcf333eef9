"""Translation of the original superloop project's CONFIG dict (see `Superloop`)."""

from __future__ import annotations

from cellgraph.systems import (
    AddressableMemory,
    Attention,
    Queue,
    RegisterMemory,
    Stack,
    System,
)

# The systems by name, and the original project's argument names that differ
# from cellgraph's.
SYSTEMS = {
    cls.__name__: cls
    for cls in (Attention, RegisterMemory, Stack, Queue, AddressableMemory)
}
RENAMED_SYSTEM_ARGS = {
    Attention: {"outputs": "width"},
    RegisterMemory: {"register_width": "width"},
}
CONFIG_KEYS = {
    "timesteps",
    "suppress_output",
    "model_inputs",
    "model_outputs",
    "recurrent_model",
    "recurrent_layers",
    "recurrent_units",
    "superloop_models",
}
IGNORED_CONFIG_KEYS = {"model_name", "printvalues"}


def superloop_arguments(config: dict) -> dict:
    """The `Superloop` arguments for an original CONFIG dict.

    See `Superloop.from_superloop_config` for the keys. Raises a
    `ValueError` naming the key for unknown keys, unknown systems, missing
    or wrong system arguments, and a missing `timesteps` without per-step
    input; the `Superloop` constructor checks the values.
    """
    if not isinstance(config, dict):
        raise TypeError(
            "Superloop.from_superloop_config() expects a dict. Received: "
            f"{type(config).__name__}"
        )
    models = config.get("superloop_models", [])
    if not isinstance(models, (list, tuple)):
        raise ValueError(
            "CONFIG key 'superloop_models' must be a list of system names "
            f"or classes. Received: superloop_models={models!r}"
        )
    system_classes = [_system_class(item) for item in models]
    system_keys = {c.__name__ for c in system_classes}
    unknown = sorted(
        str(k)
        for k in config
        if k not in CONFIG_KEYS | IGNORED_CONFIG_KEYS | system_keys
    )
    if unknown:
        raise ValueError(
            f"Unknown CONFIG key(s) {unknown}. Known keys: "
            f"{sorted(CONFIG_KEYS | IGNORED_CONFIG_KEYS)} and one dict per "
            f"system of 'superloop_models' (here {sorted(system_keys)})."
        )
    for key in ("recurrent_layers", "recurrent_units"):
        if key not in config:
            raise ValueError(f"CONFIG key {key!r} is missing.")
    model_inputs = config.get("model_inputs", 0)
    if (
        isinstance(model_inputs, bool)
        or not isinstance(model_inputs, int)
        or model_inputs < 0
    ):
        raise ValueError(
            "CONFIG key 'model_inputs' must be an integer >= 0. Received: "
            f"model_inputs={model_inputs!r}"
        )
    timesteps = config.get("timesteps")
    if model_inputs == 0 and timesteps is None:
        raise ValueError(
            "CONFIG needs 'timesteps' when 'model_inputs' is 0 (a run "
            "without per-step input). Received: timesteps=None"
        )
    systems = []
    for system_class in system_classes:
        name = system_class.__name__
        arguments = config.get(name)
        if not isinstance(arguments, dict):
            raise ValueError(
                f"CONFIG must have a dict {name!r} with the arguments of the "
                f"{name} system. Received: {name}={arguments!r}"
            )
        renames = RENAMED_SYSTEM_ARGS.get(system_class, {})
        arguments = {renames.get(k, k): v for k, v in arguments.items()}
        try:
            systems.append(system_class(**arguments))
        except TypeError as error:
            raise ValueError(
                f"CONFIG[{name!r}] has arguments {arguments!r} that "
                f"{name} does not take: {error}"
            ) from error
    recurrent = config.get("recurrent_model", "sgu")
    if isinstance(recurrent, str):
        recurrent = recurrent.lower()
    return {
        "cell": recurrent,
        "layers": config["recurrent_layers"],
        "units": config["recurrent_units"],
        "systems": systems,
        "outputs": config.get("model_outputs", 0),
        "suppress_output": config.get("suppress_output", 0),
        "timesteps": timesteps if model_inputs == 0 else None,
    }


def _system_class(item) -> type:
    if isinstance(item, type) and issubclass(item, System):
        return item
    if isinstance(item, str) and item in SYSTEMS:
        return SYSTEMS[item]
    raise ValueError(
        "CONFIG key 'superloop_models' lists system names "
        f"{sorted(SYSTEMS)} or System subclasses. Received: {item!r}"
    )
