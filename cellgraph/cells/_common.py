"""Shared machinery of the built-in Keras-compatible cells.

Three pieces live here:

- `KerasArgsMixin`: stores, validates and serializes the constructor arguments
  that `SimpleRNNCell`, `GRUCell` and `LSTMCell` share with their Keras
  namesakes (units, activations, initializers, regularizers, constraints,
  dropout rates, seed). Both the public cells and their private step layers
  use it, so the two always agree on names, defaults and config keys.
- `DropoutStepLayer`: the base of the private step layers that own the
  weights. It implements Keras's recurrent dropout: one random mask per
  sequence, reused at every timestep, created by `begin_sequence()`.
- `KerasCell`: the `RNNCell` base of the three public cells; it builds the
  one-step model `[x, *states] -> [output, *new_states]` around a step layer.
"""

from __future__ import annotations

import keras
from keras import ops

from cellgraph.cell import RNNCell

_SERIALIZERS = {
    "initializer": keras.initializers.serialize,
    "regularizer": keras.regularizers.serialize,
    "constraint": keras.constraints.serialize,
    "activation": keras.activations.serialize,
}


class KerasArgsMixin:
    """Stores the arguments shared with Keras's recurrent cells.

    Objects given as strings or config dicts are resolved with Keras's `get`
    helpers; `_args_config()` returns them serialized with Keras's public
    `serialize` helpers, ready for `get_config`.
    """

    # Names of the arguments that `_args_config()` serializes, in order.
    _arg_names: tuple[str, ...] = (
        "units",
        "activation",
        "use_bias",
        "kernel_initializer",
        "recurrent_initializer",
        "bias_initializer",
        "kernel_regularizer",
        "recurrent_regularizer",
        "bias_regularizer",
        "kernel_constraint",
        "recurrent_constraint",
        "bias_constraint",
        "dropout",
        "recurrent_dropout",
        "seed",
    )

    def _set_args(
        self,
        units,
        activation,
        use_bias,
        kernel_initializer,
        recurrent_initializer,
        bias_initializer,
        kernel_regularizer,
        recurrent_regularizer,
        bias_regularizer,
        kernel_constraint,
        recurrent_constraint,
        bias_constraint,
        dropout,
        recurrent_dropout,
        seed,
    ):
        cls = type(self).__name__
        if isinstance(units, bool) or not isinstance(units, int) or units <= 0:
            raise ValueError(
                f"{cls}: argument `units` must be a positive integer. "
                f"Received: units={units!r}"
            )
        for name, rate in (
            ("dropout", dropout),
            ("recurrent_dropout", recurrent_dropout),
        ):
            if not isinstance(rate, (int, float)) or not 0.0 <= rate <= 1.0:
                raise ValueError(
                    f"{cls}: argument `{name}` must be a float in [0, 1]. "
                    f"Received: {name}={rate!r}"
                )
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise ValueError(
                f"{cls}: argument `seed` must be an integer or None. "
                f"Received: seed={seed!r}"
            )
        self.units = units
        self.activation = keras.activations.get(activation)
        self.use_bias = bool(use_bias)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.recurrent_initializer = keras.initializers.get(recurrent_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)
        self.kernel_regularizer = keras.regularizers.get(kernel_regularizer)
        self.recurrent_regularizer = keras.regularizers.get(recurrent_regularizer)
        self.bias_regularizer = keras.regularizers.get(bias_regularizer)
        self.kernel_constraint = keras.constraints.get(kernel_constraint)
        self.recurrent_constraint = keras.constraints.get(recurrent_constraint)
        self.bias_constraint = keras.constraints.get(bias_constraint)
        self.dropout = float(dropout)
        self.recurrent_dropout = float(recurrent_dropout)
        self.seed = seed

    def _args_config(self) -> dict:
        config = {}
        for name in self._arg_names:
            value = getattr(self, name)
            kind = name.rsplit("_", 1)[-1]
            if kind in _SERIALIZERS:
                value = _SERIALIZERS[kind](value)
            config[name] = value
        return config

    def _args(self) -> dict:
        """The constructor arguments as resolved objects (not serialized)."""
        return {name: getattr(self, name) for name in self._arg_names}


