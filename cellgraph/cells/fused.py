"""`FusedCellStack`: `n` stacked cells of one kind as one layer, weights stacked.

A deep stack of identical cells (the superloop's 32 SGU layers) is slow to
build and compile on TensorFlow: its cost grows with the number of ops and
of variables the loop captures. `FusedCellStack` computes exactly what the
unfused stack `cell_0 -> cell_1 -> ... -> cell_{n-1}` computes, but holds the
weights of its layers as a few stacked tensors and projects the states of
all layers in one batched matmul per step. `FusedCellStack.from_cells()`
and `to_cells()` (and the array functions `fuse_weights` /
`unfuse_weights`) convert weights both ways.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

from cellgraph.cells._common import KerasCell, check_implementation, project
from cellgraph.cells.gru import GRUCell
from cellgraph.cells.lstm import LSTMCell, lstm_gates
from cellgraph.cells.sgu import SGUCell
from cellgraph.cells.simple_rnn import SimpleRNNCell

# kind -> (cell class, input gates, recurrent gates, state parts)
KINDS = {
    "sgu": (SGUCell, 2, 1, ("h",)),
    "gru": (GRUCell, 3, 3, ("h",)),
    "lstm": (LSTMCell, 4, 4, ("h", "c")),
    "simple_rnn": (SimpleRNNCell, 1, 1, ("h",)),
}
_KIND_OF_CLASS = {cls: kind for kind, (cls, *_) in KINDS.items()}


def layer_prefix(kind: str) -> str:
    """The name prefix of the unfused layers: `"sgu"`, `"gru"`, `"simplernn"`."""
    name = KINDS[kind][0].__name__
    return name[: -len("Cell")].lower()


class _PerLayer:
    """Applies a regularizer or constraint to each layer's slice of a stack.

    A stacked weight `(n, ...)` then gets exactly the penalty (the sum over
    layers) and the projection that `n` separate weights would get.
    """

    def __init__(self, function, reduce: bool):
        self.function = function
        self.reduce = reduce

    def __call__(self, weight):
        weight = ops.convert_to_tensor(weight)
        parts = [self.function(part) for part in ops.unstack(weight)]
        if self.reduce:
            total = parts[0]
            for part in parts[1:]:
                total = total + part
            return total
        return ops.stack(parts)


def _per_layer(function, reduce: bool):
    return None if function is None else _PerLayer(function, reduce)


class _StackedInitializer:
    """Initializes each layer's slice of a stack as one layer's weight."""

    def __init__(self, initializer, count: int):
        self.initializer = initializer
        self.count = count

    def __call__(self, shape, dtype=None):
        return ops.stack(
            [self.initializer(tuple(shape[1:]), dtype=dtype) for _ in range(self.count)]
        )


@keras.saving.register_keras_serializable(package="cellgraph")
class FusedCellStack(KerasCell):
    """`layers` stacked cells of one kind and size as one layer.

    Computes exactly what the stack of `layers` cells of `cellgraph.cells`
    (`SGUCell`, `GRUCell`, `LSTMCell` or `SimpleRNNCell`, all with `units`
    units and the same arguments) computes when each feeds the next:

    ```
    h = x_t
    for i in range(layers):
        h, *states_t[i] = cell_i([h, *states_tm1[i]])
    output_t = h
    ```

    but the weights of the layers are held as stacked tensors (4 variables,
    whatever `layers` is) and the recurrent projections of all layers are
    one batched matmul per step. On TensorFlow, where the build and compile
    time of a loop grows with its ops and captured variables, this makes a
    deep stack build and train faster; the numbers are those of the unfused
    cells to float rounding (tested to 1e-6, outputs, states and
    gradients). Measured on the superloop shape (32 x SGU(16), 64 steps):
    TensorFlow's first training step 0.45x the unfused stack's, steady step
    on par; on JAX it is slower (first step ~3x, steady ~1.6x): use it on
    TensorFlow.

    Weights (in this order; `g` input gates, `r` recurrent gates: SGU 2/1,
    GRU 3/3, LSTM 4/4, SimpleRNN 1/1):

    - `kernel`, `(input_dim, g * units)`: layer 0's kernel (its input is
      the step input, of any size);
    - `kernels_rest`, `(layers - 1, units, g * units)`: the kernels of
      layers 1, 2, ... (absent when `layers == 1`);
    - `recurrent_kernels`, `(layers, units, r * units)`;
    - `biases` (when `use_bias`), `(layers, *bias_shape)`, the cell's bias
      shape (GRU with `reset_after=True`: `(2, 3 * units)`).

    Layer `i`'s slices are exactly the `kernel`, `recurrent_kernel` and
    `bias` of the unfused `cell_i`: `from_cells()`, `to_cells()`,
    `fuse_weights()` and `unfuse_weights()` convert between them.
    Initializers, regularizers and constraints apply to each layer's slice
    as they would to the unfused cell's weight.

    States: the states of every layer in order, layer 0 first
    (`[h_0, h_1, ...]`; LSTM: `[h_0, c_0, h_1, c_1, ...]`), each
    `(units,)`, named in `state_names` as the unfused cells of a
    `Superloop` are: `"sgu_0/h"`, `"lstm_3/c"` (see `layer_names`).

    Dropout is the unfused cells' (Keras 3's): in training, each layer gets
    its own input and recurrent masks, drawn once per sequence by
    `begin_sequence()` and reused at every step (fresh ones per call
    outside a sequence; none in inference). Layer 0's input masks have the
    step input's width, the other layers' `units`. GRU and LSTM with a
    nonzero `recurrent_dropout` use `implementation=1`, one mask per gate,
    as the cells do; the recurrent projections then stay one batched
    matmul, on the masked states. Sequence masks are the engine's business
    and apply as for the unfused cells.

    Args:
        cell: `"sgu"`, `"gru"`, `"lstm"` or `"simple_rnn"` (or the cell
            class).
        layers: positive integer, the number of stacked cells.
        units: positive integer, the units of every cell.
        activation: the cells' `activation`. Default: `"tanh"`.
        recurrent_activation: GRU and LSTM gates' activation. Default:
            `"sigmoid"`.
        gate_activation: SGU gate's activation. Default: `"hard_sigmoid"`.
        reset_after: GRU's `reset_after`. Default: `True`.
        unit_forget_bias: LSTM's `unit_forget_bias`. Default: `True`.
        implementation: GRU and LSTM's `implementation`, 1 or 2 (with 1,
            one dropout mask per gate; forced to 1 by a nonzero
            `recurrent_dropout`). Default: `None`, which is 2 for GRU and
            LSTM; must be `None` for SGU and SimpleRNN.
        use_bias, kernel_initializer, recurrent_initializer,
            bias_initializer, kernel_regularizer, recurrent_regularizer,
            bias_regularizer, kernel_constraint, recurrent_constraint,
            bias_constraint, dropout, recurrent_dropout, seed, input_dim:
            as in the cells (`dropout` and `recurrent_dropout` apply to
            every layer).
        **kwargs: base layer keyword arguments (`name`, `dtype`, ...).

    Call arguments:
        inputs: list `[x_t, *states_tm1]`: `x_t` `(batch, input_dim)` and
            `layers * states_per_layer` states, each `(batch, units)`.
        training: Python boolean, whether dropout is active.

    Output shape:
        list `[output_t, *states_t]`, each `(batch, units)`.

    Example:

    ```python
    stack = cellgraph.cells.FusedCellStack("sgu", layers=4, units=8, input_dim=3)
    rnn = stack.get_layer(return_sequences=True)
    y = rnn(np.zeros((2, 5, 3), "float32"))  # (2, 5, 8)
    cells = stack.to_cells()  # 4 SGUCell(8), the same weights
    ```
    """

    def __init__(
        self,
        cell="sgu",
        layers: int = 2,
        units: int = 16,
        activation="tanh",
        recurrent_activation=None,
        gate_activation=None,
        *,
        reset_after: bool = True,
        unit_forget_bias: bool = True,
        implementation: int | None = None,
        **kwargs,
    ):
        kind = _kind(cell)
        if isinstance(layers, bool) or not isinstance(layers, int) or layers < 1:
            raise ValueError(
                "FusedCellStack: argument `layers` must be a positive integer. "
                f"Received: layers={layers!r}"
            )
        super().__init__(units, activation, **kwargs)
        if kind in ("gru", "lstm"):
            # As in GRUCell/LSTMCell: a nonzero recurrent_dropout forces
            # implementation=1, which draws one mask per gate.
            implementation = check_implementation(
                "FusedCellStack", 2 if implementation is None else implementation
            )
            self.implementation = 1 if self.recurrent_dropout else implementation
            if self.implementation == 1:
                self.mask_count = KINDS[kind][1]
        elif implementation is not None:
            raise ValueError(
                "FusedCellStack: argument `implementation` is for cell='gru' "
                f"or 'lstm'. Received: cell={kind!r}, "
                f"implementation={implementation!r}"
            )
        else:
            self.implementation = None
        # SimpleRNNCell applies a rate of 1 (drops everything), as Keras's.
        self._full_rate_applies = KINDS[kind][0]._full_rate_applies
        if kind == "sgu" and recurrent_activation is not None:
            raise ValueError(
                "FusedCellStack: an SGU has no `recurrent_activation`; its "
                "gate's is `gate_activation`. Received: "
                f"recurrent_activation={recurrent_activation!r}"
            )
        if kind != "sgu" and gate_activation is not None:
            raise ValueError(
                f"FusedCellStack: argument `gate_activation` is for cell='sgu' "
                f"(GRU and LSTM have `recurrent_activation`). Received: "
                f"cell={kind!r}, gate_activation={gate_activation!r}"
            )
        self.cell = kind
        self.num_layers = layers
        self.recurrent_activation = (
            keras.activations.get(recurrent_activation or "sigmoid")
            if kind in ("gru", "lstm")
            else None
        )
        self.gate_activation = (
            keras.activations.get(gate_activation or "hard_sigmoid")
            if kind == "sgu"
            else None
        )
        self.reset_after = bool(reset_after)
        self.unit_forget_bias = bool(unit_forget_bias)
        _, self._input_gates, self._recurrent_gates, parts = KINDS[kind]
        self._parts = parts

    # -- states ------------------------------------------------------------
    @property
    def layer_names(self) -> list[str]:
        """The names of the unfused cells: `["sgu_0", "sgu_1", ...]`."""
        prefix = layer_prefix(self.cell)
        return [f"{prefix}_{i}" for i in range(self.num_layers)]

    @property
    def state_names(self) -> list[str]:
        """`"<layer>/<part>"` per state, layer by layer: `"lstm_0/h"`, ..."""
        return [f"{name}/{part}" for name in self.layer_names for part in self._parts]

    @property
    def state_shapes(self) -> list[tuple]:
        return [(self.units,)] * (self.num_layers * len(self._parts))

    # -- building ----------------------------------------------------------
    def _bias_shape(self) -> tuple:
        u = self.units
        if self.cell == "gru" and self.reset_after:
            return (2, 3 * u)
        return (self._input_gates * u,)

    def _bias_initializer(self):
        if self.cell != "lstm" or not self.unit_forget_bias:
            return self.bias_initializer
        u = self.units

        def initializer(shape, dtype=None):
            return ops.concatenate(
                [
                    self.bias_initializer((u,), dtype=dtype),
                    keras.initializers.Ones()((u,), dtype=dtype),
                    self.bias_initializer((2 * u,), dtype=dtype),
                ]
            )

        return initializer

    def build(self, input_shape):
        input_dim = self.step_input_dim(input_shape)
        n, u = self.num_layers, self.units
        g, r = self._input_gates * u, self._recurrent_gates * u
        self.kernel = self.add_weight(
            shape=(input_dim, g),
            name="kernel",
            initializer=self.kernel_initializer,
            regularizer=self.kernel_regularizer,
            constraint=self.kernel_constraint,
        )
        self.kernels_rest = None
        if n > 1:
            self.kernels_rest = self.add_weight(
                shape=(n - 1, u, g),
                name="kernels_rest",
                initializer=_StackedInitializer(self.kernel_initializer, n - 1),
                regularizer=_per_layer(self.kernel_regularizer, True),
                constraint=_per_layer(self.kernel_constraint, False),
            )
        self.recurrent_kernels = self.add_weight(
            shape=(n, u, r),
            name="recurrent_kernels",
            initializer=_StackedInitializer(self.recurrent_initializer, n),
            regularizer=_per_layer(self.recurrent_regularizer, True),
            constraint=_per_layer(self.recurrent_constraint, False),
        )
        self.biases = None
        if self.use_bias:
            self.biases = self.add_weight(
                shape=(n, *self._bias_shape()),
                name="biases",
                initializer=_StackedInitializer(self._bias_initializer(), n),
                regularizer=_per_layer(self.bias_regularizer, True),
                constraint=_per_layer(self.bias_constraint, False),
            )

    # -- dropout masks -----------------------------------------------------
    def _draw_all_masks(self, batch_size):
        """`(input_masks, recurrent_masks)`, each `None` or one entry per layer.

        Each entry is the unfused cell's: a list of `mask_count` masks,
        `(batch, input_dim)` for layer 0's input and `(batch, units)`
        otherwise. Drawn layer by layer, each layer in Keras's order (its
        input masks, then its recurrent masks), so a one-layer stack draws
        the masks of the cell with the same `seed`.
        """
        input_applies = self._rate_applies(self.dropout)
        recurrent_applies = self._rate_applies(self.recurrent_dropout)
        if not (input_applies or recurrent_applies):
            return None, None
        input_masks, recurrent_masks = [], []
        for i in range(self.num_layers):
            dim = int(self.kernel.shape[0]) if i == 0 else self.units
            input_masks.append(
                self._draw_masks(batch_size, dim, self.dropout, self.mask_count)
            )
            recurrent_masks.append(
                self._draw_masks(
                    batch_size, self.units, self.recurrent_dropout, self.mask_count
                )
            )
        return (
            input_masks if input_applies else None,
            recurrent_masks if recurrent_applies else None,
        )

    def _recurrent_projection(self, h_tm1, recurrent, masks):
        """Every layer's `h_tm1[i] @ recurrent[i]`, as one batched matmul.

        With recurrent dropout, column block `g` of layer `i`'s kernel sees
        `h_tm1[i] * masks[i][g]` (or `masks[i][0]` with one mask), as
        `project()` does in the unfused cell.
        """
        states = ops.stack(h_tm1)  # (layers, batch, units)
        if masks is None:
            return ops.unstack(ops.matmul(states, recurrent))
        blocks = int(recurrent.shape[-1]) // self.units
        if len(masks[0]) == 1:
            return ops.unstack(
                ops.matmul(states * ops.stack([m[0] for m in masks]), recurrent)
            )
        n, u = self.num_layers, self.units
        # (layers, blocks, batch, units) @ (layers, blocks, units, units)
        masked = ops.stack(
            [ops.stack(list(m[:blocks])) for m in masks]
        ) * ops.expand_dims(states, 1)
        kernels = ops.transpose(ops.reshape(recurrent, (n, u, blocks, u)), (0, 2, 1, 3))
        projected = ops.matmul(masked, kernels)  # (layers, blocks, batch, units)
        projected = ops.transpose(projected, (0, 2, 1, 3))
        return ops.unstack(ops.reshape(projected, (n, -1, blocks * u)))

    # -- one step ----------------------------------------------------------
    def call(self, inputs, training=None):
        x, *states = inputs
        n, k, u = self.num_layers, len(self._parts), self.units
        x_masks, h_masks = self.dropout_masks(x, training)
        if x_masks is None:
            x_masks = [None] * n
        h_tm1 = [states[i * k] for i in range(n)]
        # `.value`: the variables as tensors (autocast under mixed precision).
        kernels = [self.kernel]
        if self.kernels_rest is not None:
            kernels += ops.unstack(self.kernels_rest.value)
        biases = [None] * n if self.biases is None else ops.unstack(self.biases.value)
        # The recurrent projections of all layers, one batched matmul.
        recurrent = self.recurrent_kernels.value
        if self.cell == "gru" and not self.reset_after:
            candidate_kernels = ops.unstack(recurrent[:, :, 2 * u :])
            recurrent = recurrent[:, :, : 2 * u]
        projected = self._recurrent_projection(h_tm1, recurrent, h_masks)
        h, new_states = x, []
        for i in range(n):
            if self.cell == "sgu":
                h = self._sgu(
                    h, h_tm1[i], kernels[i], biases[i], projected[i], x_masks[i]
                )
                new_states.append(h)
            elif self.cell == "simple_rnn":
                h = self._simple_rnn(h, kernels[i], biases[i], projected[i], x_masks[i])
                new_states.append(h)
            elif self.cell == "lstm":
                z = ops.add(project(h, kernels[i], x_masks[i]), projected[i])
                if biases[i] is not None:
                    z = ops.add(z, biases[i])
                h, c = lstm_gates(
                    z, states[i * k + 1], self.activation, self.recurrent_activation
                )
                new_states += [h, c]
            else:
                candidate = None
                if not self.reset_after:
                    h_for_h = h_tm1[i] if h_masks is None else h_tm1[i] * h_masks[i][-1]
                    candidate = (candidate_kernels[i], h_for_h)
                h = self._gru(
                    h,
                    h_tm1[i],
                    kernels[i],
                    biases[i],
                    projected[i],
                    candidate,
                    x_masks[i],
                )
                new_states.append(h)
        return [h, *new_states]

    def _sgu(self, x, h_tm1, kernel, bias, projected, x_masks):
        z = project(x, kernel, x_masks)
        if bias is not None:
            z = ops.add(z, bias)
        z_f, z_c = ops.split(z, 2, axis=-1)
        f = self.gate_activation(z_f + projected)
        return f * h_tm1 + (1.0 - f) * self.activation(z_c)

    def _simple_rnn(self, x, kernel, bias, projected, x_masks):
        h = project(x, kernel, x_masks)
        if bias is not None:
            h = ops.add(h, bias)
        return self.activation(h + projected)

    def _gru(self, x, h_tm1, kernel, bias, projected, candidate, x_masks):
        # `candidate`: `(kernel, masked h_tm1)` of the candidate with
        # `reset_after=False`, `None` otherwise.
        if bias is None:
            input_bias = recurrent_bias = None
        elif self.reset_after:
            input_bias, recurrent_bias = bias[0], bias[1]
        else:
            input_bias, recurrent_bias = bias, None
        matrix_x = project(x, kernel, x_masks)
        if input_bias is not None:
            matrix_x = ops.add(matrix_x, input_bias)
        x_z, x_r, x_h = ops.split(matrix_x, 3, axis=-1)
        if self.reset_after:
            matrix_h = projected
            if recurrent_bias is not None:
                matrix_h = ops.add(matrix_h, recurrent_bias)
            h_z, h_r, h_h = ops.split(matrix_h, 3, axis=-1)
        else:
            h_z, h_r = ops.split(projected, 2, axis=-1)
        z = self.recurrent_activation(x_z + h_z)
        r = self.recurrent_activation(x_r + h_r)
        if self.reset_after:
            hh = x_h + r * h_h
        else:
            candidate_kernel, h_for_h = candidate
            hh = x_h + ops.matmul(r * h_for_h, candidate_kernel)
        return z * h_tm1 + (1.0 - z) * self.activation(hh)

    # -- Layer API ---------------------------------------------------------
    def compute_output_shape(self, input_shape):
        batch = input_shape[0][0]
        return [(batch, self.units)] * (1 + len(self.state_shapes))

    def compute_output_spec(self, inputs, training=None):
        batch = inputs[0].shape[0]
        return [
            keras.KerasTensor((batch, self.units), dtype=self.compute_dtype)
            for _ in range(1 + len(self.state_shapes))
        ]

    def get_config(self):
        config = super().get_config()
        serialize = keras.activations.serialize
        config.update(
            cell=self.cell,
            layers=self.num_layers,
            recurrent_activation=None
            if self.recurrent_activation is None
            else serialize(self.recurrent_activation),
            gate_activation=None
            if self.gate_activation is None
            else serialize(self.gate_activation),
            reset_after=self.reset_after,
            unit_forget_bias=self.unit_forget_bias,
            implementation=self.implementation,
        )
        return config

    # -- conversion to and from the unfused cells ------------------------
    def cell_config(self) -> dict:
        """The arguments of one unfused cell (without `name`/`input_dim`)."""
        config = self.get_config()
        for key in ("cell", "layers", "name", "input_dim", "trainable"):
            config.pop(key, None)
        if self.cell != "sgu":
            config.pop("gate_activation")
        if self.cell not in ("gru", "lstm"):
            config.pop("recurrent_activation")
        if self.cell != "gru":
            config.pop("reset_after")
        if self.cell != "lstm":
            config.pop("unit_forget_bias")
        if self.cell not in ("gru", "lstm"):
            config.pop("implementation")
        return config

    @classmethod
    def from_cells(cls, cells, **kwargs) -> FusedCellStack:
        """A fused stack equal to `cells` (built), their weights copied.

        Args:
            cells: a list of built cells of one kind (`SGUCell`, `GRUCell`,
                `LSTMCell` or `SimpleRNNCell`) with the same arguments, each
                fed by the previous one (`units` inputs from layer 1 on).
            **kwargs: base layer keyword arguments of the stack (`name`).

        Returns:
            A built `FusedCellStack` computing what the cells compute.
        """
        if not isinstance(cells, (list, tuple)) or not cells:
            raise ValueError(
                "FusedCellStack.from_cells(): argument `cells` must be a "
                f"non-empty list of cells. Received: cells={cells!r}"
            )
        first = cells[0]
        kind = _KIND_OF_CLASS.get(type(first))
        if kind is None:
            raise TypeError(
                "FusedCellStack.from_cells(): argument `cells` must hold "
                f"{sorted(c.__name__ for c in _KIND_OF_CLASS)}. Received: "
                f"cells[0]={type(first).__name__}"
            )
        reference = _comparable_config(first)
        for i, cell in enumerate(cells):
            if type(cell) is not type(first) or _comparable_config(cell) != reference:
                raise ValueError(
                    "FusedCellStack.from_cells(): argument `cells` must be "
                    f"cells of one kind with the same arguments; cells[{i}] "
                    f"({cell.name}) differs from cells[0] ({first.name}). "
                    f"Received: {_comparable_config(cell)} vs {reference}"
                )
            if not cell.built:
                raise ValueError(
                    "FusedCellStack.from_cells(): argument `cells` must be "
                    f"built (their weights are copied); cells[{i}] "
                    f"({cell.name}) is not. Call the cells once first."
                )
            if i and int(cell.kernel.shape[0]) != first.units:
                raise ValueError(
                    "FusedCellStack.from_cells(): cells[1:] must take the "
                    f"previous cell's output ({first.units} features) as "
                    f"input. Received: cells[{i}] has input size "
                    f"{int(cell.kernel.shape[0])}"
                )
        config = {
            key: value
            for key, value in first.get_config().items()
            if key not in ("name", "trainable", "input_dim")
        }
        stack = cls(cell=kind, layers=len(cells), **config, **kwargs)
        input_dim = int(first.kernel.shape[0])
        dtype = first.compute_dtype
        x = keras.KerasTensor((None, input_dim), dtype=dtype)
        states = [keras.KerasTensor((None, first.units), dtype=dtype)] * len(
            stack.state_shapes
        )
        stack([x, *states])
        stack.set_weights(fuse_weights([cell.get_weights() for cell in cells]))
        return stack

    def to_cells(self) -> list:
        """The unfused cells (built, named `layer_names`), weights copied."""
        if not self.built:
            raise ValueError(
                f"{self.name}.to_cells() copies the weights: build the stack "
                "first (call it once)."
            )
        cell_class = KINDS[self.cell][0]
        config = self.cell_config()
        input_dim = int(self.kernel.shape[0])
        cells = []
        for i, (name, weights) in enumerate(
            zip(
                self.layer_names,
                unfuse_weights(self.get_weights(), self.num_layers),
                strict=True,
            )
        ):
            cell = cell_class(name=name, **config)
            dim = input_dim if i == 0 else self.units
            x = keras.KerasTensor((None, dim), dtype=self.compute_dtype)
            states = [keras.KerasTensor((None, self.units), dtype=self.compute_dtype)]
            cell([x, *states * len(self._parts)])
            cell.set_weights(weights)
            cells.append(cell)
        return cells


def fuse_weights(cell_weights) -> list:
    """Stacks the weights of `n` unfused cells into a `FusedCellStack`'s.

    Args:
        cell_weights: one list per cell, `[kernel, recurrent_kernel]` or
            `[kernel, recurrent_kernel, bias]` (`cell.get_weights()`).

    Returns:
        `[kernel, kernels_rest, recurrent_kernels, biases]` as NumPy arrays
        (`kernels_rest` left out for one cell, `biases` without bias).
    """
    if not isinstance(cell_weights, (list, tuple)) or not cell_weights:
        raise ValueError(
            "fuse_weights(): argument `cell_weights` must be a non-empty list "
            f"of per-cell weight lists. Received: {cell_weights!r}"
        )
    lengths = {len(weights) for weights in cell_weights}
    if len(lengths) != 1 or lengths.pop() not in (2, 3):
        raise ValueError(
            "fuse_weights(): each entry of `cell_weights` must be [kernel, "
            "recurrent_kernel(, bias)], the same for every cell. Received "
            f"lengths {[len(w) for w in cell_weights]}"
        )
    arrays = [[np.asarray(w) for w in weights] for weights in cell_weights]
    fused = [arrays[0][0]]
    if len(arrays) > 1:
        fused.append(np.stack([weights[0] for weights in arrays[1:]]))
    fused.append(np.stack([weights[1] for weights in arrays]))
    if len(arrays[0]) == 3:
        fused.append(np.stack([weights[2] for weights in arrays]))
    return fused


def unfuse_weights(weights, layers: int) -> list:
    """Splits a `FusedCellStack`'s weights into one list per unfused cell.

    The inverse of `fuse_weights`.

    Args:
        weights: `[kernel, kernels_rest, recurrent_kernels, biases]` as
            `stack.get_weights()` returns them (`kernels_rest` absent for
            one layer, `biases` without bias).
        layers: the number of layers of the stack.

    Returns:
        `[[kernel, recurrent_kernel(, bias)], ...]`, one list per layer.
    """
    if isinstance(layers, bool) or not isinstance(layers, int) or layers < 1:
        raise ValueError(
            "unfuse_weights(): argument `layers` must be a positive integer. "
            f"Received: layers={layers!r}"
        )
    arrays = [np.asarray(w) for w in weights]
    expected = (3, 4) if layers > 1 else (2, 3)
    if len(arrays) not in expected:
        raise ValueError(
            f"unfuse_weights(): argument `weights` of a {layers}-layer stack "
            f"must hold {' or '.join(map(str, expected))} arrays. Received "
            f"{len(arrays)} arrays"
        )
    kernels = [arrays[0]]
    rest = arrays[1:]
    if layers > 1:
        kernels += list(rest[0])
        rest = rest[1:]
    recurrent, *biases = rest
    if len(kernels) != layers or recurrent.shape[0] != layers:
        raise ValueError(
            f"unfuse_weights(): the weights do not hold {layers} layers. "
            f"Received shapes {[a.shape for a in arrays]}"
        )
    return [[kernels[i], recurrent[i], *(b[i] for b in biases)] for i in range(layers)]


def _kind(cell) -> str:
    if isinstance(cell, type) and cell in _KIND_OF_CLASS:
        return _KIND_OF_CLASS[cell]
    if isinstance(cell, str) and cell.lower() in KINDS:
        return cell.lower()
    raise ValueError(
        f"FusedCellStack: argument `cell` must be one of {sorted(KINDS)} (or "
        f"{sorted(c.__name__ for c in _KIND_OF_CLASS)}). Received: cell={cell!r}"
    )


def _comparable_config(cell) -> dict:
    config = cell.get_config()
    for key in ("name", "input_dim", "trainable"):
        config.pop(key, None)
    if not (config["dropout"] or config["recurrent_dropout"]):
        # Without dropout, GRU/LSTM's `implementation` changes nothing.
        config.pop("implementation", None)
    return config
