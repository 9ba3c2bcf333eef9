"""Shared machinery of the continuous Stack and Queue (Grefenstette et al. 2015)."""

from __future__ import annotations

from keras import ops

from cellgraph.systems.base import System, check_positive


def exclusive_cumsum(x):
    """`out[:, i] = sum_{j<i} x[:, j]` (sums of the earlier entries only)."""
    shifted = ops.concatenate([ops.zeros_like(x[:, :1]), x[:, :-1]], axis=1)
    return ops.cumsum(shifted, axis=1)


def straight_through_round(x):
    """0 or 1 (1 where `x > 0.5`) forward; the identity's gradient backward."""
    hard = ops.cast(ops.greater(x, 0.5), x.dtype)
    return x + ops.stop_gradient(hard - x)


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

    With `actions="softmax"` (and `project=True`) the projection gives
    three logits instead of two, for the actions push, pop and no-op, and a
    softmax over them gives `d = p(push)` and `u = p(pop)`, as the stack of
    Joulin & Mikolov (2015) chooses one action per step: d + u <= 1, so a
    step cannot both pop the top and push a replacement (which lets a stack
    act as a one-slot register instead of a stack). The raw control
    (`project=False`) is the same in both modes.

    With `round_strengths=True`, d and u are rounded to 0 or 1 (1 where
    they exceed 0.5) before the step, as Joulin & Mikolov (2015) discretise
    their stack's actions at test time: the memory then holds whole
    entries only, and no residue of a weak push or an incomplete pop
    accumulates over long sequences. The gradient passes through the
    rounding as if it were the identity (the straight-through estimator),
    so a model can also be trained this way; the common use is to train
    with `round_strengths=False` and to evaluate a copy of the model built
    with `round_strengths=True` (the rounding holds no weights).

    States: `[values (capacity, W), strengths (capacity,)]`. Constants: none.
    Read size: `W`.
    """

    def __init__(
        self,
        width: int,
        capacity: int,
        project: bool = True,
        round_strengths: bool = False,
        actions: str = "sigmoid",
        **kwargs,
    ):
        check_positive(type(self).__name__, width=width, capacity=capacity)
        if actions not in ("sigmoid", "softmax"):
            raise ValueError(
                f"{type(self).__name__}: argument `actions` must be 'sigmoid' "
                f"(independent push and pop strengths) or 'softmax' (one "
                f"softmax over push, pop, no-op). Received: actions={actions!r}"
            )
        if not isinstance(round_strengths, bool):
            raise ValueError(
                f"{type(self).__name__}: argument `round_strengths` must be a "
                f"bool. Received: round_strengths={round_strengths!r}"
            )
        self.width = width
        self.capacity = capacity
        self.round_strengths = round_strengths
        self.actions = actions
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

    @property
    def projection_size(self):
        return self.width + (3 if self.actions == "softmax" else 2)

    def activate_projection(self, projected):
        value = ops.tanh(projected[:, : self.width])
        logits = projected[:, self.width :]
        if self.actions == "softmax":
            strengths = ops.softmax(logits, axis=-1)[:, :2]  # push, pop (no-op)
        else:
            strengths = ops.sigmoid(logits)
        return ops.concatenate([value, strengths], 1)

    def transition(self, control, states, constants):
        parts = self.split_control(control)
        values, strengths = states
        push, pop = parts["push"], parts["pop"]
        if self.round_strengths:
            push, pop = straight_through_round(push), straight_through_round(pop)
        strengths = ops.relu(strengths - ops.relu(pop - self.covering(strengths)))
        strengths = ops.concatenate([strengths[:, 1:], push], axis=1)
        values = ops.concatenate([values[:, 1:], parts["value"][:, None, :]], axis=1)
        weights = ops.minimum(strengths, ops.relu(1.0 - self.covering(strengths)))
        read = ops.sum(weights[:, :, None] * values, axis=1)
        return read, [values, strengths]

    def get_config(self):
        return {
            **super().get_config(),
            "width": self.width,
            "capacity": self.capacity,
            "round_strengths": self.round_strengths,
            "actions": self.actions,
        }