class DropoutStepLayer(KerasArgsMixin, keras.layers.Layer):
    """Base of the private step layers: weights plus per-sequence dropout.

    Keras's recurrent cells draw their dropout masks once per sequence and
    reuse them at every timestep. Here the sequence engine calls
    `begin_sequence(batch_size, training)` before its time loop, which draws
    and caches the masks, and `end_sequence()` after it, which drops them.

    A step layer called in training outside the engine (one step at a time,
    no `begin_sequence()`) draws fresh masks for that call only: consecutive
    calls then use different masks. Call `begin_sequence()` yourself to keep
    one mask over several manual steps.

    Masks follow Keras 3: with `mask_count == 1` one input mask of shape
    `(batch, input_dim)` and one recurrent mask of shape `(batch, units)`;
    with `mask_count == k` (Keras's `implementation=1`, forced by a nonzero
    `recurrent_dropout` in GRU/LSTM) `k` independent masks of each, one per
    gate. Masks are drawn in Keras's order (all input masks, then all
    recurrent masks) from a `keras.random.SeedGenerator(seed)`.
    """

    # Keras's SimpleRNNCell applies any rate > 0 (1.0 drops everything);
    # its GRUCell and LSTMCell only apply rates strictly below 1.
    _full_rate_applies = False

    def __init__(self, *, mask_count: int = 1, **kwargs):
        args = {name: kwargs.pop(name) for name in self._arg_names}
        super().__init__(**kwargs)
        self._set_args(**args)
        self.mask_count = mask_count
        self.seed_generator = keras.random.SeedGenerator(self.seed)
        self.input_dim = None
        self._sequence_masks = None

    # -- dropout masks ---------------------------------------------------
    def _rate_applies(self, rate: float) -> bool:
        if self._full_rate_applies:
            return rate > 0.0
        return 0.0 < rate < 1.0

    def _draw_masks(self, batch_size, dim: int, rate: float):
        if not self._rate_applies(rate):
            return None
        ones = ops.ones((batch_size, dim), dtype=self.compute_dtype)
        return [
            keras.random.dropout(ones, rate, seed=self.seed_generator)
            for _ in range(self.mask_count)
        ]

    def _draw_all_masks(self, batch_size):
        return (
            self._draw_masks(batch_size, self.input_dim, self.dropout),
            self._draw_masks(batch_size, self.units, self.recurrent_dropout),
        )

    def begin_sequence(self, batch_size, training: bool | None = None) -> None:
        """Draws the dropout masks used at every step of one sequence.

        Args:
            batch_size: batch size of the sequence (int or scalar tensor).
            training: whether the sequence runs in training mode; masks are
                drawn only when it is true and a dropout rate is nonzero.
        """
        self._sequence_masks = None
        if not training or not (
            self._rate_applies(self.dropout)
            or self._rate_applies(self.recurrent_dropout)
        ):
            return
        if not self.built:
            raise ValueError(
                f"{self.name}: begin_sequence() was called before the layer "
                "was built; call the step model once (symbolically) first."
            )
        self._sequence_masks = self._draw_all_masks(batch_size)

    def end_sequence(self) -> None:
        """Forgets the masks drawn by `begin_sequence()`."""
        self._sequence_masks = None

    def _masks(self, x, training):
        """Returns `(input_masks, recurrent_masks)` for one step.

        Each is `None` (no dropout) or a list of `mask_count` tensors.
        """
        if training is False:
            return None, None
        if self._sequence_masks is not None:
            return self._sequence_masks
        if not training:
            return None, None
        return self._draw_all_masks(ops.shape(x)[0])

    def __setattr__(self, name, value):
        # Cached masks are plain tensors, not state to track or save.
        if name == "_sequence_masks":
            object.__setattr__(self, name, value)
        else:
            super().__setattr__(name, value)

    # -- weights ---------------------------------------------------------
    def _add_kernels(self, input_dim: int, gates: int) -> None:
        self.input_dim = input_dim
        self.kernel = self.add_weight(
            shape=(input_dim, gates * self.units),
            name="kernel",
            initializer=self.kernel_initializer,
            regularizer=self.kernel_regularizer,
            constraint=self.kernel_constraint,
        )
        self.recurrent_kernel = self.add_weight(
            shape=(self.units, gates * self.units),
            name="recurrent_kernel",
            initializer=self.recurrent_initializer,
            regularizer=self.recurrent_regularizer,
            constraint=self.recurrent_constraint,
        )

    def _add_bias(self, shape, initializer=None) -> None:
        if not self.use_bias:
            self.bias = None
            return
        self.bias = self.add_weight(
            shape=shape,
            name="bias",
            initializer=initializer or self.bias_initializer,
            regularizer=self.bias_regularizer,
            constraint=self.bias_constraint,
        )

    def get_config(self):
        config = super().get_config()
        config.update(self._args_config())
        config["mask_count"] = self.mask_count
        return config


