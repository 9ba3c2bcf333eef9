"""Recurrent convolutional networks of Spoerer, McClure & Kriegeskorte (2017).

"Recurrent convolutional neural networks: a better model of biological object
recognition", Frontiers in Psychology 8:1551. Two convolutional layers with
bottom-up (B), lateral (L) and top-down (T) connections, local response
normalisation and max pooling, a readout at every timestep; B, BK and BF are
the feedforward controls. Built with `FeedbackChain`.
"""

from __future__ import annotations

import keras
from keras import layers, ops

from cellgraph.feedback.chain import FeedbackChain
from cellgraph.feedback.markers import Merger, Splitter

VARIANTS = ("B", "BK", "BF", "BL", "BT", "BLT")


@keras.saving.register_keras_serializable(package="cellgraph")
class LocalResponseNormalization(keras.layers.Layer):
    """Local response normalisation across channels (Krizhevsky et al. 2012).

    Each activation is divided by a power of the summed squares of its
    neighbours along the last (channel) axis:

    `y[..., c] = x[..., c] / (bias + alpha * sum_{|d| <= depth_radius}
    x[..., c + d] ** 2) ** beta`,

    with channels beyond the edges counted as zero. The defaults are the
    values used by Spoerer et al. (2017) (a window of 5 channels,
    `bias=1`, `alpha=1e-4`, `beta=0.5`) and follow the conventions of
    `tf.nn.local_response_normalization`.

    Args:
        depth_radius: half-width of the channel window (window
            `2 * depth_radius + 1`).
        bias: additive constant `k`.
        alpha: scale of the sum of squares.
        beta: exponent.
        **kwargs: base layer keyword arguments.

    Call arguments:
        inputs: tensor of any rank >= 2, channels last.

    Output shape:
        the input shape.
    """

    def __init__(
        self,
        depth_radius: int = 2,
        bias: float = 1.0,
        alpha: float = 1e-4,
        beta: float = 0.5,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if isinstance(depth_radius, bool) or not isinstance(depth_radius, int):
            raise ValueError(
                "Argument `depth_radius` must be a non-negative integer. "
                f"Received: depth_radius={depth_radius!r}"
            )
        if depth_radius < 0:
            raise ValueError(
                "Argument `depth_radius` must be a non-negative integer. "
                f"Received: depth_radius={depth_radius!r}"
            )
        self.depth_radius = depth_radius
        self.bias = float(bias)
        self.alpha = float(alpha)
        self.beta = float(beta)

    def build(self, input_shape):
        if input_shape[-1] is None:
            raise ValueError(
                f"{self.name}: the channel axis (last) must be known. "
                f"Received input shape {tuple(input_shape)}"
            )
        self.built = True

    def call(self, inputs):
        channels = inputs.shape[-1]
        radius = self.depth_radius
        squares = ops.square(inputs)
        padding = [[0, 0]] * (len(inputs.shape) - 1) + [[radius, radius]]
        padded = ops.pad(squares, padding)
        total = padded[..., 0:channels]
        for i in range(1, 2 * radius + 1):
            total = total + padded[..., i : i + channels]
        return inputs * ops.power(self.bias + self.alpha * total, -self.beta)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "depth_radius": self.depth_radius,
                "bias": self.bias,
                "alpha": self.alpha,
                "beta": self.beta,
            }
        )
        return config


