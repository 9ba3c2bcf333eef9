"""RHNCell: the recurrent highway network cell (Zilly et al. 2017) as an `RNNCell`."""

from __future__ import annotations

import keras
from keras import ops

from cellgraph.cells._common import KerasCell, project


def _check_depth(cls_name: str, recurrence_depth) -> int:
    if (
        isinstance(recurrence_depth, bool)
        or not isinstance(recurrence_depth, int)
        or recurrence_depth < 1
    ):
        raise ValueError(
            f"{cls_name}: argument `recurrence_depth` must be a positive "
            f"integer. Received: recurrence_depth={recurrence_depth!r}"
        )
    return recurrence_depth


def _get_transform_initializer(value):
    """An initializer; a plain number means a constant."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return keras.initializers.Constant(float(value))
    return keras.initializers.get(value)


def _slice_initializers(initializer, count: int) -> list:
    """`count` copies of `initializer` that draw different values.

    Keras 3 random initializers repeat their values at every call (an
    unseeded one picks its seed once, at creation). Copy `i` is rebuilt from
    the config, with seed `seed + i` when the seed is an integer and a fresh
    seed when it is `None`; copy 0 is `initializer` itself.
    """
    copies = [initializer]
    for i in range(1, count):
        copy = initializer
        if isinstance(initializer, keras.initializers.Initializer):
            config = initializer.get_config()
            if "seed" in config and (
                config["seed"] is None or isinstance(config["seed"], int)
            ):
                if config["seed"] is not None:
                    config["seed"] += i
                copy = type(initializer).from_config(config)
        copies.append(copy)
    return copies


@keras.saving.register_keras_serializable(package="cellgraph")
class RHNCell(KerasCell):
    """Recurrent highway network cell (Zilly et al. 2017).

    One timestep runs `L = recurrence_depth` highway layers on the state,
    the input entering the first one only. With `s_0 = h_tm1` and
    `[l == 1]` equal to 1 for the first layer and 0 otherwise:

    ```
    h_l = activation(x_t·W_H·[l == 1] + s_{l-1}·R_H^l + b_H^l)
    t_l = sigmoid(x_t·W_T·[l == 1] + s_{l-1}·R_T^l + b_T^l)
    s_l = h_l * t_l + s_{l-1} * (1 - t_l)       # coupled carry gate c = 1 - t
    ```

    for `l = 1..L`; the output and the new state are `s_L`. The transform
    biases `b_T^l` start negative (default -2), so that each layer starts
    out mostly carrying its input through, as the paper recommends.

    Weights (in this order):

    - `kernel`, shape `(input_dim, 2 * units)`: `[W_H | W_T]`.
    - `recurrent_kernel`, shape `(recurrence_depth, units, 2 * units)`:
      slice `l - 1` is `[R_H^l | R_T^l]`. Each slice is drawn by its own
      copy of `recurrent_initializer` (so "orthogonal" holds within each
      layer; a seeded initializer uses seeds `seed, seed + 1, ...`).
    - `bias` (when `use_bias`), shape `(recurrence_depth, 2 * units)`: row
      `l - 1` is `[b_H^l | b_T^l]`, initialized with `bias_initializer` and
      `transform_bias_initializer`.

    Dropout (variational, as in the paper and in Keras): in training, one
    input mask for `x_t` and one recurrent mask per highway layer for
    `s_{l-1}` in its projection (not in the carry term) are drawn per
    sequence and reused at every timestep.

    Args:
        units: positive integer, dimensionality of the output space.
        recurrence_depth: positive integer `L`, the number of highway
            layers per timestep.
        activation: activation of the highway candidates `h_l`. Default:
            `"tanh"`. `None` means linear.
        use_bias: whether the cell uses the bias. Default: `True`.
        kernel_initializer: initializer of `kernel`. Default:
            `"glorot_uniform"`.
        recurrent_initializer: initializer of each slice of
            `recurrent_kernel`. Default: `"orthogonal"`.
        bias_initializer: initializer of the candidate biases `b_H^l`.
            Default: `"zeros"`.
        transform_bias_initializer: initializer of the transform-gate
            biases `b_T^l`; a number means a constant. Default: `-2.0`.
        kernel_regularizer: regularizer applied to `kernel`. Default: `None`.
        recurrent_regularizer: regularizer applied to `recurrent_kernel`.
            Default: `None`.
        bias_regularizer: regularizer applied to the bias. Default: `None`.
        kernel_constraint: constraint applied to `kernel`. Default: `None`.
        recurrent_constraint: constraint applied to `recurrent_kernel`
            (a 3-D tensor). Default: `None`.
        bias_constraint: constraint applied to the bias. Default: `None`.
        dropout: float in [0, 1], fraction of the input units to drop.
            Default: 0.
        recurrent_dropout: float in [0, 1], fraction of the state units to
            drop in each highway layer's projection. Default: 0.
        seed: random seed for dropout.
        input_dim: optional size of the step input (needed by
            `get_layer()`).
        **kwargs: base layer keyword arguments (`name`, `dtype`, ...).

    Call arguments:
        inputs: list `[x_t, h_tm1]`, shapes `(batch, features)` and
            `(batch, units)`.
        training: Python boolean, whether dropout is active.

    Output: list `[s_L, s_L]` (output, new state), each `(batch, units)`.

    Example:

    ```python
    cell = cellgraph.cells.RHNCell(16, recurrence_depth=3, input_dim=8)
    rnn = cell.get_layer(return_sequences=True)
    y = rnn(np.zeros((32, 10, 8), "float32"))  # (32, 10, 16)
    ```
    """

    def __init__(
        self,
        units: int,
        recurrence_depth: int,
        activation="tanh",
        *,
        transform_bias_initializer=-2.0,
        **kwargs,
    ):
        super().__init__(units, activation, **kwargs)
        self.recurrence_depth = _check_depth(type(self).__name__, recurrence_depth)
        self.transform_bias_initializer = _get_transform_initializer(
            transform_bias_initializer
        )

    # -- weights ---------------------------------------------------------
    def _recurrent_kernel_initializer(self, shape, dtype=None):
        # One (units, 2 * units) matrix per depth, so that e.g. "orthogonal"
        # holds within each highway layer.
        initializers = _slice_initializers(self.recurrent_initializer, shape[0])
        return ops.stack([init(tuple(shape[1:]), dtype=dtype) for init in initializers])

    def _highway_bias_initializer(self, shape, dtype=None):
        u = self.units
        rows = [
            ops.concatenate([h_init((u,), dtype=dtype), t_init((u,), dtype=dtype)])
            for h_init, t_init in zip(
                _slice_initializers(self.bias_initializer, shape[0]),
                _slice_initializers(self.transform_bias_initializer, shape[0]),
            )
        ]
        return ops.stack(rows)

    def build(self, input_shape):
        input_dim = self.step_input_dim(input_shape)
        u, depth = self.units, self.recurrence_depth
        self.add_kernels(
            (input_dim, 2 * u),
            (depth, u, 2 * u),
            recurrent_initializer=self._recurrent_kernel_initializer,
        )
        self.add_bias((depth, 2 * u), self._highway_bias_initializer)

    # -- dropout: one input mask, one recurrent mask per depth -------------
    def _draw_all_masks(self, batch_size):
        input_dim = int(self.kernel.shape[0])
        return (
            self._draw_masks(batch_size, input_dim, self.dropout, 1),
            self._draw_masks(
                batch_size, self.units, self.recurrent_dropout, self.recurrence_depth
            ),
        )

    def call(self, inputs, training=None):
        x, s = inputs
        x_masks, h_masks = self.dropout_masks(x, training)
        x_proj = project(x, self.kernel, x_masks)
        for depth in range(self.recurrence_depth):
            masks = None if h_masks is None else [h_masks[depth]]
            z = project(s, self.recurrent_kernel[depth], masks)
            if depth == 0:
                z = z + x_proj
            if self.bias is not None:
                z = ops.add(z, self.bias[depth])
            z_h, z_t = ops.split(z, 2, axis=-1)
            h = self.activation(z_h)
            t = ops.sigmoid(z_t)
            s = h * t + s * (1.0 - t)
        return [s, s]

    def get_config(self):
        config = super().get_config()
        config["recurrence_depth"] = self.recurrence_depth
        config["transform_bias_initializer"] = keras.initializers.serialize(
            self.transform_bias_initializer
        )
        return config
