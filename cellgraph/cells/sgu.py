"""SGUCell: the simple gated unit of the superloop project as an `RNNCell`."""

from __future__ import annotations

import keras
from keras import ops

from cellgraph.cells._common import KerasCell, project


@keras.saving.register_keras_serializable(package="cellgraph")
class SGUCell(KerasCell):
    """Simple gated unit (SGU), the recurrent cell of the superloop project.

    One step mixes the previous state and a fresh candidate computed from the
    input alone, with a gate that sees both:

    ```
    f_t   = gate_activation(x_t·W2 + h_tm1·W1 + b_f)      # in [0, 1]
    c_t   = activation(x_t·W3 + b3)
    out_t = f_t * h_tm1 + (1 - f_t) * c_t
    ```

    `out_t` is both the output and the new state. The gate function must map
    to `[0, 1]` so that `out_t` is a convex combination of `h_tm1` and `c_t`;
    the default is `"hard_sigmoid"`, the "sigmoid-like" gate of the
    original (Keras 3's `hard_sigmoid` is `clip(z / 6 + 1/2, 0, 1)`; the
    Keras 2 version the original ran on had slope 0.2). The original used a
    ReLU for the candidate; here `activation` defaults to `"tanh"`, as in
    Keras's cells, so the state stays bounded.

    Weights (in this order):

    - `kernel`, shape `(input_dim, 2 * units)`: `[W2 | W3]`, the input's
      contribution to the gate, then the candidate's kernel.
    - `recurrent_kernel`, shape `(units, units)`: `W1`, the state's
      contribution to the gate.
    - `bias` (when `use_bias`), shape `(2 * units,)`: `[b_f | b3]`.

    Dropout follows Keras: in training, one input mask (applied to `x_t` in
    both projections) and one recurrent mask (applied to `h_tm1` in the
    gate's projection, not to the carried `f_t * h_tm1`) are drawn per
    sequence and reused at every step.

    Args:
        units: positive integer, dimensionality of the output space.
        activation: activation of the candidate `c_t`. Default: `"tanh"`.
            `None` means linear.
        gate_activation: activation of the gate `f_t`; must return values in
            `[0, 1]`. Default: `"hard_sigmoid"`.
        use_bias: whether the cell uses the bias vector. Default: `True`.
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
        recurrent_dropout: float in [0, 1], fraction of the state units to
            drop in the gate's projection. Default: 0.
        seed: random seed for dropout.
        input_dim: optional size of the step input (needed by
            `get_layer()`).
        **kwargs: base layer keyword arguments (`name`, `dtype`, ...).

    Call arguments:
        inputs: list `[x_t, h_tm1]`, shapes `(batch, features)` and
            `(batch, units)`.
        training: Python boolean, whether dropout is active.

    Output: list `[out_t, out_t]` (output, new state), each
    `(batch, units)`.

    Example:

    ```python
    cell = cellgraph.cells.SGUCell(16, input_dim=8)
    rnn = cell.get_layer(return_sequences=True)
    y = rnn(np.zeros((32, 10, 8), "float32"))  # (32, 10, 16)
    ```
    """

    def __init__(
        self,
        units: int,
        activation="tanh",
        gate_activation="hard_sigmoid",
        **kwargs,
    ):
        super().__init__(units, activation, **kwargs)
        self.gate_activation = keras.activations.get(gate_activation)

    def build(self, input_shape):
        input_dim = self.step_input_dim(input_shape)
        u = self.units
        self.add_kernels((input_dim, 2 * u), (u, u))
        self.add_bias((2 * u,))

    def call(self, inputs, training=None):
        x, h_tm1 = inputs
        x_masks, h_masks = self.dropout_masks(x, training)
        z = project(x, self.kernel, x_masks)
        if self.bias is not None:
            z = ops.add(z, self.bias)
        z_f, z_c = ops.split(z, 2, axis=-1)
        f = self.gate_activation(z_f + project(h_tm1, self.recurrent_kernel, h_masks))
        out = f * h_tm1 + (1.0 - f) * self.activation(z_c)
        return [out, out]

    def get_config(self):
        config = super().get_config()
        config["gate_activation"] = keras.activations.serialize(self.gate_activation)
        return config
