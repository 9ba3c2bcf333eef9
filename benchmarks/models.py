"""The models the benchmarks compare, each built the way its users would build it."""

from __future__ import annotations

import keras
from keras import ops

import cellgraph as cg
from cellgraph.cells.lstm import lstm_gates

# Contender names, as they appear in the tables.
CELLGRAPH = "cellgraph LSTMCell"
KERAS_LSTM = "keras.layers.LSTM"
KERAS_RNN = "keras.layers.RNN(LSTMCell)"
CELLGRAPH_PRECOMPUTED = "cellgraph, x·W+b before the loop"
TF_FUSED = "TF fused kernel (BlockLSTM)"
TORCH = "torch nn.LSTM"
XLA = " [XLA]"


def lstm_layer(kind: str, units: int, features: int):
    """A sequence layer returning the last output: the three LSTM contenders."""
    if kind == CELLGRAPH:
        return cg.cells.LSTMCell(units, input_dim=features).get_layer()
    if kind == KERAS_LSTM:
        return keras.layers.LSTM(units)
    if kind == KERAS_RNN:
        return keras.layers.RNN(keras.layers.LSTMCell(units))
    if kind == CELLGRAPH_PRECOMPUTED:
        return PrecomputedLSTM(units)
    if kind == TF_FUSED:
        return FusedBlockLSTM(units)
    raise ValueError(f"Unknown LSTM contender {kind!r}.")


class LSTMGates(keras.layers.Layer):
    """`[z, c_tm1] -> [h, c]`: the LSTM gates of `cells.LSTMCell`, no weights."""

    def call(self, inputs):
        z, c_tm1 = inputs
        return lstm_gates(z, c_tm1, keras.activations.tanh, keras.activations.sigmoid)

    def compute_output_shape(self, input_shape):
        return [input_shape[1], input_shape[1]]


class PrecomputedLSTM(keras.layers.Layer):
    """The LSTM with its input projection taken out of the loop.

    `Dense(4 * units)` computes `x_t·W + b` for every step at once (one large
    matrix product), and a `RecurrentModel` runs the rest of the step,
    `[h, c] = gates(z_x_t + h_tm1·U, c_tm1)`: what evaluating the input-only
    part of a step graph before the loop gives for an LSTM. Its weights are
    `cells.LSTMCell`'s: projection `[kernel, bias]`, recurrent `[U]`.
    """

    def __init__(self, units, **kwargs):
        super().__init__(**kwargs)
        self.units = units
        self.projection = keras.layers.Dense(4 * units)
        z_x = keras.Input((4 * units,))
        h_tm1, c_tm1 = keras.Input((units,)), keras.Input((units,))
        self.recurrent = keras.layers.Dense(4 * units, use_bias=False)
        z = keras.layers.Add()([z_x, self.recurrent(h_tm1)])
        h, c = LSTMGates()([z, c_tm1])
        self.loop = cg.RecurrentModel(
            input=z_x, initial_states=[h_tm1, c_tm1], output=h, final_states=[h, c]
        )

    def call(self, inputs):
        return self.loop(self.projection(inputs))

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.units)


