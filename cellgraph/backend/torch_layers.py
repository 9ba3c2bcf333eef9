"""PyTorch versions of common layers' calls, for the lean step executor.

A `keras.ops` function converts and checks its arguments at every call; on
PyTorch, for the small tensors of one step, that costs 5-20 times the op
(`ops.matmul` 110 us against `torch.matmul` 15 us on the 2-core test
machine). The calls here run the torch functions that Keras's ops end in,
in the same order, so they compute the same numbers; `fast_call` returns
one for an exact class it knows (never a subclass, which may change `call`)
and `None` otherwise, and each falls back to the layer's own call where its
arguments are not what it expects (dropout masks, other dtypes).

Reading a Keras variable's value costs as much again (`variable.value`,
16 us: scope checks at every read), so each fast call is made per sequence
by a binder, `bind(training) -> call`, that reads the layer's variables once;
the loop's calls then use those tensors at every step.
"""

from __future__ import annotations

import keras
import torch
import torch.nn.functional as F

_ACTIVATIONS = {
    keras.activations.tanh: torch.tanh,
    keras.activations.sigmoid: torch.sigmoid,
    keras.activations.relu: torch.relu,
    keras.activations.hard_sigmoid: F.hardsigmoid,
}


def _activation(fn):
    """The torch function of a Keras activation, itself when unknown, or None."""
    if fn is None or fn is keras.activations.linear:
        return None
    try:
        return _ACTIVATIONS.get(fn, fn)
    except TypeError:  # not hashable: a callable object
        return fn


def _apply(fn, x):
    return x if fn is None else fn(x)


def _affine(x, kernel, bias=None):
    """`x @ kernel + bias` as Keras computes it (`ops.matmul`, then `ops.add`).

    For a matrix `x` PyTorch's `addmm` does both in one call; it rounds the
    product and then adds, as the two calls do (equal bit for bit here).
    """
    if bias is None:
        return torch.matmul(x, kernel)
    if x.dim() == 2:
        return torch.addmm(bias, x, kernel)
    return torch.add(torch.matmul(x, kernel), bias)


def _same_tensors(values) -> bool:
    first = values[0]
    return (
        all(isinstance(v, torch.Tensor) and v.dtype == first.dtype for v in values)
        and first.is_floating_point()
    )


def fast_call(op, input_shapes):
    """A binder of a PyTorch call equal to `op.call`, or `None` where there is none.

    Args:
        op: a layer or `keras.ops` operation of a step graph.
        input_shapes: the recorded shapes of its tensor arguments (merge
            layers take the fast call only for inputs of one shape).

    Returns:
        `bind(training) -> call`, to be called once per sequence (inside
        the layer's call scope, after the cells' `begin_sequence`): `call`
        takes `op.call`'s arguments and reads the variables `bind` read.
    """
    kind = type(op)
    module = kind.__module__ or ""
    if module.startswith("cellgraph.cells."):
        maker = _CELLS.get(kind.__name__)
    elif module.startswith("keras."):
        if isinstance(op, keras.layers.Layer):
            maker = _LAYERS.get(kind.__name__)
            if kind.__name__ in _MERGES and len({tuple(s) for s in input_shapes}) > 1:
                return None  # Keras broadcasts by reshaping: keep its call
        else:
            maker = _OPS.get(kind.__name__)
    else:
        return None
    if maker is None:
        return None
    if isinstance(op, keras.layers.Layer) and op.compute_dtype not in (
        "float32",
        "float64",
    ):
        return None
    return maker(op)


# -- Keras layers ---------------------------------------------------------------
def _dense(layer):
    if getattr(layer, "lora_enabled", False):
        return None
    activation = _activation(layer.activation)

    def bind(training=None):
        kernel = layer.kernel.value
        bias = layer.bias.value if layer.bias is not None else None
        if activation is None:
            return lambda inputs, training=None: _affine(inputs, kernel, bias)
        return lambda inputs, training=None: activation(_affine(inputs, kernel, bias))

    return bind


def _activation_layer(layer):
    activation = _activation(layer.activation)
    if activation is None:
        call = _identity
    else:

        def call(inputs, training=None):
            return activation(inputs)

    return _static(call)


def _identity(inputs, training=None):
    return inputs


def _static(call):
    """The binder of a call that reads no variables."""
    return lambda training=None: call


def _chain(torch_op):
    def make(layer):
        def call(inputs, training=None):
            if not _same_tensors(inputs):
                return layer.call(inputs)
            output = inputs[0]
            for x in inputs[1:]:
                output = torch_op(output, x)
            return output

        return _static(call)

    return make


def _subtract(layer):
    def call(inputs, training=None):
        if not _same_tensors(inputs):
            return layer.call(inputs)
        return torch.subtract(inputs[0], inputs[1])

    return _static(call)


def _concatenate(layer):
    def call(inputs, training=None):
        if not _same_tensors(inputs):
            return layer.call(inputs)
        return torch.cat(inputs, dim=layer.axis)

    return _static(call)


_MERGES = {"Add", "Multiply", "Subtract"}
_LAYERS = {
    "Dense": _dense,
    "Activation": _activation_layer,
    "Add": _chain(torch.add),
    "Multiply": _chain(torch.multiply),
    "Subtract": _subtract,
    "Concatenate": _concatenate,
}


