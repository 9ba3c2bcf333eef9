"""Queue: a continuous (differentiable) queue of fixed capacity."""

from __future__ import annotations

import keras

from cellgraph.systems._push_pop import PushPopMemory, exclusive_cumsum


@keras.saving.register_keras_serializable(package="cellgraph")
class Queue(PushPopMemory):
    """A continuous queue (Grefenstette et al. 2015), first in, first out.

    Pops and reads start at the front: the oldest end of the buffer. The
    strength covering slot i is the sum of the strengths *before* it (older).
    See `PushPopMemory` in `cellgraph/systems/_push_pop.py` for the step:

    ```
    s_i <- relu(s_i - relu(u - sum_{j<i} s_j))        # pop first
    shift, then v_back = value, s_back = d            # push at the back
    read = sum_i min(s_i, relu(1 - sum_{j<i} s_j)) * v_i
    ```

    Raw control layout (`project=False`), size `W + 2`:
    `[value (W), push strength d (1), pop strength u (1)]`, d and u in
    [0, 1]. `project=True`: Dense, then tanh (value) and sigmoid (d, u).
    States: `[values (capacity, W), strengths (capacity,)]`, newest at the
    last index; the queue starts empty. Read size: `W`.

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
    from cellgraph.systems import Queue

    queue = Queue(width=3, capacity=8, project=False)
    values, strengths = queue.initial_states(1)
    push = np.array([[1.0, 2.0, 3.0, 1.0, 0.0]], "float32")  # d=1, u=0
    read, values, strengths = queue([push, values, strengths])  # read [1, 2, 3]
    ```
    """

    def covering(self, strengths):
        return exclusive_cumsum(strengths)
