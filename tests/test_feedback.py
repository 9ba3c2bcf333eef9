"""Feedback networks: chains and trees against NumPy, errors, saving, Spoerer 2017."""

import keras
import numpy as np
import pytest
from keras import layers

import cellgraph as cg
from cellgraph.feedback import (
    VARIANTS,
    FeedbackChain,
    FeedbackTree,
    LocalResponseNormalization,
    Merger,
    Splitter,
    spoerer2017,
    spoerer2017_chain,
)

RTOL, ATOL = 1e-5, 1e-5


# -- NumPy references -------------------------------------------------------
def dense(x, layer, activation=None):
    kernel, *bias = layer.get_weights()
    y = x @ kernel + (bias[0] if bias else 0.0)
    return activation(y) if activation else y


def conv_same(x, kernel, bias=None):
    """Cross-correlation with 'same' padding (odd kernels), as Keras's Conv2D."""
    kh, kw = kernel.shape[:2]
    ph, pw = kh // 2, kw // 2
    padded = np.pad(x, ((0, 0), (ph, ph), (pw, pw), (0, 0)))
    h, w = x.shape[1:3]
    out = np.zeros((*x.shape[:3], kernel.shape[-1]), np.float64)
    for i in range(kh):
        for j in range(kw):
            out += padded[:, i : i + h, j : j + w, :] @ kernel[i, j]
    return out + (0.0 if bias is None else bias)


