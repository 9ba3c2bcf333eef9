"""LSTMCell: Keras's long short-term memory cell as a cellgraph `RNNCell`."""

from __future__ import annotations

import keras
from keras import ops

from cellgraph.cells._common import DropoutStepLayer, KerasCell, project


def lstm_gates(z, c_tm1, activation, recurrent_activation):
    """`[h, c]` from the gate pre-activations `z = [z_i, z_f, z_c, z_o]`."""
    z_i, z_f, z_c, z_o = ops.split(z, 4, axis=-1)
    i = recurrent_activation(z_i)
    f = recurrent_activation(z_f)
    c = f * c_tm1 + i * activation(z_c)
    o = recurrent_activation(z_o)
    return [o * activation(c), c]


@keras.saving.register_keras_serializable(package="cellgraph")
class _LSTMStep(DropoutStepLayer):
    """One LSTM step with Keras's weights and gate order (i, f, c, o).

    Called on `[x, h_tm1, c_tm1]`, returns `[h, c]`.
    """

    def __init__(
        self,
        units,
        recurrent_activation="sigmoid",
        unit_forget_bias=True,
        **kwargs,
    ):
        super().__init__(units=units, **kwargs)
        self.recurrent_activation = keras.activations.get(recurrent_activation)
        self.unit_forget_bias = bool(unit_forget_bias)

    def _forget_bias_initializer(self, shape, dtype=None):
        # Keras's layout: [bias_init(u), ones(u), bias_init(2u)].
        u = self.units
        return ops.concatenate(
            [
                self.bias_initializer((u,), dtype=dtype),
                keras.initializers.Ones()((u,), dtype=dtype),
                self.bias_initializer((2 * u,), dtype=dtype),
            ]
        )

    def build(self, input_shape):
        self._add_kernels(int(input_shape[0][-1]), gates=4)
        initializer = self._forget_bias_initializer if self.unit_forget_bias else None
        self._add_bias((4 * self.units,), initializer)

    def call(self, inputs, training=None):
        x, h_tm1, c_tm1 = inputs
        x_masks, h_masks = self._masks(x, training)
        z = project(x, self.kernel, x_masks)
        z = ops.add(z, project(h_tm1, self.recurrent_kernel, h_masks))
        if self.bias is not None:
            z = ops.add(z, self.bias)
        return lstm_gates(z, c_tm1, self.activation, self.recurrent_activation)

    def compute_output_shape(self, input_shape):
        shape = (input_shape[0][0], self.units)
        return [shape, shape]

    def get_config(self):
        config = super().get_config()
        config["recurrent_activation"] = keras.activations.serialize(
            self.recurrent_activation
        )
        config["unit_forget_bias"] = self.unit_forget_bias
        return config


@keras.saving.register_keras_serializable(package="cellgraph")
class LSTMCell(KerasCell):
    """Long short-term memory cell: Keras's `LSTMCell` as an `RNNCell`.

    Gates in Keras's order (input `i`, forget `f`, candidate `c`, output
    `o`): `c_t = f * c_tm1 + i * activation(z_c)`,
    `h_t = o * activation(c_t)`. The states are `[h, c]`; the output is
    `h_t`. Its weights are those of `keras.layers.LSTMCell` (same names,
    order and shapes), so `cell.set_weights(keras_cell.get_weights())`
    reproduces Keras's numbers.

    Dropout follows Keras 3: in training, masks are drawn once per sequence
    and reused at every timestep; one input mask when
    `recurrent_dropout == 0`, otherwise one input mask and one recurrent
    mask per gate (Keras's `implementation=1`).

    Args:
        units: positive integer, dimensionality of the output space.
        activation: activation of the candidate and of the output. Default:
            `"tanh"`. `None` means linear.
        recurrent_activation: activation of the gates. Default:
            `"sigmoid"`.
        use_bias: whether the cell uses a bias vector. Default: `True`.
        kernel_initializer: initializer of `kernel`. Default:
            `"glorot_uniform"`.
        recurrent_initializer: initializer of `recurrent_kernel`. Default:
            `"orthogonal"`.
        bias_initializer: initializer of the bias. Default: `"zeros"`.
        unit_forget_bias: if `True`, the forget gate's bias is initialized
            to ones (the other parts use `bias_initializer`). Default:
            `True`.
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
        **kwargs: base layer keyword arguments (`name`, `dtype`, ...), and
            Keras's `implementation` (1: one dropout mask per gate).

    Call arguments:
        inputs: list `[x_t, h_tm1, c_tm1]`, shapes `(batch, features)`,
            `(batch, units)`, `(batch, units)`.
        training: Python boolean, whether dropout is active.

    Output shape:
        list `[h_t, h_t, c_t]` (output, new states), each
        `(batch, units)`.

    Example:

    ```python
    cell = cellgraph.cells.LSTMCell(4, input_dim=8)
    rnn = cell.get_layer(return_state=True)
    y, h, c = rnn(np.zeros((32, 10, 8), "float32"))  # each (32, 4)
    ```
    """

    _step_class = _LSTMStep
    _num_states = 2

    def __init__(
        self,
        units: int,
        activation="tanh",
        recurrent_activation="sigmoid",
        use_bias: bool = True,
        kernel_initializer="glorot_uniform",
        recurrent_initializer="orthogonal",
        bias_initializer="zeros",
        unit_forget_bias: bool = True,
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
        implementation = kwargs.pop("implementation", 2)
        super().__init__(
            units=units,
            activation=activation,
            use_bias=use_bias,
            kernel_initializer=kernel_initializer,
            recurrent_initializer=recurrent_initializer,
            bias_initializer=bias_initializer,
            kernel_regularizer=kernel_regularizer,
            recurrent_regularizer=recurrent_regularizer,
            bias_regularizer=bias_regularizer,
            kernel_constraint=kernel_constraint,
            recurrent_constraint=recurrent_constraint,
            bias_constraint=bias_constraint,
            dropout=dropout,
            recurrent_dropout=recurrent_dropout,
            seed=seed,
            input_dim=input_dim,
            **kwargs,
        )
        self.recurrent_activation = keras.activations.get(recurrent_activation)
        self.unit_forget_bias = bool(unit_forget_bias)
        self.implementation = 1 if self.recurrent_dropout else implementation

    def _step_kwargs(self) -> dict:
        return {
            **super()._step_kwargs(),
            "recurrent_activation": self.recurrent_activation,
            "unit_forget_bias": self.unit_forget_bias,
            "mask_count": 4 if self.implementation == 1 else 1,
        }

    def get_config(self):
        config = super().get_config()
        config["recurrent_activation"] = keras.activations.serialize(
            self.recurrent_activation
        )
        config["unit_forget_bias"] = self.unit_forget_bias
        config["implementation"] = self.implementation
        return config