class FusedBlockLSTM(keras.layers.Layer):
    """The LSTM as TensorFlow's fused CPU kernel: one `BlockLSTM` op per call.

    TensorFlow only (`tf.raw_ops.BlockLSTM`, the kernel behind TF 1's
    `LSTMBlockFusedCell`; its gradient is the fused `BlockLSTMGrad`). The
    weights are `keras.layers.LSTMCell`'s, in Keras's gate order (i, f, c,
    o); the op wants `[kernel; recurrent_kernel]` stacked and the gates
    ordered (i, c, f, o), rearranged at every call (a few small ops). No
    forget bias is added and the cell is not clipped, so it computes what
    Keras's LSTM computes. `BlockLSTMV2` takes Keras's gate order directly,
    but its gradient was wrong in TensorFlow 2.21 (relative error ~1 against
    Keras's LSTM with the same weights), so V1 it is. Returns the last
    output.
    """

    def __init__(self, units, **kwargs):
        super().__init__(**kwargs)
        self.units = units

    def build(self, input_shape):
        features, units = int(input_shape[-1]), self.units
        self.kernel = self.add_weight((features, 4 * units), name="kernel")
        self.recurrent_kernel = self.add_weight(
            (units, 4 * units), initializer="orthogonal", name="recurrent_kernel"
        )
        self.bias = self.add_weight((4 * units,), initializer="zeros", name="bias")

    def call(self, inputs):
        import tensorflow as tf

        def icfo(w):
            i, f, c, o = tf.split(w, 4, axis=-1)
            return tf.concat([i, c, f, o], axis=-1)

        weights = icfo(tf.concat([self.kernel, self.recurrent_kernel], axis=0))
        steps = tf.transpose(inputs, [1, 0, 2])
        zeros = tf.zeros((tf.shape(inputs)[0], self.units), inputs.dtype)
        peephole = tf.zeros((self.units,), inputs.dtype)
        outputs = tf.raw_ops.BlockLSTM(
            seq_len_max=tf.cast(tf.shape(steps)[0], tf.int64),
            x=steps,
            cs_prev=zeros,
            h_prev=zeros,
            w=weights,
            wci=peephole,
            wcf=peephole,
            wco=peephole,
            b=icfo(self.bias),
            forget_bias=0.0,
            cell_clip=-1.0,  # negative: no clipping
            use_peephole=False,
        )
        return outputs[-1][-1]  # h of the last step

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.units)


def lstm_model(
    kind: str, timesteps: int, features: int, units: int, jit_compile: bool = False
) -> keras.Model:
    """`Input -> LSTM -> Dense(1)`, compiled with Adam and MSE."""
    inputs = keras.Input((timesteps, features))
    outputs = keras.layers.Dense(1)(lstm_layer(kind, units, features)(inputs))
    model = keras.Model(inputs, outputs)
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3), loss="mse", jit_compile=jit_compile
    )
    return model


def lstm_model_remat(
    kind: str, timesteps: int, features: int, units: int, remat: str | None
) -> keras.Model:
    """`lstm_model` built inside `keras.RematScope(mode=remat)` (None: without).

    `"full"` makes every layer recompute its forward pass in the backward
    pass; `"activations"` only the activation functions of layers that have
    an `activation` attribute.
    """
    if remat is None:
        return lstm_model(kind, timesteps, features, units)
    if not hasattr(keras, "RematScope"):
        raise NotImplementedError("keras.RematScope is not in this Keras version")
    with keras.RematScope(mode=remat):
        return lstm_model(kind, timesteps, features, units)


SUPERLOOP_CELLGRAPH = "cellgraph RecurrentModel"
SUPERLOOP_PLAIN = "keras.layers.RNN(step model)"
SUPERLOOP_FLAT = "keras.layers.RNN(flat SGU cell)"
SUPERLOOP_FUSED = "cellgraph RecurrentModel, FusedCellStack"


def superloop_shape_model(
    timesteps: int,
    features: int,
    layers: int,
    units: int,
    engine: str = SUPERLOOP_CELLGRAPH,
    jit_compile: bool | str = "auto",
) -> keras.Model:
    """The superloop shape: a step graph of stacked SGU cells, run over time.

    One step: `concat(x_t, top_tm1) -> layers x SGUCell(units)`; the top
    cell's output is the step output and also an explicit readout *state*,
    fed back by concatenation at the next step. The step graph is run by
    `cellgraph.RecurrentModel`, or (`engine=SUPERLOOP_PLAIN`, the reference)
    by a plain `keras.layers.RNN` whose cell calls the same one-step
    `keras.Model`. A `Dense(features)` head on every step's output; Adam and
    MSE, compiled with `jit_compile` (`"auto"`: Keras's choice for the
    backend, XLA on JAX and none on a CPU-only TensorFlow).
    `engine=SUPERLOOP_FLAT` returns `superloop_flat_model` instead: the same
    maths in one hand-written cell, no step graph. `engine=SUPERLOOP_FUSED`:
    the `layers` cells are one `cells.FusedCellStack` (stacked weights, the
    same maths), run by `cellgraph.RecurrentModel`.
    """
    if engine == SUPERLOOP_FLAT:
        return superloop_flat_model(timesteps, features, layers, units, jit_compile)
    x_t = keras.Input((features,), name="x_t")
    top_tm1 = keras.Input((units,), name="top_tm1")
    states_tm1 = [keras.Input((units,), name=f"h{i}_tm1") for i in range(layers)]
    h = keras.layers.Concatenate()([x_t, top_tm1])
    states_t = []
    if engine == SUPERLOOP_FUSED:
        h, *states_t = cg.cells.FusedCellStack("sgu", layers, units)([h, *states_tm1])
    else:
        for state in states_tm1:
            h, new_state = cg.cells.SGUCell(units)([h, state])
            states_t.append(new_state)
    if engine in (SUPERLOOP_CELLGRAPH, SUPERLOOP_FUSED):
        rnn = cg.RecurrentModel(
            input=x_t,
            output=h,
            initial_states=[*states_tm1, top_tm1],
            final_states=[*states_t, h],
            return_sequences=True,
        )
    elif engine == SUPERLOOP_PLAIN:
        step = keras.Model([x_t, *states_tm1, top_tm1], [h, *states_t, h])
        rnn = keras.layers.RNN(
            StepModelCell(step, [units] * (layers + 1)), return_sequences=True
        )
    else:
        raise ValueError(f"Unknown engine {engine!r}.")
    inputs = keras.Input((timesteps, features))
    model = keras.Model(inputs, keras.layers.Dense(features)(rnn(inputs)))
    return _compile(model, jit_compile)


