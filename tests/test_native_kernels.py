"""A step graph of one LSTMCell or GRUCell runs PyTorch's fused kernel, exactly.

`cell.native_kernel()` gives the cell's weights in the kernel's layout
(PyTorch's gate order, two biases); on every backend a NumPy recomputation of
PyTorch's documented LSTM and GRU formulas with those weights must give the
cell's own step. On PyTorch, `cell.get_layer()` then runs `torch.lstm` /
`torch.gru` (a spy checks that it did, or did not) and must equal the step
loop (`NATIVE_KERNELS_ON_TORCH = False`): outputs, final states and
gradients to 1e-5.
"""

import keras
import numpy as np
import pytest
from _autodiff import layer_gradients

import cellgraph as cg
from cellgraph import backend

pytestmark = pytest.mark.portable
ON_TORCH = keras.backend.backend() == "torch"
CELLS = {
    "lstm": lambda **kw: cg.cells.LSTMCell(4, input_dim=3, **kw),
    "gru": lambda **kw: cg.cells.GRUCell(4, input_dim=3, **kw),
    "lstm_no_bias": lambda **kw: cg.cells.LSTMCell(
        4, input_dim=3, use_bias=False, **kw
    ),
    "gru_no_bias": lambda **kw: cg.cells.GRUCell(4, input_dim=3, use_bias=False, **kw),
}


def sigmoid(z):
    return 1 / (1 + np.exp(-z))


def torch_formula(kind, x, states, weights):
    """One step of PyTorch's LSTM / GRU (its documentation's equations)."""
    w_ih, w_hh = weights[0], weights[1]
    b_ih = weights[2] if len(weights) > 2 else 0.0
    b_hh = weights[3] if len(weights) > 2 else 0.0
    gi, gh = x @ w_ih.T + b_ih, states[0] @ w_hh.T + b_hh
    if kind == "lstm":
        i, f, g, o = np.split(gi + gh, 4, axis=-1)
        c = sigmoid(f) * states[1] + sigmoid(i) * np.tanh(g)
        h = sigmoid(o) * np.tanh(c)
        return [h, h, c]
    r_i, z_i, n_i = np.split(gi, 3, axis=-1)
    r_h, z_h, n_h = np.split(gh, 3, axis=-1)
    r, z = sigmoid(r_i + r_h), sigmoid(z_i + z_h)
    n = np.tanh(n_i + r * n_h)
    h = (1 - z) * n + z * states[0]
    return [h, h]


@pytest.mark.parametrize("name", sorted(CELLS))
def test_native_kernel_weights_give_the_cells_step(rng, name):
    cell = CELLS[name](bias_initializer="random_normal")
    x = rng.normal(size=(2, 3)).astype("float32")
    states = [rng.normal(size=(2, 4)).astype("float32") for _ in cell.state_names]
    expected = [keras.ops.convert_to_numpy(v) for v in cell([x, *states])]
    kind, weights, has_biases = cell.native_kernel()
    assert kind == name.split("_")[0] and has_biases == ("no_bias" not in name)
    weights = [keras.ops.convert_to_numpy(w) for w in weights]
    got = torch_formula(kind, x, states, weights)
    for want, value in zip(expected, got, strict=True):
        np.testing.assert_allclose(value, want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    "cell, training",
    [
        (lambda: cg.cells.LSTMCell(4, activation="relu"), None),
        (lambda: cg.cells.LSTMCell(4, recurrent_activation="hard_sigmoid"), None),
        (lambda: cg.cells.GRUCell(4, reset_after=False), None),
        (lambda: cg.cells.GRUCell(4, dropout=0.5), True),
        (lambda: cg.cells.LSTMCell(4, recurrent_dropout=0.5), True),
        (lambda: cg.cells.LSTMCell(4, dtype="mixed_float16"), None),
        (lambda: cg.cells.SimpleRNNCell(4), None),
    ],
)
def test_cells_the_kernel_would_change_have_none(cell, training):
    cell = cell()
    cell.build([(None, 3)] + [(None, 4)] * len(cell.state_names))
    assert cell.native_kernel(training) is None


def test_dropout_applies_only_in_training():
    cell = cg.cells.GRUCell(4, dropout=0.5)
    cell.build([(None, 3), (None, 4)])
    assert cell.native_kernel(training=True) is None
    assert cell.native_kernel(training=False) is not None


@pytest.fixture
def spy(monkeypatch):
    """Counts the calls of the fused kernel."""
    calls = []
    original = backend.native_rnn

    def native_rnn(kind, *args, **kwargs):
        calls.append(kind)
        return original(kind, *args, **kwargs)

    monkeypatch.setattr(backend, "native_rnn", native_rnn)
    return calls


def fused_and_loop(monkeypatch, layer, x, **kwargs):
    results = {}
    for fused in (True, False):
        monkeypatch.setattr(backend, "NATIVE_KERNELS_ON_TORCH", fused)
        results[fused] = layer_gradients(layer, x, **kwargs)
    return results


