"""Shared machinery of the continuous Stack and Queue (Grefenstette et al. 2015)."""

from __future__ import annotations

from keras import ops

from cellgraph.systems.base import System, check_positive


def exclusive_cumsum(x):
    """`out[:, i] = sum_{j<i} x[:, j]` (sums of the earlier entries only)."""
    shifted = ops.concatenate([ops.zeros_like(x[:, :1]), x[:, :-1]], axis=1)
    return ops.cumsum(shifted, axis=1)


class PushPopMemory(System):
    """A fixed-capacity continuous push/pop memory (base of Stack and Queue).

    The memory is a buffer of `capacity` slots, oldest at index 0, newest at
    index `capacity - 1`; each slot holds a value (W) and a strength in
    [0, 1]. One step, as in "Learning to Transduce with Unbounded Memory":

    1. pop: the strengths are reduced by the pop strength u, starting from
       the top (stack: the newest end) or the front (queue: the oldest end):
       `s_i <- relu(s_i - relu(u - sum of the strengths covering slot i))`;
    2. push: the buffer shifts by one slot towards index 0 (the oldest slot
       falls off) and the new value enters at the newest end with strength d;
    3. read: `sum_i min(s_i, relu(1 - sum of the strengths covering i)) * v_i`,
       i.e. one unit of strength taken from the top (stack) or front (queue).

    The buffer shifts at every step, whatever d is (the paper also gives
    every step its own slot), so it holds the pushes of the last `capacity`
    steps: with `capacity` at least the number of steps it is exactly the
    paper's unbounded memory; otherwise the oldest entries are forgotten.
    The memory starts empty (zero values and strengths).

    Raw control layout (`project=False`), size `W + 2`:
    `[value (W), push strength d (1), pop strength u (1)]`, with d and u
    already in [0, 1]. With `project=True` a `Dense` (glorot-uniform kernel,
    zero bias) produces it from the controller, followed by `tanh` on the
    value and `sigmoid` on d and u.

    States: `[values (capacity, W), strengths (capacity,)]`. Constants: none.
    Read size: `W`.
    """

    def __init__(self, width: int, capacity: int, project: bool = True, **kwargs):
        check_positive(type(self).__name__, width=width, capacity=capacity)
        self.width = width
        self.capacity = capacity
        super().__init__(project=project, **kwargs)

    @property
    def control_layout(self):
        return [("value", self.width), ("push", 1), ("pop", 1)]

    @property
    def state_shapes(self):
        return [(self.capacity, self.width), (self.capacity,)]

    @property
    def state_names(self):
        return ["values", "strengths"]

    @property
    def read_size(self):
        return self.width

    def covering(self, strengths):
        """For each slot, the total strength read or popped before it."""
        raise NotImplementedError

    def activate_projection(self, projected):
        value = ops.tanh(projected[:, : self.width])
        return ops.concatenate([value, ops.sigmoid(projected[:, self.width :])], 1)

    def transition(self, control, states, constants):
        parts = self.split_control(control)
        values, strengths = states
        pop = parts["pop"]
        strengths = ops.relu(strengths - ops.relu(pop - self.covering(strengths)))
        strengths = ops.concatenate([strengths[:, 1:], parts["push"]], axis=1)
        values = ops.concatenate([values[:, 1:], parts["value"][:, None, :]], axis=1)
        weights = ops.minimum(strengths, ops.relu(1.0 - self.covering(strengths)))
        read = ops.sum(weights[:, :, None] * values, axis=1)
        return read, [values, strengths]

    def get_config(self):
        return {
            **super().get_config(),
            "width": self.width,
            "capacity": self.capacity,
        }
