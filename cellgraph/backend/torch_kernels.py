"""PyTorch's own fused LSTM and GRU kernels, for step graphs that are one such cell."""

from __future__ import annotations

import torch


def run(kind: str, x, states, weights, has_biases: bool):
    """Runs one layer of `torch.lstm` / `torch.gru` over a batch-major sequence.

    Args:
        kind: `"lstm"` or `"gru"`.
        x: `(batch, time, features)`.
        states: `[h, c]` (LSTM) or `[h]` (GRU), each `(batch, units)`.
        weights: `[w_ih, w_hh, b_ih, b_hh]` in PyTorch's layout (gates
            `i, f, g, o` and `r, z, n`), or the two matrices without biases.
        has_biases: whether `weights` holds the biases.

    Returns:
        `(outputs, final_states)`: every step's `h`, `(batch, time, units)`,
        and the final states in the order of `states`.
    """
    # Positional arguments after `params`: has_biases, num_layers, dropout,
    # train (only for dropout between layers), bidirectional, batch_first.
    options = (has_biases, 1, 0.0, False, False, True)
    if kind == "lstm":
        h, c = states
        outputs, h_n, c_n = torch.lstm(x, (h[None], c[None]), weights, *options)
        return outputs, [h_n[0], c_n[0]]
    if kind == "gru":
        (h,) = states
        outputs, h_n = torch.gru(x, h[None], weights, *options)
        return outputs, [h_n[0]]
    raise ValueError(f"Unknown kernel {kind!r}; expected 'lstm' or 'gru'.")


def loop(step, sequence, initial_states, return_sequences: bool, go_backwards: bool):
    """A step function over time, as `keras.layers.RNN.inner_loop` runs it here.

    Keras's PyTorch loop is a Python `while` loop that also flattens and
    packs the inputs, outputs and states with `keras.tree` at every step
    (0.13 ms a step on the 2-core test machine, as much as a small step's
    arithmetic); this one iterates over `sequence.unbind(1)`.

    Args:
        step: `step(inputs_t, states) -> (output_t, new_states)`.
        sequence: `(batch, time, ...)`.
        initial_states: list of tensors.
        return_sequences: also stack every step's output, `(batch, time, ...)`.
        go_backwards: run from the last step to the first (the outputs come
            in processing order, as Keras's loop gives them).

    Returns:
        `(last_output, outputs or None, final_states)`.
    """
    steps = sequence.unbind(1)
    if go_backwards:
        steps = steps[::-1]
    states, outputs, output = list(initial_states), [], None
    for x_t in steps:
        output, states = step(x_t, states)
        states = list(states)
        if return_sequences:
            outputs.append(output)
    return output, torch.stack(outputs, 1) if return_sequences else None, states
