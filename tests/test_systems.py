"""Superloop systems: exact NumPy references, gradients, loops, saving, errors."""

import keras
import numpy as np
import pytest
from _autodiff import gradients
from keras import layers, ops

import cellgraph as cg
from cellgraph import systems as S

EPS = 1e-6  # the epsilon of AddressableMemory's norms and sharpening


def softmax(x):
    e = np.exp(x - np.max(x, axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def softplus(x):
    return np.log1p(np.exp(x))


def run(system, control, states, constants=()):
    read, *new_states = system([control, *states, *constants])
    return np.asarray(read), [np.asarray(s) for s in new_states]


def assert_close(actual, expected, rtol=1e-5, atol=1e-6):
    np.testing.assert_allclose(np.asarray(actual), expected, rtol=rtol, atol=atol)


# -- NumPy references (written from the papers, loop by loop) ------------------
def np_register(control, memory, depth, width):
    memory = memory.copy()
    read = np.zeros((len(control), width))
    for b, row in enumerate(control):
        data = row[:width]
        store = softmax(row[width : width + depth])
        recall = softmax(row[width + depth :])
        for d in range(depth):
            memory[b, d] = (1 - store[d]) * memory[b, d] + store[d] * data
            read[b] += recall[d] * memory[b, d]
    return read, memory


class NpNeuralMemory:
    """Unbounded neural stack/queue of Grefenstette et al. (2015), one example."""

    def __init__(self, lifo):
        self.lifo, self.values, self.strengths = lifo, [], []

    def cover(self, s, i):
        return sum(s[i + 1 :]) if self.lifo else sum(s[:i])

    def step(self, value, d, u):
        s = self.strengths
        s = [max(0.0, s[i] - max(0.0, u - self.cover(s, i))) for i in range(len(s))]
        self.strengths, self.values = s + [d], self.values + [value]
        s = self.strengths
        weights = [min(s[i], max(0.0, 1 - self.cover(s, i))) for i in range(len(s))]
        return sum(w * v for w, v in zip(weights, self.values))


def np_sharpen_power(shifted, gamma):
    """The sharpening as the paper writes it (underflows for a large gamma)."""
    sharp = (shifted + EPS) ** gamma
    return sharp / sharp.sum(axis=-1, keepdims=True)


def np_sharpen_log(shifted, gamma):
    """The same sharpening normalised in log space (never 0/0)."""
    return softmax(gamma * np.log(shifted + EPS))


def np_address(raw, memory, previous, width, sharpen=np_sharpen_power):
    key, beta = raw[:width], softplus(raw[width])
    gate, shift = sigmoid(raw[width + 1]), softmax(raw[width + 2 : width + 5])
    gamma, n = 1 + softplus(raw[width + 5]), len(memory)
    norm = np.sqrt(key @ key + EPS)
    similarity = [key @ m / (norm * np.sqrt(m @ m + EPS)) for m in memory]
    content = softmax(beta * np.array(similarity))
    gated = gate * content + (1 - gate) * previous
    shifted = np.array(
        [sum(shift[k] * gated[(i - off) % n] for k, off in enumerate((-1, 0, 1)))
         for i in range(n)]
    )  # fmt: skip
    return sharpen(shifted, gamma)


def np_ntm(control, memory, read_w, write_w, width, sharpen=np_sharpen_power):
    reads, memories, new_r, new_w = [], [], [], []
    n_read, n_write = read_w.shape[1], write_w.shape[1]
    for b in range(len(control)):
        split = n_read * (width + 6)
        heads = control[b, split:].reshape(n_write, 3 * width + 6)
        ww = [
            np_address(h, memory[b], write_w[b, i], width, sharpen)
            for i, h in enumerate(heads)
        ]
        m = memory[b].copy()
        for w, h in zip(ww, heads):
            m = m * (1 - np.outer(w, sigmoid(h[width + 6 : 2 * width + 6])))
        for w, h in zip(ww, heads):
            m = m + np.outer(w, h[2 * width + 6 :])
        heads = control[b, :split].reshape(n_read, width + 6)
        wr = [
            np_address(h, m, read_w[b, i], width, sharpen) for i, h in enumerate(heads)
        ]
        reads.append(np.concatenate([w @ m for w in wr]))
        memories.append(m)
        new_r.append(wr)
        new_w.append(ww)
    return np.array(reads), [np.array(memories), np.array(new_r), np.array(new_w)]


# -- exact semantics ---------------------------------------------------------------
def test_register_memory_write_then_recall():
    memory = S.RegisterMemory(depth=3, width=2, project=False)
    (state,) = memory.initial_states(1)
    big = 40.0
    a, b = [1.0, -2.0], [3.0, 0.5]
    # store a in register 1 (recall register 0: still empty)
    read, (state,) = run(
        memory, np.array([a + [-big, big, -big, big, -big, -big]]), [state]
    )
    assert_close(read, [[0.0, 0.0]])
    # store b in register 2, recall register 1
    read, (state,) = run(
        memory, np.array([b + [-big, -big, big, -big, big, -big]]), [state]
    )
    assert_close(read, [a])
    assert_close(state, [[[0, 0], a, b]])


def test_register_memory_soft_updates_match_numpy(rng):
    memory = S.RegisterMemory(depth=4, width=3, project=False)
    state = rng.normal(size=(2, 4, 3))
    for _ in range(3):
        control = rng.normal(size=(2, memory.control_size))
        read_ref, state_ref = np_register(control, state, 4, 3)
        read, (state,) = run(
            memory, control.astype("float32"), [state.astype("float32")]
        )
        assert_close(read, read_ref)
        assert_close(state, state_ref)


def push_pop(value, d, u):
    return np.array([list(value) + [d, u]], "float32")


def test_stack_push_push_pop_reads_first_value_back():
    stack = S.Stack(width=2, capacity=4, project=False)
    states = stack.initial_states(1)
    a, b = [1.0, 2.0], [-3.0, 4.0]
    reads = []
    for value, d, u in [(a, 1, 0), (b, 1, 0), ([9.0, 9.0], 0, 1)]:
        read, states = run(stack, push_pop(value, d, u), states)
        reads.append(read[0])
    assert_close(reads, [a, b, a])
    assert_close(states[1], [[0, 1, 0, 0]])  # a kept; b popped; the pop pushed 0


def test_queue_is_first_in_first_out():
    queue = S.Queue(width=2, capacity=6, project=False)
    states = queue.initial_states(1)
    a, b, c = [1.0, 2.0], [-3.0, 4.0], [5.0, 0.0]
    reads = []
    for value, d, u in [(a, 1, 0), (b, 1, 0), (c, 1, 0), (a, 0, 1), (a, 0, 1)]:
        read, states = run(queue, push_pop(value, d, u), states)
        reads.append(read[0])
    assert_close(reads, [a, a, a, b, c])


def test_capacity_forgets_the_oldest_slot():
    stack = S.Stack(width=1, capacity=2, project=False)
    states = stack.initial_states(1)
    for value in (1.0, 2.0, 3.0):
        _, states = run(stack, push_pop([value], 1, 0), states)
    assert_close(states[0], [[[2.0], [3.0]]])
    assert_close(states[1], [[1.0, 1.0]])


@pytest.mark.parametrize("cls,lifo", [(S.Stack, True), (S.Queue, False)])
def test_soft_push_pop_match_the_unbounded_paper_model(rng, cls, lifo):
    steps, width = 7, 3
    system = cls(width=width, capacity=steps, project=False)
    states = system.initial_states(2)
    refs = [NpNeuralMemory(lifo) for _ in range(2)]
    for _ in range(steps):
        value = rng.normal(size=(2, width))
        du = rng.uniform(size=(2, 2))
        read, states = run(
            system, np.concatenate([value, du], 1).astype("float32"), states
        )
        for b, ref in enumerate(refs):
            assert_close(read[b], ref.step(value[b], *du[b]), atol=1e-5)
            n = len(ref.strengths)  # the newest n slots of the buffer
            assert_close(states[1][b, -n:], ref.strengths, atol=1e-5)


@pytest.mark.parametrize("cls,lifo", [(S.Stack, True), (S.Queue, False)])
def test_rounded_strengths_match_the_paper_model_on_rounded_controls(rng, cls, lifo):
    steps, width = 9, 3
    system = cls(width=width, capacity=steps, project=False, round_strengths=True)
    assert system.get_config()["round_strengths"] is True
    clone = cls.from_config(system.get_config())
    assert clone.round_strengths is True
    states = system.initial_states(2)
    refs = [NpNeuralMemory(lifo) for _ in range(2)]
    for _ in range(steps):
        value = rng.normal(size=(2, width))
        du = rng.uniform(size=(2, 2))
        read, states = run(
            system, np.concatenate([value, du], 1).astype("float32"), states
        )
        for b, ref in enumerate(refs):
            # the NumPy model on d, u rounded by hand: whole entries only
            assert_close(read[b], ref.step(value[b], *(du[b] > 0.5)), atol=1e-6)
            n = len(ref.strengths)
            assert_close(states[1][b, -n:], ref.strengths, atol=0)
            assert set(np.unique(states[1][b])) <= {0.0, 1.0}


def test_rounded_strengths_pass_the_gradient_straight_through(rng):
    soft = S.Stack(width=2, capacity=4, project=False)
    hard = S.Stack(width=2, capacity=4, project=False, round_strengths=True)
    states = [
        rng.normal(size=(1, 4, 2)).astype("float32"),
        np.array([[0.0, 1.0, 1.0, 1.0]], "float32"),  # three whole entries
    ]
    control = np.array([[0.5, -1.5, 0.7, 0.8]], "float32")  # rounded: d=1, u=1
    rounded = np.array([[0.5, -1.5, 1.0, 1.0]], "float32")
    probe = rng.normal(size=(1, 2)).astype("float32")

    def grad(system, c):
        def f(c, *st):
            read = system([c, *st])[0]
            return keras.ops.sum(read * keras.ops.convert_to_tensor(probe))

        return gradients(f, [c, *states])[0]

    read, _ = run(hard, control, states)
    # pop the top entry, push [0.5, -1.5] with strength 1: the read is the push
    assert_close(read, rounded[:, :2])
    hard_grad = grad(hard, control)
    # straight through: the rounded model's gradient at the raw control is
    # the soft model's gradient at the rounded control
    assert_close(hard_grad, grad(soft, rounded))
    assert hard_grad[0, 2] != 0.0  # a plain rounding would give d no gradient


@pytest.mark.parametrize("cls,lifo", [(S.Stack, True), (S.Queue, False)])
def test_softmax_actions_match_numpy(rng, cls, lifo):
    steps, width, features = 6, 2, 5
    system = cls(width=width, capacity=steps, actions="softmax")
    assert system.projection_size == width + 3 and system.control_size == width + 2
    assert cls.from_config(system.get_config()).actions == "softmax"
    states = system.initial_states(2)
    refs = [NpNeuralMemory(lifo) for _ in range(2)]
    for _ in range(steps):
        controller = rng.normal(size=(2, features)).astype("float32")
        read, states = run(system, controller, states)
        kernel, bias = [np.asarray(w) for w in system.projection.weights]
        logits = controller @ kernel + bias
        value, actions = np.tanh(logits[:, :width]), softmax(logits[:, width:])
        for b, ref in enumerate(refs):
            push, pop, _ = actions[b]  # p(push), p(pop), p(no-op)
            assert_close(read[b], ref.step(value[b], push, pop), atol=1e-5)
            n = len(ref.strengths)
            assert_close(states[1][b, -n:], ref.strengths, atol=1e-5)


KERNELS = {
    "inverse_square": lambda d: 1 / (1 + d**2),
    "inverse_abs": lambda d: 1 / (1 + np.abs(d)),
}


@pytest.mark.parametrize("kernel,k", list(KERNELS.items()))
def test_attention_position_and_read_weights(rng, kernel, k):
    attention = S.Attention(datapoints=5, width=2, kernel=kernel, project=False)
    data = rng.normal(size=(3, 5, 2)).astype("float32")
    position = np.array([[0.0], [1.3], [-0.4]], "float32")
    move = np.array([[1.0], [-3.0], [0.25]], "float32")
    read, (new_position,) = run(attention, move, [position], [data])
    expected = position + move / (1 + np.abs(move))
    assert_close(new_position, expected)
    weights = k(np.arange(5)[None, :] - expected)
    assert_close(attention.weights_at(new_position), weights)
    assert_close(read, np.einsum("bn,bnw->bw", weights, data))


def test_attention_projection_starts_stepping_forward():
    attention = S.Attention(datapoints=4, width=1)
    (position,) = attention.initial_states(2)
    data = np.zeros((2, 4, 1), "float32")
    for _ in range(3):
        _, (position,) = run(attention, np.zeros((2, 6), "float32"), [position], [data])
    assert_close(position, np.full((2, 1), 1.5))  # softsign(1.0) = 0.5 per step


def ntm_head(key, beta=0.0, gate=0.0, shift=(0, 0, 0), gamma=0.0, erase=(), add=()):
    return [*key, beta, gate, *shift, gamma, *erase, *add]


def test_addressable_memory_content_shift_and_write():
    ntm = S.AddressableMemory(slots=4, width=3, project=False)
    memory = np.array([[[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 0]]], "float32")
    read_w, write_w = ntm.initial_states(1)[1:]
    no_write = ntm_head(
        [0, 0, 0], gate=-50, shift=(-50, 50, -50), erase=[-50] * 3, add=[0] * 3
    )
    stay, forward, back = (-50, 50, -50), (-50, -50, 50), (50, -50, -50)
    cases = [(stay, [0, 0, 1], 2), (forward, [0, 0, 1], 3),
             (forward, [1, 1, 0], 0), (back, [1, 0, 0], 3)]  # fmt: skip
    for shift, key, slot in cases:  # content focus, then a circular shift
        head = ntm_head(key, beta=50, gate=50, shift=shift, gamma=-50)
        read, states = run(ntm, np.array([head + no_write]), [memory, read_w, write_w])
        assert_close(states[1][0, 0], np.eye(4)[slot], atol=1e-4)
        assert_close(read, memory[:, slot], atol=1e-4)
    # write head: keep its one-hot weighting on slot 0, erase it, add v; the
    # read head finds v by content in the memory written at this same step
    v = [-0.5, -1.0, -2.0]  # far (in angle) from the other rows
    write = ntm_head([0, 0, 0], gate=-50, shift=(-50, 50, -50), erase=[50] * 3, add=v)
    read_head = ntm_head(v, beta=50, gate=50, shift=(-50, 50, -50), gamma=-50)
    read, states = run(ntm, np.array([read_head + write]), [memory, read_w, write_w])
    assert_close(states[0][0], [v, *memory[0, 1:]], atol=1e-4)
    assert_close(read, [v], atol=1e-4)


def test_addressable_memory_sharpening_concentrates_the_weighting():
    ntm = S.AddressableMemory(slots=3, width=2, project=False)
    memory = np.array([[[1, 0], [0.6, 0.8], [0, 1]]], "float32")
    weights = {}
    for gamma in (-50.0, 3.0):
        head = ntm_head([1, 0], beta=2, gate=50, shift=(-50, 50, -50), gamma=gamma)
        write = ntm_head(
            [0, 0], gate=-50, shift=(-50, 50, -50), erase=[-50] * 2, add=[0, 0]
        )
        _, states = run(
            ntm, np.array([head + write]), [memory, *ntm.initial_states(1)[1:]]
        )
        weights[gamma] = states[1][0, 0]
    # gamma ~ 1 keeps the content weighting; gamma = 1 + softplus(3) sharpens it
    assert weights[3.0][0] > weights[-50.0][0] > weights[-50.0][1] > weights[3.0][1]


def test_addressable_memory_matches_numpy_ntm(rng):
    ntm = S.AddressableMemory(
        slots=5, width=3, read_heads=2, write_heads=2, project=False
    )
    states = [rng.normal(size=(2, 5, 3))] + [
        softmax(rng.normal(size=(2, 2, 5))) for _ in range(2)
    ]
    for _ in range(3):
        control = rng.normal(size=(2, ntm.control_size))
        read_ref, states_ref = np_ntm(control, *states, width=3)
        read, states = run(
            ntm, control.astype("float32"), [s.astype("float32") for s in states]
        )
        assert_close(read, read_ref, atol=1e-5)
        for got, ref in zip(states, states_ref):
            assert_close(got, ref, atol=1e-5)
        states = [s.astype("float64") for s in states]


def ntm_inputs(ntm, rng, raw_gamma, raw_beta=None, spread=1.0):
    """Controls with every head's raw gamma (and beta) set; memory and weightings.

    Example 0 has a zero memory and uniform weightings, so every head's
    shifted weighting is exactly 1/N; the others have weightings
    `softmax(spread * normal)`.
    """
    batch = 3
    control = rng.normal(size=(batch, ntm.control_size))
    offset = 0
    for name, size in ntm.control_layout:
        if name.endswith("_gamma"):
            control[:, offset] = raw_gamma
        if name.endswith("_beta") and raw_beta is not None:
            control[:, offset] = raw_beta
        offset += size
    memory = rng.normal(size=(batch, ntm.slots, ntm.width))
    weights = [
        softmax(spread * rng.normal(size=(batch, heads, ntm.slots)))
        for heads in (ntm.read_heads, ntm.write_heads)
    ]
    memory[0] = 0.0
    for w in weights:
        w[0] = 1.0 / ntm.slots
    return control, [memory, *weights]


@pytest.mark.parametrize(
    "dtype,raw_gamma", [("float32", 60.0), ("float32", 300.0), ("float64", 400.0)]
)
def test_addressable_memory_large_sharpening_stays_finite(rng, dtype, raw_gamma):
    ntm = S.AddressableMemory(
        slots=8, width=3, read_heads=2, write_heads=1, project=False, dtype=dtype
    )
    # near-uniform weightings (beta ~ 0.02): the sharpened one is peaked, not one-hot
    control, states = ntm_inputs(ntm, rng, raw_gamma, raw_beta=-4.0, spread=0.1)
    control, states = control.astype(dtype), [s.astype(dtype) for s in states]
    with np.errstate(all="ignore"):  # extreme: the paper's form in NumPy is 0/0
        assert np.isnan(np_ntm(control, *states, width=3)[0]).all()

    read, (memory, read_w, write_w) = run(ntm, control, states)
    for got in (read, memory, read_w, write_w):
        assert np.isfinite(got).all()
    for w in (read_w, write_w):
        np.testing.assert_allclose(w.sum(axis=-1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(read_w[0], 1 / 8, rtol=1e-6)  # uniform stays uniform
    # NumPy in log space, in float64; float32 rounds log(w) by ~1e-7, times
    # gamma (float64: 1e-14 apart on TensorFlow and JAX, 2e-7 on PyTorch)
    tol = {"float32": 3e-4, "float64": 1e-6}[dtype]
    read_ref, states_ref = np_ntm(
        *[x.astype("float64") for x in (control, *states)], width=3,
        sharpen=np_sharpen_log,
    )  # fmt: skip
    assert read_w[1:].max() > 0.3  # sharpened, so the comparison means something
    assert_close(read, read_ref, rtol=tol, atol=tol)
    for got, ref in zip((memory, read_w, write_w), states_ref):
        assert_close(got, ref, rtol=tol, atol=tol)


@pytest.mark.parametrize("raw_gamma", [-3.0, 0.0, 2.0, 5.0])
def test_addressable_memory_moderate_sharpening_equals_the_paper_formula(
    rng, raw_gamma
):
    ntm = S.AddressableMemory(
        slots=6, width=3, read_heads=2, write_heads=2, project=False, dtype="float64"
    )
    control, states = ntm_inputs(ntm, rng, raw_gamma)
    read, new_states = run(ntm, control, states)
    read_ref, states_ref = np_ntm(control, *states, width=3, sharpen=np_sharpen_power)
    assert_close(read, read_ref, rtol=1e-6, atol=1e-6)
    for got, ref in zip(new_states, states_ref):
        assert_close(got, ref, rtol=1e-6, atol=1e-6)


# -- every system: gradients, the loop, saving ------------------------------------
SYSTEMS = {
    "register": lambda **kw: S.RegisterMemory(depth=3, width=2, **kw),
    "attention": lambda **kw: S.Attention(datapoints=4, width=2, **kw),
    "attention_abs": lambda **kw: S.Attention(4, 2, kernel="inverse_abs", **kw),
    "stack": lambda **kw: S.Stack(width=2, capacity=4, **kw),
    "queue": lambda **kw: S.Queue(width=2, capacity=4, **kw),
    "ntm": lambda **kw: S.AddressableMemory(4, 2, read_heads=2, write_heads=1, **kw),
}


def random_inputs(system, rng, batch, controller_size):
    """A controller, states away from kinks (strengths in (0.1, 0.9)), constants."""
    controller = rng.normal(size=(batch, controller_size))
    if isinstance(system, (S.Stack, S.Queue)) and not system.project:
        controller[:, -2:] = rng.uniform(0.1, 0.9, size=(batch, 2))
    states = [rng.uniform(0.1, 0.9, size=(batch, *s)) for s in system.state_shapes]
    constants = [rng.normal(size=(batch, *s)) for s in system.constant_shapes]
    return [controller, *states, *constants]


@pytest.fixture
def precision():
    """Finite-difference step and tolerances: float64 where Keras computes in it.

    Keras 3 computes float64 ops in float32 on JAX and PyTorch
    (`keras.backend.result_type` maps float64 to float32 there), so those
    backends are checked in float32 with a coarser step.
    """
    if keras.backend.backend() != "tensorflow":
        yield {"h": 1e-3, "rtol": 2e-2, "atol": 2e-3, "dtype": "float32"}
        return
    previous = keras.config.floatx()
    keras.config.set_floatx("float64")
    yield {"h": 1e-6, "rtol": 1e-5, "atol": 1e-6, "dtype": "float64"}
    keras.config.set_floatx(previous)


@pytest.mark.parametrize("project", [False, True])
@pytest.mark.parametrize("name", sorted(SYSTEMS))
def test_gradients_match_finite_differences(rng, precision, name, project):
    system = SYSTEMS[name](project=project)
    size = 5 if project else system.control_size
    inputs = random_inputs(system, rng, 1, size)  # one example
    inputs = [x.astype(precision["dtype"]) for x in inputs]
    probes = [rng.normal(size=o.shape) for o in system(inputs)]

    def losses(values):  # one loss per example of the batch
        outs = system([ops.convert_to_tensor(v) for v in values])
        return sum(
            ops.sum(ops.reshape(ops.multiply(o, p), (ops.shape(o)[0], -1)), axis=1)
            for o, p in zip(outs, probes)
        )

    grads = gradients(lambda *tensors: ops.sum(losses(tensors)), inputs)
    # central differences, all coordinates at once: the examples of one batch
    # are independent, so each perturbed copy of the inputs is one example
    h = precision["h"]
    sizes = [x.size for x in inputs]
    offsets = np.eye(sum(sizes)) * h
    batch = []
    for x, d in zip(inputs, np.split(offsets, np.cumsum(sizes)[:-1], axis=1)):
        d = d.reshape(-1, *x.shape[1:])
        batch.append(np.concatenate([x + d, x - d]))
    plus, minus = np.split(np.asarray(losses(batch)), 2)
    numeric = np.split((plus - minus) / (2 * h), np.cumsum(sizes)[:-1])
    for x, grad, num in zip(inputs, grads, numeric):
        np.testing.assert_allclose(
            grad, num.reshape(x.shape), rtol=precision["rtol"], atol=precision["atol"]
        )


def superloop_rnn(system, state_initializer=None):
    """A step graph: controller -> system -> output; the read fed back as a state."""
    x_t = keras.Input((2,))
    read_tm1 = keras.Input((system.read_size,))
    states_tm1 = system.initial_state_inputs()
    constants = system.constant_inputs()
    h_t = layers.Dense(6, activation="tanh")(layers.Concatenate()([x_t, read_tm1]))
    read_t, *states_t = system([h_t, *states_tm1, *constants])
    out = layers.Dense(3)(layers.Concatenate()([h_t, read_t]))
    return cg.RecurrentModel(
        input=x_t,
        output=out,
        initial_states=[read_tm1, *states_tm1],
        final_states=[read_t, *states_t],
        constants=constants,
        state_initializer=state_initializer,
        return_sequences=True,
        return_state=True,
    )


@pytest.mark.parametrize("name", sorted(SYSTEMS))
def test_recurrent_model_equals_loop_of_steps(rng, name):
    system = SYSTEMS[name]()
    rnn = superloop_rnn(system)
    x = rng.normal(size=(2, 5, 2)).astype("float32")
    consts = [
        rng.normal(size=(2, *s)).astype("float32") for s in system.constant_shapes
    ]
    initial = [np.zeros((2, system.read_size), "float32"), *system.initial_states(2)]
    y, *final = rnn(x, initial_state=initial, constants=consts)
    states, outputs = initial, []
    for t in range(5):
        out, states = rnn.step(x[:, t], states, constants=consts)
        outputs.append(np.asarray(out))
    assert_close(y, np.stack(outputs, 1))
    for got, ref in zip(final, states):
        assert_close(got, ref)


@pytest.mark.parametrize("name", sorted(SYSTEMS))
def test_model_with_system_saves_and_loads_bit_identically(rng, tmp_path, name):
    system = SYSTEMS[name]()
    rnn = superloop_rnn(system, state_initializer=[None, *system.state_initializers()])
    x_in = keras.Input((None, 2))
    c_in = [keras.Input(s) for s in system.constant_shapes]
    model = keras.Model([x_in, *c_in], rnn(x_in, constants=c_in)[0])
    x = rng.normal(size=(3, 4, 2)).astype("float32")
    data = [x] + [
        rng.normal(size=(3, *s)).astype("float32") for s in system.constant_shapes
    ]
    expected = model.predict(data, verbose=0)
    path = tmp_path / "m.keras"
    model.save(path)
    loaded = keras.models.load_model(path, safe_mode=True)
    np.testing.assert_array_equal(loaded.predict(data, verbose=0), expected)


@pytest.mark.parametrize("name", sorted(SYSTEMS))
def test_one_fit_step_trains_the_projection(rng, name):
    system = SYSTEMS[name]()
    rnn = superloop_rnn(system, state_initializer=[None, *system.state_initializers()])
    x_in = keras.Input((None, 2))
    c_in = [keras.Input(s) for s in system.constant_shapes]
    model = keras.Model([x_in, *c_in], rnn(x_in, constants=c_in)[0])
    model.compile(keras.optimizers.SGD(0.1), "mse")
    data = [rng.normal(size=(4, 3, 2)).astype("float32")]
    data += [rng.normal(size=(4, *s)).astype("float32") for s in system.constant_shapes]
    before = [np.array(w) for w in system.projection.get_weights()]
    history = model.fit(data, np.ones((4, 3, 3), "float32"), epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    after = system.projection.get_weights()
    assert all(np.all(np.isfinite(w)) for w in after)
    assert any(not np.array_equal(a, b) for a, b in zip(after, before))


@pytest.mark.parametrize("name", sorted(SYSTEMS))
def test_config_round_trip_and_wiring_helpers(name):
    system = SYSTEMS[name](project=False, name="sys")
    clone = type(system).from_config(system.get_config())
    assert clone.get_config() == system.get_config()
    inputs = system.initial_state_inputs()
    assert [tuple(t.shape[1:]) for t in inputs] == system.state_shapes
    assert [t.name for t in inputs] == [f"sys_state{i}" for i in range(len(inputs))]
    assert [
        tuple(t.shape[1:]) for t in system.constant_inputs()
    ] == system.constant_shapes
    initial = system.initial_states(3)
    assert [tuple(v.shape) for v in initial] == [(3, *s) for s in system.state_shapes]
    assert sum(size for _, size in system.control_layout) == system.control_size
    read, *_ = system(
        [keras.Input((system.control_size,)), *inputs, *system.constant_inputs()]
    )
    assert tuple(read.shape) == (None, system.read_size)


def test_addressable_memory_weights_start_on_slot_zero():
    ntm = S.AddressableMemory(slots=3, width=2, read_heads=2)
    memory, read_w, write_w = ntm.initial_states(1)
    assert_close(memory, np.zeros((1, 3, 2)))
    assert_close(read_w, [[[1, 0, 0], [1, 0, 0]]])
    assert_close(write_w, [[[1, 0, 0]]])
    assert ntm.control_size == 2 * (2 + 6) + (3 * 2 + 6)


def test_stack_projection_squashes_strengths_and_value():
    stack = S.Stack(width=2, capacity=3, kernel_initializer="zeros",
                    bias_initializer=keras.initializers.Constant(3.0))  # fmt: skip
    read, states = run(stack, np.ones((1, 4), "float32"), stack.initial_states(1))
    assert_close(states[1], [[0, 0, sigmoid(3.0)]])
    assert_close(read, [[sigmoid(3.0) * np.tanh(3.0)] * 2])


# -- errors ---------------------------------------------------------------------
@pytest.mark.parametrize(
    "make,argument",
    [
        (lambda: S.RegisterMemory(depth=0, width=2), "depth=0"),
        (lambda: S.RegisterMemory(depth=2, width=2.5), "width=2.5"),
        (lambda: S.Attention(datapoints=-1, width=2), "datapoints=-1"),
        (lambda: S.Attention(4, 2, kernel="gaussian"), "kernel='gaussian'"),
        (lambda: S.Stack(width=2, capacity=0), "capacity=0"),
        (lambda: S.Queue(width=True, capacity=3), "width=True"),
        (lambda: S.Stack(2, 3, actions="argmax"), "actions='argmax'"),
        (lambda: S.Stack(2, 3, round_strengths=1), "round_strengths=1"),
        (lambda: S.AddressableMemory(4, 2, read_heads=0), "read_heads=0"),
    ],
)
def test_bad_constructor_arguments_raise(make, argument):
    with pytest.raises(ValueError, match=argument.split("=")[0]) as info:
        make()
    assert argument in str(info.value)


def test_bad_calls_raise_naming_expected_and_received():
    memory = S.RegisterMemory(depth=3, width=2, project=False)
    (state,) = memory.initial_state_inputs()
    with pytest.raises(ValueError, match=r"2 tensors. Received 1"):
        memory([keras.Input((8,))])
    with pytest.raises(
        ValueError, match=r"control_size=8.*Received: shape=\(None, 7\)"
    ):
        memory([keras.Input((7,)), state])
    with pytest.raises(
        ValueError, match=r"states\[0\].*\(None, 3, 2\).*\(None, 2, 3\)"
    ):
        memory([keras.Input((8,)), keras.Input((2, 3))])
    with pytest.raises(ValueError, match=r"controller.*\(None, 2, 4\)"):
        S.RegisterMemory(3, 2)([keras.Input((2, 4)), state])
    attention = S.Attention(datapoints=4, width=2)
    with pytest.raises(ValueError, match=r"constants\[0\].*\(None, 4, 2\)"):
        attention([keras.Input((5,)), keras.Input((1,)), keras.Input((3, 2))])
    with pytest.raises(ValueError, match="Received 2 tensors"):
        attention(
            [np.zeros((1, 5), "float32"), np.zeros((1, 1), "float32")]
        )  # eager, constants missing