def project(inputs, kernel, masks):
    """`inputs @ kernel`, with dropout masks applied to `inputs`.

    With one mask per gate, column block `g` of `kernel` sees
    `inputs * masks[g]` (Keras's `implementation=1`).
    """
    if masks is None:
        return ops.matmul(inputs, kernel)
    if len(masks) == 1:
        return ops.matmul(inputs * masks[0], kernel)
    kernels = ops.split(kernel, len(masks), axis=1)
    return ops.concatenate(
        [ops.matmul(inputs * m, k) for m, k in zip(masks, kernels, strict=True)],
        axis=-1,
    )


def check_step_input_shape(cell_name: str, input_shape) -> int:
    """Returns the step input size; raises if `x_t` is not `(batch, dim)`."""
    if len(input_shape) != 2 or input_shape[-1] is None:
        raise ValueError(
            f"{cell_name}: the step input must have shape (batch, features) "
            f"with a known number of features. Received: input_shape="
            f"{tuple(input_shape)}"
        )
    return int(input_shape[-1])


class KerasCell(KerasArgsMixin, RNNCell):
    """Base of the Keras-compatible cells: a step layer in a one-step model.

    Subclasses set `_step_class` and `_num_states`, and may extend
    `_step_kwargs()` and `get_config()` with their own arguments.
    """

    _step_class: type = DropoutStepLayer
    _num_states = 1

    def __init__(self, *, input_dim: int | None = None, **kwargs):
        args = {name: kwargs.pop(name) for name in self._arg_names}
        super().__init__(input_dim=input_dim, **kwargs)
        self._set_args(**args)

    @property
    def state_shape(self) -> list[tuple]:
        return [(self.units,)] * self._num_states

    def _step_kwargs(self) -> dict:
        return self._args()

    def build_model(self, input_shape) -> keras.Model:
        input_dim = check_step_input_shape(self.name, input_shape)
        dtype = self.compute_dtype  # float64 cells keep float64 inputs
        x = keras.Input((input_dim,), name="x_t", dtype=dtype)
        states = [
            keras.Input((self.units,), name=f"state{i}_tm1", dtype=dtype)
            for i in range(self._num_states)
        ]
        step = self._step_class(
            name=f"{self.name}_step",
            dtype=self.dtype_policy,
            **self._step_kwargs(),
        )
        new_states = step([x, *states])
        if not isinstance(new_states, (list, tuple)):
            new_states = [new_states]
        new_states = list(new_states)
        return keras.Model(
            [x, *states], [new_states[0], *new_states], name=f"{self.name}_model"
        )

    def get_config(self):
        config = super().get_config()
        config.update(self._args_config())
        return config
