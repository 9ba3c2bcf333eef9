"""SimpleRNNCell: Keras's fully-connected RNN cell as a cellgraph `RNNCell`."""

from __future__ import annotations

import keras
from keras import ops

from cellgraph.cells._common import DropoutStepLayer, KerasCell, project


@keras.saving.register_keras_serializable(package="cellgraph")
class _SimpleRNNStep(DropoutStepLayer):
    """One step of a simple RNN: `h = activation(x·W + h_tm1·U + b)`.

    Owns `kernel`, `recurrent_kernel` and `bias`, created in the order and
    with the shapes of `keras.layers.SimpleRNNCell`. Called on `[x, h_tm1]`,
    returns `h`.
    """

    _full_rate_applies = True

    def __init__(self, units, **kwargs):
        super().__init__(units=units, **kwargs)

    def build(self, input_shape):
        self._add_kernels(int(input_shape[0][-1]), gates=1)
        self._add_bias((self.units,))

    def call(self, inputs, training=None):
        x, h_tm1 = inputs
        x_masks, h_masks = self._masks(x, training)
        h = project(x, self.kernel, x_masks)
        if self.bias is not None:
            h = ops.add(h, self.bias)
        h = h + project(h_tm1, self.recurrent_kernel, h_masks)
        if self.activation is not None:
            h = self.activation(h)
        return h

    def compute_output_shape(self, input_shape):
        return (input_shape[0][0], self.units)


@keras.saving.register_keras_serializable(package="cellgraph")
class SimpleRNNCell(KerasCell):
    """Fully-connected RNN cell: Keras's `SimpleRNNCell` as an `RNNCell`.

    Computes `h_t = activation(x_t·kernel + h_tm1·recurrent_kernel + bias)`
    and returns `h_t` as both the output and the new state. Its weights are
    those of `keras.layers.SimpleRNNCell` (same names, order and shapes), so
    `cell.set_weights(keras_cell.get_weights())` reproduces Keras's numbers.

    Dropout follows Keras: in training, one input mask and one recurrent
    mask are drawn per sequence and reused at every timestep (see
    `DropoutStepLayer` in `cellgraph/cells/_common.py`).

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

    _step_class = _SimpleRNNStep

    def __init__(
        self,
        units: int,
        activation="tanh",
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
