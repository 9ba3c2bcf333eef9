"""The main job: an LSTM written as a step graph learns the adding problem.

Run it with `python -m cellgraph.demo_adding` (`--quick` for a run of a few seconds,
`--help` for the flags). It generates the adding problem (Hochreiter &
Schmidhuber, 1997) with NumPy, trains a `cellgraph.RecurrentModel` whose one
timestep is a `cellgraph.cells.LSTMCell`, prints a results table against the
trivial baseline and writes a PNG of the loss curves.

The adding problem: each sequence has T=50 steps and 2 channels, a value
uniform in [0, 1] and a marker that is 1 at exactly two steps, one in each
half of the sequence. The target is the sum of the two marked values. Always
predicting the mean target (1.0) gives an MSE of Var(U1 + U2) = 2/12 ≈ 0.167:
a model only beats that by remembering the marked values across the sequence.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import keras
import numpy as np

import cellgraph as cg

TIMESTEPS = 50
BASELINE_MSE = 2.0 / 12.0  # MSE of always predicting the mean target, 1.0

# Full run and --quick run. The full run was tuned on 2 CPU cores: one to two
# minutes, test MSE ~1e-3 or lower (seeds 0-3 all end below 0.004).
FULL = {"train": 10000, "test": 2000, "epochs": 15, "units": 32, "batch": 64}
QUICK = {"train": 512, "test": 256, "epochs": 2, "units": 16, "batch": 32}
LEARNING_RATE = 3e-3


def make_adding_data(
    num: int, timesteps: int = TIMESTEPS, rng: np.random.Generator | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Generates `num` sequences of the adding problem.

    Args:
        num: number of sequences.
        timesteps: sequence length T (at least 2).
        rng: NumPy random generator (a fresh unseeded one if `None`).

    Returns:
        `(x, y)`: `x` of shape `(num, timesteps, 2)` (values, markers) and
        `y` of shape `(num, 1)`, the sum of the two marked values; float32.
    """
    if timesteps < 2:
        raise ValueError(f"Argument `timesteps` must be >= 2. Received: {timesteps}")
    rng = np.random.default_rng() if rng is None else rng
    values = rng.uniform(0.0, 1.0, (num, timesteps)).astype("float32")
    markers = np.zeros((num, timesteps), dtype="float32")
    half = timesteps // 2
    rows = np.arange(num)
    markers[rows, rng.integers(0, half, num)] = 1.0
    markers[rows, rng.integers(half, timesteps, num)] = 1.0
    x = np.stack([values, markers], axis=-1)
    y = (values * markers).sum(axis=1, keepdims=True)
    return x, y


def build_model(units: int, timesteps: int = TIMESTEPS, learning_rate=LEARNING_RATE):
    """Builds and compiles the model: a step-graph LSTM, then `Dense(1)`.

    The recurrent layer is written as one timestep: the step input `x_t` and
    the previous states `h_tm1`, `c_tm1` go in; the LSTM cell's output and
    new states come out. `cellgraph.RecurrentModel` runs it over the sequence.
    """
    x_t = keras.Input((2,), name="x_t")
    h_tm1 = keras.Input((units,), name="h_tm1")
    c_tm1 = keras.Input((units,), name="c_tm1")
    h, h_t, c_t = cg.cells.LSTMCell(units)([x_t, h_tm1, c_tm1])
    rnn = cg.RecurrentModel(
        input=x_t,
        output=h,
        initial_states=[h_tm1, c_tm1],
        final_states=[h_t, c_t],
        name="lstm_step_graph",
    )

    sequence = keras.Input((timesteps, 2), name="sequence")
    prediction = keras.layers.Dense(1, name="sum")(rnn(sequence))
    model = keras.Model(sequence, prediction, name="adding_lstm")
    model.compile(optimizer=keras.optimizers.Adam(learning_rate), loss="mse")
    return model


def save_plot(history: dict, path: Path, title: str) -> None:
    """Writes the train/test loss curves with the baseline to a PNG."""
    # The object-oriented API renders with Agg and leaves pyplot's global
    # state (and the user's interactive backend) alone.
    from matplotlib.figure import Figure

    epochs = np.arange(1, len(history["loss"]) + 1)
    fig = Figure(figsize=(6.4, 4.0), dpi=100)
    ax = fig.subplots()
    ax.plot(epochs, history["loss"], marker="o", label="train MSE")
    if "val_loss" in history:
        ax.plot(epochs, history["val_loss"], marker="s", label="test MSE")
    ax.axhline(BASELINE_MSE, color="gray", linestyle="--", label="baseline 0.167")
    ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel("mean squared error")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, format="png")


