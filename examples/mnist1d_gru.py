"""MNIST-1D (Greydanus 2020) with a bidirectional cellgraph GRU.

MNIST-1D is a procedurally generated stand-in for MNIST: ten 1-D digit
templates, randomly padded, translated, sheared, scaled and noised into
sequences of 40 values. The `mnist1d` package generates it locally with
`make_dataset(get_dataset_args())` (the default arguments: 5000 examples,
seed 42, the first 4000 for training and the last 1000 for testing). Nothing
is downloaded: `mnist1d.data.get_dataset` would fetch a pickle from GitHub,
so this script calls `make_dataset` only.

The model: `cellgraph.cells.GRUCell(units, input_dim=1).get_layer(...)` (a
`RecurrentModel` whose step graph is Keras's GRU cell, with Keras's weights)
inside `keras.layers.Bidirectional`, then the max and mean of its outputs over
the 40 steps and a softmax. Fixed epochs with cosine learning-rate decay, no
early stopping: the test set is used only to draw the curves.

The published baseline is the MNIST-1D README/paper table: GRU 91% (a
bidirectional GRU with 6 units and a linear layer on all its outputs), CNN
94%, MLP 68%, logistic regression 32%, human expert 96%.

    python examples/mnist1d_gru.py            # full run (~3 minutes on 2 cores)
    python examples/mnist1d_gru.py --quick    # smoke run (seconds)

The full run's figures are recorded in docs/gallery.md.
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
from keras import layers  # noqa: E402

import cellgraph as cg  # noqa: E402

GOAL = 0.91
PUBLISHED = {
    "model": "GRU (bidirectional, 6 units), MNIST-1D README/paper table",
    "accuracy": 0.91,
    "others": {"CNN": 0.94, "MLP": 0.68, "logistic regression": 0.32, "human": 0.96},
}
FULL = {"epochs": 40, "units": 32}
QUICK = {"epochs": 1, "units": 8, "num_samples": 300}


def load_data(num_samples: int | None = None):
    """MNIST-1D generated locally: `((x, y), (x_test, y_test))`, x `(n, 40, 1)`.

    With `num_samples=None` this is the default dataset of the paper.
    """
    from mnist1d.data import get_dataset_args, make_dataset

    args = get_dataset_args()
    if num_samples is not None:
        args.num_samples = num_samples
    data = make_dataset(args)  # generates; never downloads
    train = (data["x"][..., None].astype("float32"), data["y"].astype("int32"))
    test = (data["x_test"][..., None].astype("float32"), data["y_test"].astype("int32"))
    return train, test


def build_model(units: int, timesteps: int = 40) -> keras.Model:
    gru = cg.cells.GRUCell(units, input_dim=1).get_layer(return_sequences=True)
    signal = keras.Input((timesteps, 1), name="signal")
    outputs = layers.Bidirectional(gru)(signal)
    pooled = layers.Concatenate()(
        [layers.GlobalMaxPooling1D()(outputs), layers.GlobalAveragePooling1D()(outputs)]
    )
    return keras.Model(signal, layers.Dense(10, activation="softmax")(pooled))


def save_curves(history, path, title, goal, published):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 3.8), dpi=100)
    ax_loss, ax_acc = fig.subplots(1, 2)
    epochs = np.arange(1, len(history["loss"]) + 1)
    ax_loss.plot(epochs, history["loss"], label="train")
    ax_loss.plot(epochs, history["val_loss"], label="test")
    ax_loss.set_ylabel("cross-entropy")
    ax_acc.plot(epochs, history["accuracy"], label="train")
    ax_acc.plot(epochs, history["val_accuracy"], label="test")
    ax_acc.axhline(
        published, color="black", linestyle="--", label=f"published GRU {published:.0%}"
    )
    if goal != published:
        ax_acc.axhline(goal, color="gray", linestyle=":", label=f"goal {goal:.0%}")
    ax_acc.set_ylabel("accuracy")
    for ax in (ax_loss, ax_acc):
        ax.set_xlabel("epoch")
        ax.grid(True, alpha=0.3)
        ax.legend()
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, format="png")


def main(argv=None) -> dict:
    """Trains and evaluates the model; returns the results (also results.json).

    Returns:
        A dict with `test_accuracy`, `test_loss`, `goal`, `published`,
        `params`, the split sizes, `history` (per-epoch `loss`, `accuracy`,
        `val_loss`, `val_accuracy`, the `val_` ones on the test set),
        `train_seconds`, `seconds` and `plot`.
    """
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny smoke run")
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--units", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--learning-rate", type=float, default=5e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("mnist1d_gru_out"))
    args = parser.parse_args(argv)
    mode = QUICK if args.quick else FULL
    epochs = args.epochs or mode["epochs"]
    units = args.units or mode["units"]
    args.out.mkdir(parents=True, exist_ok=True)

    start = time.perf_counter()
    train, test = load_data(mode.get("num_samples"))
    keras.utils.set_random_seed(args.seed)
    model = build_model(units, timesteps=train[0].shape[1])
    steps_per_epoch = -(-len(train[0]) // args.batch_size)
    schedule = keras.optimizers.schedules.CosineDecay(
        args.learning_rate, decay_steps=epochs * steps_per_epoch
    )
    model.compile(
        keras.optimizers.Adam(schedule),
        "sparse_categorical_crossentropy",
        metrics=["accuracy"],
        run_eagerly=args.quick,  # a few batches: skip graph compilation
    )
    fit_start = time.perf_counter()
    history = model.fit(
        *train,
        batch_size=args.batch_size,
        epochs=epochs,
        validation_data=test,
        verbose=0 if args.quick else 2,
    ).history
    train_seconds = time.perf_counter() - fit_start
    test_loss, test_accuracy = model.evaluate(*test, batch_size=256, verbose=0)
    seconds = time.perf_counter() - start

    plot = args.out / "mnist1d_gru.png"
    save_curves(
        history,
        plot,
        f"MNIST-1D, bidirectional cellgraph GRU ({units} units)",
        GOAL,
        PUBLISHED["accuracy"],
    )
    result = {
        "example": "mnist1d_gru",
        "quick": bool(args.quick),
        "seed": args.seed,
        "epochs": epochs,
        "units": units,
        "params": model.count_params(),
        "train_size": len(train[0]),
        "test_size": len(test[0]),
        "test_accuracy": float(test_accuracy),
        "test_loss": float(test_loss),
        "goal": GOAL,
        "published": PUBLISHED,
        "history": {k: [float(v) for v in vs] for k, vs in history.items()},
        "train_seconds": round(train_seconds, 1),
        "seconds": round(seconds, 1),
        "plot": str(plot),
    }
    (args.out / "results.json").write_text(json.dumps(result, indent=2) + "\n")
    print()
    print("| model | test accuracy |")
    print("| --- | --- |")
    print(
        f"| cellgraph GRU, bidirectional, {units} units ({result['params']:,} "
        f"params) | **{test_accuracy:.2%}** |"
    )
    print(f"| published: {PUBLISHED['model']} | {PUBLISHED['accuracy']:.0%} |")
    for name, accuracy in PUBLISHED["others"].items():
        print(f"| published: {name} | {accuracy:.0%} |")
    print(f"| goal | {GOAL:.0%} |")
    print(f"\nTraining {train_seconds:.0f} s, total {seconds:.0f} s. Plot: {plot}")
    return result


if __name__ == "__main__":
    main()