def max_pool2(x):
    n, h, w, c = x.shape
    return x.reshape(n, h // 2, 2, w // 2, 2, c).max(axis=(2, 4))


def lrn(x, radius=2, bias=1.0, alpha=1e-4, beta=0.5):
    out = np.empty_like(x)
    c = x.shape[-1]
    for k in range(c):
        window = x[..., max(0, k - radius) : min(c, k + radius + 1)]
        out[..., k] = x[..., k] / (bias + alpha * (window**2).sum(-1)) ** beta
    return out


def relu(x):
    return np.maximum(x, 0.0)


# -- FeedbackChain equals its recurrence --------------------------------------
def dense_chain():
    d1, u, d2 = layers.Dense(6), layers.Dense(6, use_bias=False), layers.Dense(3)
    chain = FeedbackChain(
        [d1, Merger("h", u), layers.Activation("tanh"), Splitter("h"), d2],
        input_shape=(5,),
    )
    return chain, (d1, u, d2)


def dense_chain_reference(xs, d1, u, d2):
    """h_t = tanh(x_t W1 + b1 + h_tm1 U); y_t = h_t W2 + b2."""
    h = np.zeros((xs[0].shape[0], 6))
    ys = []
    for x in xs:
        h = np.tanh(dense(x, d1) + dense(h, u))
        ys.append(dense(h, d2))
    return np.stack(ys, 1), h


def test_dense_chain_on_a_static_input_equals_numpy(rng):
    chain, weights = dense_chain()
    assert chain.state_shapes == [(6,)]
    rnn = chain.get_layer(timesteps=4, return_sequences=True, return_state=True)
    x = rng.normal(size=(3, 5)).astype("float32")
    y, h = rnn(x)
    want_y, want_h = dense_chain_reference([x] * 4, *weights)
    np.testing.assert_allclose(y, want_y, rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(h, want_h, rtol=RTOL, atol=ATOL)


def test_dense_chain_on_a_sequence_equals_numpy(rng):
    chain, weights = dense_chain()
    rnn = chain.get_layer(return_sequences=True)
    x = rng.normal(size=(3, 7, 5)).astype("float32")
    want, _ = dense_chain_reference(list(x.transpose(1, 0, 2)), *weights)
    np.testing.assert_allclose(rnn(x), want, rtol=RTOL, atol=ATOL)


def test_conv_chain_with_feature_map_states_equals_numpy(rng):
    """Lateral and top-down feedback between two conv layers, states (H, W, C)."""
    conv1 = layers.Conv2D(3, 3, padding="same")
    lat1 = layers.Conv2D(3, 3, padding="same", use_bias=False)
    conv2 = layers.Conv2D(4, 3, padding="same", activation="relu")
    down = layers.Conv2D(3, 1, use_bias=False)
    top = keras.Sequential([layers.UpSampling2D(2), down])
    readout = layers.Dense(2)
    chain = FeedbackChain(
        [
            conv1,
            Merger("low", lat1),
            Merger("high", top),
            layers.ReLU(),
            Splitter("low"),
            layers.MaxPooling2D(2),
            conv2,
            Splitter("high"),
            layers.GlobalAveragePooling2D(),
            readout,
        ],
        input_shape=(6, 6, 2),
    )
    assert chain.state_names == ["low", "high"]
    assert chain.state_shapes == [(6, 6, 3), (3, 3, 4)]
    rnn = chain.get_layer(timesteps=3, return_sequences=True)
    x = rng.normal(size=(2, 6, 6, 2)).astype("float32")
    y = np.asarray(rnn(x))

    low, high = np.zeros((2, 6, 6, 3)), np.zeros((2, 3, 3, 4))
    (k1, b1), (kl,), (k2, b2), (kd,) = (
        conv1.get_weights(),
        lat1.get_weights(),
        conv2.get_weights(),
        down.get_weights(),
    )
    for t in range(3):
        up = high.repeat(2, axis=1).repeat(2, axis=2)
        low = relu(conv_same(x, k1, b1) + conv_same(low, kl) + up @ kd[0, 0])
        high = relu(conv_same(max_pool2(low), k2, b2))
        want = dense(high.mean(axis=(1, 2)), readout)
        np.testing.assert_allclose(y[:, t], want, rtol=1e-4, atol=1e-5)


def test_blt_chain_equals_its_layers_called_step_by_step(rng):
    chain = spoerer2017_chain("BLT", (8, 8, 1), classes=5, features=4)
    rnn = chain.get_layer(timesteps=3, return_sequences=True)
    x = rng.random((2, 8, 8, 1)).astype("float32")
    y = np.asarray(rnn(x))
    by_name = {e.name: e for e in chain.elements if isinstance(e, keras.Layer)}
    mergers = [e for e in chain.elements if isinstance(e, Merger)]
    lateral_1, top_down_1, lateral_2 = (m.branch for m in mergers)
    lrn_1, lrn_2 = by_name["lrn_1"], by_name["lrn_2"]
    h1, h2 = np.zeros((2, 8, 8, 4), "float32"), np.zeros((2, 4, 4, 4), "float32")
    for t in range(3):
        z1 = by_name["bottom_up_1"](x) + lateral_1(h1) + top_down_1(h2)
        h1_new = lrn_1(keras.ops.relu(z1))
        z2 = by_name["bottom_up_2"](by_name["pool_1"](h1_new)) + lateral_2(h2)
        h1, h2 = h1_new, lrn_2(keras.ops.relu(z2))
        want = by_name["readout"](by_name["global_pool"](h2))
        np.testing.assert_allclose(y[:, t], want, rtol=1e-5, atol=1e-6)


def test_concat_merger_state_shapes_and_values(rng):
    """A concatenating Merger changes the state's own shape: found by iteration."""
    d1, d2 = layers.Dense(4, activation="tanh"), layers.Dense(2)
    branch = layers.Dense(3)
    chain = FeedbackChain(
        [d1, Merger("h", branch, op="concat"), Splitter("h"), d2], input_shape=(5,)
    )
    assert chain.state_shapes == [(7,)]
    x = rng.normal(size=(2, 4, 5)).astype("float32")
    y = chain.get_layer(return_sequences=True)(x)
    h = np.zeros((2, 7))
    for t in range(4):
        h = np.concatenate([dense(x[:, t], d1, np.tanh), dense(h, branch)], -1)
        np.testing.assert_allclose(y[:, t], dense(h, d2), rtol=RTOL, atol=ATOL)


def test_merger_with_a_layer_op_and_mul(rng):
    d1, d2 = layers.Dense(4), layers.Dense(4, activation="sigmoid")
    gate = layers.Dense(4, activation="sigmoid")
    chain = FeedbackChain(
        [
            d1,
            Merger("g", layers.Identity(), op=layers.Maximum()),
            Merger("g", gate, op="mul"),
            Splitter("g"),
            d2,
        ],
        input_shape=(3,),
    )
    x = rng.normal(size=(2, 3)).astype("float32")
    y = chain.get_layer(timesteps=3, return_sequences=True)(x)
    g = np.zeros((2, 4))
    for t in range(3):
        g = np.maximum(dense(x, d1), g) * dense(g, gate, lambda v: 1 / (1 + np.exp(-v)))
        want = dense(g, d2, lambda v: 1 / (1 + np.exp(-v)))
        np.testing.assert_allclose(y[:, t], want, rtol=RTOL, atol=ATOL)


# -- FeedbackTree ---------------------------------------------------------------
def test_tree_splitter_switches_to_the_previous_state(rng):
    """a_t = tanh(x W1 + a_tm1 U); b_t = tanh(a_tm1 W2); y_t = b_tm1 W3 + b3."""
    d1, u = layers.Dense(6), layers.Dense(6, use_bias=False)
    d2, d3 = layers.Dense(5, activation="tanh"), layers.Dense(3)
    tree = FeedbackTree(
        [
            d1,
            Merger("a", u),
            layers.Activation("tanh"),
            Splitter("a"),
            d2,
            Splitter("b"),
            d3,
        ],
        input_shape=(4,),
    )
    assert tree.state_shapes == [(6,), (5,)]
    rnn = tree.get_layer(return_sequences=True, return_state=True)
    x = rng.normal(size=(2, 5, 4)).astype("float32")
    y, a_last, b_last = rnn(x)
    a, b = np.zeros((2, 6)), np.zeros((2, 5))
    for t in range(5):
        out = dense(b, d3)
        a, b = np.tanh(dense(x[:, t], d1) + dense(a, u)), dense(a, d2, np.tanh)
        np.testing.assert_allclose(y[:, t], out, rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(a_last, a, rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(b_last, b, rtol=RTOL, atol=ATOL)
    # information needs one step per Splitter: the first two outputs do not
    # depend on the input at all
    np.testing.assert_allclose(y[:, 0], dense(np.zeros((2, 5)), d3), atol=ATOL)


def test_tree_and_chain_differ_only_by_the_switch(rng):
    d1, d2 = layers.Dense(4, activation="tanh"), layers.Dense(2)
    elements = [d1, Splitter("h"), d2]
    chain = FeedbackChain(elements, input_shape=(3,))
    tree = FeedbackTree(elements, input_shape=(3,))
    x = rng.normal(size=(2, 3)).astype("float32")
    yc = np.asarray(chain.get_layer(timesteps=3, return_sequences=True)(x))
    yt = np.asarray(tree.get_layer(timesteps=3, return_sequences=True)(x))
    np.testing.assert_allclose(yt[:, 0], dense(np.zeros((2, 4)), d2), atol=ATOL)
    np.testing.assert_allclose(yt[:, 1:], yc[:, :2], rtol=RTOL, atol=ATOL)


# -- errors -----------------------------------------------------------------------
@pytest.mark.parametrize(
    "make, match",
    [
        (
            lambda: FeedbackChain([layers.Dense(3), Merger("nope", layers.Dense(3))]),
            r"Merger\('nope'\).*Splitters in the chain: \[\]",
        ),
        (
            lambda: FeedbackChain(
                [layers.Dense(3), Splitter("h"), layers.Dense(3), Splitter("h")]
            ),
            r"unique.*\['h'\]",
        ),
        (lambda: FeedbackChain([layers.Dense(3), "relu"]), r"element 1.*'relu'"),
        (lambda: FeedbackChain([np.tanh]), r"element 0.*Layer subclass"),
        (lambda: FeedbackChain(layers.Dense(3)), r"must be a list"),
        (lambda: Merger("h", np.tanh), r"`branch` of Merger\('h'\)"),
        (lambda: Merger("h", layers.Dense(3), op="sub"), r"`op`.*'sub'"),
        (lambda: Splitter(""), r"non-empty string"),
        (lambda: FeedbackChain([Splitter("h")], input_shape=(0, 3)), "input_shape"),
    ],
)
def test_construction_errors(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_branch_whose_output_cannot_combine_names_both_shapes():
    chain = FeedbackChain(
        [layers.Dense(4), Merger("h", layers.Dense(3)), Splitter("h")],
        input_shape=(5,),
    )
    with pytest.raises(ValueError, match=r"\(None, 3\).*\(None, 4\)"):
        chain.state_shapes  # noqa: B018
    chain = FeedbackChain(
        [
            layers.Conv2D(2, 3, padding="same"),
            Merger("h", layers.GlobalAveragePooling2D(), op="concat"),
            Splitter("h"),
        ],
        input_shape=(4, 4, 1),
    )
    with pytest.raises(ValueError, match=r"\(None, 2\).*\(None, 4, 4, 2\)"):
        chain.get_layer()


def test_state_shapes_need_the_input_shape():
    chain = FeedbackChain([layers.Dense(3), Splitter("h")])
    with pytest.raises(ValueError, match="input_shape"):
        chain.state_shapes  # noqa: B018
    with pytest.raises(ValueError, match="input_shape"):
        chain.get_layer(timesteps=2)
    with pytest.raises(ValueError, match="timesteps"):
        FeedbackChain([layers.Dense(3)], input_shape=(2,)).get_layer(timesteps=0)


def test_growing_state_and_wrong_call_shape_are_refused():
    growing = FeedbackChain(
        [layers.Dense(3), Merger("h", layers.Identity(), "concat"), Splitter("h")],
        input_shape=(2,),
    )
    with pytest.raises(ValueError, match="do not settle"):
        growing.state_shapes  # noqa: B018
    chain = FeedbackChain([layers.Dense(3), Splitter("h")], input_shape=(2,))
    with pytest.raises(ValueError, match=r"input_shape=\(2,\)"):
        chain([keras.Input((4,)), keras.Input((3,))])


# -- engine features: nesting, masks, stateful, saving ------------------------------
def test_chain_nests_as_a_cell_in_a_step_graph(rng):
    chain, _ = dense_chain()
    readout = layers.Dense(2)
    x_t, h_tm1 = keras.Input((5,)), keras.Input((6,))
    out, h_t = chain([x_t, h_tm1])
    nested = cg.RecurrentModel(
        input=x_t,
        output=readout(out),
        initial_states=[h_tm1],
        final_states=[h_t],
        return_sequences=True,
    )
    x = rng.normal(size=(2, 4, 5)).astype("float32")
    direct = readout(chain.get_layer(return_sequences=True)(x))
    np.testing.assert_allclose(nested(x), direct, rtol=RTOL, atol=ATOL)


def test_masked_padding_ends_in_the_unpadded_state(rng):
    chain, _ = dense_chain()
    rnn = chain.get_layer(return_state=True)
    inputs = keras.Input((None, 5))
    model = keras.Model(inputs, rnn(layers.Masking(0.0)(inputs)))
    x = rng.normal(size=(2, 3, 5)).astype("float32")
    padded = np.concatenate([x, np.zeros((2, 2, 5), "float32")], axis=1)
    y_pad, h_pad = model.predict(padded, verbose=0)
    y, h = rnn(x)
    np.testing.assert_allclose(h_pad, h, rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(y_pad, y, rtol=RTOL, atol=ATOL)


def test_stateful_layer_continues_across_calls(rng):
    chain, _ = dense_chain()
    rnn = chain.get_layer(stateful=True, return_sequences=True)
    x = rng.normal(size=(2, 6, 5)).astype("float32")
    first = np.asarray(rnn(x[:, :3]))
    second = np.asarray(rnn(x[:, 3:]))
    rnn.reset_states()
    full = np.asarray(rnn(x))
    np.testing.assert_allclose(np.concatenate([first, second], 1), full, atol=ATOL)


def round_trip(model, x, tmp_path):
    # fresh random weights differ from those of a rebuilt model, so equality
    # shows that the weights were loaded
    path = tmp_path / "m.keras"
    model.save(path)
    loaded = keras.models.load_model(path, safe_mode=True)
    np.testing.assert_array_equal(
        model.predict(x, verbose=0), loaded.predict(x, verbose=0)
    )
    return loaded


def test_spoerer_blt_saves_and_loads_bit_identical(rng, tmp_path):
    images = keras.Input((8, 8, 1))
    blt = spoerer2017("BLT", (8, 8, 1), classes=4, timesteps=3, features=4)
    model = keras.Model(images, blt(images))
    loaded = round_trip(model, rng.random((4, 8, 8, 1)).astype("float32"), tmp_path)
    assert loaded.layers[1].state_shapes == [(8, 8, 4), (4, 4, 4)]


def test_tree_with_layer_ops_saves_and_loads_bit_identical(rng, tmp_path):
    tree = FeedbackTree(
        [
            layers.Dense(4),
            Merger("h", layers.Dense(2), op="concat"),
            layers.Dense(4, activation="tanh"),
            Merger("h", layers.Identity(), op=layers.Maximum()),
            Splitter("h"),
            layers.Dense(2),
        ],
        input_shape=(3,),
    )
    inputs = keras.Input((None, 3))
    model = keras.Model(inputs, tree.get_layer(return_sequences=True)(inputs))
    round_trip(model, rng.normal(size=(4, 5, 3)).astype("float32"), tmp_path)


def test_cell_config_round_trip():
    chain, _ = dense_chain()
    clone = FeedbackChain.from_config(chain.get_config())
    assert [type(e).__name__ for e in clone.elements] == [
        type(e).__name__ for e in chain.elements
    ]
    assert clone.state_shapes == chain.state_shapes == [(6,)]


# -- Spoerer et al. 2017 ------------------------------------------------------------
def test_local_response_normalization_equals_numpy(rng):
    x = rng.normal(size=(2, 3, 3, 7)).astype("float32") * 30
    layer = LocalResponseNormalization(depth_radius=2, alpha=1e-3, beta=0.75)
    np.testing.assert_allclose(
        layer(x), lrn(x, 2, 1.0, 1e-3, 0.75), rtol=1e-5, atol=1e-6
    )
    clone = LocalResponseNormalization.from_config(layer.get_config())
    assert (clone.depth_radius, clone.alpha, clone.beta) == (2, 1e-3, 0.75)


def test_spoerer_variants_shapes_recurrence_and_budgets(rng):
    x = rng.random((3, 8, 8, 1)).astype("float32")
    params = {}
    for variant in VARIANTS:
        rnn = spoerer2017(variant, (8, 8, 1), 5, 3, True, features=8)
        images = keras.Input((8, 8, 1))
        model = keras.Model(images, rnn(images))
        params[variant] = model.count_params()
        y = np.asarray(rnn(x))
        assert y.shape == (3, 3, 5)
        np.testing.assert_allclose(y.sum(-1), 1.0, rtol=1e-5)
        change = np.abs(y - y[:, :1]).max()
        if variant in ("B", "BK", "BF"):
            assert rnn.num_states == 0 and change == 0.0
        else:
            assert rnn.num_states == variant.count("L") + 1
            assert change > 1e-6
    assert params["B"] < min(params[v] for v in ("BK", "BF", "BL", "BT", "BLT"))
    last = spoerer2017("BT", (9, 7, 2), classes=3, timesteps=2)
    assert last(rng.random((2, 9, 7, 2)).astype("float32")).shape == (2, 3)
    with pytest.raises(ValueError, match="variant"):
        spoerer2017("BX", (8, 8, 1))
    with pytest.raises(ValueError, match="input_shape"):
        spoerer2017("B", (8, 8))


def test_feedback_chain_runs_on_a_sequence_of_frames(rng):
    chain = spoerer2017_chain("BL", (6, 6, 1), classes=2, features=2)
    frames = rng.random((2, 4, 6, 6, 1)).astype("float32")
    y = chain.get_layer(return_sequences=True)(frames)
    assert y.shape == (2, 4, 2)
