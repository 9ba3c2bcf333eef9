"""The NTM copy task (Graves et al. 2014) with an `AddressableMemory`.

The task ("Neural Turing Machines", section 4.1): a sequence of L random
8-bit vectors (L in 1..10), then one step with the delimiter channel on,
then L blank steps during which the model must output the L vectors again,
in order. The input has 9 channels (8 bits + delimiter); only the L output
steps carry a loss (binary cross-entropy, sample weights), so a sequence has
`2L + 1` steps. The figure is the NTM paper's: **bits of error per
sequence**, the number of output bits that are wrong after thresholding at
0.5, averaged over held-out sequences (fresh random data, same lengths).

Two models, both `cellgraph.RecurrentModel` step graphs trained the same way
(Adam with a cosine-decayed learning rate and gradient clipping, the same
data and epochs; the weights with the best validation loss are kept):

- ntm: an LSTM controller whose input is `[x_t, read_tm1]`; its output
  drives an `AddressableMemory(slots=16, width=12)` with one read and one
  write head (content + location addressing, erase/add writes), whose read
  is fed back at the next step as an explicit state; the step output is
  `sigmoid(Dense([h_t, read_t]))`. The memory starts at a small constant
  (1e-6) and both head weightings on slot 0;
- lstm: the same step graph without the memory, with more units so that it
  has about as many weights.

    python examples/ntm_copy.py            # full run (about 10 minutes)
    python examples/ntm_copy.py --quick    # smoke run (< 60 s)

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
from cellgraph.systems import AddressableMemory  # noqa: E402

BITS = 8
LENGTHS = (1, 10)
LEARNING_RATE = 3e-3

# The full run was sized for a 2-core CPU shared with other jobs (figures in
# docs/memory_tasks.md); --quick is a smoke run of well under a minute.
FULL = {
    "train": 16384,
    "valid": 1000,
    "test": 2000,
    "epochs": 10,
    "units": 100,
    "slots": 16,
    "width": 12,
    "batch": 32,
    "jit": True,
}
QUICK = {
    "train": 128,
    "valid": 32,
    "test": 64,
    "epochs": 1,
    "units": 16,
    "slots": 16,
    "width": 8,
    "batch": 32,
    "jit": False,
}


def make_data(
    num: int,
    lengths: tuple[int, int] = LENGTHS,
    rng: np.random.Generator | None = None,
    bits: int = BITS,
    steps: int | None = None,
) -> dict[str, np.ndarray]:
    """Generates `num` copy examples, padded to a common number of steps.

    Args:
        num: number of sequences.
        lengths: `(min, max)` number of vectors L, both included, drawn
            uniformly.
        rng: NumPy random generator (a fresh unseeded one if `None`).
        bits: bits per vector.
        steps: padded number of steps (default `2 * max + 1`).

    Returns:
        A dict of arrays: `inputs (num, steps, bits + 1)` float32, the
        vectors at steps `0 .. L-1` and the delimiter (last channel) at step
        L, zeros elsewhere; `targets (num, steps, bits)` float32, the vectors
        again at steps `L+1 .. 2L` (zeros elsewhere); `weights (num, steps)`
        float32, 1 exactly at those steps; `vectors (num, max, bits)` (zeros
        past L); `lengths (num,)` int64.
    """
    low, high = lengths
    if not 1 <= low <= high:
        raise ValueError(
            f"Argument `lengths` must be (min, max) with 1 <= min <= max. "
            f"Received: lengths={lengths}"
        )
    steps = 2 * high + 1 if steps is None else steps
    if steps < 2 * high + 1:
        raise ValueError(
            f"Argument `steps` must be at least 2 * {high} + 1 = {2 * high + 1}. "
            f"Received: steps={steps}"
        )
    rng = np.random.default_rng() if rng is None else rng
    lengths_ = rng.integers(low, high + 1, num)
    vectors = np.zeros((num, high, bits), dtype="float32")
    inputs = np.zeros((num, steps, bits + 1), dtype="float32")
    targets = np.zeros((num, steps, bits), dtype="float32")
    weights = np.zeros((num, steps), dtype="float32")
    for i, length in enumerate(lengths_):
        seq = rng.integers(0, 2, (length, bits)).astype("float32")
        vectors[i, :length] = seq
        inputs[i, :length, :bits] = seq
        inputs[i, length, bits] = 1.0
        targets[i, length + 1 : 2 * length + 1] = seq
        weights[i, length + 1 : 2 * length + 1] = 1.0
    return {
        "inputs": inputs,
        "targets": targets,
        "weights": weights,
        "vectors": vectors,
        "lengths": lengths_.astype("int64"),
    }


def bits_of_error(probabilities, targets, weights) -> float:
    """Wrong output bits (threshold 0.5) per sequence, averaged."""
    predicted = np.asarray(probabilities) > 0.5
    wrong = predicted != (np.asarray(targets) > 0.5)
    scored = (np.asarray(weights) > 0)[..., None]
    return float(np.mean(np.sum(wrong & scored, axis=(1, 2))))


def _compile(model, learning_rate, decay_steps, jit) -> keras.Model:
    schedule = keras.optimizers.schedules.CosineDecay(
        learning_rate, decay_steps=max(decay_steps, 1), alpha=0.05
    )
    model.compile(
        optimizer=keras.optimizers.Adam(schedule, clipnorm=1.0),
        loss="binary_crossentropy",
        jit_compile=jit,
    )
    return model


def build_ntm_model(
    units: int = 100,
    slots: int = 16,
    width: int = 12,
    bits: int = BITS,
    learning_rate: float = LEARNING_RATE,
    decay_steps: int = 1000,
    jit: bool = False,
) -> keras.Model:
    """The LSTM controller + `AddressableMemory` model, compiled."""
    memory = AddressableMemory(slots=slots, width=width, name="memory")
    x_t = keras.Input((bits + 1,), name="x_t")
    read_tm1 = keras.Input((memory.read_size,), name="read_tm1")
    h_tm1 = keras.Input((units,), name="h_tm1")
    c_tm1 = keras.Input((units,), name="c_tm1")
    memory_tm1 = memory.initial_state_inputs()
    controller_in = keras.layers.Concatenate()([x_t, read_tm1])
    h_t, _, c_t = cg.cells.LSTMCell(units, name="controller")(
        [controller_in, h_tm1, c_tm1]
    )
    read_t, *memory_t = memory([h_t, *memory_tm1])
    y_t = keras.layers.Dense(bits, activation="sigmoid", name="bits")(
        keras.layers.Concatenate()([h_t, read_t])
    )
    _, read_weights, write_weights = memory.state_initializers()
    rnn = cg.RecurrentModel(
        input=x_t,
        output=y_t,
        initial_states=[read_tm1, h_tm1, c_tm1, *memory_tm1],
        final_states=[read_t, h_t, c_t, *memory_t],
        state_initializer=[
            None,
            None,
            None,
            keras.initializers.Constant(1e-6),
            read_weights,
            write_weights,
        ],
        return_sequences=True,
        name="ntm_rnn",
    )
    sequence = keras.Input((None, bits + 1), name="sequence")
    model = keras.Model(sequence, rnn(sequence), name="ntm_copy")
    return _compile(model, learning_rate, decay_steps, jit)


def build_lstm_model(
    units: int,
    bits: int = BITS,
    learning_rate: float = LEARNING_RATE,
    decay_steps: int = 1000,
    jit: bool = False,
) -> keras.Model:
    """The baseline: the same step graph without the memory, compiled."""
    x_t = keras.Input((bits + 1,), name="x_t")
    h_tm1 = keras.Input((units,), name="h_tm1")
    c_tm1 = keras.Input((units,), name="c_tm1")
    h_t, _, c_t = cg.cells.LSTMCell(units, name="lstm")([x_t, h_tm1, c_tm1])
    y_t = keras.layers.Dense(bits, activation="sigmoid", name="bits")(h_t)
    rnn = cg.RecurrentModel(
        input=x_t,
        output=y_t,
        initial_states=[h_tm1, c_tm1],
        final_states=[h_t, c_t],
        return_sequences=True,
        name="lstm_rnn",
    )
    sequence = keras.Input((None, bits + 1), name="sequence")
    model = keras.Model(sequence, rnn(sequence), name="lstm_copy")
    return _compile(model, learning_rate, decay_steps, jit)


def lstm_units_for(params: int, bits: int = BITS) -> int:
    """The largest LSTM baseline with at most `params` weights."""

    def count(units):
        return 4 * ((bits + 1) * units + units * units + units) + (units + 1) * bits

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


def _train(model, train, valid, epochs, batch, verbose) -> float:
    """Fits; with validation data, keeps the weights of the best epoch."""
    fit_args = {}
    if valid is not None:
        fit_args["validation_data"] = (
            valid["inputs"],
            valid["targets"],
            valid["weights"],
        )
        fit_args["callbacks"] = [
            keras.callbacks.EarlyStopping(
                monitor="val_loss", patience=epochs, restore_best_weights=True
            )
        ]
    start = time.perf_counter()
    model.fit(
        train["inputs"],
        train["targets"],
        sample_weight=train["weights"],
        batch_size=batch,
        epochs=epochs,
        verbose=verbose,
        **fit_args,
    )
    return time.perf_counter() - start


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
    train = make_data(cfg["train"], LENGTHS, rng)
    valid = make_data(cfg["valid"], LENGTHS, rng)
    test = make_data(cfg["test"], LENGTHS, rng)
    decay_steps = cfg["epochs"] * -(-cfg["train"] // cfg["batch"])

    results = {
        "task": "copy",
        "quick": args.quick,
        "bits": BITS,
        "lengths": list(LENGTHS),
        "train_sequences": cfg["train"],
        "test_sequences": cfg["test"],
        "epochs": cfg["epochs"],
        "slots": cfg["slots"],
        "width": cfg["width"],
    }
    ntm_model = build_ntm_model(
        cfg["units"], cfg["slots"], cfg["width"], decay_steps=decay_steps, jit=jit
    )
    lstm_units = lstm_units_for(ntm_model.count_params())
    lstm_model = build_lstm_model(lstm_units, decay_steps=decay_steps, jit=jit)
    for name, model, units in (
        ("ntm", ntm_model, cfg["units"]),
        ("lstm", lstm_model, lstm_units),
    ):
        if verbose:
            print(f"--- {name}: {units} units, {model.count_params()} weights")
        seconds = _train(
            model,
            train,
            None if args.quick else valid,
            cfg["epochs"],
            cfg["batch"],
            verbose,
        )
        probabilities = model.predict(test["inputs"], batch_size=250, verbose=0)
        results.update(
            {
                f"{name}_units": units,
                f"{name}_params": model.count_params(),
                f"{name}_train_seconds": round(seconds, 1),
                f"{name}_bits_error": bits_of_error(
                    probabilities, test["targets"], test["weights"]
                ),
            }
        )
    results["zero_output_bits_error"] = bits_of_error(
        np.zeros_like(test["targets"]), test["targets"], test["weights"]
    )
    results["total_seconds"] = round(time.perf_counter() - start, 1)
    print(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    main()