def spoerer2017(
    variant: str,
    input_shape,
    classes: int = 10,
    timesteps: int = 4,
    return_sequences: bool = False,
    *,
    features: int = 32,
    kernel_size: int = 3,
    activation="softmax",
    **kwargs,
):
    """A recurrent convolutional network of Spoerer et al. (2017).

    Each model has two convolutional layers followed by a readout. Layer
    l computes, at step t,

    `h[t, l] = LRN(ReLU(B * h[t, l-1] + L * h[t-1, l] + T * h[t-1, l+1] + b))`

    where `B` (bottom-up) is a convolution of the layer below (the image
    for layer 1, the 2x2 max-pooled layer 1 for layer 2), `L` (lateral) a
    convolution of the layer's own previous state, `T` (top-down) a
    stride-2 transposed convolution of layer 2's previous state (layer 1
    only), and `LRN` local response normalisation
    (`LocalResponseNormalization`). The readout is a global max pool of
    layer 2 and a dense layer with `activation`, applied at every step.
    All convolutions use `features` maps, `kernel_size` kernels and "same"
    padding; lateral and top-down ones have no bias (the bottom-up bias
    already adds before the ReLU). Any input size works: layer 2 has size
    `ceil(H/2) x ceil(W/2)` and the top-down path is cropped back to `H x W`.

    Variants:
        - `"B"`: bottom-up only (feedforward).
        - `"BK"`: B with `kernel_size + 2` kernels (5x5 by default).
        - `"BF"`: B with `2 * features` maps (64 by default).
        - `"BL"`: bottom-up and lateral.
        - `"BT"`: bottom-up and top-down.
        - `"BLT"`: bottom-up, lateral and top-down.

    BK and BF are the paper's feedforward controls with roughly the
    parameter count of the recurrent models. The feedforward variants run
    the same computation at every step (their output does not change over
    time); they are still `RecurrentModel`s, so all variants are used alike.

    Args:
        variant: one of `"B"`, `"BK"`, `"BF"`, `"BL"`, `"BT"`, `"BLT"`.
        input_shape: image shape `(H, W, C)` without batch dimension.
        classes: number of classes of the readout.
        timesteps: number of steps the network runs on the image.
        return_sequences: if `True` the layer returns every step's output
            `(batch, timesteps, classes)`, else the last step's
            `(batch, classes)`.
        features: number of feature maps of each layer (B, BK, BL, BT, BLT).
        kernel_size: size of the square convolution kernels (before BK's
            enlargement).
        activation: readout activation (`"softmax"`: class probabilities).
        **kwargs: further `RecurrentModel` arguments (`name`,
            `state_initializer`, ...).

    Returns:
        A `RecurrentModel` layer, called on images `(batch, H, W, C)`.

    Example:

    ```python
    blt = cellgraph.feedback.spoerer2017("BLT", (28, 28, 1), classes=10,
                                         timesteps=4)
    images = keras.Input((28, 28, 1))
    model = keras.Model(images, blt(images))  # (batch, 10) probabilities
    ```
    """
    chain = spoerer2017_chain(
        variant,
        input_shape,
        classes=classes,
        features=features,
        kernel_size=kernel_size,
        activation=activation,
    )
    return chain.get_layer(
        timesteps=timesteps, return_sequences=return_sequences, **kwargs
    )


def spoerer2017_chain(
    variant: str,
    input_shape,
    classes: int = 10,
    *,
    features: int = 32,
    kernel_size: int = 3,
    activation="softmax",
) -> FeedbackChain:
    """The `FeedbackChain` (one step) of `spoerer2017`; same arguments."""
    name = variant.upper() if isinstance(variant, str) else variant
    if name not in VARIANTS:
        raise ValueError(
            f"Argument `variant` must be one of {list(VARIANTS)}. "
            f"Received: variant={variant!r}"
        )
    shape = tuple(input_shape)
    if len(shape) != 3 or not all(isinstance(d, int) and d > 0 for d in shape):
        raise ValueError(
            "Argument `input_shape` must be an image shape (H, W, C) of "
            f"positive integers. Received: input_shape={input_shape!r}"
        )
    for arg, value in (
        ("classes", classes),
        ("features", features),
        ("kernel_size", kernel_size),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(
                f"Argument `{arg}` must be a positive integer. "
                f"Received: {arg}={value!r}"
            )
    if name == "BK":
        kernel_size += 2
    if name == "BF":
        features *= 2
    lateral, top_down = "L" in name, "T" in name

    def conv(label, bias=True):
        return layers.Conv2D(
            features, kernel_size, padding="same", use_bias=bias, name=label
        )

    elements = [conv("bottom_up_1")]
    if lateral:
        elements.append(Merger("layer1", conv("lateral_1", bias=False)))
    if top_down:
        elements.append(Merger("layer2", _top_down(shape, features, kernel_size)))
    elements += [layers.ReLU(name="relu_1"), LocalResponseNormalization(name="lrn_1")]
    if lateral:
        elements.append(Splitter("layer1"))
    elements += [
        layers.MaxPooling2D(2, padding="same", name="pool_1"),
        conv("bottom_up_2"),
    ]
    if lateral:
        elements.append(Merger("layer2", conv("lateral_2", bias=False)))
    elements += [layers.ReLU(name="relu_2"), LocalResponseNormalization(name="lrn_2")]
    if lateral or top_down:
        elements.append(Splitter("layer2"))
    elements += [
        layers.GlobalMaxPooling2D(name="global_pool"),
        layers.Dense(classes, activation=activation, name="readout"),
    ]
    return FeedbackChain(elements, input_shape=shape, name=f"{name.lower()}_cell")


def _top_down(shape, features, kernel_size):
    """Transposed convolution from layer 2 (half size) back to layer 1's size."""
    height, width = shape[0], shape[1]
    up = layers.Conv2DTranspose(
        features,
        kernel_size,
        strides=2,
        padding="same",
        use_bias=False,
        name="top_down_1",
    )
    crop = (2 * -(-height // 2) - height, 2 * -(-width // 2) - width)
    if crop == (0, 0):
        return up
    return keras.Sequential(
        [up, layers.Cropping2D(((0, crop[0]), (0, crop[1])))], name="top_down"
    )
