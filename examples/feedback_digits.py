"""Recurrent convolutional networks (Spoerer et al. 2017) on scikit-learn's digits.

Compares the feedforward model B with the recurrent models BL (lateral), BT
(top-down) and BLT (both), each built with `cellgraph.feedback.spoerer2017`
and given roughly the same number of parameters (the number of feature maps
is chosen per model to meet the budget; B then plays the part of the paper's
parameter-matched control BF). Two tasks, both on the 8x8 digits of
`sklearn.datasets.load_digits` (no download):

- "digits": the digits as they are;
- "debris": each digit cluttered and partly occluded by fragments (3x3
  patches) of other digits, pasted at random places (pixel-wise maximum), in
  the spirit of the paper's "digit debris" task.

Every model runs `--timesteps` steps on the image and reads out a class at
every step; the loss is the cross-entropy averaged over the steps. The script
prints and plots the test accuracy at each step.

    python examples/feedback_digits.py            # full run (minutes on 2 cores)
    python examples/feedback_digits.py --quick    # smoke run (< 1 minute)
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from cellgraph.feedback import spoerer2017  # noqa: E402

TASKS = ("digits", "debris")
FULL = {"variants": ("B", "BL", "BT", "BLT"), "epochs": 12, "budget_features": 12}
QUICK = {"variants": ("B", "BLT"), "epochs": 1, "budget_features": 4, "size": 300}


def load_data(task: str, rng: np.random.Generator, fragments: int = 4):
    """Images `(n, 8, 8, 1)` in [0, 1] and labels `(n,)` of a task."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = (digits.images / 16.0).astype("float32")
    labels = digits.target.astype("int32")
    if task == "debris":
        images = add_debris(images, rng, fragments)
    elif task != "digits":
        raise ValueError(f"Unknown task {task!r}; expected one of {TASKS}")
    return images[..., None], labels


def add_debris(images, rng, fragments=4, size=3):
    """Pastes `fragments` random `size`x`size` patches of other digits on each."""
    n, height, width = images.shape
    out = images.copy()
    for _ in range(fragments):
        sources = (np.arange(n) + rng.integers(1, n, n)) % n  # another digit
        src_r, src_c = rng.integers(0, height - size + 1, (2, n))
        dst_r, dst_c = rng.integers(0, height - size + 1, (2, n))
        for i in range(n):
            patch = images[
                sources[i], src_r[i] : src_r[i] + size, src_c[i] : src_c[i] + size
            ]
            window = out[i, dst_r[i] : dst_r[i] + size, dst_c[i] : dst_c[i] + size]
            np.maximum(window, patch, out=window)
    return out


def count_params(variant, features, kernel=3, channels=1, classes=10):
    """Parameters of `spoerer2017(variant, ...)` for B, BL, BT and BLT."""
    square = kernel * kernel * features * features
    total = kernel * kernel * channels * features + features  # bottom-up 1
    total += square + features  # bottom-up 2
    total += 2 * square * ("L" in variant) + square * ("T" in variant)
    return total + features * classes + classes


def features_for_budget(variant, budget):
    """The number of feature maps whose parameter count is closest to `budget`."""
    return min(range(1, 257), key=lambda f: abs(count_params(variant, f) - budget))


def split(images, labels, rng, test_fraction=0.3):
    order = rng.permutation(len(images))
    cut = int(len(images) * (1 - test_fraction))
    train, test = order[:cut], order[cut:]
    return (images[train], labels[train]), (images[test], labels[test])


def train_and_score(
    variant, features, data, timesteps, epochs, seed, verbose, eager=False
):
    """Trains one model; returns its parameter count and accuracy per step.

    `eager=True` skips graph compilation: faster for the few batches of
    `--quick`, much slower for a full run.
    """
    (x_train, y_train), (x_test, y_test) = data
    keras.backend.clear_session()  # each model starts from a fresh session
    keras.utils.set_random_seed(seed)
    rnn = spoerer2017(
        variant,
        x_train.shape[1:],
        classes=10,
        timesteps=timesteps,
        return_sequences=True,
        features=features,
    )
    images = keras.Input(x_train.shape[1:])
    model = keras.Model(images, rnn(images))
    # One target per step: the loss is the cross-entropy averaged over steps.
    model.compile(
        keras.optimizers.Adam(3e-3),
        "sparse_categorical_crossentropy",
        run_eagerly=eager,
    )
    repeat = lambda y: np.repeat(y[:, None], timesteps, axis=1)  # noqa: E731
    model.fit(
        x_train,
        repeat(y_train),
        batch_size=32,
        epochs=epochs,
        verbose=verbose,
    )
    if eager:
        probabilities = keras.ops.convert_to_numpy(model(x_test))
    else:
        probabilities = model.predict(x_test, batch_size=256, verbose=0)
    correct = probabilities.argmax(-1) == y_test[:, None]
    return model.count_params(), [float(a) for a in correct.mean(axis=0)]