def superloop_flat_model(
    timesteps: int,
    features: int,
    layers: int,
    units: int,
    jit_compile: bool | str = "auto",
) -> keras.Model:
    """`superloop_shape_model`'s maths written flat in one plain RNN cell.

    `keras.layers.RNN(FlatSGUStackCell(layers, units, features))`: no step
    graph, no nested models; one cell computes the `layers` SGU cells and the
    `Dense(features)` head of a step with `keras.ops`. Its weights, in
    order, are those of `superloop_shape_model`'s (`kernel`,
    `recurrent_kernel`, `bias` of each SGU cell, then the head's `kernel`,
    `bias`), so `set_weights(other.get_weights())` copies them across.
    Adam and MSE, compiled with `jit_compile`.
    """
    inputs = keras.Input((timesteps, features))
    cell = FlatSGUStackCell(layers, units, features)
    model = keras.Model(inputs, keras.layers.RNN(cell, return_sequences=True)(inputs))
    return _compile(model, jit_compile)


def _compile(model: keras.Model, jit_compile: bool | str) -> keras.Model:
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3), loss="mse", jit_compile=jit_compile
    )
    return model


class FlatSGUStackCell(keras.layers.Layer):
    """The superloop step as one plain Keras RNN cell: stacked SGUs + a head.

    One step, with `top_tm1` the previous step's top SGU output:

    ```
    h = concat(x_t, top_tm1)
    for i in range(layers):                      # cells.SGUCell(units), defaults
        z_f, z_c = split(h·kernel_i + bias_i, 2)
        f = hard_sigmoid(z_f + h_i_tm1·recurrent_kernel_i)
        h = h_i_t = f * h_i_tm1 + (1 - f) * tanh(z_c)
    y_t = h·head_kernel + head_bias              # Dense(head_units)
    ```

    The maths (and the ops) of `cells.SGUCell` with its default activations,
    `tanh` candidate and `hard_sigmoid` gate, without dropout. Each layer has
    its own variables, created as `SGUCell` creates them: `kernel`
    `(input_dim, 2 * units)` = `[W2 | W3]` (glorot uniform),
    `recurrent_kernel` `(units, units)` = `W1` (orthogonal), `bias`
    `(2 * units,)` (zeros); `input_dim` is `features + units` for the first
    layer and `units` above. The head's `kernel` and `bias` come last.

    Args:
        layers: number of stacked SGU layers.
        units: units of every SGU layer.
        head_units: units of the `Dense` head (the step output).

    Call arguments:
        inputs: `x_t`, shape `(batch, features)`.
        states: `[h_0_tm1, ..., h_{layers-1}_tm1, top_tm1]`, each
            `(batch, units)`.

    Output: `(y_t, [h_0_t, ..., h_{layers-1}_t, h_{layers-1}_t])`, `y_t` of
    shape `(batch, head_units)`.

    Example:

    ```python
    rnn = keras.layers.RNN(FlatSGUStackCell(32, 16, 8), return_sequences=True)
    y = rnn(np.zeros((64, 64, 8), "float32"))  # (64, 64, 8)
    ```
    """

    def __init__(self, layers: int, units: int, head_units: int, **kwargs):
        super().__init__(**kwargs)
        self.layers, self.units, self.head_units = layers, units, head_units
        self.state_size = [units] * (layers + 1)
        self.output_size = head_units
        self.gate_activation = keras.activations.get("hard_sigmoid")
        self.activation = keras.activations.get("tanh")

    def build(self, input_shape):
        input_dim = int(input_shape[-1]) + self.units  # concat(x_t, top_tm1)
        self.kernels, self.recurrent_kernels, self.biases = [], [], []
        for i in range(self.layers):
            self.kernels.append(
                self.add_weight((input_dim, 2 * self.units), name=f"kernel_{i}")
            )
            self.recurrent_kernels.append(
                self.add_weight(
                    (self.units, self.units),
                    initializer="orthogonal",
                    name=f"recurrent_kernel_{i}",
                )
            )
            self.biases.append(
                self.add_weight(
                    (2 * self.units,), initializer="zeros", name=f"bias_{i}"
                )
            )
            input_dim = self.units
        self.head_kernel = self.add_weight(
            (self.units, self.head_units), name="head_kernel"
        )
        self.head_bias = self.add_weight(
            (self.head_units,), initializer="zeros", name="head_bias"
        )

    def call(self, inputs, states, training=None):
        *states_tm1, top_tm1 = states
        h = ops.concatenate([inputs, top_tm1], axis=-1)
        states_t = []
        for h_tm1, kernel, recurrent_kernel, bias in zip(
            states_tm1, self.kernels, self.recurrent_kernels, self.biases, strict=True
        ):
            z_f, z_c = ops.split(ops.add(ops.matmul(h, kernel), bias), 2, axis=-1)
            f = self.gate_activation(z_f + ops.matmul(h_tm1, recurrent_kernel))
            h = f * h_tm1 + (1.0 - f) * self.activation(z_c)
            states_t.append(h)
        output = ops.add(ops.matmul(h, self.head_kernel), self.head_bias)
        return output, [*states_t, h]


