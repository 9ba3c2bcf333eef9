"""`KerasCell`: the shared base of the built-in cells.

Each built-in cell (`SimpleRNNCell`, `GRUCell`, `LSTMCell`, `SGUCell`,
`RHNCell`) is one Keras layer that owns its weights and computes one step in
`call([x, *states]) -> [output, *new_states]`. `KerasCell` holds what they
share:

- the constructor arguments they share with Keras's recurrent cells (units,
  activation, initializers, regularizers, constraints, dropout rates, seed),
  written once here: validated, stored, and serialized in `get_config`;
- Keras's recurrent dropout: one random mask per sequence, drawn by
  `begin_sequence()` and reused at every timestep;
- the weight helpers that create `kernel`, `recurrent_kernel` and `bias`
  with Keras's names, order and shapes.
"""

from __future__ import annotations

import threading

import keras
from keras import ops

from cellgraph.cell import RNNCell, _first_shape


def check_step_input_shape(cell_name: str, input_shape) -> int:
    """Returns the step input size; raises if `x_t` is not `(batch, dim)`."""
    if (
        not isinstance(input_shape, (list, tuple))
        or len(input_shape) != 2
        or input_shape[-1] is None
    ):
        raise ValueError(
            f"{cell_name}: the step input must have shape (batch, features) "
            f"with a known number of features. Received: input_shape="
            f"{input_shape}"
        )
    return int(input_shape[-1])


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


def check_implementation(cls_name: str, implementation) -> int:
    """Keras's `implementation` argument of `GRUCell` and `LSTMCell`: 1 or 2."""
    if implementation not in (1, 2) or isinstance(implementation, bool):
        raise ValueError(
            f"{cls_name}: argument `implementation` must be 1 or 2. "
            f"Received: implementation={implementation!r}"
        )
    return int(implementation)


class _PerThread(threading.local):
    """Per-thread storage that copies as a fresh, empty store."""

    masks = None

    def __deepcopy__(self, memo):
        return _PerThread()

    def __reduce__(self):
        return (_PerThread, ())


