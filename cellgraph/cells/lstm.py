"""LSTMCell: Keras's long short-term memory cell as a cellgraph `RNNCell`."""

from __future__ import annotations

import keras
from keras import ops

from cellgraph.cells._common import KerasCell, check_implementation, project


def lstm_gates(z, c_tm1, activation, recurrent_activation):
    """`[h, c]` from the gate pre-activations `z = [z_i, z_f, z_c, z_o]`."""
    z_i, z_f, z_c, z_o = ops.split(z, 4, axis=-1)
    i = recurrent_activation(z_i)
    f = recurrent_activation(z_f)
    c = f * c_tm1 + i * activation(z_c)
    o = recurrent_activation(z_o)
    return [o * activation(c), c]


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
        implementation: Keras's `implementation`, 1 or 2: with 1, one
            dropout mask per gate (4); forced to 1 by a nonzero
            `recurrent_dropout`, as in Keras. Default: 2.
        **kwargs: base layer keyword arguments (`name`, `dtype`, ...).

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

    _state_names = ("h", "c")

    def __init__(
        self,
        units: int,
        activation="tanh",
        recurrent_activation="sigmoid",
        *,
        unit_forget_bias: bool = True,
        implementation: int = 2,
        **kwargs,
    ):
        super().__init__(units, activation, **kwargs)
        self.recurrent_activation = keras.activations.get(recurrent_activation)
        self.unit_forget_bias = bool(unit_forget_bias)
        implementation = check_implementation(type(self).__name__, implementation)
        self.implementation = 1 if self.recurrent_dropout else implementation
        self.mask_count = 4 if self.implementation == 1 else 1

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
        input_dim = self.step_input_dim(input_shape)
        u = self.units
        self.add_kernels((input_dim, 4 * u), (u, 4 * u))
        initializer = self._forget_bias_initializer if self.unit_forget_bias else None
        self.add_bias((4 * u,), initializer)

    def call(self, inputs, training=None):
        x, h_tm1, c_tm1 = inputs
        x_masks, h_masks = self.dropout_masks(x, training)
        z = project(x, self.kernel, x_masks)
        z = ops.add(z, project(h_tm1, self.recurrent_kernel, h_masks))
        if self.bias is not None:
            z = ops.add(z, self.bias)
        h, c = lstm_gates(z, c_tm1, self.activation, self.recurrent_activation)
        return [h, h, c]

    def native_kernel(self, training=None):
        # Keras's gate order i, f, c, o is PyTorch's i, f, g, o; PyTorch adds
        # a second (recurrent) bias, here zeros.
        if not self._native_kernel_applies(training):
            return None
        weights = [ops.transpose(self.kernel), ops.transpose(self.recurrent_kernel)]
        if self.bias is not None:
            bias = ops.convert_to_tensor(self.bias)
            weights += [bias, ops.zeros_like(bias)]
        return "lstm", weights, self.bias is not None

    def get_config(self):
        config = super().get_config()
        config["recurrent_activation"] = keras.activations.serialize(
            self.recurrent_activation
        )
        config["unit_forget_bias"] = self.unit_forget_bias
        config["implementation"] = self.implementation
        return config