class StepModelCell(keras.layers.Layer):
    """A plain Keras RNN cell that calls a one-step model `[x, *states]`."""

    def __init__(self, step_model: keras.Model, state_size: list[int], **kwargs):
        super().__init__(**kwargs)
        self.step_model = step_model
        self.state_size = list(state_size)
        self.output_size = state_size[-1]

    def call(self, inputs, states, training=None):
        output, *new_states = self.step_model([inputs, *states], training=training)
        return output, new_states


def torch_available() -> str | None:
    """None when PyTorch can be imported, else the reason it cannot."""
    try:
        import torch  # noqa: F401
    except Exception as exc:  # ImportError, or a broken install
        return f"PyTorch not installed ({type(exc).__name__})"
    return None


class TorchLSTM:
    """PyTorch `nn.LSTM` + `nn.Linear(units, 1)`, Adam and MSE, on the CPU.

    `train_step(x, y)` runs forward, backward and an optimizer step;
    `predict(x)` runs the forward pass under `torch.no_grad()`.
    """

    def __init__(self, features: int, units: int):
        import torch

        self.torch = torch
        self.lstm = torch.nn.LSTM(features, units, batch_first=True)
        self.head = torch.nn.Linear(units, 1)
        params = list(self.lstm.parameters()) + list(self.head.parameters())
        self.optimizer = torch.optim.Adam(params, lr=1e-3)
        self.loss = torch.nn.MSELoss()

    def _forward(self, x):
        outputs, _ = self.lstm(x)
        return self.head(outputs[:, -1])

    def tensor(self, array):
        return self.torch.from_numpy(array)

    def train_step(self, x, y):
        self.optimizer.zero_grad(set_to_none=True)
        loss = self.loss(self._forward(x), y)
        loss.backward()
        self.optimizer.step()
        return loss.item()

    def predict(self, x):
        with self.torch.no_grad():
            return self._forward(x).numpy()
