"""GRUCell: Keras's gated recurrent unit cell as a cellgraph `RNNCell`."""

from __future__ import annotations

import keras
from keras import ops

from cellgraph.cells._common import KerasCell, check_implementation, project


@keras.saving.register_keras_serializable(package="cellgraph")
class GRUCell(KerasCell):
    """Gated recurrent unit cell: Keras's `GRUCell` as an `RNNCell`.

    Gates in Keras's order (update `z`, reset `r`, candidate `h`):
    `h_t = z * h_tm1 + (1 - z) * activation(x·W_h + r * (h_tm1·U_h + b_rh)
    + b_h)` with the default `reset_after=True` (the cuDNN-compatible
    variant), or with the reset gate applied to `h_tm1` before its
    projection when `reset_after=False`. Its weights are those of
    `keras.layers.GRUCell` (same names, order and shapes; the bias has shape
    `(2, 3 * units)` when `reset_after=True`), so
    `cell.set_weights(keras_cell.get_weights())` reproduces Keras's numbers.

    Dropout follows Keras 3: in training, masks are drawn once per sequence
    and reused at every timestep; one input mask when
    `recurrent_dropout == 0`, otherwise one input mask and one recurrent
    mask per gate (Keras's `implementation=1`).

    Args:
        units: positive integer, dimensionality of the output space.
        activation: activation of the candidate state. Default: `"tanh"`.
            `None` means linear.
        recurrent_activation: activation of the gates. Default:
            `"sigmoid"`.
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
        reset_after: apply the reset gate after the recurrent projection
            (`True`, Keras's default) or before it (`False`).
        seed: random seed for dropout.
        input_dim: optional size of the step input (needed by
            `get_layer()`).
        implementation: Keras's `implementation`, 1 or 2: with 1, one
            dropout mask per gate (3); forced to 1 by a nonzero
            `recurrent_dropout`, as in Keras. Default: 2.
        **kwargs: base layer keyword arguments (`name`, `dtype`, ...).

    Call arguments:
        inputs: list `[x_t, h_tm1]`, shapes `(batch, features)` and
            `(batch, units)`.
        training: Python boolean, whether dropout is active.

    Output shape:
        list `[h_t, h_t]` (output, new state), each `(batch, units)`.

    Example:

    ```python
    cell = cellgraph.cells.GRUCell(4, input_dim=8)
    rnn = cell.get_layer(return_sequences=True, return_state=True)
    y, h = rnn(np.zeros((32, 10, 8), "float32"))  # (32, 10, 4), (32, 4)
    ```
    """

    def __init__(
        self,
        units: int,
        activation="tanh",
        recurrent_activation="sigmoid",
        *,
        reset_after: bool = True,
        implementation: int = 2,
        **kwargs,
    ):
        super().__init__(units, activation, **kwargs)
        self.recurrent_activation = keras.activations.get(recurrent_activation)
        self.reset_after = bool(reset_after)
        implementation = check_implementation(type(self).__name__, implementation)
        self.implementation = 1 if self.recurrent_dropout else implementation
        self.mask_count = 3 if self.implementation == 1 else 1

    def build(self, input_shape):
        input_dim = self.step_input_dim(input_shape)
        u = self.units
        self.add_kernels((input_dim, 3 * u), (u, 3 * u))
        self.add_bias((2, 3 * u) if self.reset_after else (3 * u,))

    def call(self, inputs, training=None):
        x, h_tm1 = inputs
        u = self.units
        x_masks, h_masks = self.dropout_masks(x, training)
        if self.bias is None:
            input_bias = recurrent_bias = None
        elif self.reset_after:
            input_bias, recurrent_bias = self.bias[0], self.bias[1]
        else:
            input_bias, recurrent_bias = self.bias, None

        matrix_x = project(x, self.kernel, x_masks)
        if input_bias is not None:
            matrix_x = ops.add(matrix_x, input_bias)
        x_z, x_r, x_h = ops.split(matrix_x, 3, axis=-1)

        if self.reset_after:
            matrix_h = project(h_tm1, self.recurrent_kernel, h_masks)
            if recurrent_bias is not None:
                matrix_h = ops.add(matrix_h, recurrent_bias)
            h_z, h_r, h_h = ops.split(matrix_h, 3, axis=-1)
        else:
            zr_masks = h_masks
            if h_masks is not None and len(h_masks) > 1:
                zr_masks = h_masks[:2]
            matrix_h = project(h_tm1, self.recurrent_kernel[:, : 2 * u], zr_masks)
            h_z, h_r = ops.split(matrix_h, 2, axis=-1)

        z = self.recurrent_activation(x_z + h_z)
        r = self.recurrent_activation(x_r + h_r)
        if self.reset_after:
            candidate = x_h + r * h_h
        else:
            h_for_h = h_tm1 if h_masks is None else h_tm1 * h_masks[-1]
            candidate = x_h + ops.matmul(r * h_for_h, self.recurrent_kernel[:, 2 * u :])
        hh = self.activation(candidate)
        h = z * h_tm1 + (1.0 - z) * hh
        return [h, h]

    def native_kernel(self, training=None):
        # With `reset_after=True` this is PyTorch's GRU (cuDNN's): Keras's
        # gates z, r, h become PyTorch's r, z, n; the bias rows are PyTorch's
        # input and recurrent biases.
        if not self.reset_after or not self._native_kernel_applies(training):
            return None

        def reorder(matrix, axis):
            z, r, h = ops.split(matrix, 3, axis=axis)
            return ops.concatenate([r, z, h], axis=axis)

        weights = [
            ops.transpose(reorder(self.kernel, 1)),
            ops.transpose(reorder(self.recurrent_kernel, 1)),
        ]
        if self.bias is not None:
            weights += [reorder(self.bias[0], 0), reorder(self.bias[1], 0)]
        return "gru", weights, self.bias is not None

    def get_config(self):
        config = super().get_config()
        config["recurrent_activation"] = keras.activations.serialize(
            self.recurrent_activation
        )
        config["reset_after"] = self.reset_after
        config["implementation"] = self.implementation
        return config
