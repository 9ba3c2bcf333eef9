"""Sequence reversal with a continuous `Stack` (Grefenstette et al. 2015).

The task ("Learning to Transduce with Unbounded Memory", section 5): a
sequence of L random symbols (vocabulary 8, one-hot), then one separator
step, then L blank steps during which the model must emit the symbols in
reverse order. Only the L blank steps carry a loss (sample weights), so a
sequence has `2L + 1` steps. The models train on L in 4..16 and are tested
on *longer* sequences, L in 17..32, which no training sequence reaches:

- coarse accuracy: the fraction of test sequences reversed exactly;
- fine accuracy: the fraction of target symbols predicted correctly.

Two models, both `cellgraph.RecurrentModel` step graphs trained the same way
(Adam with gradient clipping, the same data and epochs):

- stack: an LSTM controller whose input is `[x_t, read_tm1]`; its output
  drives a `Stack(width, capacity)` (push value, push and pop strengths),
  whose read is fed back at the next step as an explicit state; a softmax
  over the vocabulary reads the controller's output. The stack's buffer
  shifts by one slot at every step, so its capacity (65) is the number of
  steps of the longest test sequence (2 * 32 + 1);
- lstm: the same step graph without the stack, with more units so that it
  has about as many weights.

    python examples/stack_reversal.py            # full run (about 10 minutes)
    python examples/stack_reversal.py --quick    # smoke run (< 60 s)

The full run's figures are recorded in docs/memory_tasks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import cellgraph as cg  # noqa: E402
from cellgraph.systems import Stack  # noqa: E402

VOCAB = 8
TRAIN_LENGTHS = (4, 16)
TEST_LENGTHS = (17, 32)
CAPACITY = 2 * TEST_LENGTHS[1] + 1  # the stack's buffer shifts at every step
LEARNING_RATE = 3e-3

# The full run was sized for a 2-core CPU shared with other jobs (figures in
# docs/memory_tasks.md); --quick is a smoke run of well under a minute.
FULL = {
    "train": 16384,
    "valid": 1000,
    "test": 2000,
    "epochs": 6,
    "units": 64,
    "width": 16,
    "batch": 64,
    "jit": True,
}
QUICK = {
    "train": 256,
    "valid": 64,
    "test": 64,
    "epochs": 1,
    "units": 16,
    "width": 8,
    "batch": 64,
    "jit": False,
}


def steps_for(max_length: int) -> int:
    """Number of steps of a sequence of `max_length` symbols: `2L + 1`."""
    return 2 * max_length + 1


def make_data(
    num: int,
    lengths: tuple[int, int] = TRAIN_LENGTHS,
    rng: np.random.Generator | None = None,
    vocab: int = VOCAB,
    steps: int | None = None,
) -> dict[str, np.ndarray]:
    """Generates `num` reversal examples, padded to a common number of steps.

    Args:
        num: number of sequences.
        lengths: `(min, max)` number of symbols L, both included, drawn
            uniformly.
        rng: NumPy random generator (a fresh unseeded one if `None`).
        vocab: number of symbols.
        steps: padded number of steps (default `2 * max + 1`).

    Returns:
        A dict of arrays: `inputs (num, steps, vocab + 1)` float32, one-hot
        symbols on channels `0..vocab-1` and the separator on channel
        `vocab` (blank and padding steps are all zeros); `targets (num,
        steps)` int64, the reversed symbols at steps `L+1 .. 2L` (0
        elsewhere); `weights (num, steps)` float32, 1 exactly at those
        steps; `symbols (num, max)` int64 (-1 past L); `lengths (num,)`.
    """
    low, high = lengths
    if not 1 <= low <= high:
        raise ValueError(
            f"Argument `lengths` must be (min, max) with 1 <= min <= max. "
            f"Received: lengths={lengths}"
        )
    steps = steps_for(high) if steps is None else steps
    if steps < steps_for(high):
        raise ValueError(
            f"Argument `steps` must be at least 2 * {high} + 1 = "
            f"{steps_for(high)}. Received: steps={steps}"
        )
    rng = np.random.default_rng() if rng is None else rng
    lengths_ = rng.integers(low, high + 1, num)
    symbols = np.full((num, high), -1, dtype="int64")
    inputs = np.zeros((num, steps, vocab + 1), dtype="float32")
    targets = np.zeros((num, steps), dtype="int64")
    weights = np.zeros((num, steps), dtype="float32")
    for i, length in enumerate(lengths_):
        seq = rng.integers(0, vocab, length)
        symbols[i, :length] = seq
        inputs[i, np.arange(length), seq] = 1.0
        inputs[i, length, vocab] = 1.0
        targets[i, length + 1 : 2 * length + 1] = seq[::-1]
        weights[i, length + 1 : 2 * length + 1] = 1.0
    return {
        "inputs": inputs,
        "targets": targets,
        "weights": weights,
        "symbols": symbols,
        "lengths": lengths_.astype("int64"),
    }


def sequence_accuracy(probabilities, targets, weights) -> tuple[float, float]:
    """`(coarse, fine)`: whole sequences right, and target symbols right."""
    predicted = np.asarray(probabilities).argmax(-1)
    scored = np.asarray(weights) > 0
    right = predicted == np.asarray(targets)
    coarse = float(np.mean(np.all(right | ~scored, axis=1)))
    fine = float(np.sum(right & scored) / np.sum(scored))
    return coarse, fine


def _compile(model: keras.Model, learning_rate: float, jit: bool) -> keras.Model:
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate, clipnorm=1.0),
        loss="sparse_categorical_crossentropy",
        weighted_metrics=["accuracy"],
        jit_compile=jit,
    )
    return model


def build_stack_model(
    units: int = 64,
    width: int = 16,
    capacity: int = CAPACITY,
    vocab: int = VOCAB,
    learning_rate: float = LEARNING_RATE,
    jit: bool = False,
) -> keras.Model:
    """The LSTM controller + `Stack` model, compiled (see the module docstring)."""
    stack = Stack(width=width, capacity=capacity, name="stack")
    x_t = keras.Input((vocab + 1,), name="x_t")
    read_tm1 = keras.Input((stack.read_size,), name="read_tm1")
    h_tm1 = keras.Input((units,), name="h_tm1")
    c_tm1 = keras.Input((units,), name="c_tm1")
    stack_tm1 = stack.initial_state_inputs()
    controller_in = keras.layers.Concatenate()([x_t, read_tm1])
    h_t, _, c_t = cg.cells.LSTMCell(units, name="controller")(
        [controller_in, h_tm1, c_tm1]
    )
    read_t, *stack_t = stack([h_t, *stack_tm1])
    y_t = keras.layers.Dense(vocab, activation="softmax", name="symbol")(h_t)
    rnn = cg.RecurrentModel(
        input=x_t,
        output=y_t,
        initial_states=[read_tm1, h_tm1, c_tm1, *stack_tm1],
        final_states=[read_t, h_t, c_t, *stack_t],
        state_initializer=[None, None, None, *stack.state_initializers()],
        return_sequences=True,
        name="stack_rnn",
    )
    sequence = keras.Input((None, vocab + 1), name="sequence")
    model = keras.Model(sequence, rnn(sequence), name="stack_reversal")
    return _compile(model, learning_rate, jit)


def build_lstm_model(
    units: int,
    vocab: int = VOCAB,
    learning_rate: float = LEARNING_RATE,
    jit: bool = False,
) -> keras.Model:
    """The baseline: the same step graph without the stack, compiled."""
    x_t = keras.Input((vocab + 1,), name="x_t")
    h_tm1 = keras.Input((units,), name="h_tm1")
    c_tm1 = keras.Input((units,), name="c_tm1")
    h_t, _, c_t = cg.cells.LSTMCell(units, name="lstm")([x_t, h_tm1, c_tm1])
    y_t = keras.layers.Dense(vocab, activation="softmax", name="symbol")(h_t)
    rnn = cg.RecurrentModel(
        input=x_t,
        output=y_t,
        initial_states=[h_tm1, c_tm1],
        final_states=[h_t, c_t],
        return_sequences=True,
        name="lstm_rnn",
    )
    sequence = keras.Input((None, vocab + 1), name="sequence")
    model = keras.Model(sequence, rnn(sequence), name="lstm_reversal")
    return _compile(model, learning_rate, jit)


def lstm_units_for(params: int, vocab: int = VOCAB) -> int:
    """The largest LSTM baseline with at most `params` weights."""

    def count(units):
        return 4 * ((vocab + 1) * units + units * units + units) + (units + 1) * vocab

    units = 1
    while count(units + 1) <= params:
        units += 1
    return units


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run (< 60 s)")
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--train", type=int, default=None, help="training sequences")
    parser.add_argument("--units", type=int, default=None, help="controller units")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--verbose", type=int, default=None, help="Keras fit verbosity")
    parser.add_argument("--no-jit", action="store_true", help="no XLA compilation")
    args = parser.parse_args(argv)
    for name in ("epochs", "train", "units"):
        value = getattr(args, name)
        if value is not None and value < 1:
            parser.error(f"argument --{name}: must be >= 1 (got {value})")
    return args


def _train(model, train, epochs, batch, verbose) -> float:
    start = time.perf_counter()
    model.fit(
        train["inputs"],
        train["targets"],
        sample_weight=train["weights"],
        batch_size=batch,
        epochs=epochs,
        verbose=verbose,
    )
    return time.perf_counter() - start


def _score(model, data, batch=250) -> tuple[float, float]:
    probabilities = model.predict(data["inputs"], batch_size=batch, verbose=0)
    return sequence_accuracy(probabilities, data["targets"], data["weights"])


def main(argv=None) -> dict:
    """Trains both models, prints and returns the results as a dict."""
    args = parse_args(argv)
    start = time.perf_counter()
    cfg = dict(QUICK if args.quick else FULL)
    for name in ("epochs", "train", "units"):
        if getattr(args, name) is not None:
            cfg[name] = getattr(args, name)
    jit = cfg["jit"] and not args.no_jit
    verbose = args.verbose if args.verbose is not None else (0 if args.quick else 2)
    keras.utils.set_random_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    train = make_data(cfg["train"], TRAIN_LENGTHS, rng)
    # Padded like the test set: one compiled prediction function serves both.
    valid = make_data(cfg["valid"], TRAIN_LENGTHS, rng, steps=CAPACITY)
    test = make_data(cfg["test"], TEST_LENGTHS, rng)

    results = {
        "task": "reversal",
        "quick": args.quick,
        "vocab": VOCAB,
        "train_lengths": list(TRAIN_LENGTHS),
        "test_lengths": list(TEST_LENGTHS),
        "train_sequences": cfg["train"],
        "test_sequences": cfg["test"],
        "epochs": cfg["epochs"],
        "capacity": CAPACITY,
    }
    stack_model = build_stack_model(cfg["units"], cfg["width"], jit=jit)
    lstm_units = lstm_units_for(stack_model.count_params())
    lstm_model = build_lstm_model(lstm_units, jit=jit)
    for name, model, units in (
        ("stack", stack_model, cfg["units"]),
        ("lstm", lstm_model, lstm_units),
    ):
        if verbose:
            print(f"--- {name}: {units} units, {model.count_params()} weights")
        seconds = _train(model, train, cfg["epochs"], cfg["batch"], verbose)
        valid_coarse, valid_fine = _score(model, valid)
        coarse, fine = _score(model, test)
        results.update(
            {
                f"{name}_units": units,
                f"{name}_params": model.count_params(),
                f"{name}_train_seconds": round(seconds, 1),
                f"{name}_valid_coarse_accuracy": valid_coarse,
                f"{name}_valid_fine_accuracy": valid_fine,
                f"{name}_coarse_accuracy": coarse,
                f"{name}_fine_accuracy": fine,
            }
        )
    results["total_seconds"] = round(time.perf_counter() - start, 1)
    print(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    main()
