"""RegisterMemory: D registers of width W with soft store/recall selectors."""

from __future__ import annotations

import keras
from keras import ops

from cellgraph.systems.base import System, check_positive


@keras.saving.register_keras_serializable(package="cellgraph")
class RegisterMemory(System):
    """A memory of `depth` registers, each `width` wide (the superloop's regmem).

    At each step the controller offers a data vector, and two softmax
    selectors say how much each register takes the data (`store`) and how
    much each register contributes to the read (`recall`):

    ```
    store  = softmax(store_logits)                       # (D,)
    recall = softmax(recall_logits)                      # (D,)
    memory_t = (1 - store)[:, None] * memory_tm1 + store[:, None] * data[None, :]
    read_t = sum_d recall[d] * memory_t[d]               # (W,)
    ```

    The read happens after the store, so a value stored at step t can be
    read at step t. The memory starts at zeros.

    Raw control layout (`project=False`), size `W + 2 * D`:
    `[data (W), store logits (D), recall logits (D)]`. With `project=True`
    a `Dense` (glorot-uniform kernel, zero bias) produces it from the
    controller; no extra activation is applied (the data is linear).

    States: `[memory (D, W)]`. Constants: none. Read size: `W`.

    Args:
        depth: number of registers D.
        width: width W of each register.
        project, kernel_initializer, bias_initializer, **kwargs: see
            `cellgraph.systems.System`.

    Example:

    ```python
    from cellgraph.systems import RegisterMemory

    memory = RegisterMemory(depth=4, width=3, project=False)
    control = np.zeros((2, memory.control_size), "float32")
    read, new_memory = memory([control, *memory.initial_states(2)])
    ```
    """

    def __init__(self, depth: int, width: int, project: bool = True, **kwargs):
        check_positive("RegisterMemory", depth=depth, width=width)
        self.depth = depth
        self.width = width
        super().__init__(project=project, **kwargs)

    @property
    def control_layout(self):
        return [
            ("data", self.width),
            ("store", self.depth),
            ("recall", self.depth),
        ]

    @property
    def state_shapes(self):
        return [(self.depth, self.width)]

    @property
    def state_names(self):
        return ["memory"]

    @property
    def read_size(self):
        return self.width

    def transition(self, control, states, constants):
        parts = self.split_control(control)
        (memory,) = states
        store = ops.softmax(parts["store"], axis=-1)[:, :, None]
        recall = ops.softmax(parts["recall"], axis=-1)[:, :, None]
        memory = (1.0 - store) * memory + store * parts["data"][:, None, :]
        read = ops.sum(recall * memory, axis=1)
        return read, [memory]

    def get_config(self):
        return {**super().get_config(), "depth": self.depth, "width": self.width}