def assert_close(results):
    for fused, loop in zip(results[True], results[False], strict=True):
        assert len(fused) == len(loop)
        for got, want in zip(fused, loop, strict=True):
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.skipif(not ON_TORCH, reason="PyTorch's fused kernels")
@pytest.mark.parametrize("name", sorted(CELLS))
@pytest.mark.parametrize(
    "options",
    [
        dict(),
        dict(return_sequences=True, return_state=True),
        dict(return_sequences=True, go_backwards=True),
    ],
)
def test_fused_kernel_equals_the_step_loop(monkeypatch, spy, rng, name, options):
    cell = CELLS[name](bias_initializer="random_normal")
    layer = cell.get_layer(**options)
    x = rng.normal(size=(3, 6, 3)).astype("float32")
    results = fused_and_loop(monkeypatch, layer, x, training=True)
    assert spy == [name.split("_")[0]]
    assert_close(results)
    assert all(np.abs(g).sum() > 0 for g in results[True][1])


@pytest.mark.skipif(not ON_TORCH, reason="PyTorch's fused kernels")
def test_fused_kernel_takes_initial_and_stateful_states(monkeypatch, spy, rng):
    x = rng.normal(size=(2, 5, 3)).astype("float32")
    h0, c0 = (rng.normal(size=(2, 4)).astype("float32") for _ in range(2))
    layer = cg.cells.LSTMCell(4, input_dim=3).get_layer(return_state=True)
    results = fused_and_loop(monkeypatch, layer, x, initial_state=[h0, c0])
    assert_close(results)
    stateful = cg.cells.GRUCell(4, input_dim=3).get_layer(stateful=True)
    stateful(x)  # builds the state variables
    finals = {}
    for fused in (True, False):
        monkeypatch.setattr(backend, "NATIVE_KERNELS_ON_TORCH", fused)
        stateful.reset_states()
        finals[fused] = [keras.ops.convert_to_numpy(stateful(x)) for _ in range(2)]
    for got, want in zip(finals[True], finals[False], strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    assert not np.allclose(finals[True][0], finals[True][1])  # states carried
    assert spy.count("gru") == 2 and spy.count("lstm") == 1


@pytest.mark.skipif(not ON_TORCH, reason="PyTorch's fused kernels")
@pytest.mark.parametrize("case", ["mask", "dropout", "teacher", "two_cells"])
def test_what_the_kernel_cannot_run_keeps_the_loop(monkeypatch, spy, rng, case):
    x = rng.normal(size=(2, 5, 3)).astype("float32")
    kwargs = {}
    if case == "mask":
        layer = cg.cells.LSTMCell(4, input_dim=3).get_layer()
        kwargs["mask"] = rng.random((2, 5)) > 0.3
    elif case == "dropout":
        layer = cg.cells.GRUCell(4, input_dim=3, dropout=0.3, seed=1).get_layer()
        kwargs["training"] = True
    elif case == "teacher":
        x_t, h_tm1, c_tm1 = keras.Input((3,)), keras.Input((4,)), keras.Input((4,))
        y_tm1 = keras.Input((4,))
        h, _, c = cg.cells.LSTMCell(4)([x_t, h_tm1, c_tm1])
        layer = cg.RecurrentModel(
            input=x_t,
            initial_states=[h_tm1, c_tm1],
            output=h,
            final_states=[h, c],
            readout_input=y_tm1,
            teacher_force=True,
            return_sequences=True,
        )
        kwargs.update(ground_truth=rng.normal(size=(2, 5, 4)).astype("float32"))
        kwargs["training"] = True
    else:
        layer = cg.RecurrentSequential()
        layer.add(cg.cells.GRUCell(4, input_dim=3))
        layer.add(cg.cells.GRUCell(4))
    layer(x, **kwargs)  # builds the variables (and the dropout seed's state)
    snapshot = [keras.ops.convert_to_numpy(v.value) for v in layer.variables]
    outputs = {}
    for fused in (True, False):
        for variable, value in zip(layer.variables, snapshot, strict=True):
            variable.assign(value)
        monkeypatch.setattr(backend, "NATIVE_KERNELS_ON_TORCH", fused)
        spy.clear()
        outputs[fused] = keras.ops.convert_to_numpy(layer(x, **kwargs))
    assert spy == []
    np.testing.assert_allclose(outputs[True], outputs[False], rtol=1e-6)


@pytest.mark.skipif(not ON_TORCH, reason="PyTorch's meta tensors")
def test_shape_probe_on_meta_tensors_answers_from_the_output_spec(spy):
    import torch

    layer = cg.cells.LSTMCell(4, input_dim=3).get_layer(
        return_sequences=True, return_state=True
    )
    x = np.zeros((2, 5, 3), "float32")
    expected = [tuple(o.shape) for o in layer(x)]
    spy.clear()
    probes = layer(torch.empty((2, 5, 3), device="meta"))
    assert [tuple(p.shape) for p in probes] == expected == [(2, 5, 4), (2, 4), (2, 4)]
    assert all(p.is_meta for p in probes)
    assert spy == []  # no kernel (or loop) ran on values that do not exist
