"""AddressableMemory: an NTM-style memory with content and location addressing."""

from __future__ import annotations

import keras
from keras import ops

from cellgraph.systems.base import OneHotInitializer, System, check_positive

EPSILON = 1e-6
SHIFTS = (-1, 0, 1)


@keras.saving.register_keras_serializable(package="cellgraph")
class AddressableMemory(System):
    """A memory of `slots` x `width` with Neural Turing Machine heads.

    Each head computes a weighting over the slots from its previous
    weighting (Graves et al. 2014, "Neural Turing Machines", section 3.3):

    ```
    beta = softplus(beta_raw);  g = sigmoid(g_raw)
    s = softmax(shift_raw)      # over the offsets (-1, 0, +1)
    gamma = 1 + softplus(gamma_raw)
    K[i] = key . M[i] / (sqrt(|key|^2 + eps) * sqrt(|M[i]|^2 + eps))
    w_c = softmax(beta * K)                     # content addressing
    w_g = g * w_c + (1 - g) * w_tm1             # interpolation
    w_s[i] = s[-1] w_g[i+1] + s[0] w_g[i] + s[+1] w_g[i-1]  # circular shift
    w = (w_s + eps)**gamma / sum((w_s + eps)**gamma)          # sharpening
    ```

    with `eps = 1e-6` (it keeps the norms and the sharpening differentiable
    at zero). A shift of +1 moves the focus to the next slot. The write
    heads address the previous memory and then write, erase first and add
    second: `M_t = M_tm1 * prod_h(1 - w_h e_h^T) + sum_h w_h a_h^T` with
    `e = sigmoid(erase_raw)` and `a = add_raw`. The read heads address the
    *written* memory `M_t` and read `r_h = sum_i w_h[i] M_t[i]`; the read is
    the concatenation of the read heads' vectors.

    The sharpening is computed as `softmax(gamma * log(w_s + eps))`: the
    same weighting, without the 0/0 of `(w_s + eps)**gamma` underflowing
    when gamma is large (61 with 8 slots in float32).

    Raw control layout (`project=False`), the read heads first, then the
    write heads, each head's parts in this order (all before activation):

    - read head, `W + 6`: `[key (W), beta (1), gate (1), shift (3: offsets
      -1, 0, +1), gamma (1)]`;
    - write head, `3W + 6`: `[key (W), beta (1), gate (1), shift (3),
      gamma (1), erase (W), add (W)]`.

    `control_size = read_heads * (W + 6) + write_heads * (3W + 6)`; the
    names are in `control_layout` (`"read0_key"`, ..., `"write0_add"`).
    With `project=True` a `Dense` (glorot-uniform kernel, zero bias)
    produces the raw control; the activations above apply in both modes.

    States: `[memory (slots, W), read weights (read_heads, slots), write
    weights (write_heads, slots)]`. `initial_states()` and
    `state_initializers()` start the memory at zeros and every head's
    weighting at a one-hot on slot 0 (pass
    `state_initializer=[..., *memory.state_initializers()]` to
    `RecurrentModel`; plain zeros work too). Constants: none. Read size:
    `read_heads * W`.

    Args:
        slots: number of memory slots N.
        width: width W of each slot.
        read_heads: number of read heads.
        write_heads: number of write heads.
        project, kernel_initializer, bias_initializer, **kwargs: see
            `cellgraph.systems.System`.
    """

    def __init__(
        self,
        slots: int,
        width: int,
        read_heads: int = 1,
        write_heads: int = 1,
        project: bool = True,
        **kwargs,
    ):
        check_positive(
            "AddressableMemory",
            slots=slots,
            width=width,
            read_heads=read_heads,
            write_heads=write_heads,
        )
        self.slots = slots
        self.width = width
        self.read_heads = read_heads
        self.write_heads = write_heads
        super().__init__(project=project, **kwargs)

    def _head_layout(self, write: bool) -> list[tuple[str, int]]:
        parts = [("key", self.width), ("beta", 1), ("gate", 1)]
        parts += [("shift", len(SHIFTS)), ("gamma", 1)]
        if write:
            parts += [("erase", self.width), ("add", self.width)]
        return parts

    @property
    def control_layout(self):
        layout = []
        for kind, heads in (("read", self.read_heads), ("write", self.write_heads)):
            for h in range(heads):
                layout += [
                    (f"{kind}{h}_{part}", size)
                    for part, size in self._head_layout(kind == "write")
                ]
        return layout

    @property
    def state_shapes(self):
        return [
            (self.slots, self.width),
            (self.read_heads, self.slots),
            (self.write_heads, self.slots),
        ]

    @property
    def state_names(self):
        return ["memory", "read_weights", "write_weights"]

    @property
    def read_size(self):
        return self.read_heads * self.width

    def state_initializers(self):
        return [None, OneHotInitializer(0), OneHotInitializer(0)]

    def address(self, head, memory, previous):
        """Weightings `(batch, heads, N)` from head controls `(batch, heads, P)`."""
        w = self.width
        key = head[..., :w]
        beta = ops.softplus(head[..., w : w + 1])
        gate = ops.sigmoid(head[..., w + 1 : w + 2])
        shift = ops.softmax(head[..., w + 2 : w + 5], axis=-1)
        gamma = 1.0 + ops.softplus(head[..., w + 5 : w + 6])

        dot = ops.einsum("bhw,bnw->bhn", key, memory)
        key_norm = ops.sqrt(ops.sum(key * key, axis=-1, keepdims=True) + EPSILON)
        slot_norm = ops.sqrt(ops.sum(memory * memory, axis=-1) + EPSILON)
        similarity = dot / (key_norm * slot_norm[:, None, :])
        content = ops.softmax(beta * similarity, axis=-1)
        gated = gate * content + (1.0 - gate) * previous
        shifted = sum(
            shift[..., k : k + 1] * ops.roll(gated, offset, axis=-1)
            for k, offset in enumerate(SHIFTS)
        )
        # (w + eps)**gamma / sum(...) in log space: no 0/0 when it underflows
        return ops.softmax(gamma * ops.log(shifted + EPSILON), axis=-1)

    def transition(self, control, states, constants):
        memory, read_weights, write_weights = states
        w = self.width
        split = self.read_heads * (w + 6)
        read_heads = ops.reshape(control[:, :split], (-1, self.read_heads, w + 6))
        write_heads = ops.reshape(control[:, split:], (-1, self.write_heads, 3 * w + 6))

        write_weights = self.address(write_heads, memory, write_weights)
        erase = ops.sigmoid(write_heads[..., w + 6 : 2 * w + 6])
        add = write_heads[..., 2 * w + 6 :]
        keep = ops.prod(1.0 - write_weights[..., None] * erase[:, :, None, :], axis=1)
        memory = memory * keep + ops.einsum("bhn,bhw->bnw", write_weights, add)

        read_weights = self.address(read_heads, memory, read_weights)
        read = ops.einsum("bhn,bnw->bhw", read_weights, memory)
        read = ops.reshape(read, (-1, self.read_size))
        return read, [memory, read_weights, write_weights]

    def get_config(self):
        return {
            **super().get_config(),
            "slots": self.slots,
            "width": self.width,
            "read_heads": self.read_heads,
            "write_heads": self.write_heads,
        }