def save_plot(results, timesteps, path):
    from matplotlib.figure import Figure

    tasks = list(results)
    fig = Figure(figsize=(5.0 * len(tasks), 3.8), dpi=100)
    axes = np.atleast_1d(fig.subplots(1, len(tasks)))
    steps = np.arange(1, timesteps + 1)
    for ax, task in zip(axes, tasks):
        for variant, row in results[task].items():
            ax.plot(
                steps,
                row["accuracy"],
                marker="o",
                linestyle="--" if variant == "B" else "-",
                label=f"{variant} ({row['params']:,} params)",
            )
        ax.set_xticks(steps)
        ax.set_xlabel("timestep")
        ax.set_ylabel("test accuracy")
        ax.set_title(f"load_digits: {task}")
        ax.grid(True, alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, format="png")


def format_table(results) -> str:
    lines = ["| task | model | features | params | test accuracy per step |"]
    lines.append("| --- | --- | --- | --- | --- |")
    for task, rows in results.items():
        for variant, row in rows.items():
            steps = " / ".join(f"{100 * a:.1f}" for a in row["accuracy"])
            lines.append(
                f"| {task} | {variant} | {row['features']} | {row['params']:,} "
                f"| {steps} |"
            )
    return "\n".join(lines)


def main(argv=None) -> dict:
    """Runs the comparison; returns the results (also written to results.json).

    Returns:
        A dict with `results[task][variant]` = `{"features", "params",
        "accuracy"}` (test accuracy at each step), the run's settings,
        `seconds` and `plot` (path of the PNG).
    """
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny smoke run")
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--timesteps", type=int, default=4)
    parser.add_argument(
        "--budget-features",
        type=int,
        default=None,
        help="parameter budget given as BLT's number of feature maps "
        "(default: 12; every model gets about BLT's parameter count)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("feedback_digits_out"))
    args = parser.parse_args(argv)
    mode = QUICK if args.quick else FULL
    epochs = args.epochs or mode["epochs"]
    budget = count_params("BLT", args.budget_features or mode["budget_features"])
    args.out.mkdir(parents=True, exist_ok=True)

    start = time.perf_counter()
    results, sizes = {}, {}
    for task in TASKS:
        rng = np.random.default_rng(args.seed)
        images, labels = load_data(task, rng)
        if args.quick:
            images, labels = images[: mode["size"]], labels[: mode["size"]]
        data = split(images, labels, rng)
        sizes = {"train_size": len(data[0][0]), "test_size": len(data[1][0])}
        results[task] = {}
        for variant in mode["variants"]:
            features = features_for_budget(variant, budget)
            params, accuracy = train_and_score(
                variant,
                features,
                data,
                args.timesteps,
                epochs,
                args.seed,
                verbose=0 if args.quick else 2,
                eager=args.quick,
            )
            results[task][variant] = {
                "features": features,
                "params": params,
                "accuracy": accuracy,
            }
            print(
                f"{task:>6} {variant:>3}: {features} features, {params} params, "
                "accuracy per step " + " ".join(f"{100 * a:.1f}%" for a in accuracy),
                flush=True,
            )
    seconds = time.perf_counter() - start

    plot = args.out / "feedback_digits.png"
    save_plot(results, args.timesteps, plot)
    summary = {
        "quick": bool(args.quick),
        "seed": args.seed,
        "timesteps": args.timesteps,
        "epochs": epochs,
        "budget": budget,
        **sizes,
        "results": results,
        "seconds": round(seconds, 1),
        "plot": str(plot),
    }
    (args.out / "results.json").write_text(json.dumps(summary, indent=2) + "\n")
    print()
    print(format_table(results))
    print(f"\n{seconds:.0f} s. Plot: {plot}")
    return summary


if __name__ == "__main__":
    main()
