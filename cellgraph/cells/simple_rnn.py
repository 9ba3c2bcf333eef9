"""SimpleRNNCell: Keras's fully-connected RNN cell as a cellgraph `RNNCell`."""

from __future__ import annotations

import keras
from keras import ops

from cellgraph.cells._common import KerasCell, project


@keras.saving.register_keras_serializable(package="cellgraph")
class SimpleRNNCell(KerasCell):
    """Fully-connected RNN cell: Keras's `SimpleRNNCell` as an `RNNCell`.

    Computes `h_t = activation(x_t·kernel + h_tm1·recurrent_kernel + bias)`
    and returns `h_t` as both the output and the new state. Its weights are
    those of `keras.layers.SimpleRNNCell` (same names, order and shapes), so
    `cell.set_weights(keras_cell.get_weights())` reproduces Keras's numbers.

    Dropout follows Keras: in training, one input mask and one recurrent
    mask are drawn per sequence and reused at every timestep (see
    `KerasCell` in `cellgraph/cells/_common.py`).

    Args:
        units: positive integer, dimensionality of the output space.
        activation: activation function. Default: `"tanh"`. `None` means
            linear.
        use_bias: whether the cell uses a bias vector. Default: `True`.
        kernel_initializer: initializer of the `kernel` weights matrix.
            Default: `"glorot_uniform"`.
        recurrent_initializer: initializer of the `recurrent_kernel`
            weights matrix. Default: `"orthogonal"`.
        bias_initializer: initializer of the bias vector. Default: `"zeros"`.
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
        inputs: list `[x_t, h_tm1]`, shapes `(batch, features)` and
            `(batch, units)`.
        training: Python boolean, whether dropout is active.

    Output shape:
        list `[h_t, h_t]` (output, new state), each `(batch, units)`.

    Example:

    ```python
    cell = cellgraph.cells.SimpleRNNCell(4, input_dim=8)
    rnn = cell.get_layer(return_sequences=True)
    y = rnn(np.zeros((32, 10, 8), "float32"))  # (32, 10, 4)
    ```
    """

    _full_rate_applies = True

    def build(self, input_shape):
        input_dim = self.step_input_dim(input_shape)
        self.add_kernels((input_dim, self.units), (self.units, self.units))
        self.add_bias((self.units,))

    def call(self, inputs, training=None):
        x, h_tm1 = inputs
        x_masks, h_masks = self.dropout_masks(x, training)
        h = project(x, self.kernel, x_masks)
        if self.bias is not None:
            h = ops.add(h, self.bias)
        h = h + project(h_tm1, self.recurrent_kernel, h_masks)
        if self.activation is not None:
            h = self.activation(h)
        return [h, h]
