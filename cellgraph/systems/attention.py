"""Attention: a moving soft index over N datapoints (the superloop's attention)."""

from __future__ import annotations

import keras
from keras import ops

from cellgraph.systems.base import System, check_positive

KERNELS = ("inverse_square", "inverse_abs")


@keras.saving.register_keras_serializable(package="cellgraph")
class Attention(System):
    """A soft index that moves along N datapoints by at most ±1 per step.

    The data is a constant of the step graph, `(N, W)`: the same tensor at
    every step. The position is a state; each step moves it by
    `softsign(move)`, strictly within (-1, 1), and reads every datapoint
    weighted by a kernel of its distance from the position:

    ```
    position_t = position_tm1 + softsign(move)
    read_t = sum_n k(n - position_t) * data[n]       # (W,)
    k(d) = 1 / (1 + d**2)   (kernel="inverse_square")
    k(d) = 1 / (1 + |d|)    (kernel="inverse_abs")
    ```

    The weights are not normalised, and the position is **not clipped** to
    [0, N-1], as in the original superloop project: clipping would create
    regions of zero gradient. Away from the data the weights fade, so a
    model learns to stay in range. The position starts at 0 (the first
    datapoint), so after the first step it is `softsign(move_0)`.

    Raw control layout (`project=False`), size 1: `[move (1)]` before the
    softsign. With `project=True` a `Dense(1)` produces it from the
    controller; its kernel starts small (uniform in ±0.05) and its bias at
    1.0, so the index starts by stepping forward about 0.5 per step
    (softsign(1) = 0.5) and visits every datapoint.

    States: `[position (1,)]`. Constants: `[data (N, W)]`. Read size: `W`.

    Args:
        datapoints: number of datapoints N.
        width: size W of each datapoint.
        kernel: `"inverse_square"` or `"inverse_abs"`.
        project, kernel_initializer, bias_initializer, **kwargs: see
            `cellgraph.systems.System`.

    Example:

    ```python
    from cellgraph.systems import Attention

    attention = Attention(datapoints=16, width=2)
    h_t = keras.Input((8,))
    position_tm1, = attention.initial_state_inputs()
    data, = attention.constant_inputs()
    read_t, position_t = attention([h_t, position_tm1, data])
    ```
    """

    # Config dicts, so that each instance gets its own initializer object.
    default_kernel_initializer = {
        "class_name": "RandomUniform",
        "config": {"minval": -0.05, "maxval": 0.05},
    }
    default_bias_initializer = {"class_name": "Constant", "config": {"value": 1.0}}

    def __init__(
        self,
        datapoints: int,
        width: int,
        kernel: str = "inverse_square",
        project: bool = True,
        **kwargs,
    ):
        check_positive("Attention", datapoints=datapoints, width=width)
        if kernel not in KERNELS:
            raise ValueError(
                f"Attention: argument `kernel` must be one of {KERNELS}. "
                f"Received: kernel={kernel!r}"
            )
        self.datapoints = datapoints
        self.width = width
        self.kernel = kernel
        super().__init__(project=project, **kwargs)

    @property
    def control_layout(self):
        return [("move", 1)]

    @property
    def state_shapes(self):
        return [(1,)]

    @property
    def state_names(self):
        return ["position"]

    @property
    def constant_shapes(self):
        return [(self.datapoints, self.width)]

    @property
    def read_size(self):
        return self.width

    def weights_at(self, position):
        """The read weights `(batch, N)` for positions `(batch, 1)`."""
        # TF has no float16 `range`: count in float32, then cast.
        indices = ops.cast(ops.arange(self.datapoints, dtype="float32"), position.dtype)
        distance = indices[None, :] - position
        if self.kernel == "inverse_square":
            return 1.0 / (1.0 + distance * distance)
        return 1.0 / (1.0 + ops.abs(distance))

    def transition(self, control, states, constants):
        (position,) = states
        (data,) = constants
        position = position + ops.softsign(control)
        weights = self.weights_at(position)
        read = ops.sum(weights[:, :, None] * data, axis=1)
        return read, [position]

    def get_config(self):
        return {
            **super().get_config(),
            "datapoints": self.datapoints,
            "width": self.width,
            "kernel": self.kernel,
        }