def format_table(results: dict) -> str:
    """The results as a small plain-text table."""
    rows = [
        (
            "sequences (train / test)",
            f"{results['train_size']} / {results['test_size']}",
        ),
        ("timesteps", f"{results['timesteps']}"),
        ("LSTM units", f"{results['units']}"),
        ("epochs", f"{results['epochs']}"),
        ("train MSE (final)", f"{results['train_mse']:.5f}"),
        ("test MSE (final)", f"{results['test_mse']:.5f}"),
        ("baseline MSE (predict 1.0)", f"{results['baseline_mse']:.5f}"),
        ("test MSE / baseline", f"{results['test_mse'] / results['baseline_mse']:.3f}"),
        ("training time", f"{results['train_seconds']:.1f} s"),
    ]
    width = max(len(name) for name, _ in rows)
    vwidth = max(len(value) for _, value in rows)
    rule = "+" + "-" * (width + 2) + "+" + "-" * (vwidth + 2) + "+"
    lines = [rule]
    lines += [f"| {name:<{width}} | {value:>{vwidth}} |" for name, value in rows]
    lines.append(rule)
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m cellgraph.demo_adding",
        description="Train an LSTM written as a cellgraph step graph on the "
        f"adding problem (T={TIMESTEPS}) and plot its loss curve.",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="tiny smoke run (a few hundred sequences, 2 epochs)",
    )
    parser.add_argument(
        "--epochs", type=int, default=None, help="number of epochs (overrides the mode)"
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("cellgraph_demo_out"),
        help="folder for the plot and results.json (default: ./cellgraph_demo_out)",
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    args = parser.parse_args(argv)
    if args.epochs is not None and args.epochs < 1:
        parser.error(f"--epochs must be at least 1, got {args.epochs}")
    return args


def main(argv: list[str] | None = None) -> dict:
    """Runs the demo; returns the results (also written to `results.json`).

    Args:
        argv: command-line arguments (default: `sys.argv[1:]`).

    Returns:
        A dict with `train_mse`, `test_mse`, `baseline_mse`, `epochs`,
        `train_seconds`, `history` (per-epoch `loss` and `val_loss`), `plot`
        (path of the PNG) and the run's sizes.
    """
    args = parse_args(argv)
    mode = QUICK if args.quick else FULL
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)  # fail early, not after training
    epochs = args.epochs if args.epochs is not None else mode["epochs"]
    keras.utils.set_random_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    x_train, y_train = make_adding_data(mode["train"], TIMESTEPS, rng)
    x_test, y_test = make_adding_data(mode["test"], TIMESTEPS, rng)

    print(
        f"cellgraph demo: adding problem, T={TIMESTEPS}, "
        f"{mode['train']} training / {mode['test']} test sequences, "
        f"LSTM step graph with {mode['units']} units, {epochs} epochs "
        f"(Keras {keras.__version__}, backend {keras.backend.backend()})"
    )
    model = build_model(mode["units"], TIMESTEPS)
    start = time.perf_counter()
    fit = model.fit(
        x_train,
        y_train,
        batch_size=mode["batch"],
        epochs=epochs,
        validation_data=(x_test, y_test),
        verbose=1,
    )
    train_seconds = time.perf_counter() - start
    history = {k: [float(v) for v in fit.history[k]] for k in ("loss", "val_loss")}
    # Final figures on the whole sets with the final weights (the epoch's
    # "loss" is an average over batches while the weights were changing).
    train_mse = float(model.evaluate(x_train, y_train, batch_size=256, verbose=0))
    test_mse = float(model.evaluate(x_test, y_test, batch_size=256, verbose=0))

    plot = out / "adding_loss.png"
    save_plot(
        history,
        plot,
        f"cellgraph LSTM step graph, adding problem T={TIMESTEPS}",
    )
    results = {
        "task": "adding",
        "quick": bool(args.quick),
        "seed": args.seed,
        "timesteps": TIMESTEPS,
        "units": mode["units"],
        "train_size": mode["train"],
        "test_size": mode["test"],
        "epochs": epochs,
        "train_mse": train_mse,
        "test_mse": test_mse,
        "baseline_mse": BASELINE_MSE,
        "train_seconds": train_seconds,
        "history": history,
        "plot": str(plot),
    }
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")

    print()
    print(format_table(results))
    verdict = "beats" if test_mse < BASELINE_MSE else "does NOT beat"
    print(f"The model {verdict} the baseline. Plot: {plot}")
    if not math.isfinite(test_mse):
        print("warning: the test MSE is not finite (training diverged)")
    return results


if __name__ == "__main__":
    main()
