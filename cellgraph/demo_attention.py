"""The attention superloop learns to find the last 2 before a 9 (the seed's toy task).

Run it with `python -m cellgraph.demo_attention` (`--quick` for a smoke run,
`--help` for the flags); `examples/attention_superloop.py` is the same CLI.
It generates the task with NumPy, trains a `cellgraph.Superloop` whose only
system is an `Attention` index over the 16 digits, and a plain
`keras.layers.LSTM` classifier of about the same size that reads the 16
digits in order; it prints a results table and writes a PNG of where the
attention index moves for a few held-out examples.

The task (the toy example of the original superloop project, with its data
distribution): a sequence of 16 digits holds exactly one 9, at index `p`
(1 <= p <= 15), and a 2 at index `s < p` with no 2 strictly between `s` and
`p`. The target is `s`, **the index of the last 2 before the 9**. The
generator draws `p` uniformly from 1..15 and `s` uniformly from 0..p-1; the
digits before `s` are uniform in 0..4 (so other 2s come before it about one
time in five per digit), those between `s` and `p` uniform in {0, 1, 3, 4},
and those after `p` uniform in 0..4. Each digit is one-hot encoded over the
ten digits, so the data is `(16, 10)`. Always answering 0 is right about 22%
of the time; stopping at the *first* 2 is right only when no 2 comes before
the target.

The superloop's answer is where its attention index *ends*: it is trained
(mean squared error) to bring the position state `"attention/position"` to
the target and the prediction is the position rounded to the nearest index.
The controller only sees what the attention reads; a good policy walks
forward to the 9, then back to the first 2 it meets, and stops there. The
LSTM answers with a softmax over the 16 indices (cross-entropy).
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import keras
import numpy as np
from keras import ops

from cellgraph.superloop import Superloop
from cellgraph.systems import Attention

DATAPOINTS = 16
DIGITS = 10
LEARNING_RATE = 2e-3

# The full run was tuned on 2 CPU cores (see docs/superloop.md for the
# figures); --quick is a smoke run of well under a minute.
FULL = {
    "train": 8000,
    "test": 2000,
    "epochs": 24,
    "timesteps": 40,
    "units": 64,
    "batch": 64,
}
QUICK = {
    "train": 256,
    "test": 128,
    "epochs": 1,
    "timesteps": 12,
    "units": 8,
    "batch": 64,
}


def make_data(
    num: int, rng: np.random.Generator | None = None, datapoints: int = DATAPOINTS
) -> tuple[np.ndarray, np.ndarray]:
    """Generates `num` examples of the task (see the module docstring).

    Args:
        num: number of examples.
        rng: NumPy random generator (a fresh unseeded one if `None`).
        datapoints: sequence length (at least 2).

    Returns:
        `(digits, target)`: int arrays of shapes `(num, datapoints)` and
        `(num,)`, the target being the index of the last 2 before the 9.
    """
    if datapoints < 2:
        raise ValueError(
            f"Argument `datapoints` must be >= 2. Received: datapoints={datapoints}"
        )
    rng = np.random.default_rng() if rng is None else rng
    nine = rng.integers(1, datapoints, num)[:, None]
    two = np.floor(rng.random((num, 1)) * nine).astype(int)
    index = np.arange(datapoints)[None, :]
    before = rng.integers(0, 5, (num, datapoints))
    between = rng.choice(np.array([0, 1, 3, 4]), (num, datapoints))
    after = rng.integers(0, 5, (num, datapoints))
    digits = np.select(
        [index < two, index == two, index < nine, index == nine],
        [before, 2, between, 9],
        default=after,
    )
    return digits.astype("int64"), two[:, 0].astype("int64")


def last_two_before_nine(digits: np.ndarray) -> np.ndarray:
    """The target recomputed from the digits: the last 2 before the (first) 9."""
    targets = []
    for row in np.asarray(digits):
        nine = int(np.argmax(row == 9))
        if row[nine] != 9 or not (row[:nine] == 2).any():
            raise ValueError(f"No 2 before a 9 in {row.tolist()}")
        targets.append(int(np.flatnonzero(row[:nine] == 2)[-1]))
    return np.array(targets, dtype="int64")


def one_hot(digits: np.ndarray) -> np.ndarray:
    """`(num, N)` digits to `(num, N, 10)` float32 one-hot vectors."""
    return np.eye(DIGITS, dtype="float32")[digits]


def exact_index(y_true, y_pred):
    """Keras metric: the rounded position equals the target index."""
    error = ops.abs(ops.reshape(y_true, (-1,)) - ops.reshape(y_pred, (-1,)))
    return ops.mean(ops.cast(error < 0.5, "float32"))


def _optimizer(learning_rate: float, steps: int):
    schedule = keras.optimizers.schedules.CosineDecay(
        learning_rate, decay_steps=max(steps, 1), alpha=0.02
    )
    # beta_2=0.99 lets Adam's scale follow the gradients of the recurrent loop
    # quickly, which avoided the loss spikes seen with the default 0.999.
    return keras.optimizers.Adam(schedule, beta_2=0.99, clipnorm=1.0)


def build_superloop_model(
    timesteps: int,
    units: int,
    layers: int = 1,
    cell: str = "gru",
    learning_rate: float = LEARNING_RATE,
    steps: int = 1000,
) -> tuple[keras.Model, Superloop]:
    """The superloop model: digits in, final attention position out.

    A `Superloop` with one `Attention` over the digits runs `timesteps`
    steps without per-step input; the model's output is the final
    `"attention/position"` state. Compiled with Adam (cosine decay over
    `steps` updates) and MSE.

    Returns:
        `(model, superloop)`.
    """
    data = keras.Input((DATAPOINTS, DIGITS), name="digits")
    superloop = Superloop(
        cell=cell,
        layers=layers,
        units=units,
        systems=[Attention(DATAPOINTS, DIGITS, name="attention")],
        timesteps=timesteps,
        return_sequences=False,
        return_state=True,
        name="superloop",
    )
    _, *states = superloop(data)
    position = states[superloop.state_names.index("attention/position")]
    model = keras.Model(data, position, name="attention_superloop")
    model.compile(
        optimizer=_optimizer(learning_rate, steps), loss="mse", metrics=[exact_index]
    )
    return model, superloop


def lstm_units_for(params: int) -> int:
    """The LSTM size whose classifier has about `params` parameters."""

    def count(units):
        return 4 * (DIGITS * units + units * units + units) + (units + 1) * DATAPOINTS

    units = 1
    while count(units + 1) <= params:
        units += 1
    return units


def build_lstm_model(
    units: int, learning_rate: float = LEARNING_RATE, steps: int = 1000
) -> keras.Model:
    """The baseline: an LSTM reads the 16 digits, a softmax picks the index."""
    data = keras.Input((DATAPOINTS, DIGITS), name="digits")
    h = keras.layers.LSTM(units, name="lstm")(data)
    probabilities = keras.layers.Dense(DATAPOINTS, activation="softmax")(h)
    model = keras.Model(data, probabilities, name="lstm_baseline")
    model.compile(
        optimizer=_optimizer(learning_rate, steps),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    return model


def save_plot(trace: dict, digits, targets, path: Path) -> None:
    """Plots the attention position over the steps for a few examples."""
    from matplotlib.figure import Figure

    positions = trace["attention/position"][..., 0]
    # the index starts at 0 before the first step
    positions = np.concatenate([np.zeros_like(positions[:, :1]), positions], axis=1)
    count = len(positions)
    columns = 2
    rows = math.ceil(count / columns)
    fig = Figure(figsize=(6.0 * columns, 3.6 * rows), dpi=100)
    axes = np.atleast_1d(fig.subplots(rows, columns)).ravel()
    steps = np.arange(positions.shape[1])
    for ax, position, row, target in zip(axes, positions, digits, targets):
        nine = int(np.argmax(row == 9))
        ax.plot(steps, position, marker=".", label="attention position")
        ax.axhline(target, color="tab:green", linestyle="--", label="target (last 2)")
        ax.axhline(nine, color="tab:red", linestyle=":", label="the 9")
        ax.set_yticks(np.arange(len(row)))
        ax.set_yticklabels([f"{i}: {d}" for i, d in enumerate(row)], fontsize=7)
        ax.set_ylim(-0.5, len(row) - 0.5)
        ax.set_xlabel("step")
        ax.set_ylabel("index: digit")
        found = int(np.rint(position[-1]))
        ax.set_title(f"target {target}, ends at {position[-1]:.2f} -> {found}")
        ax.grid(True, alpha=0.3)
    for ax in axes[count:]:
        ax.set_visible(False)
    axes[0].legend(loc="upper left", fontsize=8)
    fig.suptitle("Attention superloop: where the index moves (held-out examples)")
    fig.tight_layout()
    fig.savefig(path, format="png")


def format_table(results: dict) -> str:
    """The comparison as a small plain-text table."""
    rows = [
        ("model", "superloop (attention)", "LSTM"),
        ("cell", f"{results['cell']} x{results['layers']}", "keras LSTM"),
        (
            "units",
            f"{results['superloop_units']}",
            f"{results['lstm_units']}",
        ),
        (
            "parameters",
            f"{results['superloop_params']}",
            f"{results['lstm_params']}",
        ),
        ("steps", f"{results['timesteps']}", f"{DATAPOINTS}"),
        (
            "test exact-index accuracy",
            f"{results['superloop_accuracy']:.4f}",
            f"{results['lstm_accuracy']:.4f}",
        ),
        (
            "training time",
            f"{results['superloop_seconds']:.1f} s",
            f"{results['lstm_seconds']:.1f} s",
        ),
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    rule = "+" + "+".join("-" * (w + 2) for w in widths) + "+"
    lines = [rule]
    for k, row in enumerate(rows):
        cells = [f" {row[0]:<{widths[0]}} "]
        cells += [f" {value:>{w}} " for value, w in zip(row[1:], widths[1:])]
        lines.append("|" + "|".join(cells) + "|")
        if k == 0:
            lines.append(rule)
    lines.append(rule)
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m cellgraph.demo",
        description="Train an attention superloop to find the index of the last "
        "2 before a 9 among 16 digits, against a plain LSTM.",
    )
    parser.add_argument(
        "--quick", action="store_true", help="tiny smoke run (seconds, not minutes)"
    )
    parser.add_argument(
        "--epochs", type=int, default=None, help="number of epochs (overrides the mode)"
    )
    parser.add_argument(
        "--cell",
        default="gru",
        choices=["gru", "lstm", "sgu"],
        help="the superloop's cell (default: gru)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("cellgraph_demo_out"),
        help="folder for the plot and results.json (default: ./cellgraph_demo_out)",
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    parser.add_argument(
        "--verbose", type=int, default=1, choices=[0, 1, 2], help="Keras fit verbosity"
    )
    args = parser.parse_args(argv)
    if args.epochs is not None and args.epochs < 1:
        parser.error(f"--epochs must be at least 1, got {args.epochs}")
    return args


def main(argv: list[str] | None = None) -> dict:
    """Runs the comparison; returns the results (also written to `results.json`).

    Args:
        argv: command-line arguments (default: `sys.argv[1:]`).

    Returns:
        A dict with `superloop_accuracy` and `lstm_accuracy` (exact index on
        the held-out set), `zero_baseline_accuracy`, the parameter counts,
        `superloop_seconds`, `lstm_seconds`, `total_seconds`, the per-epoch
        `history` of both models, `plot` (path of the PNG) and the sizes.
    """
    start_all = time.perf_counter()
    args = parse_args(argv)
    mode = dict(QUICK if args.quick else FULL)
    if args.epochs is not None:
        mode["epochs"] = args.epochs
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)  # fail early, not after training
    keras.utils.set_random_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    train_digits, y_train = make_data(mode["train"], rng)
    test_digits, y_test = make_data(mode["test"], rng)
    x_train, x_test = one_hot(train_digits), one_hot(test_digits)
    steps = mode["epochs"] * math.ceil(mode["train"] / mode["batch"])

    print(
        f"cellgraph attention demo: last 2 before a 9 among {DATAPOINTS} digits, "
        f"{mode['train']} training / {mode['test']} test examples, {mode['epochs']} "
        f"epochs (Keras {keras.__version__}, backend {keras.backend.backend()})"
    )
    print(
        f"[1/2] superloop: {args.cell.upper()} ({mode['units']} units) + attention, "
        f"{mode['timesteps']} steps"
    )
    model, superloop = build_superloop_model(
        mode["timesteps"], mode["units"], cell=args.cell, steps=steps
    )
    start = time.perf_counter()
    fit = model.fit(
        x_train,
        y_train.astype("float32"),
        batch_size=mode["batch"],
        epochs=mode["epochs"],
        validation_data=(x_test, y_test.astype("float32")),
        validation_batch_size=500,
        verbose=args.verbose,
    )
    superloop_seconds = time.perf_counter() - start
    position = model.predict(x_test, batch_size=500, verbose=0)[:, 0]
    superloop_accuracy = float(np.mean(np.rint(position) == y_test))

    lstm_units = lstm_units_for(model.count_params())
    print(f"[2/2] LSTM baseline: {lstm_units} units, reads the {DATAPOINTS} digits")
    lstm = build_lstm_model(lstm_units, steps=steps)
    start = time.perf_counter()
    lstm_fit = lstm.fit(
        x_train,
        y_train,
        batch_size=mode["batch"],
        epochs=mode["epochs"],
        validation_data=(x_test, y_test),
        validation_batch_size=500,
        verbose=args.verbose,
    )
    lstm_seconds = time.perf_counter() - start
    guess = np.argmax(lstm.predict(x_test, batch_size=500, verbose=0), axis=-1)
    lstm_accuracy = float(np.mean(guess == y_test))

    shown = slice(0, 4)
    trace = superloop.trace(x_test[shown])
    plot = out / "attention_positions.png"
    save_plot(trace, test_digits[shown], y_test[shown], plot)

    results = {
        "task": "last 2 before a 9",
        "quick": bool(args.quick),
        "seed": args.seed,
        "datapoints": DATAPOINTS,
        "train_size": mode["train"],
        "test_size": mode["test"],
        "epochs": mode["epochs"],
        "timesteps": mode["timesteps"],
        "cell": args.cell,
        "layers": 1,
        "superloop_units": mode["units"],
        "superloop_params": int(model.count_params()),
        "lstm_units": lstm_units,
        "lstm_params": int(lstm.count_params()),
        "superloop_accuracy": superloop_accuracy,
        "lstm_accuracy": lstm_accuracy,
        "zero_baseline_accuracy": float(np.mean(y_test == 0)),
        "superloop_seconds": superloop_seconds,
        "lstm_seconds": lstm_seconds,
        "history": {
            "superloop": {k: [float(v) for v in vs] for k, vs in fit.history.items()},
            "lstm": {k: [float(v) for v in vs] for k, vs in lstm_fit.history.items()},
        },
        "plot": str(plot),
    }
    results["total_seconds"] = time.perf_counter() - start_all
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")

    print()
    print(format_table(results))
    print(
        f"Answering 0 every time: {results['zero_baseline_accuracy']:.4f}. "
        f"Total time {results['total_seconds']:.1f} s. Plot: {plot}"
    )
    return results


if __name__ == "__main__":
    main()