# -- keras.ops operations ---------------------------------------------------------
def _binary(torch_op, refuses_bool=False):
    """`keras.ops` add/subtract/multiply: Keras converts, then calls `torch_op`.

    Keras converts a Python number to a tensor at every call
    (`convert_to_tensor`: int32/int64 or the float type `floatx`); the bound
    call converts each number once per sequence, the same way, and then
    calls the same torch function. `subtract` casts booleans first: those
    keep the op's own call.
    """

    def make(op):
        def bind(training=None):
            numbers = {}

            def tensor(x):
                if isinstance(x, torch.Tensor):
                    return x
                if isinstance(x, (int, float)) and not isinstance(x, bool):
                    key = (type(x), x)
                    if key not in numbers:
                        numbers[key] = keras.ops.convert_to_tensor(x)
                    return numbers[key]
                return None

            def call(x1, x2):
                t1, t2 = tensor(x1), tensor(x2)
                if t1 is None or t2 is None:
                    return op.call(x1, x2)
                if refuses_bool and torch.bool in (t1.dtype, t2.dtype):
                    return op.call(x1, x2)
                return torch_op(t1, t2)

            return call

        return bind

    return make


def _unary(torch_op):
    def make(op):
        def call(x):
            if isinstance(x, torch.Tensor) and x.is_floating_point():
                return torch_op(x)
            return op.call(x)

        return _static(call)

    return make


def _split(op):
    """`keras.ops.split` into equal sections: `torch.split`, as Keras calls it."""
    sections, axis = op.indices_or_sections, op.axis

    def call(x):
        if (
            isinstance(sections, int)
            and isinstance(x, torch.Tensor)
            and x.shape[axis] != 0
            and x.shape[axis] % sections == 0
        ):
            return list(torch.split(x, x.shape[axis] // sections, dim=axis))
        return op.call(x)

    return _static(call)


_OPS = {
    "Add": _binary(torch.add),
    "Subtract": _binary(torch.subtract, refuses_bool=True),
    "Multiply": _binary(torch.multiply),
    "Tanh": _unary(torch.tanh),
    "Sigmoid": _unary(torch.sigmoid),
    "Negative": _unary(torch.negative),
    "Split": _split,
}


# -- cellgraph's cells ------------------------------------------------------------
def _cell(step):
    """A cell's binder: `step(weights, x, states)`, or its own call with masks.

    `weights(cell)` reads the cell's variables once per sequence; a cell
    that applies dropout masks in this sequence keeps its own call.
    """

    def make(cell):
        if getattr(cell, "implementation", 1) not in (1, 2):
            return None

        def bind(training=None):
            if cell.uses_dropout_masks(training):
                return cell.call
            weights = _Weights(cell)

            def call(inputs, training=None):
                x, *states = inputs
                if not _same_tensors(inputs):
                    return cell.call(inputs, training=training)
                return step(weights, x, states)

            return call

        return bind

    return make


class _Weights:
    """A cell's variables as tensors, read once; its other attributes as they are."""

    def __init__(self, cell):
        self.cell = cell
        self.kernel = cell.kernel.value
        self.recurrent_kernel = cell.recurrent_kernel.value
        self.bias = cell.bias.value if cell.bias is not None else None
        self.activation = _activation(cell.activation)
        self.gate = _activation(
            getattr(cell, "recurrent_activation", None)
            or getattr(cell, "gate_activation", None)
        )


def _simple_rnn_step(w, x, states):
    h = _affine(x, w.kernel, w.bias)
    h = _affine(states[0], w.recurrent_kernel, h)
    h = _apply(w.activation, h)
    return [h, h]


def _lstm_step(w, x, states):
    h_tm1, c_tm1 = states
    z = _affine(h_tm1, w.recurrent_kernel, torch.matmul(x, w.kernel))
    if w.bias is not None:
        z = torch.add(z, w.bias)
    gate, act = w.gate, w.activation
    z_i, z_f, z_c, z_o = torch.split(z, z.shape[-1] // 4, dim=-1)
    i = _apply(gate, z_i)
    f = _apply(gate, z_f)
    c = f * c_tm1 + i * _apply(act, z_c)
    o = _apply(gate, z_o)
    h = o * _apply(act, c)
    return [h, h, c]


def _gru_step(w, x, states):
    (h_tm1,) = states
    if not w.cell.reset_after:
        return w.cell.call([x, h_tm1])
    gate, act, bias = w.gate, w.activation, w.bias
    matrix_x = _affine(x, w.kernel, None if bias is None else bias[0])
    x_z, x_r, x_h = torch.split(matrix_x, matrix_x.shape[-1] // 3, dim=-1)
    matrix_h = _affine(h_tm1, w.recurrent_kernel, None if bias is None else bias[1])
    h_z, h_r, h_h = torch.split(matrix_h, matrix_h.shape[-1] // 3, dim=-1)
    z = _apply(gate, x_z + h_z)
    r = _apply(gate, x_r + h_r)
    hh = _apply(act, x_h + r * h_h)
    h = z * h_tm1 + (1.0 - z) * hh
    return [h, h]


def _sgu_step(w, x, states):
    (h_tm1,) = states
    z = _affine(x, w.kernel, w.bias)
    z_f, z_c = torch.split(z, z.shape[-1] // 2, dim=-1)
    f = _apply(w.gate, _affine(h_tm1, w.recurrent_kernel, z_f))
    out = f * h_tm1 + (1.0 - f) * _apply(w.activation, z_c)
    return [out, out]


_CELLS = {
    "SimpleRNNCell": _cell(_simple_rnn_step),
    "LSTMCell": _cell(_lstm_step),
    "GRUCell": _cell(_gru_step),
    "SGUCell": _cell(_sgu_step),
}
