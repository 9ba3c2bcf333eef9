"""Stack: a continuous (differentiable) stack of fixed capacity."""

from __future__ import annotations

import keras
from keras import ops

from cellgraph.systems._push_pop import PushPopMemory, exclusive_cumsum


@keras.saving.register_keras_serializable(package="cellgraph")
class Stack(PushPopMemory):
    """A continuous stack (Grefenstette et al. 2015), last in, first out.

    Pops and reads start at the top: the newest end of the buffer. The
    strength covering slot i is the sum of the strengths *above* it (newer).
    See `PushPopMemory` in `cellgraph/systems/_push_pop.py` for the step:

    ```
    s_i <- relu(s_i - relu(u - sum_{j>i} s_j))        # pop first
    shift, then v_top = value, s_top = d              # push
    read = sum_i min(s_i, relu(1 - sum_{j>i} s_j)) * v_i
    ```

    Raw control layout (`project=False`), size `W + 2`:
    `[value (W), push strength d (1), pop strength u (1)]`, d and u in
    [0, 1]. `project=True`: Dense, then tanh (value) and sigmoid (d, u).
    States: `[values (capacity, W), strengths (capacity,)]`, newest at the
    last index; the stack starts empty. Read size: `W`.

    Args:
        width: size W of the values.
        capacity: number of slots (the pushes of the last `capacity` steps
            are kept; the oldest slot falls off at every step).
        round_strengths: if True, d and u are rounded to 0 or 1 (1 where
            they exceed 0.5) before each step, with a straight-through
            gradient (see `PushPopMemory`); e.g. a copy of a trained model
            for evaluation, as Joulin & Mikolov (2015) discretise at test.
        actions: `"sigmoid"` (independent d and u, the default) or
            `"softmax"` (project=True: d and u are p(push) and p(pop) of a
            softmax over push, pop and no-op, as in Joulin & Mikolov 2015).
        project, kernel_initializer, bias_initializer, **kwargs: see
            `cellgraph.systems.System`.

    Example:

    ```python
    from cellgraph.systems import Stack

    stack = Stack(width=3, capacity=8, project=False)
    values, strengths = stack.initial_states(1)
    push = np.array([[1.0, 2.0, 3.0, 1.0, 0.0]], "float32")  # d=1, u=0
    read, values, strengths = stack([push, values, strengths])  # read [1, 2, 3]
    ```
    """

    def covering(self, strengths):
        return ops.flip(exclusive_cumsum(ops.flip(strengths, axis=1)), axis=1)