class KerasCell(RNNCell):
    """Base of the built-in cells: one layer, its weights and one step.

    A subclass sets `_state_names` (one name per state, each state of
    shape `(units,)`), creates its weights in `build()` after
    `input_dim = self.step_input_dim(input_shape)`, and computes one step in
    `call([x, *states], training)`, drawing its dropout masks with
    `self.dropout_masks(x, training)`.

    Keras's recurrent dropout: the sequence engine calls
    `begin_sequence(batch_size, training)` before its time loop, which draws
    and caches the masks, and `end_sequence()` after it, which drops them.
    A cell called in training outside the engine (one step at a time, no
    `begin_sequence()`) draws fresh masks for that call only; call
    `begin_sequence()` yourself to keep one mask over several manual steps.

    Masks follow Keras 3: with `mask_count == 1` one input mask of shape
    `(batch, input_dim)` and one recurrent mask of shape `(batch, units)`;
    with `mask_count == k` (Keras's `implementation=1`, forced by a nonzero
    `recurrent_dropout` in GRU/LSTM) `k` independent masks of each, one per
    gate. Masks are drawn in Keras's order (all input masks, then all
    recurrent masks) from a `keras.random.SeedGenerator(seed)`.

    Args:
        units: positive integer, dimensionality of the output space.
        activation: activation function. Default: `"tanh"`. `None` means
            linear.
        use_bias: whether the cell uses a bias. Default: `True`.
        kernel_initializer: initializer of `kernel`. Default:
            `"glorot_uniform"`.
        recurrent_initializer: initializer of `recurrent_kernel`. Default:
            `"orthogonal"`.
        bias_initializer: initializer of the bias. Default: `"zeros"`.
        kernel_regularizer: regularizer applied to `kernel`. Default: `None`.
        recurrent_regularizer: regularizer applied to `recurrent_kernel`.
            Default: `None`.
        bias_regularizer: regularizer applied to the bias. Default: `None`.
        kernel_constraint: constraint applied to `kernel`. Default: `None`.
        recurrent_constraint: constraint applied to `recurrent_kernel`.
            Default: `None`.
        bias_constraint: constraint applied to the bias. Default: `None`.
        dropout: float in [0, 1], fraction of the input units to drop.
            Default: 0.
        recurrent_dropout: float in [0, 1], fraction of the recurrent state
            units to drop. Default: 0.
        seed: random seed for dropout.
        input_dim: optional size of the step input (needed by
            `get_layer()`).
        **kwargs: base layer keyword arguments (`name`, `dtype`, ...).

    Call arguments:
        inputs: list `[x_t, *states_tm1]`, shapes `(batch, features)` and
            `(batch, units)` per state.
        training: Python boolean, whether dropout is active.

    Output shape:
        list `[output_t, *states_t]`, each `(batch, units)`.

    Example:

    ```python
    cell = cellgraph.cells.SimpleRNNCell(4, input_dim=8)
    output, h = cell([np.ones((2, 8), "float32"), np.zeros((2, 4), "float32")])
    ```
    """

    # One name per state; each state has shape (units,).
    _state_names: tuple[str, ...] = ("h",)
    # Keras's SimpleRNNCell applies any rate > 0 (1.0 drops everything);
    # its GRUCell and LSTMCell only apply rates strictly below 1.
    _full_rate_applies = False

    # The shared arguments, in the order `get_config` writes them.
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

    def __init__(
        self,
        units: int,
        activation="tanh",
        *,
        use_bias: bool = True,
        kernel_initializer="glorot_uniform",
        recurrent_initializer="orthogonal",
        bias_initializer="zeros",
        kernel_regularizer=None,
        recurrent_regularizer=None,
        bias_regularizer=None,
        kernel_constraint=None,
        recurrent_constraint=None,
        bias_constraint=None,
        dropout: float = 0.0,
        recurrent_dropout: float = 0.0,
        seed: int | None = None,
        input_dim: int | None = None,
        **kwargs,
    ):
        super().__init__(input_dim=input_dim, **kwargs)
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
            if (
                isinstance(rate, bool)
                or not isinstance(rate, (int, float))
                or not 0.0 <= rate <= 1.0
            ):
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
        self.seed_generator = keras.random.SeedGenerator(seed)
        # Number of dropout masks per input (Keras's implementation=1: one
        # per gate); GRUCell and LSTMCell set it from `implementation`.
        self.mask_count = 1
        # The masks of the sequence being run, per thread: one cell may run
        # in several threads at once (eager calls from a server, say).
        object.__setattr__(self, "_mask_store", _PerThread())

    # -- states ------------------------------------------------------------
    @property
    def state_names(self) -> list[str]:
        """One name per state, in the order of the call's states."""
        return list(self._state_names)

    @property
    def state_shapes(self) -> list[tuple]:
        """One shape per state, without the batch dimension: `(units,)`."""
        return [(self.units,)] * len(self._state_names)

    @property
    def input_shape_hint(self) -> tuple | None:
        if self.built:
            return (int(self.kernel.shape[0]),)
        return super().input_shape_hint

    # -- a backend's fused kernel --------------------------------------------
    def native_kernel(self, training=None):
        """`(kind, weights, has_biases)` for a backend's fused kernel, or `None`.

        A cell whose step a backend can run as one fused kernel over the
        whole sequence (PyTorch's `torch.lstm`/`torch.gru`, cuDNN's layout)
        returns the kernel's name and its weights in the kernel's layout;
        `None` where the kernel would compute something else (other
        activations, dropout in training, a mixed dtype policy).
        """
        return None

    def _native_kernel_applies(self, training) -> bool:
        if self.activation is not keras.activations.tanh:
            return False
        if getattr(self, "recurrent_activation", None) is not keras.activations.sigmoid:
            return False
        if self.compute_dtype != self.variable_dtype or self.compute_dtype not in (
            "float32",
            "float64",
        ):
            return False
        dropout = self._rate_applies(self.dropout) or self._rate_applies(
            self.recurrent_dropout
        )
        return not (training and dropout)

    # -- building ----------------------------------------------------------
    def step_input_dim(self, input_shape) -> int:
        """Checks the shapes of `[x_t, *states_tm1]`; returns `x_t`'s size."""
        input_dim = check_step_input_shape(self.name, _first_shape(input_shape))
        self._check_call_shapes(input_shape, [(input_dim,), *self.state_shapes])
        return input_dim

    def add_kernels(
        self, kernel_shape, recurrent_shape, recurrent_initializer=None
    ) -> None:
        """Adds `kernel` and `recurrent_kernel` (Keras's names and order)."""
        self.kernel = self.add_weight(
            shape=kernel_shape,
            name="kernel",
            initializer=self.kernel_initializer,
            regularizer=self.kernel_regularizer,
            constraint=self.kernel_constraint,
        )
        self.recurrent_kernel = self.add_weight(
            shape=recurrent_shape,
            name="recurrent_kernel",
            initializer=recurrent_initializer or self.recurrent_initializer,
            regularizer=self.recurrent_regularizer,
            constraint=self.recurrent_constraint,
        )

    def add_bias(self, shape, initializer=None) -> None:
        """Adds `bias` when `use_bias`; sets `self.bias = None` otherwise."""
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

    # -- dropout masks -----------------------------------------------------
    def _rate_applies(self, rate: float) -> bool:
        if self._full_rate_applies:
            return rate > 0.0
        return 0.0 < rate < 1.0

    def _draw_masks(self, batch_size, dim: int, rate: float, count: int):
        if not self._rate_applies(rate):
            return None
        ones = ops.ones((batch_size, dim), dtype=self.compute_dtype)
        return [
            keras.random.dropout(ones, rate, seed=self.seed_generator)
            for _ in range(count)
        ]

    def _draw_all_masks(self, batch_size):
        """`(input_masks, recurrent_masks)`, each `None` or a list of masks."""
        return (
            self._draw_masks(
                batch_size, int(self.kernel.shape[0]), self.dropout, self.mask_count
            ),
            self._draw_masks(
                batch_size, self.units, self.recurrent_dropout, self.mask_count
            ),
        )

    def begin_sequence(self, batch_size, training: bool | None = None) -> None:
        """Draws the dropout masks used at every step of one sequence.

        Args:
            batch_size: batch size of the sequence (int or scalar tensor).
            training: whether the sequence runs in training mode; masks are
                drawn only when it is true and a dropout rate is nonzero.
        """
        self._mask_store.masks = None
        if not training or not (
            self._rate_applies(self.dropout)
            or self._rate_applies(self.recurrent_dropout)
        ):
            return
        if not self.built:
            raise ValueError(
                f"{self.name}: begin_sequence() was called before the cell "
                "was built; call the cell once (symbolically) first."
            )
        self._mask_store.masks = self._draw_all_masks(batch_size)

    def end_sequence(self) -> None:
        """Forgets the masks drawn by `begin_sequence()`."""
        self._mask_store.masks = None

    def uses_dropout_masks(self, training) -> bool:
        """Whether `dropout_masks(x, training)` returns masks now (draws nothing)."""
        if training is False:
            return False
        if getattr(self._mask_store, "masks", None) is not None:
            return True
        return bool(training) and (
            self._rate_applies(self.dropout)
            or self._rate_applies(self.recurrent_dropout)
        )

    def dropout_masks(self, x, training):
        """Returns `(input_masks, recurrent_masks)` for one step.

        Each is `None` (no dropout) or a list of `mask_count` tensors: the
        sequence's masks after `begin_sequence()`, fresh ones otherwise.
        """
        if training is False:
            return None, None
        masks = getattr(self._mask_store, "masks", None)
        if masks is not None:
            return masks
        if not training:
            return None, None
        return self._draw_all_masks(ops.shape(x)[0])

    # -- Layer API ---------------------------------------------------------
    def compute_output_shape(self, input_shape):
        batch = _first_shape(input_shape)[0]
        return [(batch, self.units)] * (1 + len(self._state_names))

    def compute_output_spec(self, inputs, training=None):
        batch = inputs[0].shape[0]
        return [
            keras.KerasTensor((batch, self.units), dtype=self.compute_dtype)
            for _ in range(1 + len(self._state_names))
        ]

    def get_config(self):
        config = super().get_config()
        for name in self._arg_names:
            value = getattr(self, name)
            kind = name.rsplit("_", 1)[-1]
            if kind in _SERIALIZERS:
                value = _SERIALIZERS[kind](value)
            config[name] = value
        return config


_SERIALIZERS = {
    "initializer": keras.initializers.serialize,
    "regularizer": keras.regularizers.serialize,
    "constraint": keras.constraints.serialize,
    "activation": keras.activations.serialize,
}
